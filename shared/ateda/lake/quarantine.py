"""Quarantine: bad input is kept, never lost, beside a machine-readable reason.

Names from the input (bucket, object key, tar member) are data: they are kept as given in the record and only ever
reach the lake through :func:`keys.segment`, so a member named ``../../x`` or ``/etc/passwd`` lands inside
``quarantine/`` like any other, and two distinct names never share a record. The copy of the offending bytes is
capped (``copy_limit``): a decompression bomb leaves its first bytes and its reason, not its whole output.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from datetime import datetime, timezone
from typing import IO

from ateda.errors import BadInput
from ateda.keys import segment
from ateda.lake.storage import ObjectStore
from ateda.ztf.alerts import Source

_REASON = re.compile(r"^[a-z0-9_]{1,64}\Z")
_BLOCK = 1 << 20


def quarantine_key(src: Source, reason: str, member: str | None = None) -> str:
    """``quarantine/<reason>/<bucket>/<key@etag>/<member or "object">``, each part one safe segment (readable +
    digest; ``object`` has no digest, so no member can take its place). An object's record and its members'
    records live side by side, whatever the order they come in."""
    base = "/".join(["quarantine", reason if _REASON.match(reason) else segment(reason), segment(src.bucket),
                     segment(f"{src.key}@{src.etag}")])
    return f"{base}/{segment(member)}" if member else f"{base}/object"


def _copy(payload: bytes | IO[bytes], limit: int | None) -> tuple[bytes, int | None, bool]:
    """(the bytes to keep, the original size when known, whether the copy is truncated). Reads at most
    ``limit`` + 1 bytes of a stream (the extra byte only tells whether more follows)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
        if limit is not None and len(data) > limit:
            return data[:limit], len(data), True
        return data, len(data), False
    size = _stream_size(payload)
    if limit is None:
        data = payload.read()
        return data, len(data), False
    parts, got = [], 0
    while got <= limit:
        block = payload.read(min(_BLOCK, limit + 1 - got))
        if not block:
            break
        parts.append(block)
        got += len(block)
    data = b"".join(parts)
    if got > limit:
        return data[:limit], size, True
    return data, got, False


def _stream_size(fh: IO[bytes]) -> int | None:
    """Bytes left in an in-memory buffer or a regular file, else None: asking a decompressing stream would mean
    decompressing it all (seeking a GzipFile to its end does), which is what the cap is there to avoid."""
    try:
        if isinstance(fh, io.BytesIO):
            return fh.getbuffer().nbytes - fh.tell()
        st = os.fstat(fh.fileno())
        return st.st_size - fh.tell() if stat.S_ISREG(st.st_mode) else None
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def quarantine(lake: ObjectStore, src: Source, err: BadInput, member: str | None = None,
               payload: bytes | IO[bytes] | None = None, kept_alerts: int = 0, *,
               copy_limit: int | None = None) -> dict:
    """Copy the offending bytes (at most ``copy_limit`` of them) to :func:`quarantine_key` with a ``.reason.json``.

    Returns the reason record (also the ``data`` of the ``input.rejected`` event). The original bucket, key and
    member are fields of the record, never parts of a path. The ``.reason.json`` also says how much was copied:
    ``original_size`` (None when a stream's size cannot be known without reading it), ``copy_bytes`` and
    ``copy_truncated``.
    """
    base = quarantine_key(src, err.reason, member)
    record = {
        "source": {"bucket": src.bucket, "key": src.key, "etag": src.etag},
        "member": member,
        "reason": err.reason,
        "detail": err.detail[:2000],
        "alerts_kept": kept_alerts,
        "quarantined_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quarantine_uri": lake.uri(base) if payload is not None else None,
    }
    stored = record
    if payload is not None:
        data, size, truncated = _copy(payload, copy_limit)
        # in the lake's record only: the input.rejected schema (events/schemas) does not carry them (yet)
        stored = {**record, "original_size": size, "copy_bytes": len(data), "copy_truncated": truncated}
        lake.put_bytes(base, data)
    lake.put_bytes(base + ".reason.json", json.dumps(stored, indent=1).encode())
    return record


def list_reasons(lake: ObjectStore) -> list[dict]:
    """Every quarantine record in the lake."""
    out = []
    for info in lake.list("quarantine/"):
        if info.key.endswith(".reason.json"):
            out.append(json.loads(lake.get_bytes(info.key)))
    return out
