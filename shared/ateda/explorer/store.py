"""The explorer's access to the published warehouse: a read-only DuckDB per published file, one connection (a
cursor of it, set up once and pooled with its file) per request, the set of gold.object's ids, and a HEALPix index
of their positions for cone searches.

A refresh publishes a new warehouse by an atomic rename (:mod:`ateda.warehouse.build`). The store notices it by the
file's identity (inode, size, mtime) at the start of each request and opens the new file; requests still running
on the old one finish there (Linux keeps a renamed-over file readable while it is open), and the old database is
closed when its last request ends. No request ever opens the file being built, so none meets DuckDB's "could not
set lock".

Each database is an in-memory DuckDB that ATTACHes the warehouse read-only, then turns file access off
(``enable_external_access = false``) and locks its configuration (``lock_configuration = true``): a statement that
slipped past the SQL checks (:mod:`ateda.explorer.sql`) still cannot read or write a file, attach, install or load
an extension, or change a setting. The attach (rather than opening the file directly) also keeps DuckDB's
per-process instance cache, which is keyed by path, from handing back the database of a file since replaced.

Every statement a request runs goes through :class:`Connection`, which records its text: the tests transpile each
one to StarRocks (the cluster's warehouse) with sqlglot.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Iterator

import numpy as np

from ateda.config import Settings
from ateda.errors import AtedaError
from ateda.warehouse.location import duckdb_path
from ateda.warehouse.queries import GREAT_CIRCLE_MACRO

HEALPIX_LEVEL = 10  # nside 1024: pixels of ~3.4 arcmin, so a cone's candidates are close to the cone itself
MAX_CONE_ARCSEC = 3600.0


class NoWarehouse(AtedaError):
    """Nothing is published yet (HTTP 503: run `ateda refresh`)."""


class SqlTimeout(AtedaError):
    """A statement of the SQL endpoint ran past its time limit (HTTP 408)."""


class SqlFailed(AtedaError):
    """The warehouse could not run a statement of the SQL endpoint (a parser, binder or catalog error: HTTP 400)."""


@dataclass
class ConeIndex:
    """gold.object's positions sorted by their HEALPix pixel (nested, :data:`HEALPIX_LEVEL`)."""

    pixels: np.ndarray  # int64, sorted
    object_ids: np.ndarray  # object, in the same order
    ra: np.ndarray  # float64, degrees
    dec: np.ndarray

    @classmethod
    def build(cls, ids: list[str], ra: list[float], dec: list[float]) -> "ConeIndex":
        from astropy import units as u  # heavy (astropy): loaded when the first warehouse is opened

        ra_a, dec_a = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
        pix = _healpix().lonlat_to_healpix(ra_a * u.deg, dec_a * u.deg).astype(np.int64) if len(ids) else \
            np.zeros(0, dtype=np.int64)
        order = np.argsort(pix, kind="stable")
        return cls(pix[order], np.asarray(ids, dtype=object)[order], ra_a[order], dec_a[order])

    def search(self, ra: float, dec: float, radius_arcsec: float) -> list[tuple[str, float]]:
        """(objectId, distance in arcsec) of the objects within the cone, nearest first (then by id): the pixels
        the cone touches, their objects, the exact great-circle distance of each."""
        from astropy import units as u  # heavy (astropy): loaded when the first warehouse is opened

        if not len(self.pixels):
            return []
        wanted = _healpix().cone_search_lonlat(ra * u.deg, dec * u.deg, radius_arcsec * u.arcsec)
        wanted = np.unique(np.asarray(wanted, dtype=np.int64))
        lo = np.searchsorted(self.pixels, wanted, side="left")
        hi = np.searchsorted(self.pixels, wanted, side="right")
        rows = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi) if b > a] or [np.zeros(0, dtype=np.int64)])
        if not len(rows):
            return []
        dist = great_circle_arcsec(ra, dec, self.ra[rows], self.dec[rows])
        keep = dist <= radius_arcsec
        found = sorted(zip(dist[keep].tolist(), self.object_ids[rows][keep].tolist()))
        return [(oid, d) for d, oid in found]


def _healpix():  # noqa: ANN202
    from astropy_healpix import HEALPix  # heavy: loaded when the first warehouse is opened

    return HEALPix(nside=2 ** HEALPIX_LEVEL, order="nested")


def great_circle_arcsec(ra1: float, dec1: float, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    """The great-circle distance (arcsec) from (ra1, dec1) to each (ra2, dec2), degrees in: Vincenty's formula, as
    the warehouse's SQL function great_circle_arcsec (:data:`ateda.warehouse.queries.GREAT_CIRCLE_MACRO`)."""
    r1, d1, r2, d2 = math.radians(ra1), math.radians(dec1), np.radians(ra2), np.radians(dec2)
    dra = r2 - r1
    num = np.hypot(np.cos(d2) * np.sin(dra), math.cos(d1) * np.sin(d2) - math.sin(d1) * np.cos(d2) * np.cos(dra))
    den = math.sin(d1) * np.sin(d2) + math.cos(d1) * np.cos(d2) * np.cos(dra)
    return 3600.0 * np.degrees(np.arctan2(num, den))


class GenerationAnswers:
    """What a request's connection answers from its generation (``_gen``: one published state of the warehouse,
    with ``object_ids`` and a ``memo`` dict), for both backends."""

    _gen = None

    def has_object(self, object_id: str) -> bool | None:
        """Whether gold.object has ``object_id`` (None: not known here, ask the warehouse)."""
        return None if self._gen is None else object_id in self._gen.object_ids

    def memo(self, key: tuple, compute):  # noqa: ANN001, ANN201
        """``compute()``, once per generation and ``key`` (at most :data:`MEMO_ENTRIES` kept)."""
        if self._gen is None:
            return compute()
        memo = self._gen.memo
        if key not in memo:
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            memo[key] = compute()
        return memo[key]


class Connection(GenerationAnswers):
    """One request's connection: ``execute`` as DuckDB's, every statement's text recorded in ``issued``.

    ``has_object`` answers from the generation's set of gold.object ids, and ``memo`` keeps a value (a count) for
    the life of the generation: the published file never changes under it, so neither can go stale."""

    def __init__(self, cursor, issued: set[str], gen: "_Generation | None" = None) -> None:  # noqa: ANN001
        self.cursor = cursor
        self._issued = issued
        self._gen = gen
        self.reusable = True  # the cursor may serve another request (only the explorer's own statements ran)

    def execute(self, sql: str, params: list | None = None, record: bool = True):  # noqa: ANN201
        """DuckDB's execute; ``record=False`` for a statement that is not the explorer's own (the SQL endpoint's)."""
        if record:
            self._issued.add(sql)
        else:
            self.reusable = False
        return self.cursor.execute(sql, params or [])

    def records(self, sql: str, params: list | None = None) -> tuple[list[str], list[str], list[tuple]]:
        """(column names, their DuckDB types, rows)."""
        rel = self.execute(sql, params)
        return [d[0] for d in rel.description], [str(d[1]) for d in rel.description], rel.fetchall()

    def interrupt(self) -> None:
        self.reusable = False
        self.cursor.interrupt()

    def run_select(self, text: str, limit: int, timeout_s: float,
                   tree=None) -> tuple[list[str], list[str], list[tuple]]:  # noqa: ANN001
        """A statement of the SQL endpoint (``tree``: its parse by :func:`ateda.explorer.sql.check`, unused here):
        (columns, their DuckDB types, at most ``limit`` rows); a watchdog interrupts it past ``timeout_s``
        (:class:`SqlTimeout`)."""
        import duckdb  # heavy (the warehouse extra): loaded already when the generation was opened

        timed_out = threading.Event()

        def interrupt() -> None:
            timed_out.set()
            self.interrupt()

        watchdog = threading.Timer(timeout_s, interrupt)
        watchdog.daemon = True
        watchdog.start()
        try:
            rel = self.execute(text, record=False)
            columns = [d[0] for d in rel.description]
            types = [str(d[1]) for d in rel.description]
            return columns, types, rel.fetchmany(limit)
        except duckdb.Error as exc:
            if timed_out.is_set() or isinstance(exc, duckdb.InterruptException):
                raise SqlTimeout(f"the statement ran past its time limit of {timeout_s:g} s") from None
            raise SqlFailed(first_line(exc)) from None
        finally:
            watchdog.cancel()


MEMO_ENTRIES = 1024
POOLED_CURSORS = 16  # idle cursors kept per generation (uvicorn's thread pool runs up to 40 requests at once)


@dataclass
class _Generation:
    """One published file, opened: its database, its cone index, how many requests use it."""

    identity: tuple[int, int, int]  # (inode, size, mtime_ns)
    published_at: dt.datetime
    db: object  # the parent duckdb connection
    index: ConeIndex
    object_ids: frozenset = frozenset()  # every gold.object id (positions or not)
    users: int = 0
    retired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    pool: list = field(default_factory=list)  # idle cursors, each already set up (catalog, search path, macro)
    memo: dict = field(default_factory=dict)

    def close_if_unused(self) -> None:
        if self.retired and self.users == 0:
            for cursor in self.pool:
                cursor.close()
            self.pool.clear()
            self.db.close()


class Store:
    """The published warehouse as the explorer reads it (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path: Path = duckdb_path(settings)
        # attached under the name DuckDB gives the file when opened directly (the views dbt wrote name it)
        self.catalog = '"' + self.path.name.split(".")[0].replace('"', '""') + '"'
        self.issued: set[str] = set()
        self._current: _Generation | None = None
        self._lock = threading.Lock()

    def published_at(self) -> dt.datetime | None:
        """The published warehouse's modification time (UTC), None if nothing is published."""
        try:
            return dt.datetime.fromtimestamp(self.path.stat().st_mtime, dt.timezone.utc)
        except FileNotFoundError:
            return None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection to the published warehouse for one request (NoWarehouse if there is none)."""
        gen = self._generation()
        with self._lock:
            cursor = gen.pool.pop() if gen.pool else None
        con = None
        try:
            if cursor is None:  # a new cursor, set up once: three statements every request used to pay
                cursor = gen.db.cursor()
                cursor.execute(f"use {self.catalog}")
                cursor.execute("set search_path = '" + ",".join(f"{self.catalog}.{schema}".replace("'", "''")
                                                              for schema in ("gold", "silver", "bronze")) + "'")
                cursor.execute(GREAT_CIRCLE_MACRO)
            con = Connection(cursor, self.issued, gen)
            yield con
        except BaseException:
            con = None  # a request that failed inside: its cursor is not reused
            raise
        finally:
            with self._lock:
                if cursor is not None:
                    if con is not None and con.reusable and not gen.retired and len(gen.pool) < POOLED_CURSORS:
                        gen.pool.append(cursor)
                    else:
                        cursor.close()
                gen.users -= 1
                gen.close_if_unused()

    def cone(self, ra: float, dec: float, radius_arcsec: float) -> list[tuple[str, float]]:
        """The objects within the cone from the current warehouse's HEALPix index (objectId, dist_arcsec)."""
        gen = self._generation()
        try:
            return gen.index.search(ra % 360.0, dec, radius_arcsec)
        finally:
            with self._lock:
                gen.users -= 1
                gen.close_if_unused()

    def _generation(self) -> _Generation:
        """The generation of the file published now, opened if it is new; its ``users`` counted up."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise NoWarehouse(f"no warehouse yet at {self.path}: run `ateda refresh`") from None
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if self._current is None or self._current.identity != identity:
                fresh = self._open(identity, st.st_mtime)
                old, self._current = self._current, fresh
                if old is not None:
                    old.retired = True
                    old.close_if_unused()
            self._current.users += 1
            return self._current

    def _open(self, identity: tuple[int, int, int], mtime: float) -> _Generation:
        import duckdb  # heavy (the warehouse extra): loaded when the first warehouse is opened

        settle_optional_imports()
        db = duckdb.connect(":memory:", config={"threads": self.settings.duckdb_threads,
                                                "memory_limit": self.settings.duckdb_memory_limit})
        try:
            db.execute(f"attach '{_sql_string(str(self.path))}' as {self.catalog} (read_only)")
            db.execute("set enable_external_access = false")
            db.execute("set lock_configuration = true")
            rows = db.execute(f"select objectId, meanra, meandec from {self.catalog}.gold.object").fetchall()
        except duckdb.Error as exc:
            db.close()
            if "does not exist" in str(exc):  # published, but gold not built yet
                raise NoWarehouse(f"the warehouse at {self.path} has no gold.object: run `ateda refresh`") from exc
            raise
        placed = [r for r in rows if r[1] is not None and r[2] is not None]
        ids, ra, dec = (list(c) for c in zip(*placed)) if placed else ([], [], [])
        return _Generation(identity, dt.datetime.fromtimestamp(mtime, dt.timezone.utc), db,
                           ConeIndex.build(ids, ra, dec), frozenset(r[0] for r in rows))


def settle_optional_imports() -> None:
    """Mark pandas absent once, where it is not installed. DuckDB's Python client tries ``import pandas`` on every
    ``execute`` (twice) to see whether a parameter or a scan could be a DataFrame; a failed import is not cached by
    Python, so each try walks ``sys.path`` (a stat per entry) under the import lock, which every request thread takes
    in turn: under 8 concurrent clients it was a quarter of the server's time (docs/performance.md, "Explorer
    latency"). A ``None`` in ``sys.modules`` makes that import fail at once; ``find_spec`` still answers None."""
    if "pandas" not in sys.modules and find_spec("pandas") is None:
        sys.modules["pandas"] = None  # type: ignore[assignment]


def first_line(exc: BaseException) -> str:
    """An error as one line of at most 300 characters."""
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]


def _sql_string(text: str) -> str:
    return text.replace("'", "''")
