"""S3 bucket notifications -> CloudEvents. No S3 store emits CloudEvents and the Broker accepts nothing else.

Two dialects of the same event record arrive (docs/s3.md):

* the standard S3 record (AWS S3, Ceph RGW, most S3 stores): ``{"Records": [{"eventSource": "aws:s3" | "ceph:s3",
  "eventName": "ObjectCreated:Put" | "ObjectCreated:CompleteMultipartUpload", "s3": {"bucket": {"name"}, "object":
  {"key", "size", "eTag", "versionId", "sequencer"}}}]}``, possibly several records per request;
* MinIO's: the same record (one per request, names prefixed ``s3:``) plus top-level ``EventName`` and ``Key``.

Keys are query-escaped by AWS and MinIO (``+`` is a space) and sent as they are by Ceph RGW 16 (``ceph:s3``): the
record's ``eventSource`` says which. Non-create events are acknowledged and ignored. Notifications that arrive
together are coalesced into one ``dev.ateda.object.created`` per bucket; each request is answered 200 only after
its event was accepted by the broker, else 503 (the store keeps it in its queue and re-sends).

The token is checked the way each store can send it: MinIO sends ``Authorization: Bearer <token>``; Ceph RGW's
HTTP push endpoint sends no header of its own, so its topic's ``push-endpoint`` carries the token in the URL query
(``?token=<token>``); Basic authentication with the token as password is accepted too.

The bridge is an entry point from the network, so it trusts nothing: the body is size-capped and its JSON shape
checked (400 with a reason, never a 500), bucket names and the decoded keys must pass :mod:`keys` (a ``../`` or
absolute key is refused before anything reads it), and it fails closed: no token, no service, unless told to run
open (``ATEDA_BRIDGE_INSECURE_OPEN``), and then for loopback callers only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import re
from typing import IO
from urllib.parse import unquote_plus

from ateda.config import Settings
from ateda.errors import AtedaError, BadInput
from ateda.events import catalogue as events, transport
from ateda.keys import check_bucket, check_key, header_value

_ETAG = re.compile(r"^[0-9A-Za-z-]{0,128}\Z")  # hex MD5, or hex-N for multipart uploads
_TOKENISH = re.compile(r"^[\x21-\x7e]{0,1024}\Z")  # versionId, sequencer: printable, no space, bounded
RAW_KEY_SOURCES = frozenset({"ceph:s3"})  # stores that send the object key as it is (not query-escaped)
CREATED = ("ObjectCreated:", "s3:ObjectCreated:")


class TooLarge(BadInput):
    """A request body over ``ATEDA_BRIDGE_MAX_BODY``."""

    def __init__(self, limit: int) -> None:
        super().__init__("too_large", f"request body over {limit} bytes")


def startup_problem(s: Settings) -> str | None:
    """Why the bridge must not start with these settings (None: it may)."""
    if s.bridge_token or s.bridge_open:
        return None
    return ("minio-bridge refuses to start: ATEDA_BRIDGE_TOKEN is not set (set it to the token the store sends; "
            "ATEDA_BRIDGE_INSECURE_OPEN=true runs without one, for loopback callers only)")


def read_capped(stream: IO[bytes], declared: int | None, limit: int) -> bytes:
    """The request body, or :class:`TooLarge` as soon as it is known to exceed ``limit``: at once when the declared
    Content-Length says so (nothing read), else after reading at most ``limit`` + 1 bytes (chunked bodies)."""
    if declared is not None and declared > limit:
        raise TooLarge(limit)
    parts, got = [], 0
    while got <= limit:
        block = stream.read(min(1 << 16, limit + 1 - got))
        if not block:
            break
        parts.append(block)
        got += len(block)
    if got > limit:
        raise TooLarge(limit)
    return b"".join(parts)


def _obj(parent: dict, field: str, where: str) -> dict:
    value = parent.get(field)
    if not isinstance(value, dict):
        raise BadInput("not_minio_event", f"{where}.{field} is not an object")
    return value


def parse_webhook(body: object) -> list[tuple[str, dict]]:
    """(bucket, object) for every ObjectCreated record of one notification (standard S3 or MinIO); other events
    give [].

    Raises :class:`BadInput` (``not_minio_event``) for a body of the wrong shape and :class:`keys.UnsafeName`
    (``unsafe_key``) for a bucket name or decoded key that is not safe; one bad record refuses the whole request,
    so nothing of it is ever read.
    """
    if not isinstance(body, dict):
        raise BadInput("not_minio_event", f"body is a JSON {type(body).__name__}, not an object")
    records = body.get("Records")
    if not isinstance(records, list):
        raise BadInput("not_minio_event", "no Records list")
    default_name = body.get("EventName") or ""
    out = []
    for i, rec in enumerate(records):
        where = f"Records[{i}]"
        if not isinstance(rec, dict):
            raise BadInput("not_minio_event", f"{where} is not an object")
        name = rec.get("eventName") or default_name
        if not isinstance(name, str):
            raise BadInput("not_minio_event", f"{where}.eventName is not a string")
        if not name.startswith(CREATED):
            continue
        source = rec.get("eventSource", "")
        if not isinstance(source, str):
            raise BadInput("not_minio_event", f"{where}.eventSource is not a string")
        s3 = _obj(rec, "s3", where)
        bucket, obj = _obj(s3, "bucket", f"{where}.s3"), _obj(s3, "object", f"{where}.s3")
        if not isinstance(bucket.get("name"), str) or not isinstance(obj.get("key"), str):
            raise BadInput("not_minio_event", f"{where}: s3.bucket.name and s3.object.key must be strings")
        check_bucket(bucket["name"])
        key = obj["key"] if source in RAW_KEY_SOURCES else _unescape(obj["key"], where)
        check_key(key)
        etag = obj.get("eTag", "")
        if not isinstance(etag, str) or not _ETAG.match(etag.strip('"')):
            raise BadInput("not_minio_event", f"{where}: s3.object.eTag is not an ETag")
        for field in ("versionId", "sequencer"):  # checked, not forwarded: (bucket, key, eTag) is the identity
            value = obj.get(field)
            if value is not None and (not isinstance(value, str) or not _TOKENISH.match(value)):
                raise BadInput("not_minio_event", f"{where}: s3.object.{field} is not a string of that kind")
        item = {"key": key, "etag": etag.strip('"'), "event_name": name if name.startswith("s3:") else f"s3:{name}"}
        size = obj.get("size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise BadInput("not_minio_event", f"{where}: s3.object.size is not a size")
            item["size"] = size
        when = rec.get("eventTime")
        if when:
            if not isinstance(when, str) or len(when) > 64:
                raise BadInput("not_minio_event", f"{where}: eventTime is not a time")
            item["time"] = when
        out.append((bucket["name"], item))
    return out


def _unescape(key: str, where: str) -> str:
    try:  # AWS and MinIO query-escape keys ('+' is a space); a byte sequence that is not UTF-8 names no object
        return unquote_plus(key, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadInput("unsafe_key", f"{where}: object key is not UTF-8 once decoded") from exc


def authorised(header: str | None, token: str, query_token: str | None = None) -> bool:
    """True when the request carries ``token`` (constant-time compare): ``Authorization: Bearer <token>`` (MinIO),
    ``Authorization: Basic`` with the token as password, or ``?token=<token>`` in the URL (Ceph RGW's push
    endpoint, which sends no header of its own). No token configured: False (the caller decides whether the bridge
    runs open, see :func:`loopback_only`)."""
    if not token:
        return False
    want = token.encode()
    scheme, _, given = (header or "").partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return hmac.compare_digest(given.strip().encode(), want)
    if scheme == "basic":
        try:
            password = base64.b64decode(given.strip(), validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(password, want)
    if header:  # some other scheme: refused, whatever the query says
        return False
    return query_token is not None and hmac.compare_digest(query_token.encode(), want)


def loopback_only(remote_addr: str | None, forwarded: list[str]) -> bool:
    """True when the caller and every proxy hop it names (``X-Forwarded-For``, ``Forwarded: for=``) are loopback."""
    hops = [remote_addr or ""]
    for header in forwarded:
        for part in header.split(","):
            part = part.strip()
            if "for=" in part.lower():  # Forwarded: for=1.2.3.4;proto=http
                part = part[part.lower().index("for=") + 4:].split(";")[0]
            hops.append(part.strip().strip('"').removeprefix("[").split("]")[0])
    for hop in hops:
        try:
            if not ipaddress.ip_address(hop.split("%")[0]).is_loopback:
                return False
        except ValueError:
            return False
    return True


def post_batches(sink: str, items: list[tuple[str, dict]],
                 source: str = "/ateda/minio-bridge") -> list[Exception | None]:
    """One object.created event per bucket for a batch of (bucket, object). One result per item: None once its
    event is with the broker, else the error of its bucket's post (other buckets of the batch are unaffected)."""
    by_bucket: dict[str, list[int]] = {}
    for i, (bucket, _) in enumerate(items):
        by_bucket.setdefault(bucket, []).append(i)
    results: list[Exception | None] = [None] * len(items)
    for bucket, idx in by_bucket.items():
        objects = [items[i][1] for i in idx]
        first = objects[0]["key"]
        subject = header_value(first if len(objects) == 1 else f"{first} (+{len(objects) - 1})")
        try:
            transport.post(sink, events.make_event(events.OBJECT_CREATED, source,
                                                {"bucket": bucket, "objects": objects}, subject))
        except (AtedaError, ValueError, UnicodeError) as exc:
            for i in idx:
                results[i] = exc
    return results
