"""Settings, read from the environment once and frozen: the only module that reads the environment.

Every location hangs off one root, ``ATEDA_HOME`` (default ``./.ateda``), so two runs never share state unless told.
Unset values fall back to the embedded default: a bucket folder, a SQLite catalog, a local warehouse folder.

:data:`VARIABLES` is the one table of variables (name, type, default, section, description): :meth:`Settings.from_env`
parses with it, :meth:`Settings.as_env` writes it back for a child process, ``ateda config`` prints it and
``docs/settings.md`` is generated from it (:func:`settings_doc`). A malformed value raises :class:`ConfigError`
naming the variable. Sections (``refresh``, ``maintenance``, ``metrics``, ``paths``, ``dbt``, ``explorer``) are frozen
dataclasses on :class:`Settings`, passed to the code that uses them; the local runtime's own knobs
(:class:`LocalSettings`) are the deployment's, as Knative's PingSource and ports are, and are read when a runtime
starts.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, fields, replace
from urllib.parse import unquote, urlsplit
from pathlib import Path
from typing import Any, Mapping

from ateda.errors import ConfigError
from ateda.redact import MASK, mask_uri

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- sections

@dataclass(frozen=True)
class RefreshSettings:
    """The dbt refresh worker (docs/refresh.md): debounce, cap, retries with exponential backoff, the dbt target."""

    debounce_s: float = 5.0
    max_wait_s: float = 60.0
    retries: int = 3
    backoff_s: float = 1.0
    target: str = "local"


@dataclass(frozen=True)
class MaintenanceSettings:
    """A maintenance pass (docs/maintenance.md): compaction, snapshot expiry, orphan deletion, its time budget."""

    target_mb: float = 128.0
    min_files: int = 4
    quiet_minutes: float = 30.0
    max_bins: int = 20
    retain_hours: float = 24.0
    retain_last: int = 100
    orphan_grace_hours: float = 72.0
    budget_s: float = 240.0

    @property
    def target_bytes(self) -> int:
        return int(self.target_mb * 1024 * 1024)


@dataclass(frozen=True)
class MetricsSettings:
    """A function process's /metrics endpoint."""

    port: int = 9464
    addr: str = "0.0.0.0"
    multiproc_dir: str = ""  # PROMETHEUS_MULTIPROC_DIR: gunicorn workers share one registry


@dataclass(frozen=True)
class PathSettings:
    """Project folders the code reads (the image sets them) and the local warehouse file."""

    dbt_dir: Path = REPO_ROOT / "dbt"
    events_dir: Path = REPO_ROOT / "events"
    duckdb_path: str = ""  # empty: $ATEDA_HOME/warehouse/ateda.duckdb


@dataclass(frozen=True)
class DbtSettings:
    """The cluster dbt target (StarRocks); rendered into the profile of each dbt run."""

    starrocks_host: str = "starrocks-fe"
    starrocks_port: int = 9030
    starrocks_user: str = "root"
    starrocks_password: str = ""
    starrocks_version: str = "3.4.0"
    iceberg_catalog: str = "iceberg"


@dataclass(frozen=True)
class ExplorerSettings:
    """The explorer (``ateda serve``, docs/explorer.md): where it listens, its optional token, the SQL time limit."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""  # empty: no token asked (then `ateda serve` listens on loopback only)
    sql_timeout_s: float = 10.0
    backend: str = "duckdb"  # duckdb (the published local file) | starrocks (the cluster's warehouse)
    database_prefix: str = ""  # starrocks: gold, silver are read as <prefix>gold, <prefix>silver


@dataclass(frozen=True)
class LocalSettings:
    """The embedded runtime's own knobs (``ateda up``), the local stand-in for Knative's PingSource and ports."""

    maintenance_every_s: float = 3600.0
    metrics_ports: tuple[tuple[str, int], ...] = ()  # (function folder, port): ATEDA_METRICS_PORT_<FUNCTION>

    def metrics_port(self, folder: str) -> int:
        return dict(self.metrics_ports).get(folder.upper(), 0)


# ---------------------------------------------------------------- the table

@dataclass(frozen=True)
class Var:
    """One environment variable: where it lands (``section``.``field``; section "" is :class:`Settings` itself)."""

    name: str
    kind: str  # str | int | float | bool | ms (an integer of milliseconds, held in seconds) | path
    default: Any
    section: str
    field: str
    description: str
    secret: bool = False
    aliases: tuple[str, ...] = ()  # read when ``name`` is unset, in order
    shown_default: str = ""  # the default as the docs show it, when it derives from something else


def _v(name: str, kind: str, default: Any, section: str, field_: str, description: str, **kw: Any) -> Var:
    return Var(name, kind, default, section, field_, description, **kw)


VARIABLES: tuple[Var, ...] = (
    # where things live
    _v("ATEDA_HOME", "path", ".ateda", "", "home", "Root of every local location (bucket, lake, catalog, "
       "warehouse, logs); two homes never share state.", shown_default="./.ateda"),
    _v("ATEDA_BUCKET", "str", "alerts", "", "bucket", "The source bucket the alerts arrive in."),
    _v("ATEDA_LAKE", "str", "", "", "lake", "Root of staging, quarantine, dead letters and manifests: a folder or "
       "s3://bucket[/prefix].", shown_default="$ATEDA_HOME/lake"),
    _v("ATEDA_WAREHOUSE", "str", "", "", "warehouse", "The Iceberg warehouse URI.",
       shown_default="$ATEDA_LAKE/warehouse"),
    _v("ATEDA_CATALOG_URI", "str", "", "", "catalog_uri", "The Iceberg catalog: sqlite:///..., "
       "postgresql+psycopg2://... or http(s)://... (REST). Its password is masked in every output.",
       secret=True, shown_default="sqlite:///$ATEDA_HOME/catalog.db"),
    _v("ATEDA_CATALOG_NAME", "str", "ateda", "", "catalog_name", "The Iceberg catalog's name."),
    _v("ATEDA_CATALOG_PREFIX", "str", "", "", "catalog_prefix", "REST catalog only: the path prefix the server "
       "expects (the Iceberg REST spec's {prefix}; Lakana: the environment name; Nessie: leave empty)."),
    _v("ATEDA_CATALOG_TOKEN", "str", "", "", "catalog_token", "REST catalog only: the bearer token sent to the "
       "server.", secret=True),
    _v("ATEDA_NAMESPACE", "str", "bronze", "", "namespace", "The Iceberg namespace of the bronze tables."),
    # S3
    _v("ATEDA_S3_ENDPOINT", "str", "", "", "s3_endpoint", "S3 endpoint URL; set, the bucket and lake are on S3."),
    _v("AWS_REGION", "str", "us-east-1", "", "s3_region", "S3 region (else AWS_DEFAULT_REGION).",
       aliases=("AWS_DEFAULT_REGION",)),
    _v("AWS_ACCESS_KEY_ID", "str", "", "", "s3_access_key", "S3 access key.", secret=True),
    _v("AWS_SECRET_ACCESS_KEY", "str", "", "", "s3_secret_key", "S3 secret key.", secret=True),
    # events
    _v("K_SINK", "str", "", "", "sink", "Where follow-up events are posted (Knative's SinkBinding sets it; the "
       "local runtime too). Empty: events are dropped."),
    _v("ATEDA_BROKER_TOKEN", "str", "", "", "broker_token", "The local broker's ingress token (the runtime makes "
       "one per run when unset).", secret=True),
    _v("ATEDA_BATCH_WINDOW_MS", "int", 200, "", "batch_window_ms", "Bucket notifications are coalesced this long "
       "(ms) into one object.created event."),
    _v("ATEDA_BATCH_MAX_OBJECTS", "int", 256, "", "batch_max_objects", "At most this many objects per "
       "object.created event."),
    _v("ATEDA_WATCH_GRACE_S", "float", 2.0, "", "watch_grace_s", "The bucket-folder watcher announces a file once "
       "its size and mtime held still this long (s)."),
    # the bridge
    _v("ATEDA_BRIDGE_TOKEN", "str", "", "", "bridge_token", "The token MinIO sends to the webhook bridge.",
       secret=True),
    _v("ATEDA_BRIDGE_INSECURE_OPEN", "bool", False, "", "bridge_open", "Run the bridge without a token "
       "(loopback callers only)."),
    _v("ATEDA_BRIDGE_MAX_BODY", "int", 4 << 20, "", "bridge_max_body", "Largest webhook body (bytes)."),
    _v("ATEDA_RECONCILE_GRACE_S", "float", 900.0, "", "reconcile_grace_s", "Reconciliation re-announces a bucket "
       "object the lake does not know only once it is this old (s): its notification may still be on its way."),
    # bronze
    _v("ATEDA_CHUNK_ALERTS", "int", 500, "", "chunk_alerts", "Alerts per staged chunk."),
    _v("ATEDA_COMMIT_WINDOW_MS", "int", 2000, "", "commit_window_ms", "Bronze's group commit waits this long (ms) "
       "for more chunks."),
    _v("ATEDA_COMMIT_MAX_ALERTS", "int", 50_000, "", "commit_max_alerts", "At most this many alerts per Iceberg "
       "commit."),
    # bounded resources
    _v("ATEDA_MAX_MEMBER_BYTES", "int", 128 << 20, "", "max_member_bytes", "Decompressed bytes of one Avro file or "
       "tar member; past it the input is quarantined."),
    _v("ATEDA_MAX_TAR_MEMBERS", "int", 2_000_000, "", "max_tar_members", "Members of one tarball."),
    _v("ATEDA_MAX_CONTAINER_ALERTS", "int", 200_000, "", "max_container_alerts", "Alerts in one Avro container."),
    _v("ATEDA_MAX_SCHEMA_DEPTH", "int", 32, "", "max_schema_depth", "Nesting depth of an Avro writer schema."),
    _v("ATEDA_QUARANTINE_COPY_BYTES", "int", 16 << 20, "", "quarantine_copy_bytes", "A quarantine copy keeps at "
       "most this many bytes of the input."),
    _v("ATEDA_QUARANTINE_RECORDS_PER_OBJECT", "int", 100, "", "quarantine_records_per_object", "Past this many "
       "quarantine records for one object, one summary record per object and reason."),
    # the local warehouse's DuckDB
    _v("ATEDA_DUCKDB_MEMORY_LIMIT", "str", "400MB", "", "duckdb_memory_limit", "DuckDB's buffer pool in a refresh "
       "(spills to disk past it)."),
    _v("ATEDA_DUCKDB_THREADS", "int", 2, "", "duckdb_threads", "DuckDB's threads in a refresh."),
    _v("ATEDA_LOG_LEVEL", "str", "INFO", "", "log_level", "Log level of every process."),
    # refresh
    _v("ATEDA_REFRESH_DEBOUNCE_MS", "ms", 5.0, "refresh", "debounce_s", "A refresh runs once no request arrived "
       "for this long (ms)."),
    _v("ATEDA_REFRESH_MAX_WAIT_MS", "ms", 60.0, "refresh", "max_wait_s", "... and at most this long (ms) after the "
       "first pending request."),
    _v("ATEDA_REFRESH_RETRIES", "int", 3, "refresh", "retries", "Retries of a failed run (or emit) before the "
       "request is dead-lettered."),
    _v("ATEDA_REFRESH_BACKOFF_MS", "ms", 1.0, "refresh", "backoff_s", "First retry delay (ms), doubled each time."),
    _v("ATEDA_DBT_TARGET", "str", "local", "refresh", "target", "The dbt target the refresh function runs: local "
       "(DuckDB) or cluster (StarRocks)."),
    # maintenance
    _v("ATEDA_COMPACT_TARGET_MB", "float", 128.0, "maintenance", "target_mb", "Size of a compacted file (MiB)."),
    _v("ATEDA_COMPACT_MIN_FILES", "int", 4, "maintenance", "min_files", "A partition with fewer candidate files is "
       "left alone."),
    _v("ATEDA_COMPACT_QUIET_MINUTES", "float", 30.0, "maintenance", "quiet_minutes", "Files added more recently "
       "than this (min) are left alone."),
    _v("ATEDA_COMPACT_MAX_BINS", "int", 20, "maintenance", "max_bins", "Rewrites per table and pass."),
    _v("ATEDA_SNAPSHOT_RETAIN_HOURS", "float", 24.0, "maintenance", "retain_hours", "Snapshots older than this (h) "
       "expire..."),
    _v("ATEDA_SNAPSHOT_RETAIN_LAST", "int", 100, "maintenance", "retain_last", "... except the newest this many."),
    _v("ATEDA_ORPHAN_GRACE_HOURS", "float", 72.0, "maintenance", "orphan_grace_hours", "Unreferenced files older "
       "than this (h) are deleted."),
    _v("ATEDA_MAINTENANCE_BUDGET_S", "float", 240.0, "maintenance", "budget_s", "A pass starts no new compaction "
       "past this (s)."),
    # metrics
    _v("ATEDA_METRICS_PORT", "int", 9464, "metrics", "port", "Port of a function's /metrics (0: none)."),
    _v("ATEDA_METRICS_ADDR", "str", "0.0.0.0", "metrics", "addr", "Address /metrics binds."),
    _v("PROMETHEUS_MULTIPROC_DIR", "str", "", "metrics", "multiproc_dir", "prometheus_client's shared folder: with "
       "several gunicorn workers, the one that binds the port serves them all."),
    # paths
    _v("ATEDA_DBT_DIR", "path", None, "paths", "dbt_dir", "The dbt project (the image sets it).",
       shown_default="dbt/ in the repository"),
    _v("ATEDA_EVENTS_DIR", "path", None, "paths", "events_dir", "The event catalogue (the image sets it).",
       shown_default="events/ in the repository"),
    _v("ATEDA_DUCKDB_PATH", "str", "", "paths", "duckdb_path", "The local warehouse file.",
       shown_default="$ATEDA_HOME/warehouse/ateda.duckdb"),
    # dbt cluster target
    _v("ATEDA_STARROCKS_HOST", "str", "starrocks-fe", "dbt", "starrocks_host", "StarRocks FE host (dbt's cluster "
       "target, and the explorer with ATEDA_EXPLORER_BACKEND=starrocks)."),
    _v("ATEDA_STARROCKS_PORT", "int", 9030, "dbt", "starrocks_port", "StarRocks MySQL port."),
    _v("ATEDA_STARROCKS_USER", "str", "root", "dbt", "starrocks_user", "StarRocks user (the explorer's starrocks "
       "backend: a read-only one, as the cluster's `superset`)."),
    _v("ATEDA_STARROCKS_PASSWORD", "str", "", "dbt", "starrocks_password", "StarRocks password.", secret=True),
    _v("ATEDA_STARROCKS_VERSION", "str", "3.4.0", "dbt", "starrocks_version", "StarRocks version (dbt need not "
       "ask the server)."),
    _v("ATEDA_ICEBERG_CATALOG", "str", "iceberg", "dbt", "iceberg_catalog", "StarRocks external catalog holding "
       "the bronze Iceberg tables (read by dbt/models/sources.yml)."),
    # the explorer
    _v("ATEDA_EXPLORER_HOST", "str", "127.0.0.1", "explorer", "host", "Address `ateda serve` listens on (beyond "
       "loopback only with a token)."),
    _v("ATEDA_EXPLORER_PORT", "int", 8080, "explorer", "port", "Port `ateda serve` listens on."),
    _v("ATEDA_EXPLORER_TOKEN", "str", "", "explorer", "token", "When set, every explorer request must carry it "
       "(`Authorization: Bearer <token>` or `?token=`).", secret=True),
    _v("ATEDA_EXPLORER_SQL_TIMEOUT_S", "float", 10.0, "explorer", "sql_timeout_s", "A statement of the explorer's "
       "SQL endpoint is interrupted after this long (s): HTTP 408."),
    _v("ATEDA_EXPLORER_BACKEND", "str", "duckdb", "explorer", "backend", "The warehouse the explorer reads: duckdb "
       "(the published local file) or starrocks (the cluster's, over the MySQL protocol with ATEDA_STARROCKS_*; "
       "give it a read-only user)."),
    _v("ATEDA_EXPLORER_DATABASE_PREFIX", "str", "", "explorer", "database_prefix", "StarRocks backend only: the "
       "databases gold and silver are read as <prefix>gold and <prefix>silver (empty: as named)."),
    # the local runtime
    _v("ATEDA_MAINTENANCE_EVERY_S", "float", 3600.0, "local", "maintenance_every_s", "The local runtime pings the "
       "maintenance function this often (s; 0: never)."),
    _v("ATEDA_METRICS_PORT_<FUNCTION>", "int", 0, "local", "metrics_ports", "The local runtime gives function "
       "<FUNCTION> (SPLIT, BRONZE, ...) this /metrics port (0: none)."),
)

SECTIONS: dict[str, type] = {"refresh": RefreshSettings, "maintenance": MaintenanceSettings,
                             "metrics": MetricsSettings, "paths": PathSettings, "dbt": DbtSettings,
                             "explorer": ExplorerSettings, "local": LocalSettings}
_PATTERN_PREFIX = "ATEDA_METRICS_PORT_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse(var: Var, raw: str) -> Any:
    """``raw`` as ``var``'s type; :class:`ConfigError` naming the variable when it is not one."""
    text = raw.strip()
    try:
        if var.kind == "int":
            return int(text)
        if var.kind == "ms":
            return int(text) / 1000.0
        if var.kind == "float":
            return float(text)
    except ValueError as exc:
        what = "a number" if var.kind == "float" else "an integer" + (" of milliseconds" if var.kind == "ms" else "")
        raise ConfigError(f"{var.name} must be {what}, got {raw!r}") from exc
    if var.kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{var.name} must be true or false, got {raw!r}")
    if var.kind == "path":
        return Path(raw)
    return raw


def _read(env: Mapping[str, str], var: Var) -> Any:
    if var.section == "local" and var.field == "metrics_ports":
        return tuple(sorted((k[len(_PATTERN_PREFIX):], parse(replace(var, name=k), v))
                            for k, v in env.items() if k.startswith(_PATTERN_PREFIX) and v not in ("", None)))
    for name in (var.name, *var.aliases):
        raw = env.get(name)
        if raw is not None and raw.strip():
            return parse(replace(var, name=name), raw)
    return _missing


_missing = object()


def _values(env: Mapping[str, str], section: str) -> dict[str, Any]:
    out = {}
    for var in VARIABLES:
        if var.section == section:
            value = _read(env, var)
            if value is not _missing:
                out[var.field] = value
    return out


def child_env(settings: "Settings", **extra: str) -> dict[str, str]:
    """A child process's environment: this one's, minus every variable of the table, plus ``settings`` and
    ``extra``. The child reads exactly these settings, whatever this process's environment says."""
    ours = {v.name for v in VARIABLES} | {a for v in VARIABLES for a in v.aliases}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith(_PATTERN_PREFIX)}
    return {**env, **settings.as_env(), **extra}


def local_settings(env: Mapping[str, str] | None = None) -> LocalSettings:
    """The local runtime's knobs from ``env`` (default: this process's environment, read now)."""
    return LocalSettings(**_values(os.environ if env is None else env, "local"))


# ---------------------------------------------------------------- Settings

@dataclass(frozen=True)
class Settings:
    """Where the data lives and how the functions behave. Build with :meth:`from_env`; tests build their own.
    Every field is a row of :data:`VARIABLES`."""

    home: Path
    bucket: str = "alerts"
    lake: str = ""  # root URI for staging/quarantine/dead-letter/manifests: a folder or s3://bucket[/prefix]
    warehouse: str = ""  # Iceberg warehouse URI
    catalog_uri: str = ""  # sqlite:///..., postgresql+psycopg2://..., or http(s)://... (REST)
    catalog_name: str = "ateda"
    catalog_prefix: str = ""
    catalog_token: str = ""
    namespace: str = "bronze"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    sink: str = ""  # K_SINK: where follow-up events are posted
    bridge_token: str = ""
    chunk_alerts: int = 500
    commit_window_ms: int = 2000
    commit_max_alerts: int = 50_000
    batch_window_ms: int = 200
    batch_max_objects: int = 256
    # bounded resources (bad input is quarantined with a reason when it exceeds one of these)
    max_member_bytes: int = 128 << 20  # decompressed bytes of one Avro file / tar member
    max_tar_members: int = 2_000_000  # members of one tarball
    max_container_alerts: int = 200_000  # alerts in one Avro container
    max_schema_depth: int = 32  # nesting depth of an Avro writer schema
    quarantine_copy_bytes: int = 16 << 20  # a quarantine copy keeps at most this many bytes of the input
    quarantine_records_per_object: int = 100  # past this, one summary record per object and reason
    # the bridge (MinIO/S3 webhook -> CloudEvents)
    bridge_open: bool = False  # ATEDA_BRIDGE_INSECURE_OPEN: run without a token (loopback only)
    bridge_max_body: int = 4 << 20
    reconcile_grace_s: float = 900.0
    # the local broker's ingress token (the runtime makes one per run when unset)
    broker_token: str = ""
    # the bucket-folder watcher: a file is announced once its size and mtime held still this long
    watch_grace_s: float = 2.0
    # the dbt refresh's DuckDB: a bounded buffer pool (spills to disk past it) and thread count
    duckdb_memory_limit: str = "400MB"
    duckdb_threads: int = 2
    log_level: str = "INFO"
    refresh: RefreshSettings = field(default_factory=RefreshSettings)
    maintenance: MaintenanceSettings = field(default_factory=MaintenanceSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    dbt: DbtSettings = field(default_factory=DbtSettings)
    explorer: ExplorerSettings = field(default_factory=ExplorerSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        top = _values(env, "")
        top["home"] = Path(top.get("home") or ".ateda").absolute()
        sections = {name: SECTIONS[name](**_values(env, name)) for name in SECTIONS if name != "local"}
        return cls(**top, **sections).resolved()

    def resolved(self) -> "Settings":
        """Fill the embedded defaults that derive from ``home``."""
        lake = self.lake or str(self.home / "lake")
        return replace(
            self,
            lake=lake,
            warehouse=self.warehouse or _join(lake, "warehouse"),
            catalog_uri=self.catalog_uri or f"sqlite:///{self.home / 'catalog.db'}",
        )

    @property
    def uses_s3(self) -> bool:
        return bool(self.s3_endpoint)

    @property
    def bucket_root(self) -> Path:
        """The local bucket folder (embedded default): one sub-folder per bucket."""
        return self.home / "bucket"

    def value(self, var: Var) -> Any:
        """The effective value of one variable of the table."""
        holder = getattr(self, var.section) if var.section else self
        return getattr(holder, var.field)

    def secrets(self) -> tuple[str, ...]:
        """The literal secrets of these settings (for masking)."""
        out = [str(self.value(v)) for v in VARIABLES if v.secret and v.name != "ATEDA_CATALOG_URI"]
        try:
            password = urlsplit(self.catalog_uri).password
        except ValueError:
            password = None
        if password:
            out += [password, unquote(password)]
        return tuple(x for x in out if x)

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process: every variable of the table but the
        local runtime's own, except empty ones (unset and empty read the same)."""
        out = {v.name: _format(v, self.value(v)) for v in VARIABLES if v.section != "local"}
        return {k: v for k, v in out.items() if v != ""}

    def effective(self, masked: bool = True) -> dict[str, dict[str, Any]]:
        """Section -> variable -> effective value in the variable's unit (what ``ateda config`` prints), the local
        runtime's from this process's environment; secrets masked unless told."""

        out: dict[str, dict[str, Any]] = {}
        local = local_settings()
        for var in VARIABLES:
            value = getattr(local, var.field) if var.section == "local" else self.value(var)
            if var.field == "metrics_ports":
                for name, port in value:
                    out.setdefault("local", {})[_PATTERN_PREFIX + name] = port
                continue
            if isinstance(value, Path):
                value = str(value)
            elif var.kind == "ms":  # shown in the variable's own unit
                value = round(value * 1000)
            if masked and var.secret and value:
                value = mask_uri(value) if var.name == "ATEDA_CATALOG_URI" else MASK
            out.setdefault(var.section or "general", {})[var.name] = value
        return out


def _format(var: Var, value: Any) -> str:
    if var.kind == "bool":
        return "true" if value else "false"
    if var.kind == "ms":
        return str(round(value * 1000))
    return str(value)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


@functools.cache
def settings() -> Settings:
    """The process-wide settings, read from the environment on first use (never at import time)."""
    return Settings.from_env()


# ---------------------------------------------------------------- the reference page

_SECTION_TITLES = {"": "General", "refresh": "Refresh (the dbt refresh function)",
                   "maintenance": "Maintenance (compaction, expiry, orphans)", "metrics": "Metrics",
                   "paths": "Paths", "dbt": "dbt cluster target (StarRocks)",
                   "explorer": "Explorer (`ateda serve`)",
                   "local": "Local runtime (`ateda up`)"}


def _shown_default(var: Var) -> str:
    if var.shown_default:
        return var.shown_default
    if var.kind == "ms":
        return str(round(var.default * 1000))
    if var.kind == "bool":
        return "true" if var.default else "false"
    return "(empty)" if var.default == "" else str(var.default)


def settings_doc() -> str:
    """docs/settings.md, generated from :data:`VARIABLES` (``ateda config --doc > docs/settings.md``)."""
    lines = ["# Settings", "",
             "<!-- Generated from shared/ateda/config.py (VARIABLES) by `ateda config --doc`; do not edit. -->", "",
             "Every setting is an environment variable, read once per process by `ateda.config` (the only module "
             "that reads the environment) into a frozen `Settings`. A malformed value stops the process with an "
             "error naming the variable. `ateda config` prints the effective values (secrets masked; `--json` for "
             "a machine). Values marked *secret* are masked there and in every log line.", ""]
    for section, title in _SECTION_TITLES.items():
        lines += [f"## {title}", "", "| Variable | Type | Default | Description |", "|---|---|---|---|"]
        for v in VARIABLES:
            if v.section == section:
                kind = {"ms": "int (ms)"}.get(v.kind, v.kind) + (", secret" if v.secret else "")
                desc = v.description.replace("|", "\\|")
                lines.append(f"| `{v.name}` | {kind} | `{_shown_default(v)}` | {desc} |")
        lines.append("")
    return "\n".join(lines)


def _check_table() -> None:  # used by the tests: every field of every section has exactly one variable
    for section, cls in {"": Settings, **SECTIONS}.items():
        names = {f.name for f in fields(cls) if f.name not in SECTIONS}
        rows = [v.field for v in VARIABLES if v.section == section]
        if sorted(rows) != sorted(names):
            raise AssertionError(f"section {section or 'general'}: fields {sorted(names)} vs table {sorted(rows)}")
