"""The explorer's StarRocks backend (``ATEDA_EXPLORER_BACKEND=starrocks``): the cluster's warehouse over the MySQL
protocol (``mysql-connector-python``, which dbt-starrocks already brings), behind the same interface as the DuckDB
store (:mod:`ateda.explorer.store`): ``connect()`` gives one request a :class:`Connection` (``execute``,
``records``, ``has_object``, ``memo``, ``interrupt``, ``run_select``; every statement's text recorded in
``issued``), ``cone()`` answers from a HEALPix index of gold.object, ``published_at()`` says when the warehouse last
changed.

SQL. The explorer's statements are written once, in the neutral SQL the DuckDB store runs as it is; here each
distinct text is parsed as DuckDB, its ``?`` parameters become the driver's ``%s``, ``gold.``/``silver.`` become
``<ATEDA_EXPLORER_DATABASE_PREFIX>gold.``..., and the tree is written as StarRocks SQL by sqlglot, once (cached).
A statement of the SQL endpoint goes the same way (parsed and checked by :mod:`ateda.explorer.sql`, comments
dropped, so no optimizer hint rides along), with unqualified names resolved in gold (the session's database).

Connections. A small pool of idle connections (autocommit, UTC session time zone, database gold), one taken per
request and given back after it, unless it ran a statement of the SQL endpoint, met an error or was interrupted
(then it is closed). A connection idle for more than :data:`IDLE_PING_S` is pinged before use.

Generations. StarRocks' tables change in place when a refresh runs (no published file to watch), so the store polls
a change signal at most every :data:`CHECK_EVERY_S` seconds: the number of gold and silver tables, their latest
``UPDATE_TIME`` and their total ``TABLE_ROWS`` (``information_schema.tables``: metadata, no scan). When it differs,
gold.object's ids and positions are read again and a new HEALPix index and id set are built (the memoized counts
start afresh with them); requests keep using the previous generation while one thread builds the next. A refresh
updates its tables one by one, so the signal may move several times during one: each move rebuilds, and the last
one sees the refreshed warehouse.

Time limit (SQL endpoint). The server enforces it: StarRocks' session variable ``query_timeout`` (whole seconds),
set on the connection just before the statement. MariaDB, which stands in for StarRocks' MySQL protocol in the tests
(it has no ``query_timeout``), gets ``max_statement_time`` instead: :func:`timeout_statement` is that one switch,
chosen by the server's version string. A watchdog kills the statement (``KILL QUERY``) a little after the limit in
case the server did not.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import sqlglot
from sqlglot import exp

from ateda.config import Settings
from ateda.explorer.store import ConeIndex, GenerationAnswers, NoWarehouse, SqlFailed, SqlTimeout, first_line

SCHEMAS = ("gold", "silver")  # the databases the explorer reads (bronze is the lake's, in an external catalog)
CHECK_EVERY_S = 5.0  # the change signal is read at most this often
POOLED_CONNECTIONS = 8  # idle connections kept
IDLE_PING_S = 30.0  # an idle connection older than this is pinged before use
TRANSPILED_ENTRIES = 4096  # distinct statement texts kept transpiled
WATCHDOG_GRACE_S = 2.0  # the watchdog kills a statement this long after the server's own limit
# the MySQL protocol's column types -> the DuckDB type names ateda.explorer.formats reads (TINY: BOOLEAN, as the
# warehouse has no TINYINT column: dbt writes booleans as BOOLEAN, which the protocol carries as TINY)
_TYPE_NAMES = {0: "DECIMAL", 1: "BOOLEAN", 2: "SMALLINT", 3: "INTEGER", 4: "FLOAT", 5: "DOUBLE", 7: "TIMESTAMP",
               8: "BIGINT", 9: "INTEGER", 10: "DATE", 11: "TIME", 12: "TIMESTAMP", 13: "INTEGER", 16: "BIT",
               245: "JSON", 246: "DECIMAL"}
_TINY = 1


class StarRocksUnreachable(NoWarehouse):
    """The StarRocks server does not answer (HTTP 503)."""


def transpile(text: str, prefix: str, tree: exp.Expression | None = None) -> str:
    """``text`` (the explorer's neutral SQL, DuckDB's dialect) as StarRocks SQL for the driver: ``?`` -> ``%s``,
    ``gold.x`` -> ``<prefix>gold.x``, comments dropped."""
    tree = (tree if tree is not None else sqlglot.parse_one(text, read="duckdb")).copy()
    for node in list(tree.find_all(exp.Placeholder)):
        node.replace(exp.var("%s"))
    if prefix:
        for table in tree.find_all(exp.Table):
            if table.args.get("db") is not None and table.db.lower() in SCHEMAS and not table.catalog:
                table.set("db", exp.to_identifier(prefix + table.db.lower()))
    return tree.sql(dialect="starrocks", comments=False, unsupported_level=sqlglot.ErrorLevel.RAISE)


def timeout_statement(server_info: str, timeout_s: float) -> str:
    """The session setting that bounds the next statement's run time: StarRocks' ``query_timeout`` (whole seconds,
    at least 1), or MariaDB's ``max_statement_time`` where the server is MariaDB (the tests' stand-in)."""
    if "mariadb" in server_info.lower():
        return f"set session max_statement_time = {max(timeout_s, 0.001):g}"
    return f"set query_timeout = {max(1, math.ceil(timeout_s))}"


class Result:
    """A statement's rows as DuckDB's relation gives them: ``description`` (name, DuckDB type name), ``fetchone``,
    ``fetchall``, ``fetchmany``; booleans as ``bool``."""

    def __init__(self, cursor) -> None:  # noqa: ANN001
        desc = cursor.description or []
        self._cursor = cursor
        self.description = [(d[0], _TYPE_NAMES.get(d[1], "VARCHAR")) for d in desc]
        self._bools = [i for i, d in enumerate(desc) if d[1] == _TINY]

    def _rows(self, rows: list) -> list[tuple]:
        if not self._bools:
            return [tuple(r) for r in rows]
        out = []
        for r in rows:
            r = list(r)
            for i in self._bools:
                if r[i] is not None:
                    r[i] = bool(r[i])
            out.append(tuple(r))
        return out

    def fetchall(self) -> list[tuple]:
        return self._rows(self._cursor.fetchall())

    def fetchmany(self, n: int) -> list[tuple]:
        return self._rows(self._cursor.fetchmany(n))

    def fetchone(self) -> tuple | None:
        row = self._cursor.fetchone()
        return None if row is None else self._rows([row])[0]


class Connection(GenerationAnswers):
    """One request's connection to StarRocks, with the DuckDB store's interface (:class:`ateda.explorer.store.
    Connection`): ``execute`` takes the explorer's neutral SQL with ``?`` parameters."""

    def __init__(self, store: "StarRocksStore", raw, gen: "_Generation | None") -> None:  # noqa: ANN001
        self._store = store
        self.raw = raw  # the mysql.connector connection
        self._gen = gen
        self.reusable = True
        self._cursors: list = []

    def execute(self, sql: str, params: list | None = None, record: bool = True) -> Result:
        if record:
            self._store.issued.add(sql)
        else:
            self.reusable = False
        return self._run(self._store.transpiled(sql), params)

    def _run(self, statement: str, params: list | None = None, buffered: bool = True) -> Result:
        cursor = self.raw.cursor(buffered=buffered)
        self._cursors.append(cursor)
        if params:
            cursor.execute(statement, tuple(params))
        else:
            cursor.execute(statement)
        return Result(cursor)

    def records(self, sql: str, params: list | None = None) -> tuple[list[str], list[str], list[tuple]]:
        """(column names, their DuckDB type names, rows)."""
        rel = self.execute(sql, params)
        return [d[0] for d in rel.description], [d[1] for d in rel.description], rel.fetchall()

    def interrupt(self) -> None:
        """Stop the statement running on this connection (``KILL QUERY`` from another connection)."""
        self.reusable = False
        self._store.kill_query(self.raw.connection_id)

    def run_select(self, text: str, limit: int, timeout_s: float,
                   tree: exp.Expression | None = None) -> tuple[list[str], list[str], list[tuple]]:
        """A statement of the SQL endpoint (checked; ``tree`` its parse): (columns, their DuckDB type names, at most
        ``limit`` rows), under the server's time limit (:func:`timeout_statement`)."""
        import mysql.connector  # optional (dbt-starrocks brings it): loaded with the first StarRocks connection

        self.reusable = False  # its session is changed, and the rows past the limit are left unread
        if tree is None:
            tree = sqlglot.parse_one(text, read="duckdb")
        for table in tree.find_all(exp.Table):  # unqualified names resolve in gold (the session's database)
            if table.args.get("db") is not None and (table.catalog or table.db.lower() not in SCHEMAS):
                raise SqlFailed(f"{table.sql()}: on StarRocks the SQL endpoint reads gold and silver only")
        try:
            statement = transpile(text, self._store.prefix, tree)
        except sqlglot.errors.SqlglotError as exc:
            raise SqlFailed(f"not SQL StarRocks reads: {first_line(exc)}") from None
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            self.interrupt()

        watchdog = threading.Timer(timeout_s + WATCHDOG_GRACE_S, kill)
        watchdog.daemon = True
        try:
            self._run(timeout_statement(self.raw.server_info or "", timeout_s))
            watchdog.start()
            rel = self._run(statement, buffered=False)
            return [d[0] for d in rel.description], [d[1] for d in rel.description], rel.fetchmany(limit)
        except mysql.connector.Error as exc:
            if timed_out.is_set() or _is_timeout(exc):
                raise SqlTimeout(f"the statement ran past its time limit of {timeout_s:g} s") from None
            raise SqlFailed(first_line(exc)) from None
        finally:
            watchdog.cancel()

    def close(self) -> None:
        for cursor in self._cursors:
            try:
                cursor.close()
            except Exception:  # noqa: BLE001, S110 - an unread result: the connection is closed next
                pass
        self._cursors.clear()
        try:
            self.raw.close()
        except Exception:  # noqa: BLE001, S110 - a dead socket is closed already
            pass

    def release_cursors(self) -> bool:
        """Close this request's cursors; False if that failed (then the connection is not reused)."""
        try:
            for cursor in self._cursors:
                cursor.close()
        except Exception:  # noqa: BLE001 - an unread result: the connection is not reused
            return False
        finally:
            self._cursors.clear()
        return True


def _is_timeout(exc: BaseException) -> bool:
    """A server's "past the time limit": MariaDB 1969 (max_statement_time), MySQL 3024, an interrupted query (1317,
    the watchdog's KILL QUERY), or StarRocks' message ("Query exceeded time limit", "query timeout")."""
    text = str(exc).lower()
    return getattr(exc, "errno", None) in (1317, 1969, 3024) or "time limit" in text or "timeout" in text


@dataclass
class _Generation:
    """The warehouse as of one change signal: gold.object's id set and HEALPix index, the memoized counts."""

    signal: tuple
    changed_at: dt.datetime | None
    index: ConeIndex
    object_ids: frozenset
    memo: dict = field(default_factory=dict)


class StarRocksStore:
    """The cluster's warehouse as the explorer reads it (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.explorer.database_prefix
        self.issued: set[str] = set()
        self._transpiled: dict[str, str] = {}
        self._pool: list[tuple[float, object]] = []  # (last used, connection)
        self._lock = threading.Lock()
        self._building = threading.Lock()
        self._current: _Generation | None = None
        self._checked = -math.inf  # monotonic time of the last signal read
        self.check_every_s = CHECK_EVERY_S

    # ---------------------------------------------------------------- SQL

    def transpiled(self, sql: str) -> str:
        """``sql`` as the driver runs it on StarRocks (:func:`transpile`), once per distinct text."""
        out = self._transpiled.get(sql)
        if out is None:
            out = transpile(sql, self.prefix)
            if len(self._transpiled) >= TRANSPILED_ENTRIES:
                self._transpiled.clear()
            self._transpiled[sql] = out
        return out

    # ---------------------------------------------------------------- connections

    def _open_raw(self):  # noqa: ANN202
        import mysql.connector  # optional (dbt-starrocks brings it): loaded with the first StarRocks connection

        db = self.settings.dbt
        try:
            raw = mysql.connector.connect(host=db.starrocks_host, port=db.starrocks_port, user=db.starrocks_user,
                                          password=db.starrocks_password, database=self.prefix + "gold",
                                          autocommit=True, connection_timeout=10, charset="utf8mb4",
                                          use_pure=True)
            cursor = raw.cursor()
            cursor.execute("set time_zone = '+00:00'")
            cursor.close()
        except mysql.connector.Error as exc:
            where = f"{db.starrocks_host}:{db.starrocks_port}"
            if getattr(exc, "errno", None) == 1049:  # unknown database: gold not built yet
                raise NoWarehouse(f"StarRocks at {where} has no database {self.prefix}gold: run `ateda refresh` "
                                  "(the dbt cluster target)") from None
            if getattr(exc, "errno", None) in (1044, 1045):  # access denied (a read-only user, no such database)
                raise StarRocksUnreachable(f"StarRocks at {where} refuses user {db.starrocks_user}: "
                                           f"{first_line(exc)}") from None
            raise StarRocksUnreachable(f"StarRocks at {where} does not answer: {first_line(exc)}") from None
        return raw

    def _take(self):  # noqa: ANN202
        while True:
            with self._lock:
                item = self._pool.pop() if self._pool else None
            if item is None:
                return self._open_raw()
            used, raw = item
            if time.monotonic() - used < IDLE_PING_S:
                return raw
            try:
                raw.ping(reconnect=False)
                return raw
            except Exception:  # noqa: BLE001 - the server closed it: take another
                try:
                    raw.close()
                except Exception:  # noqa: BLE001, S110 - already gone
                    pass

    def _give_back(self, raw) -> None:  # noqa: ANN001
        with self._lock:
            if len(self._pool) < POOLED_CONNECTIONS:
                self._pool.append((time.monotonic(), raw))
                return
        raw.close()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for one request (NoWarehouse if gold is not there, StarRocksUnreachable if the server
        does not answer)."""
        gen = self._generation()
        con = Connection(self, self._take(), gen)
        ok = False
        try:
            yield con
            ok = True
        finally:
            if ok and con.reusable and con.release_cursors():
                self._give_back(con.raw)
            else:
                con.close()

    def kill_query(self, connection_id: int) -> None:
        """``KILL QUERY`` on a connection's running statement, from a fresh connection."""
        raw = self._open_raw()
        try:
            cursor = raw.cursor()
            cursor.execute(f"kill query {int(connection_id)}")
            cursor.close()
        except Exception:  # noqa: BLE001, S110 - it ended meanwhile
            pass
        finally:
            raw.close()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for _, raw in pool:
            raw.close()

    # ---------------------------------------------------------------- generations

    def published_at(self) -> dt.datetime | None:
        """When the warehouse last changed (the latest UPDATE_TIME of gold and silver, UTC), None if StarRocks has
        no gold.object or does not answer."""
        try:
            return self._generation().changed_at
        except NoWarehouse:
            return None

    def cone(self, ra: float, dec: float, radius_arcsec: float) -> list[tuple[str, float]]:
        return self._generation().index.search(ra % 360.0, dec, radius_arcsec)

    def _signal(self, raw) -> tuple:  # noqa: ANN001
        """(gold and silver tables, their latest UPDATE_TIME, their rows): metadata, no scan."""
        cursor = raw.cursor()
        try:
            cursor.execute("select count(*), max(update_time), sum(table_rows) from information_schema.tables "
                           "where table_schema in (%s, %s)", tuple(self.prefix + s for s in SCHEMAS))
            count, updated, rows = cursor.fetchone()
        finally:
            cursor.close()
        return int(count or 0), updated, int(rows or 0)

    def _generation(self) -> _Generation:
        """The current generation; the change signal read first if the last read is older than check_every_s, and
        a new generation built if it moved (by one thread; the others keep the previous one meanwhile)."""
        current = self._current
        if current is not None and time.monotonic() - self._checked < self.check_every_s:
            return current
        if current is not None and not self._building.acquire(blocking=False):
            return current  # another request is reading the signal or building
        if current is None:
            self._building.acquire()
            if self._current is not None:  # built while this one waited
                self._building.release()
                return self._current
        import mysql.connector  # optional (dbt-starrocks brings it): loaded with the first StarRocks connection

        try:
            raw = self._take()
            healthy = False
            try:
                signal = self._signal(raw)
                if current is None or signal != current.signal:
                    current = self._build(raw, signal)
                    self._current = current
                healthy = True
            except mysql.connector.Error as exc:
                raise StarRocksUnreachable(f"StarRocks could not be read: {first_line(exc)}") from None
            finally:
                if healthy:
                    self._give_back(raw)
                else:
                    raw.close()
            self._checked = time.monotonic()
            return current
        finally:
            self._building.release()

    def _build(self, raw, signal: tuple) -> _Generation:  # noqa: ANN001
        import mysql.connector  # optional (dbt-starrocks brings it): loaded with the first StarRocks connection

        cursor = raw.cursor()
        try:
            cursor.execute(f"select objectId, meanra, meandec from {self.prefix}gold.object")
            rows = cursor.fetchall()
        except mysql.connector.Error as exc:
            if getattr(exc, "errno", None) == 1146:  # no such table
                raise NoWarehouse(f"StarRocks has no {self.prefix}gold.object: run `ateda refresh` (the dbt "
                                  "cluster target)") from None
            raise
        finally:
            cursor.close()
        placed = [r for r in rows if r[1] is not None and r[2] is not None]
        ids, ra, dec = (list(c) for c in zip(*placed)) if placed else ([], [], [])
        updated = signal[1]
        changed_at = updated.replace(tzinfo=dt.timezone.utc) if isinstance(updated, dt.datetime) else None
        return _Generation(signal, changed_at, ConeIndex.build(ids, ra, dec), frozenset(r[0] for r in rows))
