"""Rubin (LSST) alert decoding: the forms Rubin sends -> records -> ``bronze.lsst_alert`` Arrow rows and cutout rows.

Forms (:func:`decode_lsst` takes each, and gzip of each: this module inflates, the caller need not):
* an Avro object container (``Obj\\x01``; one or many alerts; the writer schema in its header): the Rubin archive,
  brokers' files, the package's ``fakeAlert.avro``;
* a Confluent wire-format frame (byte 0 is 0, bytes 1-4 the big-endian schema id, then one alert in schemaless
  Avro): Rubin's Kafka stream; the id is resolved through the registry of shipped schemas (:mod:`.schemas`).

Bounds, as ZTF's (:class:`~ateda.avro.Limits`, the same settings): gzip inflates to at most ``max_bytes``
(``too_large``), so do a container's blocks; a container yields at most ``max_alerts`` records (``too_many_alerts``:
the records before go on); a writer schema nesting deeper than ``max_schema_depth`` is refused
(``schema_too_deep``). A damaged container tail keeps the records before it and sets :attr:`LsstDecoded.error`.

Arrow: one canonical schema for every version (:func:`lsst_alert_schema`), the union of the fields of every shipped
version, nested records as structs, arrays as lists, ints widened to int64 (ids exact), floats to float64; a field a
version does not have is null. Cutouts are split off into rows shaped like ZTF's cutout rows plus ``survey``. A
record that fails its checks or its conversion is that record's :class:`BadInput`, never the batch's.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import json
import math
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import fastavro
import pyarrow as pa

from ateda.avro import BLOCK_CODECS, Limits, bad_input, header_schema, read_blocks, schema_depth
from ateda.errors import BadInput
from ateda.lsst import schemas

SURVEY = "lsst"
AVRO_MAGIC = b"Obj\x01"
GZIP_MAGIC = b"\x1f\x8b"
CUTOUT_KINDS = (("cutoutScience", "science"), ("cutoutTemplate", "template"), ("cutoutDifference", "difference"))
MJD_UNIX_EPOCH = 40587.0  # MJD of 1970-01-01T00:00
_MJD_RANGE = (MJD_UNIX_EPOCH, 88069.0)  # 1970 .. 2100: outside, a time is not an observation's (bad_value)
_SNIFF_BYTES = 1 << 16  # survey_of inflates at most this much of a gzip head


# ---------------------------------------------------------------- what the bytes are

def survey_of(head: bytes) -> str | None:
    """Which survey's alerts the bytes ``head`` (an object's first bytes, or all of it) hold: "lsst", "ztf" or None.

    * an Avro container whose writer schema's top record is in the ``lsst.`` namespace: "lsst"; named ``ztf.alert``:
      "ztf". A head too short for the whole header (a Rubin schema is ~100 KB of JSON) is judged by the record
      names it shows: a nested ``lsst.v<M>_<m>.`` type, or ZTF's ``"namespace": "ztf"``;
    * a Confluent frame: byte 0 is 0 and bytes 1-4 a schema id known to the registry or plausible for Rubin
      (major 1..99, minor 0..99; an unknown one is then ``unknown_schema_id`` in :func:`decode_lsst`): "lsst";
    * gzip of either: the first 64 KiB it inflates to are judged the same way (a bounded look, never a bomb).
    """
    if head[:2] == GZIP_MAGIC:
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _SNIFF_BYTES)
        except zlib.error:
            return None
    if head[:4] == AVRO_MAGIC:
        return _container_survey(head)
    if len(head) >= 5 and head[0] == 0:
        sid = int.from_bytes(head[1:5], "big")
        if sid in dict(schemas.known_schemas()) or schemas.is_plausible_id(sid):
            return SURVEY
    return None


def _container_survey(head: bytes) -> str | None:
    try:
        meta = fastavro.schemaless_reader(io.BytesIO(head), header_schema(), None)["meta"]
        name = _schema_name(meta["avro.schema"])
    except Exception:  # noqa: BLE001 (a head cut inside the header: judged by the names it shows)
        text = head[:_SNIFF_BYTES].decode("latin-1")
        if '"lsst.v' in text or '"namespace": "lsst.' in text or '"namespace":"lsst.' in text:
            return SURVEY
        if '"namespace": "ztf"' in text or '"namespace":"ztf"' in text or '"ztf.alert"' in text:
            return "ztf"
        return None
    if name.startswith("lsst."):
        return SURVEY
    return "ztf" if name == "ztf.alert" else None


@functools.lru_cache(maxsize=64)
def _schema_name(schema_json: bytes) -> str:
    """The full name of a writer schema's top record, once per distinct schema text: a burst of single-alert files
    carries the same schema in every header, and parsing its JSON per file was ~9 % of split's CPU."""
    return _full_name(json.loads(schema_json))


def _full_name(schema: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    name, ns = str(schema.get("name") or ""), schema.get("namespace")
    return f"{ns}.{name}" if ns and "." not in name else name


# ---------------------------------------------------------------- decoding

@dataclass
class LsstDecoded:
    """The alerts of one input and what went wrong with the rest of it (if anything).

    ``schema_version`` / ``schema_id`` name the writer schema ("11.1", 1101); both None for a container whose
    Rubin-shaped writer schema does not carry an ``lsst.v<M>_<m>.alert`` name (a broker's re-serialisation).
    ``form`` is "container" or "confluent", ``gzipped`` says whether it came inflated from gzip.
    """

    records: list[dict]
    schema_version: str | None
    schema_id: int | None
    error: BadInput | None = None
    form: str = "container"
    gzipped: bool = False


def decode_lsst(data: bytes, limits: Limits | None = None) -> LsstDecoded:
    """Decode one Rubin input: an Avro container, a Confluent frame, or gzip of either (module doc). Raises
    :class:`BadInput` when nothing can be kept: ``empty_file``, ``too_large``, ``truncated_gzip``, ``corrupt_gzip``,
    ``not_lsst_alert`` (not one of the forms, or Avro that is not a Rubin alert), ``unknown_schema_id``,
    ``truncated_avro``, ``corrupt_avro``, ``schema_too_deep``, ``no_alerts``. A frame's id unknown because the
    ``lsst-alert-packet`` distribution is missing is a ``ConfigError`` (the deployment's fault, not the input's)."""
    limits = limits or Limits()
    if not data:
        raise BadInput("empty_file", "zero bytes")
    gzipped = data[:2] == GZIP_MAGIC
    if gzipped:
        data = gunzip(data, limits.max_bytes)
        if not data:
            raise BadInput("empty_file", "gzip of zero bytes")
    if len(data) > limits.max_bytes:
        raise BadInput("too_large", f"{len(data)} bytes, over the {limits.max_bytes} limit")
    if data[:4] == AVRO_MAGIC:
        out = _decode_container(data, limits)
    elif data[0] == 0:
        out = _decode_frame(data)
    else:
        raise BadInput("not_lsst_alert", f"neither an Avro container, a Confluent frame nor gzip (starts with "
                                         f"{data[:8]!r})")
    out.gzipped = gzipped
    return out


def gunzip(data: bytes, limit: int) -> bytes:
    """Inflate gzip (one or several members), at most ``limit`` bytes: past it ``too_large`` (at most ``limit`` +
    1 MiB is ever inflated); a cut stream ``truncated_gzip``, a corrupt one ``corrupt_gzip``."""
    out, pending = io.BytesIO(), data
    try:
        while pending:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while True:
                out.write(d.decompress(pending, 1 << 20))
                if out.tell() > limit:
                    raise BadInput("too_large", f"gzip inflates past the {limit} bytes limit")
                pending = d.unconsumed_tail
                if d.eof or not pending:
                    break
            if not d.eof:
                raise BadInput("truncated_gzip", f"the gzip stream ends after {out.tell()} inflated bytes, before "
                                                 f"its end")
            pending = d.unused_data
            if pending and pending[:2] != GZIP_MAGIC:
                if pending.strip(b"\0"):
                    raise BadInput("corrupt_gzip", f"{len(pending)} bytes after the gzip stream")
                pending = b""  # zero padding after the last member (tape-style writers): ignored, as gzip does
    except zlib.error as exc:
        raise BadInput("corrupt_gzip", str(exc)) from exc
    return out.getvalue()


def _decode_container(data: bytes, limits: Limits) -> LsstDecoded:
    buf = io.BytesIO(data)
    try:
        header = fastavro.schemaless_reader(buf, header_schema(), None)
        schema_json = header["meta"]["avro.schema"].decode()
    except Exception as exc:  # noqa: BLE001 (fastavro raises many types for a cut or bad header)
        raise BadInput("truncated_avro", f"unreadable container header: {type(exc).__name__}: {exc}") from exc
    schema, parsed = _writer_schema(schema_json, limits.max_schema_depth)
    codec = header["meta"].get("avro.codec", b"null").decode(errors="replace")
    if codec not in BLOCK_CODECS:
        raise BadInput("corrupt_avro", f"codec {codec!r} is not one Avro defines for containers")
    records: list[dict] = []
    error = None
    try:
        read_blocks(data, buf.tell(), header["sync"], BLOCK_CODECS[codec], parsed, records, limits)
    except BadInput as exc:
        error = BadInput(exc.reason, f"{len(records)} good record(s) before: {exc.detail}")
    except Exception as exc:  # noqa: BLE001 (a damaged tail: the records before it are kept)
        reason = "truncated_avro" if isinstance(exc, (EOFError, IndexError)) else "corrupt_avro"
        error = BadInput(reason, f"{len(records)} good record(s) before: {type(exc).__name__}: {exc}")
    if not records:
        raise error or BadInput("no_alerts", "a valid container with no records")
    name = _full_name(schema)
    return LsstDecoded(records, schemas.version_of_name(name), schemas.schema_id_of(name), error, "container")


def _decode_frame(data: bytes) -> LsstDecoded:
    if len(data) < 5:
        raise BadInput("truncated_avro", f"a Confluent frame of {len(data)} bytes: shorter than its 5-byte header")
    sid = int.from_bytes(data[1:5], "big")
    known = schemas.registry().get(sid)  # ConfigError without the distribution
    if known is None:
        ids = ", ".join(str(i) for i in schemas.registry())
        raise BadInput("unknown_schema_id", f"schema id {sid} (version {schemas.version_of_id(sid)}?) is not one "
                                            f"{schemas.DISTRIBUTION} ships ({ids})")
    buf = io.BytesIO(data)
    buf.seek(5)
    try:
        rec = fastavro.schemaless_reader(buf, known.parsed, None)
    except (EOFError, IndexError) as exc:
        raise BadInput("truncated_avro", f"the frame ends inside the alert: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 (a corrupt body is this input's)
        raise bad_input(exc, "corrupt_avro") from exc
    if buf.tell() != len(data):
        raise BadInput("corrupt_avro", f"{len(data) - buf.tell()} bytes past the alert: not a {known.name} body "
                                       f"(wrong schema id?)")
    return LsstDecoded([rec], known.version, sid, None, "confluent")


@functools.lru_cache(maxsize=64)
def _parsed_writer(digest: str, schema_json: str, max_depth: int) -> tuple[dict, Any]:
    del digest  # the cache key's short form; schema_json is what is parsed
    try:
        schema = json.loads(schema_json)
    except RecursionError:
        raise BadInput("schema_too_deep", "the writer schema nests deeper than its JSON can be parsed") from None
    except ValueError as exc:
        raise BadInput("corrupt_avro", f"the writer schema is not JSON: {exc}") from exc
    depth = schema_depth(schema)
    if depth > max_depth:
        raise BadInput("schema_too_deep", f"the writer schema nests {depth} record/array/map types "
                                          f"(limit {max_depth})")
    problem = _shape_problem(schema)
    if problem:
        raise BadInput("not_lsst_alert", f"{_full_name(schema) or 'the writer schema'}: {problem}")
    try:
        return schema, fastavro.parse_schema(schema)
    except Exception as exc:  # noqa: BLE001 (fastavro's schema errors have several types)
        raise BadInput("corrupt_avro", f"the writer schema is not valid Avro: {type(exc).__name__}: {exc}") from exc


def _writer_schema(schema_json: str, max_depth: int) -> tuple[dict, Any]:
    return _parsed_writer(hashlib.sha1(schema_json.encode()).hexdigest(), schema_json, max_depth)


def _shape_problem(schema: Any) -> str | None:
    """Why a writer schema is not a Rubin alert, or None: a record with a ``diaSource`` record holding
    ``diaSourceId``, and a top-level ``diaSourceId`` (8.0 on) or ``alertId`` (3.0 .. 7.4)."""
    if not isinstance(schema, dict) or schema.get("type") != "record" or not isinstance(schema.get("fields"), list):
        return "the top-level type is not a record"
    fields = {f.get("name"): f.get("type") for f in schema["fields"] if isinstance(f, dict)}
    if "diaSourceId" not in fields and "alertId" not in fields:
        return "no diaSourceId (or alertId) field"
    source = fields.get("diaSource")
    if not isinstance(source, dict) or source.get("type") != "record" \
            or not any(isinstance(f, dict) and f.get("name") == "diaSourceId" for f in source.get("fields", ())):
        return "no diaSource record with a diaSourceId"
    return None


def day_obs(mjd_tai: float) -> dt.date:
    """Rubin's observing day (``dayObs``) of a time: the calendar date in the fixed UTC-12h zone, so it changes at
    12:00 UTC (08:00 or 09:00 at Cerro Pachon, in daylight) and a whole night has one date. The time is TAI; the
    37 s TAI-UTC is not applied: it moves the boundary by 37 s at mid-morning in Chile, when no exposure is taken,
    and applying it exactly needs a leap-second table. ``ValueError`` for NaN or infinity."""
    return dt.date(1858, 11, 17) + dt.timedelta(days=math.floor(mjd_tai - 0.5))


# ---------------------------------------------------------------- Arrow

_PRIMITIVE = {"int": pa.int64(), "long": pa.int64(), "float": pa.float64(), "double": pa.float64(),
              "string": pa.string(), "boolean": pa.bool_(), "bytes": pa.binary(), "null": pa.null()}
_TIMESTAMP = {"timestamp-micros": pa.timestamp("us", tz="UTC"), "timestamp-millis": pa.timestamp("us", tz="UTC")}

# Columns of bronze.lsst_alert before the alert's own fields: the alert's identity, promoted, and its schema.
_KEY_COLUMNS = {
    "diaSourceId": pa.int64(),  # the triggering DiaSource (8.0 on: the alert's; 3.0 .. 7.4: diaSource.diaSourceId)
    "diaObjectId": pa.int64(),  # promoted from diaSource (else diaObject); null for a solar-system-only alert
    # dayObs of diaSource.midpointMjdTai (3.0/4.0: midPointTai): the partition. Named `night` as in every bronze
    # table (ZTF: the Palomar night), so the lake partitions and the ledger treat both surveys alike
    "night": pa.date32(),
    "midpointMjdTai": pa.float64(),  # promoted, whatever the version calls it
    "schema_version": pa.string(), "schema_id": pa.int32(),
}
# ... and after them: where the alert came from (a part's identity is (bucket, key, etag, part), as for ZTF).
_PROVENANCE_COLUMNS = {
    "extra_json": pa.string(),  # top-level fields of a non-official writer schema (broker extras), as JSON
    "source_bucket": pa.string(), "source_key": pa.string(), "source_etag": pa.string(),
    "source_member": pa.string(), "part": pa.int32(), "ingested_at": pa.timestamp("us", tz="UTC"),
}
CUTOUT_COLUMNS = {  # the cutout table's columns, as ZTF's rows have them (ztf.alerts._CUTOUT_COLUMNS)
    "candid": pa.int64(), "objectId": pa.string(), "night": pa.date32(), "kind": pa.string(),
    "file_name": pa.string(), "stamp_data": pa.binary(),
    "source_bucket": pa.string(), "source_key": pa.string(), "source_etag": pa.string(), "part": pa.int32(),
    "survey": pa.string(),
}
_CUTOUT_FIELDS = frozenset(name for name, _ in CUTOUT_KINDS)


def arrow_type(avro: Any) -> pa.DataType:
    """The Arrow type of an expanded Avro type (named types inlined): ints -> int64, floats -> float64, a
    timestamp-micros long -> timestamp[us, UTC], records -> structs, arrays -> lists, maps -> maps, ``[null, X]``
    -> X (nullable); a union of several types, an enum or a fixed -> string (JSON text)."""
    alts = [x for x in avro if x != "null"] if isinstance(avro, list) else [avro]
    if len(alts) != 1:
        return pa.string() if alts else pa.null()
    x = alts[0]
    if isinstance(x, str):
        return _PRIMITIVE.get(x, pa.string())
    kind = x.get("type")
    if isinstance(kind, (dict, list)):
        return arrow_type(kind)
    if x.get("logicalType") in _TIMESTAMP and kind == "long":
        return _TIMESTAMP[x["logicalType"]]
    if kind in _PRIMITIVE:
        return _PRIMITIVE[kind]
    if kind == "record":
        return pa.struct([pa.field(f["name"], arrow_type(f["type"])) for f in x["fields"]])
    if kind == "array":
        return pa.list_(arrow_type(x["items"]))
    if kind == "map":
        return pa.map_(pa.string(), arrow_type(x["values"]))
    return pa.string()


def _merge(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The type holding both: structs take the union of their fields (a's order, then b's new ones), lists merge
    their items, a null type gives way; any other difference widens to string (none among shipped versions)."""
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fields = {a.field(i).name: a.field(i).type for i in range(a.num_fields)}
        for i in range(b.num_fields):
            f = b.field(i)
            fields[f.name] = _merge(fields[f.name], f.type) if f.name in fields else f.type
        return pa.struct([pa.field(n, t) for n, t in fields.items()])
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(_merge(a.value_type, b.value_type))
    return pa.string()


@functools.cache
def _alert_fields() -> dict[str, pa.DataType]:
    """Top-level alert field -> Arrow type, merged over every shipped version, newest first (its field order)."""
    merged: dict[str, pa.DataType] = {}
    for sid in reversed(list(schemas.registry())):
        for f in schemas.schema(sid).expanded["fields"]:  # type: ignore[union-attr]
            if f["name"] in _CUTOUT_FIELDS or f["name"] in _KEY_COLUMNS:
                continue
            t = arrow_type(f["type"])
            merged[f["name"]] = _merge(merged[f["name"]], t) if f["name"] in merged else t
    return merged


@functools.cache
def lsst_alert_schema() -> pa.Schema:
    """The canonical Arrow schema of ``bronze.lsst_alert``: key columns, every shipped version's alert fields
    (cutouts excepted), provenance. Built on first use from the installed distribution (``ConfigError`` without)."""
    cols = {**_KEY_COLUMNS, **_alert_fields(), **_PROVENANCE_COLUMNS}
    return pa.schema([pa.field(n, t) for n, t in cols.items()])


class LsstTables(NamedTuple):
    """What :func:`lsst_tables` makes of records: the alert rows, the cutout rows, and the records left out
    (index in the input list, why)."""

    alerts: pa.Table
    cutouts: pa.Table
    rejected: list[tuple[int, BadInput]]


def lsst_tables(records: list[dict], meta: dict) -> LsstTables:
    """``records`` (from :func:`decode_lsst`) as rows of ``bronze.lsst_alert`` (schema :func:`lsst_alert_schema`)
    and cutout rows (:data:`CUTOUT_COLUMNS`). ``meta`` gives the provenance: ``source_bucket``, ``source_key``,
    ``source_etag``, ``source_member``, ``part``, ``schema_version``, ``schema_id`` and optionally ``ingested_at``
    (default: now). A record that fails its checks (no diaSource, a time or position out of range: ``bad_value``)
    or that Arrow cannot hold in the canonical types is left out and listed in ``rejected``; the rest go on.
    :func:`lsst_rows` then :func:`rows_to_tables`: the split checks each input's records as they come and converts
    a whole chunk at once (one Arrow conversion of ~1,800 nested columns per chunk, not per alert)."""
    rows, rejected = lsst_rows(records, meta)
    alerts, cutouts, dropped = rows_to_tables(rows)
    kept = [r[0] for r in rows]
    rejected += [(kept[j], err) for j, err in dropped]
    rejected.sort(key=lambda x: x[0])
    return LsstTables(alerts, cutouts, rejected)


def lsst_rows(records: list[dict], meta: dict) -> tuple[list[tuple[int, dict, list[dict]]], list[tuple[int, BadInput]]]:
    """The checked rows of ``records`` (see :func:`lsst_tables`) as (index in ``records``, alert row, its cutout
    rows), and the records that failed their checks as (index, why)."""
    ingested_at = meta.get("ingested_at") or dt.datetime.now(dt.timezone.utc)
    rows, rejected = [], []
    for i, rec in enumerate(records):
        try:
            row = _row(rec, meta, ingested_at)
        except Exception as exc:  # noqa: BLE001 (any failure of one record is that record's)
            rejected.append((i, bad_input(exc, "not_lsst_alert")))
            continue
        rows.append((i, row, _cutout_rows(rec, row)))
    return rows, rejected


def rows_to_tables(rows: list[tuple[int, dict, list[dict]]]) -> tuple[pa.Table, pa.Table, list[tuple[int, BadInput]]]:
    """Rows from :func:`lsst_rows` (of one input or many) as the alert table and the cutout table, in one
    conversion; a row Arrow cannot hold in the canonical types is left out and returned as (its position in
    ``rows``, why), with its cutouts."""
    schema = lsst_alert_schema()
    keep = list(range(len(rows)))
    dropped: list[tuple[int, BadInput]] = []
    try:
        alerts = pa.Table.from_pylist([r[1] for r in rows], schema=schema)
    except Exception:  # noqa: BLE001 (one record's value: find it, keep the others)
        keep = []
        for j, (_, row, _) in enumerate(rows):
            try:
                pa.Table.from_pylist([row], schema=schema)
                keep.append(j)
            except Exception as exc:  # noqa: BLE001
                dropped.append((j, bad_input(exc, "not_lsst_alert")))
        alerts = pa.Table.from_pylist([rows[j][1] for j in keep], schema=schema)
    cut_rows = [c for j in keep for c in rows[j][2]]
    cutouts = pa.Table.from_pylist(cut_rows, schema=pa.schema(list(CUTOUT_COLUMNS.items())))
    return alerts, cutouts, dropped


def _row(rec: dict, meta: dict, ingested_at: dt.datetime) -> dict:
    source = rec.get("diaSource")
    if not isinstance(source, dict):
        raise BadInput("not_lsst_alert", "record without a diaSource record")
    source_id = rec.get("diaSourceId", source.get("diaSourceId"))
    if not isinstance(source_id, int) or isinstance(source_id, bool):
        raise BadInput("not_lsst_alert", f"diaSourceId {source_id!r} is not an integer")
    mjd = source.get("midpointMjdTai", source.get("midPointTai"))
    if not isinstance(mjd, (int, float)) or not _MJD_RANGE[0] <= mjd <= _MJD_RANGE[1]:
        raise BadInput("bad_value", f"alert {source_id}: midpointMjdTai {mjd!r} is not a time in 1970..2100")
    ra, dec = source.get("ra"), source.get("dec", source.get("decl"))  # 3.0 and 4.0 call it decl
    if not (isinstance(ra, (int, float)) and 0 <= ra <= 360 and isinstance(dec, (int, float)) and -90 <= dec <= 90):
        raise BadInput("bad_value", f"alert {source_id}: ra {ra!r} / dec {dec!r} out of range")
    obj = rec.get("diaObject")
    object_id = source.get("diaObjectId")
    if object_id is None and isinstance(obj, dict):
        object_id = obj.get("diaObjectId")
    for avro_name, _ in CUTOUT_KINDS:
        if not isinstance(rec.get(avro_name), (bytes, type(None))):
            raise BadInput("not_lsst_alert", f"alert {source_id}: {avro_name} is not bytes")
    known = _alert_fields()
    extras = {k: v for k, v in rec.items() if k not in known and k not in _CUTOUT_FIELDS and k != "diaSourceId"}
    row = {k: v for k, v in rec.items() if k in known}
    row.update({
        "diaSourceId": source_id, "diaObjectId": object_id, "night": day_obs(float(mjd)),
        "midpointMjdTai": float(mjd), "schema_version": meta.get("schema_version"),
        "schema_id": meta.get("schema_id"),
        "extra_json": json.dumps(extras, default=_json_default) if extras else None,
        "source_bucket": meta.get("source_bucket"), "source_key": meta.get("source_key"),
        "source_etag": meta.get("source_etag"), "source_member": meta.get("source_member"),
        "part": meta.get("part"), "ingested_at": ingested_at,
    })
    return row


def _cutout_rows(rec: dict, row: dict) -> list[dict]:
    out = []
    for avro_name, kind in CUTOUT_KINDS:
        data = rec.get(avro_name)
        if data is None:
            continue
        out.append({
            "survey": SURVEY, "candid": row["diaSourceId"],
            "objectId": None if row["diaObjectId"] is None else str(row["diaObjectId"]),
            "night": row["night"], "kind": kind, "file_name": None, "stamp_data": data,
            "source_bucket": row["source_bucket"], "source_key": row["source_key"],
            "source_etag": row["source_etag"], "part": row["part"],
        })
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


__all__ = ["CUTOUT_COLUMNS", "LsstDecoded", "LsstTables", "arrow_type", "day_obs", "decode_lsst", "gunzip",
           "lsst_alert_schema", "lsst_tables", "survey_of"]
