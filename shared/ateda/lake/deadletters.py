"""Dead letters: events whose delivery failed for good, kept in the lake to be listed, read and replayed.

One format, whoever writes it (the local broker, the cluster's dead-letter function, the dbt refresh worker): a JSON
object, the CloudEvent as delivered (its attributes and ``data``) plus Knative's error extensions as Knative itself
sets them: ``knativeerrordest`` (where the delivery went), ``knativeerrorcode`` (the HTTP status, ``0`` when nothing
answered) and ``knativeerrordata`` (the response body, base64).

One folder scheme: ``dead-letter/<trigger>/<UTC time>-<id>.json``, each name one safe segment
(:func:`ateda.keys.name_segment`: a hostile type, id or destination never climbs out of the folder). ``<trigger>`` is
the Knative Trigger's name whenever the writer can know it: the local broker delivers per Trigger; behind the
MTChannelBasedBroker Knative sets ``knativeerrordest`` to ``.../triggers/<namespace>/<trigger>/<uid>``. A writer that
cannot know it uses the subscriber's Service name: the refresh worker (``ateda-dbt-refresh``), the dead-letter
function behind a broker class that reports the subscriber's URL. So ``ateda replay --trigger X`` means the Trigger
``X`` of ``knative/`` in both modes: the letters in folder ``X``, and the letters of ``X``'s subscriber whose event
``X``'s filters match.

Readers also take the formats written before this module: the broker's (the same, local time), the dead-letter
function's (a folder per event type) and the refresh worker's (``knativeerrordata`` as plain text).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ateda.events import transport
from ateda.events.routing import Trigger, knative_dir, load_triggers
from ateda.keys import name_segment
from ateda.lake.storage import ObjectStore
from ateda.serving.metrics import instruments

log = logging.getLogger(__name__)
PREFIX = "dead-letter/"
EXTENSIONS = ("knativeerrordest", "knativeerrorcode", "knativeerrordata")
MAX_ERROR_BYTES = 4096  # of the response body kept in knativeerrordata
_TRIGGER_PATH = re.compile(r"^/triggers/[^/]+/([^/]+)")  # MTChannelBasedBroker's broker-filter URL


@dataclass(frozen=True)
class Letter:
    key: str
    event: dict  # the CloudEvent as delivered, error extensions removed
    dest: str
    code: str
    error: str  # the response body (or the cause), decoded

    @property
    def folder(self) -> str:
        return self.key.removeprefix(PREFIX).split("/", 1)[0]

    def names(self) -> set[str]:
        """What the letter names as its Trigger or subscriber: its folder, and what its destination names (see
        :func:`dest_names`)."""
        return {self.folder, *dest_names(self.dest)}

    def triggers(self, triggers: Iterable[Trigger]) -> set[str]:
        """The Triggers this letter failed on: named by the letter, else of a named subscriber and matching the
        event, else (a letter naming neither, in an old folder) every Trigger whose filters match the event."""
        triggers = list(triggers)
        names = self.names()
        named = {t.name for t in triggers if t.name in names}
        if named:
            return named
        served = {t.name for t in triggers if t.subscriber in names and t.matches(self.event)}
        return served or {t.name for t in triggers if t.matches(self.event)}


def write(lake: ObjectStore, folder: str, event: dict, dest: str, code: int | str, error: str | bytes) -> str:
    """Keep ``event`` as a dead letter of ``folder`` (a Trigger's name, else the subscriber's); returns its key.
    ``error``: the response body (or the cause), at most :data:`MAX_ERROR_BYTES` of it kept."""
    body = error.encode("utf-8", "replace") if isinstance(error, str) else bytes(error)
    letter = {k: v for k, v in event.items() if k not in EXTENSIONS}
    if isinstance(letter.get("data"), (bytes, bytearray)):  # not JSON: as the CloudEvents JSON format keeps bytes
        letter["data_base64"] = base64.b64encode(letter.pop("data")).decode()
    letter.update(knativeerrordest=str(dest), knativeerrorcode=str(code),
                  knativeerrordata=base64.b64encode(body[:MAX_ERROR_BYTES]).decode())
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    key = f"{PREFIX}{name_segment(str(folder) or 'unknown')}/{stamp}-{name_segment(str(event.get('id', '')))}.json"
    lake.put_bytes(key, json.dumps(letter, indent=1, default=str).encode())
    instruments().dead_letters.labels(folder).inc()
    return key


def dest_names(dest: str) -> list[str]:
    """The Trigger and the Service a ``knativeerrordest`` names, most precise first: the Trigger in a broker-filter
    URL (``/triggers/<namespace>/<trigger>/<uid>``), the first label of a host name (a Service's address), a bare
    name (the old refresh worker's ``dbt-refresh``). Empty for an IP address or nothing."""
    try:
        url = urlsplit(dest)
        host = url.hostname or ""
    except ValueError:
        return []
    if not url.scheme:
        return [dest] if dest else []
    out = []
    trigger = _TRIGGER_PATH.match(url.path)
    if trigger:
        out.append(unquote(trigger[1]))
    if host and not host.replace(".", "").isdigit() and ":" not in host and host != "localhost":
        out.append(host.split(".", 1)[0])
    return out


def folder_for(dest: str) -> str:
    """The folder of a letter Knative delivered to the dead-letter function, from its ``knativeerrordest``: the
    Trigger if it names one, else the subscriber's Service, else ``unknown``."""
    names = dest_names(dest)
    return names[0] if names else "unknown"


def read(lake: ObjectStore, key: str) -> Letter:
    """The letter at ``key``, in any of the formats (raises ``ValueError`` on one that is not a JSON object)."""
    raw = json.loads(lake.get_bytes(key))
    if not isinstance(raw, dict):
        raise ValueError(f"dead letter {key} is not a JSON object")
    event = {k: v for k, v in raw.items() if k not in EXTENSIONS}
    return Letter(key, event, str(raw.get("knativeerrordest") or ""), str(raw.get("knativeerrorcode") or ""),
                  decode_error(raw.get("knativeerrordata")))


def decode_error(data: object) -> str:
    """``knativeerrordata`` as text (see :func:`error_body`)."""
    return error_body(data).decode("utf-8", "replace")


def error_body(data: object) -> bytes:
    """``knativeerrordata`` as the response's bytes: base64 as Knative writes it; plain text as the refresh worker
    used to (its messages, ``Type: detail``, are never valid base64)."""
    if data is None:
        return b""
    text = data if isinstance(data, str) else str(data)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode("utf-8", "replace")


def keys(lake: ObjectStore) -> list[str]:
    return sorted(i.key for i in lake.list(PREFIX) if i.key.endswith(".json"))


def count(lake: ObjectStore) -> int:
    return len(keys(lake))


def letters(lake: ObjectStore, names: Iterable[str] | None = None) -> Iterator[Letter]:
    """Every readable letter (of ``names``, default all), oldest key first; an unreadable one is logged, skipped
    and left where it is; one deleted meanwhile (a replay) is skipped."""
    for key in keys(lake) if names is None else names:
        try:
            yield read(lake, key)
        except FileNotFoundError:
            continue
        except ValueError as exc:  # JSONDecodeError included
            log.warning("unreadable dead letter %s left in place: %s", key, exc)


def default_triggers() -> list[Trigger]:
    """The Triggers of ``knative/`` (none when this install has no manifests)."""
    folder = knative_dir()
    return load_triggers(folder) if folder.is_dir() else []


def selected(letter: Letter, trigger: str | None, triggers: list[Trigger]) -> bool:
    """``letter`` is one of ``trigger``'s (a Trigger's name; a name no Trigger has matches the folder only)."""
    if trigger is None:
        return True
    if any(t.name == trigger for t in triggers):
        return trigger in letter.triggers(triggers)
    return letter.folder == trigger


def replay(lake: ObjectStore, broker_url: str, trigger: str | None = None, token: str | None = None,
           triggers: list[Trigger] | None = None) -> int:
    """Re-send dead-lettered events (of ``trigger``, default all) to the broker as delivered, their error extensions
    stripped, deleting each letter once the broker took it; returns how many. A letter the broker refuses (400)
    stays. ``token``: the broker's (default: as ``transport.post`` finds it); ``triggers``: default ``knative/``'s."""
    triggers = default_triggers() if triggers is None else triggers
    sent = 0
    for letter in letters(lake):
        if not selected(letter, trigger, triggers):
            continue
        if "data_base64" in letter.event:  # the broker carries JSON data only: never re-send something else
            log.warning("not replayed (its data is not JSON, the dead letter stays): %s", letter.key)
            continue
        try:
            transport.post(broker_url, letter.event, token=token)
        except transport.Refused as exc:
            if exc.code != 400:
                raise
            log.warning("not replayed (the broker refuses it, the dead letter stays): %s: %s", letter.key, exc)
            continue
        lake.delete(letter.key)
        sent += 1
    return sent

