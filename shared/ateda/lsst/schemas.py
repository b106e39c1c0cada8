"""The registry of Rubin alert schemas: every version the installed ``lsst-alert-packet`` ships, by schema id.

Rubin names its alert record ``lsst.v<major>_<minor>.alert`` and numbers it, in the Confluent frames of its Kafka
stream, with one integer: the major version times 100 plus the minor (``lsst.v11_1.alert`` is 1101,
``lsst.v7_1.alert`` 701). The distribution holds, per version, ``lsst/alert/packet/schema/<M>/<m>/`` with the
alert's ``.avsc`` and one ``.avsc`` per record type it references by full name (``lsst.v11_1.diaSource``...), plus
``sample_data/fakeAlert.avro`` (an Avro container of one alert) and ``alert.json``.

The ``lsst`` Python package is never imported (it pulls astropy, pydantic, felis...): the files are found through
``importlib.metadata`` and parsed with fastavro. Nothing is read at import time; each version is read once
(``functools.cache``). Without the distribution the registry is empty and a Confluent frame cannot be decoded
(:func:`registry` raises ``ConfigError``); Avro containers carry their own writer schema and need no registry.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from ateda.errors import ConfigError

DISTRIBUTION = "lsst-alert-packet"
_ROOT = "lsst/alert/packet/schema/"
_ALERT_AVSC = re.compile(r"^lsst/alert/packet/schema/(\d+)/(\d+)/lsst\.v(\d+)_(\d+)\.alert\.avsc$")
_RECORD_NAME = re.compile(r"^lsst\.v(\d+)_(\d+)\.alert$")
MAX_MINOR = 99  # the id gives the minor two digits


@dataclass(frozen=True)
class LsstSchema:
    """One official alert schema: its version ("11.1"), id (1101), full record name, the standalone schema JSON
    (each named type defined at its first use: what a container header holds), the same parsed by fastavro (for
    schemaless reading and writing) and expanded (every use of a named type written out: for Arrow types)."""

    version: str
    schema_id: int
    name: str
    json: dict
    parsed: Any
    expanded: dict


def schema_id_of(name: str) -> int | None:
    """The schema id of a Rubin alert record name (``lsst.v11_1.alert`` -> 1101), None if the name is not that."""
    m = _RECORD_NAME.match(name or "")
    if not m or int(m.group(2)) > MAX_MINOR:
        return None
    return int(m.group(1)) * 100 + int(m.group(2))


def version_of_id(schema_id: int) -> str:
    """The version string a schema id stands for (1101 -> "11.1", 701 -> "7.1")."""
    return f"{schema_id // 100}.{schema_id % 100}"


def version_of_name(name: str) -> str | None:
    """The version of a Rubin alert record name (``lsst.v7_1.alert`` -> "7.1"), None if the name is not that."""
    sid = schema_id_of(name)
    return None if sid is None else version_of_id(sid)


def is_plausible_id(schema_id: int) -> bool:
    """Whether a Confluent schema id could be a Rubin one (major 1..99, minor 0..99), known here or not."""
    return 100 <= schema_id <= 99 * 100 + MAX_MINOR


@functools.cache
def _alert_files() -> dict[int, tuple[str, Path]]:
    """schema id -> (version, folder of that version's files), from the distribution's file list."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return {}
    out = {}
    for f in dist.files or ():
        m = _ALERT_AVSC.match(str(f).replace("\\", "/"))
        if m and m.group(1) == m.group(3) and m.group(2) == m.group(4) and int(m.group(2)) <= MAX_MINOR:
            major, minor = int(m.group(1)), int(m.group(2))
            out[major * 100 + minor] = (f"{major}.{minor}", Path(str(dist.locate_file(f))).parent)
    return dict(sorted(out.items()))


def known_schemas() -> list[tuple[int, str]]:
    """(schema id, version) of every alert schema the installed distribution ships, oldest first; [] without it."""
    return [(sid, version) for sid, (version, _) in _alert_files().items()]


def registry() -> dict[int, LsstSchema]:
    """schema id -> :class:`LsstSchema` for every shipped version (each parsed once). ``ConfigError`` when the
    distribution is not installed (``pip install 'ateda[lsst]'``)."""
    if not _alert_files():
        raise ConfigError(f"the {DISTRIBUTION} distribution is not installed: no Rubin schema is known "
                          f"(install ateda[lsst])")
    return {sid: schema(sid) for sid in _alert_files()}  # type: ignore[misc]


@functools.cache
def schema(schema_id: int) -> LsstSchema | None:
    """The shipped schema of this id, None if the distribution does not ship it (or is not installed)."""
    entry = _alert_files().get(schema_id)
    if entry is None:
        return None
    version, folder = entry
    major, minor = version.split(".")
    prefix = f"lsst.v{major}_{minor}."
    raw = {p.name[:-len(".avsc")]: json.loads(p.read_text()) for p in folder.glob(prefix + "*.avsc")}
    name = prefix + "alert"
    standalone = _inline(raw[name], raw, {name})
    try:
        parsed = fastavro.parse_schema(standalone)
        expanded = fastavro.parse_schema(standalone, expand=True, _write_hint=False)
    except Exception as exc:  # noqa: BLE001 (fastavro's schema errors have several types)
        raise ConfigError(f"{DISTRIBUTION} {version}: its schema files do not make one Avro schema: {exc}") from exc
    return LsstSchema(version, schema_id, name, standalone, parsed, expanded)


def _inline(node: Any, raw: dict[str, Any], defined: set[str]) -> Any:
    """``node`` with each named type another file defines written out where it is first used and referred to by
    name after (Avro defines a name once): the standalone schema a container's header carries."""
    if isinstance(node, str):
        if node in raw and node not in defined:
            defined.add(node)
            return _inline(raw[node], raw, defined)
        return node
    if isinstance(node, list):
        return [_inline(x, raw, defined) for x in node]
    if isinstance(node, dict):
        out = dict(node)
        for key in ("type", "items", "values"):
            if key in out:
                out[key] = _inline(out[key], raw, defined)
        if isinstance(out.get("fields"), list):
            out["fields"] = [_inline(f, raw, defined) for f in out["fields"]]
        return out
    return node


def sample_files() -> dict[str, tuple[Path, Path | None]]:
    """version -> (its ``fakeAlert.avro``, its ``alert.json`` or None), for every shipped version that has one:
    Rubin's own sample alerts, read by the tests (never copied into this repository)."""
    out = {}
    for _, (version, folder) in _alert_files().items():
        avro = folder / "sample_data" / "fakeAlert.avro"
        if avro.is_file():
            js = avro.with_name("alert.json")
            out[version] = (avro, js if js.is_file() else None)
    return out
