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

import threading

import sqlglot
from sqlglot import exp

from ateda.errors import AtedaError
from ateda.explorer.store import Store

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
MAX_SQL_CHARS = 100_000
TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}
# function names refused anywhere in a statement: prefixes and exact names
REFUSED_PREFIXES = ("read_", "duckdb_", "pragma_", "parquet_", "iceberg_", "sqlite_", "postgres_", "mysql_",
                    "delta_", "load_", "sniff_", "json_execute", "glob", "query")
REFUSED_SUFFIXES = ("_scan",)
REFUSED_NAMES = {"current_setting", "getvariable", "getenv", "read_text", "read_blob", "file", "from_csv_auto",
                 "checkpoint", "force_checkpoint", "enable_profiling", "which_secret"}
PATH_CHARS = set("/\\.:*?~$")
SYSTEM_TABLE_PREFIXES = ("duckdb_", "pragma_", "sqlite_")


class SqlRefused(AtedaError):
    """Not one read-only query (HTTP 400)."""


class SqlTimeout(AtedaError):
    """Past the time limit (HTTP 408)."""


class SqlFailed(AtedaError):
    """DuckDB could not run it (a parser, binder or catalog error: HTTP 400)."""


def check(text: str) -> exp.Expression:
    """The one query ``text`` holds, parsed; :class:`SqlRefused` saying why otherwise."""
    if len(text) > MAX_SQL_CHARS:
        raise SqlRefused(f"the statement is longer than {MAX_SQL_CHARS} characters")
    try:
        trees = [t for t in sqlglot.parse(text, read="duckdb") if t is not None]
    except sqlglot.errors.SqlglotError as exc:  # a parse or a tokenizer error
        raise SqlRefused(f"not SQL this endpoint reads: {_first_line(exc)}") from None
    if len(trees) != 1:
        raise SqlRefused(f"exactly one statement, please (got {len(trees)})")
    tree = trees[0]
    query = tree.this if isinstance(tree, exp.Subquery) else tree
    if not isinstance(query, (exp.Select, exp.SetOperation)):
        raise SqlRefused(f"only SELECT (or WITH ... SELECT) is allowed, not {_kind(tree)}")
    for node in tree.walk():
        if isinstance(node, (exp.Command, exp.DDL, exp.DML, exp.Set, exp.Pragma, exp.Use, exp.Copy, exp.Attach,
                             exp.Detach, exp.Install, exp.Describe, exp.Show, exp.Summarize)):
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


def _first_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]


def run(store: Store, text: str, limit: int = DEFAULT_LIMIT,
        timeout_s: float = 10.0) -> tuple[list[str], list[str], list[tuple], bool]:
    """Run one checked query: (columns, their DuckDB types, at most ``limit`` rows, whether there were more)."""
    import duckdb  # heavy (the warehouse extra): only its exceptions are needed here

    check(text)
    limit = max(1, min(int(limit), MAX_LIMIT))
    with store.connect() as con:
        timed_out = threading.Event()

        def interrupt() -> None:
            timed_out.set()
            con.interrupt()

        watchdog = threading.Timer(timeout_s, interrupt)
        watchdog.daemon = True
        watchdog.start()
        try:
            rel = con.execute(text, record=False)
            columns = [d[0] for d in rel.description]
            types = [str(d[1]) for d in rel.description]
            rows = rel.fetchmany(limit + 1)
        except duckdb.Error as exc:
            if timed_out.is_set() or isinstance(exc, duckdb.InterruptException):
                raise SqlTimeout(f"the statement ran past its time limit of {timeout_s:g} s") from None
            raise SqlFailed(_first_line(exc)) from None
        finally:
            watchdog.cancel()
    return columns, types, rows[:limit], len(rows) > limit
