"""The explorer's read-only SQL: one ``SELECT`` (or ``WITH ... SELECT``, or a set operation of them), a row limit and
a time limit.

Two walls. The statement is parsed with sqlglot (DuckDB dialect) and refused (:class:`SqlRefused`, HTTP 400) unless
it is exactly one query; any table function but ``range``/``generate_series``/``unnest``, any function that reads
files or settings (``read_csv``, ``read_text``, ``glob``, ``*_scan``, ``query``, ``current_setting``...), and any
table named like a path (``'/etc/passwd'``, ``"x.csv"``) or a system table (``duckdb_*``, ``pragma_*``) are refused.
Behind that, the connection itself (:mod:`ateda.explorer.store`) reads a read-only attachment with file access off
and its configuration locked, so ``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``, ``PRAGMA`` and ``SET`` fail even if
one slipped through. A watchdog interrupts a statement past its time limit (:class:`SqlTimeout`, HTTP 408).
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from ateda.errors import AtedaError
from ateda.explorer.store import SqlFailed, SqlTimeout, Store, first_line

__all__ = ["SqlFailed", "SqlRefused", "SqlTimeout", "check", "run"]

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
MAX_SQL_CHARS = 100_000
TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}
# function names refused anywhere in a statement: prefixes and exact names
REFUSED_PREFIXES = ("read_", "duckdb_", "pragma_", "parquet_", "iceberg_", "sqlite_", "postgres_", "mysql_",
                    "delta_", "load_", "sniff_", "json_execute", "glob", "query")
REFUSED_SUFFIXES = ("_scan",)
REFUSED_NAMES = {"current_setting", "getvariable", "getenv", "read_text", "read_blob", "file", "from_csv_auto",
                 "checkpoint", "force_checkpoint", "enable_profiling", "which_secret",
                 # the MySQL protocol's servers (StarRocks, and MariaDB in the tests): file readers, time burners
                 "load_file", "files", "sleep", "benchmark", "get_lock"}
PATH_CHARS = set("/\\.:*?~$")
SYSTEM_TABLE_PREFIXES = ("duckdb_", "pragma_", "sqlite_")


class SqlRefused(AtedaError):
    """Not one read-only query (HTTP 400)."""


def check(text: str) -> exp.Expression:
    """The one query ``text`` holds, parsed; :class:`SqlRefused` saying why otherwise."""
    if len(text) > MAX_SQL_CHARS:
        raise SqlRefused(f"the statement is longer than {MAX_SQL_CHARS} characters")
    try:
        trees = [t for t in sqlglot.parse(text, read="duckdb") if t is not None]
    except sqlglot.errors.SqlglotError as exc:  # a parse or a tokenizer error
        raise SqlRefused(f"not SQL this endpoint reads: {first_line(exc)}") from None
    if len(trees) != 1:
        raise SqlRefused(f"exactly one statement, please (got {len(trees)})")
    tree = trees[0]
    query = tree.this if isinstance(tree, exp.Subquery) else tree
    if not isinstance(query, (exp.Select, exp.SetOperation)):
        raise SqlRefused(f"only SELECT (or WITH ... SELECT) is allowed, not {_kind(tree)}")
    for node in tree.walk():
        if isinstance(node, (exp.Command, exp.DDL, exp.DML, exp.Set, exp.Pragma, exp.Use, exp.Copy, exp.Attach,
                             exp.Detach, exp.Install, exp.Describe, exp.Show, exp.Summarize, exp.Into)):
            raise SqlRefused(f"only SELECT is allowed, not {_kind(node)} inside it")
        if isinstance(node, exp.Table):
            _check_table(node)
        elif isinstance(node, exp.Func):
            name = _func_name(node)
            if name in REFUSED_NAMES or name.startswith(REFUSED_PREFIXES) or name.endswith(REFUSED_SUFFIXES):
                raise SqlRefused(f"function {name} is not allowed (no file, setting or system access)")
    return tree


def _check_table(node: exp.Table) -> None:
    src = node.this
    if isinstance(src, exp.Func):  # a table function: FROM read_csv(...), FROM range(10)
        name = _func_name(src)
        if name not in TABLE_FUNCTIONS:
            raise SqlRefused(f"table function {name} is not allowed (only {', '.join(sorted(TABLE_FUNCTIONS))})")
        return
    name = node.name
    if any(ch in PATH_CHARS for ch in name):
        raise SqlRefused(f"{name!r} is not a table of the warehouse (files are not readable here)")
    if name.lower().startswith(SYSTEM_TABLE_PREFIXES):
        raise SqlRefused(f"system table {name} is not readable here")


def _func_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.GenerateSeries):
        return "generate_series"
    return node.sql_name().lower()


def _kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return type(node).__name__.upper()


def run(store: Store, text: str, limit: int = DEFAULT_LIMIT,
        timeout_s: float = 10.0) -> tuple[list[str], list[str], list[tuple], bool]:
    """Run one checked query: (columns, their DuckDB types, at most ``limit`` rows, whether there were more). The
    store's connection runs it under the time limit (DuckDB: a watchdog; StarRocks: the session's query_timeout)."""
    tree = check(text)
    limit = max(1, min(int(limit), MAX_LIMIT))
    with store.connect() as con:
        columns, types, rows = con.run_select(text, limit + 1, timeout_s, tree)
    return columns, types, rows[:limit], len(rows) > limit
