"""Confinement: names that come from input (bucket names, object keys, tar members, catalog names) checked in one place.

A key is data, not a path. Before one reaches a store it must be a relative, '/'-separated name with no ``.``, ``..``
or empty segment, no control character and at most 1024 UTF-8 bytes (S3's own limit). Anything else raises
:class:`UnsafeName`, a :class:`BadInput` whose reason is ``unsafe_key``. Names that are only ever data (a tar
member, a file name in a quarantine record) are never used as a path: :func:`segment` turns any text into one safe,
readable path segment with a digest that keeps distinct names distinct.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse

from ateda.errors import BadInput

MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")  # S3 bucket naming rules (DNS-compatible)
_SAFE_SEGMENT = re.compile(r"[^A-Za-z0-9._-]")


class UnsafeName(BadInput):
    """A bucket name or object key that could escape its store, or that no store accepts."""

    def __init__(self, detail: str) -> None:
        super().__init__("unsafe_key", detail)


def check_key(key: object) -> str:
    """``key`` if it is a safe object key, else raise :class:`UnsafeName` (the reason says which rule failed)."""
    if not isinstance(key, str):
        raise UnsafeName(f"object key must be a string, got {type(key).__name__}")
    if not key:
        raise UnsafeName("empty object key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise UnsafeName(f"object key longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise UnsafeName(f"control character in object key {key!r}")
    if key.startswith("/"):
        raise UnsafeName(f"absolute object key {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise UnsafeName(f"object key {key!r} has an empty, '.' or '..' segment")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeName(f"object key is not valid UTF-8: {key!r}") from exc
    return key


def check_bucket(name: object) -> str:
    """``name`` if it is a valid S3 bucket name (3-63 of a-z 0-9 . -, no '..'), else raise :class:`UnsafeName`."""
    if not isinstance(name, str):
        raise UnsafeName(f"bucket name must be a string, got {type(name).__name__}")
    if not _BUCKET.fullmatch(name) or ".." in name:
        raise UnsafeName(f"invalid bucket name {name!r}")
    return name


def segment(text: str, limit: int = 80) -> str:
    """One safe path segment for arbitrary text: readable characters kept, others as '_', plus a digest of the
    original so that two names never share a segment. Never empty, never '.' or '..'."""
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    readable = _SAFE_SEGMENT.sub("_", text)[-limit:].lstrip(".") or "_"
    return f"{readable}-{digest}"


_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


def name_segment(text: str) -> str:
    """``text`` itself when it is already a plain, safe segment (letters, digits, ``._-``, no leading dot), else
    :func:`segment` of it: event types and ids keep their readable folder names, hostile ones cannot climb out."""
    return text if _PLAIN.fullmatch(text) else segment(text)


def printable(text: str) -> str:
    """``text`` for one line of a terminal: undecodable bytes and control characters shown as escapes."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def header_value(text: str, limit: int = 1024) -> str:
    """Text made fit for an HTTP header or CloudEvent attribute: percent-encoded to printable ASCII (RFC 3986
    unreserved characters and '/' kept), at most ``limit`` characters. Decode with ``urllib.parse.unquote``."""
    return urllib.parse.quote(text, safe="/:@#")[:limit]
