"""Settings, read from the environment once and frozen.

Every location hangs off one root, ``ATEDA_HOME`` (default ``./.ateda``), so two runs never share state unless told.
Unset values fall back to the embedded default: a bucket folder, a SQLite catalog, a local warehouse folder.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from .errors import ConfigError


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Where the data lives and how the functions behave. Build with :meth:`from_env`; tests build their own."""

    home: Path
    bucket: str = "alerts"
    lake: str = ""  # root URI for staging/quarantine/dead-letter/manifests: a folder or s3://bucket[/prefix]
    warehouse: str = ""  # Iceberg warehouse URI
    catalog_uri: str = ""  # sqlite:///..., postgresql+psycopg2://..., or http(s)://... (REST)
    catalog_name: str = "ateda"
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
    # the local broker's ingress token (the runtime makes one per run when unset)
    broker_token: str = ""
    # the bucket-folder watcher: a file is announced once its size and mtime held still this long
    watch_grace_s: float = 2.0
    # the dbt refresh's DuckDB: a bounded buffer pool (spills to disk past it) and thread count
    duckdb_memory_limit: str = "400MB"
    duckdb_threads: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("ATEDA_HOME") or ".ateda").absolute()
        s = cls(
            home=home,
            bucket=env.get("ATEDA_BUCKET") or "alerts",
            lake=env.get("ATEDA_LAKE") or "",
            warehouse=env.get("ATEDA_WAREHOUSE") or "",
            catalog_uri=env.get("ATEDA_CATALOG_URI") or "",
            catalog_name=env.get("ATEDA_CATALOG_NAME") or "ateda",
            namespace=env.get("ATEDA_NAMESPACE") or "bronze",
            s3_endpoint=env.get("ATEDA_S3_ENDPOINT") or "",
            s3_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            s3_access_key=env.get("AWS_ACCESS_KEY_ID") or "",
            s3_secret_key=env.get("AWS_SECRET_ACCESS_KEY") or "",
            sink=env.get("K_SINK") or "",
            bridge_token=env.get("ATEDA_BRIDGE_TOKEN") or "",
            chunk_alerts=_int(env, "ATEDA_CHUNK_ALERTS", 500),
            commit_window_ms=_int(env, "ATEDA_COMMIT_WINDOW_MS", 2000),
            commit_max_alerts=_int(env, "ATEDA_COMMIT_MAX_ALERTS", 50_000),
            batch_window_ms=_int(env, "ATEDA_BATCH_WINDOW_MS", 200),
            batch_max_objects=_int(env, "ATEDA_BATCH_MAX_OBJECTS", 256),
            max_member_bytes=_int(env, "ATEDA_MAX_MEMBER_BYTES", 128 << 20),
            max_tar_members=_int(env, "ATEDA_MAX_TAR_MEMBERS", 2_000_000),
            max_container_alerts=_int(env, "ATEDA_MAX_CONTAINER_ALERTS", 200_000),
            max_schema_depth=_int(env, "ATEDA_MAX_SCHEMA_DEPTH", 32),
            quarantine_copy_bytes=_int(env, "ATEDA_QUARANTINE_COPY_BYTES", 16 << 20),
            quarantine_records_per_object=_int(env, "ATEDA_QUARANTINE_RECORDS_PER_OBJECT", 100),
            bridge_open=_bool(env, "ATEDA_BRIDGE_INSECURE_OPEN"),
            bridge_max_body=_int(env, "ATEDA_BRIDGE_MAX_BODY", 4 << 20),
            broker_token=env.get("ATEDA_BROKER_TOKEN") or "",
            watch_grace_s=_float(env, "ATEDA_WATCH_GRACE_S", 2.0),
            duckdb_memory_limit=env.get("ATEDA_DUCKDB_MEMORY_LIMIT") or "400MB",
            duckdb_threads=_int(env, "ATEDA_DUCKDB_THREADS", 2),
        )
        return s.resolved()

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

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        env = {
            "ATEDA_HOME": str(self.home),
            "ATEDA_BUCKET": self.bucket,
            "ATEDA_LAKE": self.lake,
            "ATEDA_WAREHOUSE": self.warehouse,
            "ATEDA_CATALOG_URI": self.catalog_uri,
            "ATEDA_CATALOG_NAME": self.catalog_name,
            "ATEDA_NAMESPACE": self.namespace,
            "ATEDA_CHUNK_ALERTS": str(self.chunk_alerts),
            "ATEDA_COMMIT_WINDOW_MS": str(self.commit_window_ms),
            "ATEDA_COMMIT_MAX_ALERTS": str(self.commit_max_alerts),
            "ATEDA_BATCH_WINDOW_MS": str(self.batch_window_ms),
            "ATEDA_BATCH_MAX_OBJECTS": str(self.batch_max_objects),
            "ATEDA_MAX_MEMBER_BYTES": str(self.max_member_bytes),
            "ATEDA_MAX_TAR_MEMBERS": str(self.max_tar_members),
            "ATEDA_MAX_CONTAINER_ALERTS": str(self.max_container_alerts),
            "ATEDA_MAX_SCHEMA_DEPTH": str(self.max_schema_depth),
            "ATEDA_QUARANTINE_COPY_BYTES": str(self.quarantine_copy_bytes),
            "ATEDA_QUARANTINE_RECORDS_PER_OBJECT": str(self.quarantine_records_per_object),
            "ATEDA_WATCH_GRACE_S": str(self.watch_grace_s),
            "ATEDA_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
            "ATEDA_DUCKDB_THREADS": str(self.duckdb_threads),
        }
        if self.uses_s3:
            env.update(
                ATEDA_S3_ENDPOINT=self.s3_endpoint,
                AWS_REGION=self.s3_region,
                AWS_ACCESS_KEY_ID=self.s3_access_key,
                AWS_SECRET_ACCESS_KEY=self.s3_secret_key,
            )
        if self.bridge_token:
            env["ATEDA_BRIDGE_TOKEN"] = self.bridge_token
        if self.bridge_open:
            env["ATEDA_BRIDGE_INSECURE_OPEN"] = "true"
        env["ATEDA_BRIDGE_MAX_BODY"] = str(self.bridge_max_body)
        if self.broker_token:
            env["ATEDA_BROKER_TOKEN"] = self.broker_token
        return env


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


@functools.cache
def settings() -> Settings:
    """The process-wide settings, read from the environment on first use (never at import time)."""
    return Settings.from_env()
