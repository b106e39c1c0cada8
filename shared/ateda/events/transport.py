"""Delivering CloudEvents over HTTP: binary content mode both ways, posting to the broker (``K_SINK``) with its
token, the broker's refusal as an error."""

from __future__ import annotations

import json
import threading
import urllib.parse
from typing import Any

import requests

from ateda.config import settings
from ateda.errors import TransientError
from ateda.keys import header_value

_local = threading.local()
_tokens: dict[str, str] = {}  # origin (scheme://host:port) of a broker this process runs -> its ingress token


def to_binary(event: dict) -> tuple[dict[str, str], bytes]:
    """HTTP binary content mode: attributes as ``ce-`` headers, data as the body.

    Header values are percent-encoded (as the CloudEvents HTTP binding asks for anything outside printable ASCII):
    an attribute is data (a subject may carry a file name with an en dash, a newline or a leading space), never
    header syntax. :func:`from_http` decodes them, so a round trip is exact."""
    headers = {f"ce-{k}": _attribute(v) for k, v in event.items() if k not in ("data", "datacontenttype")}
    headers["content-type"] = event.get("datacontenttype", "application/json")
    return headers, json.dumps(event.get("data"), separators=(",", ":")).encode()


_MAX_ATTRIBUTE = 4096  # encoded characters: well under the 8 KiB header lines servers accept (gunicorn, Knative)


def _attribute(value: object) -> str:
    """One attribute value, percent-encoded; cut (at an escape boundary) only past ``_MAX_ATTRIBUTE`` characters,
    which no valid object key reaches (1024 UTF-8 bytes encode to at most 3072)."""
    text = header_value(str(value), limit=_MAX_ATTRIBUTE + 2)
    if len(text) > _MAX_ATTRIBUTE:
        text = text[:_MAX_ATTRIBUTE]
        cut = text.rfind("%", _MAX_ATTRIBUTE - 2)
        text = text[:cut] if cut >= 0 else text
    return text


def from_http(headers: dict[str, str], body: bytes) -> dict:
    """Parse a CloudEvent from an HTTP request in binary or structured mode (header names case-insensitive;
    percent-encoded attribute values decoded)."""
    h = {k.lower(): v for k, v in headers.items()}
    ctype = h.get("content-type", "")
    if ctype.startswith("application/cloudevents+json"):
        return json.loads(body)
    if "ce-type" not in h:
        raise ValueError("not a CloudEvent: no ce-type header and not structured mode")
    event: dict[str, Any] = {k[3:]: urllib.parse.unquote(v) for k, v in h.items() if k.startswith("ce-")}
    event["datacontenttype"] = ctype or "application/json"
    event["data"] = json.loads(body) if body and "json" in event["datacontenttype"] else body
    return event


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: what a broker's token is registered under."""
    u = urllib.parse.urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


def register_token(url: str, token: str | None) -> None:
    """Remember the ingress token of a broker this process runs (``None`` forgets it), so that events this process
    posts to it (the watcher's, a replay's, a test's) carry it."""
    if token:
        _tokens[origin(url)] = token
    else:
        _tokens.pop(origin(url), None)


def _token_for(sink: str) -> str:
    """The token for ``sink``: the one of a broker this process runs, else ``ATEDA_BROKER_TOKEN`` (which the local
    runtime gives its function servers); empty when none (Knative's broker in the cluster takes none)."""
    if origin(sink) in _tokens:
        return _tokens[origin(sink)]

    return settings().broker_token


def _session():  # noqa: ANN202
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def post(sink: str, event: dict, timeout: float = 30.0, token: str | None = None) -> None:
    """Post one event to the broker. No sink configured: the event is dropped (logged), as with no SinkBinding.

    ``token`` (default: see :func:`_token_for`) goes in ``Authorization: Bearer``, as the local broker asks."""
    if not sink:
        return

    headers, body = to_binary(event)
    token = _token_for(sink) if token is None else token
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        resp = _session().post(sink, data=body, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise TransientError(f"broker unreachable at {sink}: {exc}") from exc
    if resp.status_code >= 300:
        raise Refused(resp.status_code, f"broker refused event {event['type']}: HTTP {resp.status_code} "
                                        f"{resp.text[:200]}")


class Refused(TransientError):
    """The broker answered with an error status (``code``): 400 means this event will never be accepted."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
