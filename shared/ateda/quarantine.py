"""Quarantine: bad input is kept, never lost, beside a machine-readable reason."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import IO

from .alerts import Source
from .errors import BadInput
from .storage import ObjectStore


def quarantine(lake: ObjectStore, src: Source, err: BadInput, member: str | None = None,
               payload: bytes | IO[bytes] | None = None, kept_alerts: int = 0) -> dict:
    """Copy the offending bytes to ``quarantine/<reason>/<bucket>/<key>[/<member>]`` with a ``.reason.json``.

    Returns the reason record (also the ``data`` of the ``input.rejected`` event).
    """
    base = f"quarantine/{err.reason}/{src.bucket}/{src.key}@{src.etag}"
    if member:
        base += "/" + member.lstrip("/")
    record = {
        "source": {"bucket": src.bucket, "key": src.key, "etag": src.etag},
        "member": member,
        "reason": err.reason,
        "detail": err.detail[:2000],
        "alerts_kept": kept_alerts,
        "quarantined_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quarantine_uri": lake.uri(base) if payload is not None else None,
    }
    if payload is not None:
        data = payload if isinstance(payload, bytes) else payload.read()
        lake.put_bytes(base, data)
    lake.put_bytes(base + ".reason.json", json.dumps(record, indent=1).encode())
    return record


def list_reasons(lake: ObjectStore) -> list[dict]:
    """Every quarantine record in the lake."""
    out = []
    for info in lake.list("quarantine/"):
        if info.key.endswith(".reason.json"):
            out.append(json.loads(lake.get_bytes(info.key)))
    return out
