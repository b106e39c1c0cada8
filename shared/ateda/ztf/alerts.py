"""ZTF alert decoding: any writer schema (0.x .. 4.02, broker re-serialisations) -> normalised Arrow rows.

Normalisation, so that one bronze table holds every version:
* ints widen to long, floats to double; a field the official 4.02 layout types differently (e.g. an old ``int``
  ``isdiffpos``) is coerced to the 4.02 type, nothing is dropped;
* ``candidate``, ``prv_candidates`` and ``fp_hists`` stay nested (struct / list<struct>);
* top-level fields that are not ZTF's (broker extras) are kept as JSON in ``extra_json``;
* the three cutouts are split off into their own rows, ``stamp_data`` unchanged (gzipped FITS).
Arrow types are derived once per writer schema (cached by its fingerprint), so the per-alert cost is fastavro's.

Hostile input is bounded and checked (:class:`Limits`): a writer schema deeper than ``max_schema_depth`` is refused
before fastavro sees it (``schema_too_deep``); decompressed block bytes stop at ``max_bytes`` (``too_large``); at most
``max_alerts`` records are read (``too_many_alerts``); the snappy CRC and deflate stream integrity are verified
(``checksum_mismatch``); jd/ra/dec outside their physical range make the alert ``bad_value`` (see
``ztf_layout.range_problem``). Any exception while decoding one alert is bad input for that alert only.

A half-broken alert keeps what is good in it: when the writer schema's ``prv_candidates`` or ``fp_hists`` is not an
array of records (the Fink re-serialisations: a record of strings), the alert's ``candidate`` row and cutouts go on
without that history, and the unreadable part is reported (:attr:`AlertBatch.history_problems`, reason
``unreadable_history``) for the caller to quarantine. Only a schema with no usable ``candidate`` rejects the file.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import io
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable

import fastavro
import numpy as np
import pyarrow as pa

from ateda.avro import BLOCK_CODECS, Limits, bad_input, header_schema, read_blocks, schema_depth
from ateda.errors import BadInput
from ateda.ztf.layout import canonical_field_types, range_problem

CUTOUT_KINDS = (("cutoutScience", "science"), ("cutoutTemplate", "template"), ("cutoutDifference", "difference"))
ZTF_TOP = {"schemavsn", "publisher", "objectId", "candid", "candidate", "prv_candidates", "fp_hists",
           "cutoutScience", "cutoutTemplate", "cutoutDifference"}
NESTED = {"candidate": "candidate", "prv_candidates": "prv_candidate", "fp_hists": "fp_hist"}
_PRIMITIVE = {"int": pa.int64(), "long": pa.int64(), "float": pa.float64(), "double": pa.float64(),
              "string": pa.string(), "boolean": pa.bool_(), "bytes": pa.binary()}
JD_UNIX_EPOCH = 2440587.5



def night_of(jd: float) -> dt.date:
    """The UT date of the Palomar night holding ``jd``: it changes at local noon (20:00 UTC)."""
    days = jd - JD_UNIX_EPOCH + 4.0 / 24.0
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(days // 1))


@dataclass
class Source:
    """Where alerts came from: the idempotency identity of a part is (bucket, key, etag, part)."""

    bucket: str
    key: str
    etag: str
    arrived_at: str | None = None  # ISO-8601 UTC time the object landed in the bucket


@dataclass
class DecodedFile:
    """The alerts of one Avro container, and what went wrong with the rest of it (if anything)."""

    records: list[dict]
    schema_id: str
    schema_json: str
    error: BadInput | None = None


# ---------------------------------------------------------------- Avro containers

def decode_container(data: bytes, limits: Limits | None = None) -> DecodedFile:
    """Decode every record of one Avro container. A damaged tail keeps the records before it and sets ``error``.

    The writer schema (~20 KB of JSON in every ZTF file) is checked (depth, ZTF shape) and parsed once per distinct
    schema and cached; blocks are decoded with fastavro's schemaless reader, their decompression bounded by
    ``limits.max_bytes`` in all. Codecs other than null/deflate/snappy/bzip2/xz go through ``fastavro.reader``
    (record count bounded, block size not: no ZTF producer uses them).
    """
    limits = limits or Limits()
    header, end, schema_id, schema_json, parsed = _header(data, limits)
    codec = header["meta"].get("avro.codec", b"null").decode(errors="replace")
    records: list[dict] = []
    error = None
    try:
        if codec in BLOCK_CODECS:
            read_blocks(data, end, header["sync"], BLOCK_CODECS[codec], parsed, records, limits)
        else:
            for rec in fastavro.reader(io.BytesIO(data)):
                if len(records) == limits.max_alerts:
                    raise BadInput("too_many_alerts", f"more than {limits.max_alerts} records: the rest not read")
                records.append(rec)
    except BadInput as exc:
        error = BadInput(exc.reason, f"{len(records)} good record(s) before: {exc.detail}")
    except Exception as exc:
        reason = "truncated_avro" if isinstance(exc, (EOFError, IndexError)) else "corrupt_avro"
        error = BadInput(reason, f"{len(records)} good record(s) before: {type(exc).__name__}: {exc}")
    if not records and error is None:
        raise BadInput("no_alerts", "a valid container with no records")
    if not records:
        raise error  # type: ignore[misc]
    return DecodedFile(records, schema_id, schema_json, error)


def check_header(data: bytes, limits: Limits | None = None) -> None:
    """Raise the BadInput :func:`decode_container` would raise for ``data``'s header (magic, writer schema: valid,
    not too deep, a ZTF alert), without decoding a record: cheap enough to run on every tar member."""
    _header(data, limits or Limits())


def _header(data: bytes, limits: Limits) -> tuple[dict, int, str, str, Any]:
    """(header, offset of the first block, schema id, schema JSON, parsed schema) of a container, or BadInput."""
    if not data:
        raise BadInput("empty_file", "zero bytes")
    if data[:4] != b"Obj\x01":
        raise BadInput("not_avro", f"no Avro magic (starts with {data[:8]!r})")
    buf = io.BytesIO(data)
    try:
        header = fastavro.schemaless_reader(buf, header_schema(), None)
        schema_json = header["meta"]["avro.schema"].decode()
    except Exception as exc:  # fastavro raises many types for a bad header
        raise BadInput("truncated_avro", f"unreadable header: {type(exc).__name__}: {exc}") from exc
    schema_id = _schema_id(schema_json)
    problem = _schema_problem(schema_id, schema_json, limits.max_schema_depth)
    if problem:
        raise BadInput(*problem)
    try:
        _, parsed = _parsed_schema(schema_id, schema_json)
    except Exception as exc:
        raise BadInput("not_avro", f"the writer schema is not valid Avro: {type(exc).__name__}: {exc}") from exc
    return header, buf.tell(), schema_id, schema_json, parsed


@functools.lru_cache(maxsize=256)
def _parsed_schema(schema_id: str, schema_json: str) -> tuple[dict, Any]:
    schema = json.loads(schema_json)
    return schema, fastavro.parse_schema(schema)


def _schema_id(schema_json: str | bytes) -> str:
    raw = schema_json.encode() if isinstance(schema_json, str) else schema_json
    return hashlib.sha1(raw).hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _schema_problem(schema_id: str, schema_json: str, max_depth: int) -> tuple[str, str] | None:
    """Why a writer schema cannot be decoded here, as (reason, detail), or None; checked once per schema, before
    fastavro parses it (its parser recurses: a deep schema would raise RecursionError, or become a deep column)."""
    try:
        schema = json.loads(schema_json)
    except RecursionError:
        return "schema_too_deep", "the writer schema nests deeper than its JSON can be parsed"
    except ValueError as exc:
        return "not_avro", f"the writer schema is not JSON: {exc}"
    depth = schema_depth(schema)
    if depth > max_depth:
        return "schema_too_deep", f"the writer schema nests {depth} record/array/map types (limit {max_depth})"
    try:
        problem = _shape_problem(schema)
    except Exception as exc:  # a record without a field list, a field without a name...: not an Avro schema
        return "not_avro", f"the writer schema is malformed: {type(exc).__name__}: {exc}"
    return ("not_ztf_alert", problem) if problem else None


def _shape_problem(schema: dict) -> str | None:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return "top-level schema is not a record"
    names = _named_types(schema)
    fields = {f["name"]: f["type"] for f in schema["fields"]}
    if "candidate" not in fields:
        return "no 'candidate' field"  # objectId only appeared with schema 1.3; early alerts have alertId
    if _record_of(fields["candidate"], names) is None:
        return "'candidate' is not a record"
    return None  # an unreadable history is the alert's partial problem (SchemaPlan.unreadable), not the file's


def _history_problem(name: str, avro_type: Any, names: dict) -> str | None:
    """Why a writer schema's ``prv_candidates`` / ``fp_hists`` cannot be read as ZTF history, or None."""
    if _items_record(avro_type, names) is not None:
        return None
    kinds = []
    for x in _non_null(avro_type):
        x = _resolve(x, names)
        kinds.append(str(x.get("type")) if isinstance(x, dict) else str(x))
    return f"{name} is a {' or '.join(kinds)}, not an array of records: it cannot be read as ZTF history"


# ---------------------------------------------------------------- schema -> Arrow

def _named_types(schema: Any, acc: dict | None = None) -> dict[str, dict]:
    acc = {} if acc is None else acc
    if isinstance(schema, list):
        for s in schema:
            _named_types(s, acc)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            ns = schema.get("namespace")
            acc[schema["name"]] = schema
            acc[schema["name"].split(".")[-1]] = schema
            if ns:
                acc[f"{ns}.{schema['name']}"] = schema
        for f in schema.get("fields", []):
            _named_types(f["type"], acc)
        for key in ("items", "values"):
            if key in schema:
                _named_types(schema[key], acc)
    return acc


def _resolve(t: Any, names: dict) -> Any:
    if isinstance(t, str) and t in names:
        return names[t]
    return t


def _non_null(t: Any) -> list:
    return [x for x in (t if isinstance(t, list) else [t]) if x != "null"]


def _record_of(t: Any, names: dict) -> dict | None:
    for x in _non_null(t):
        x = _resolve(x, names)
        if isinstance(x, dict) and x.get("type") == "record":
            return x
    return None


def _items_record(t: Any, names: dict) -> dict | None:
    for x in _non_null(t):
        x = _resolve(x, names)
        if isinstance(x, dict) and x.get("type") == "array":
            return _record_of(x["items"], names)
    return None


def _arrow_type(t: Any, names: dict) -> pa.DataType:
    """Arrow type of a (non-ZTF-canonical) Avro type, ints widened to long and floats to double."""
    alts = _non_null(t)
    if len(alts) != 1:
        return pa.string()  # unions of several types: kept as their JSON text
    x = _resolve(alts[0], names)
    if isinstance(x, str):
        return _PRIMITIVE.get(x, pa.string())
    kind = x.get("type")
    if kind in _PRIMITIVE:
        return _PRIMITIVE[kind]
    if kind == "record":
        return pa.struct([pa.field(f["name"], _arrow_type(f["type"], names)) for f in x["fields"]])
    if kind == "array":
        return pa.list_(_arrow_type(x["items"], names))
    if kind == "map":
        return pa.map_(pa.string(), _arrow_type(x["values"], names))
    return pa.string()  # enum, fixed


def canonical_struct(kind: str) -> pa.StructType:
    """Every field of ZTF 4.02's ``kind`` record (candidate, prv_candidate, fp_hist) in the Arrow type the decoder
    gives it (:func:`_record_plan` coerces canonical fields to these types whatever the writer schema)."""
    return pa.struct([pa.field(n, _PRIMITIVE[t]) for n, t in canonical_field_types()[kind].items()])


@dataclass
class RecordPlan:
    """How to turn one nested record (candidate, prv_candidate, fp_hist) of one writer schema into Arrow."""

    arrow: pa.StructType
    coerce: dict[str, type] = field(default_factory=dict)  # field -> Python type its values must be cast to


def _record_plan(record: dict, kind: str, names: dict) -> RecordPlan:
    canon = canonical_field_types().get(kind, {})
    fields, coerce = [], {}
    for f in record["fields"]:
        name, avro_t = f["name"], f["type"]
        writer = _arrow_type(avro_t, names)
        target = _PRIMITIVE[canon[name]] if name in canon else writer
        if target != writer and not (pa.types.is_floating(target) and pa.types.is_integer(writer)):
            coerce[name] = {pa.string(): str, pa.float64(): float, pa.int64(): int}.get(target, str)
        elif target == pa.string() and _non_null(avro_t) != ["string"]:
            coerce[name] = _text  # a union of several types, an enum, a fixed: kept as text
        fields.append(pa.field(name, target))
    return RecordPlan(pa.struct(fields), coerce)


def _text(value: Any) -> str:
    """A value of a field kept as text: strings as they are, bytes in base64, anything else as JSON."""
    if isinstance(value, str):
        return value
    return _json_default(value) if isinstance(value, bytes) else json.dumps(value, default=_json_default)


@dataclass
class SchemaPlan:
    nested: dict[str, RecordPlan]
    extras: list[str]
    unreadable: dict[str, str] = field(default_factory=dict)  # history field -> why it cannot be read (left out)


@functools.lru_cache(maxsize=256)
def _plan_for(schema_id: str, schema_json: str) -> SchemaPlan:
    schema = json.loads(schema_json)
    names = _named_types(schema)
    fields = {f["name"]: f["type"] for f in schema["fields"]}
    nested, unreadable = {}, {}
    for top, kind in NESTED.items():
        if top not in fields:
            continue
        if top != "candidate" and (problem := _history_problem(top, fields[top], names)):
            unreadable[top] = problem
            continue
        rec = _record_of(fields[top], names) if top == "candidate" else _items_record(fields[top], names)
        nested[top] = _record_plan(rec, kind, names)  # type: ignore[arg-type]
    return SchemaPlan(nested, [n for n in fields if n not in ZTF_TOP], unreadable)


# ---------------------------------------------------------------- records -> Arrow tables

class AlertBatch:
    """Accumulates normalised alert and cutout rows as Arrow tables.

    Rows are converted to Arrow every ``flush_every`` alerts, so the Python objects of at most that many decoded
    alerts are alive at once whatever the chunk size (memory stays bounded on big chunks).

    Isolation: a record that fails its checks is returned by :meth:`add` (the caller quarantines it); a record that
    passes them but that Arrow still cannot hold (a type its writer schema promised and did not keep, a nested type
    that cannot be unioned with the rest of the batch) is found at conversion, left out with its cutouts, and put in
    :attr:`dropped` as ``(row, BadInput)`` (the row names its source, member and part) for the caller to quarantine.
    An alert kept without its unreadable history (see the module doc) is in :attr:`history_problems` as
    ``(row, BadInput("unreadable_history"))``: kept in the tables, its history for the caller to quarantine.
    """

    def __init__(self, flush_every: int = 250) -> None:
        self._groups: dict[str, tuple[SchemaPlan, list[dict], list[dict]]] = {}
        self._alert_tables: list[pa.Table] = []
        self._cutout_tables: list[pa.Table] = []
        self._schema: pa.Schema | None = None  # the alert tables' schemas unioned so far
        self.cutout_cols: dict[str, list] = {k: [] for k in _CUTOUT_COLUMNS}
        self.n_alerts = 0
        self.n_cutouts = 0
        self.dropped: list[tuple[dict, BadInput]] = []
        self.history_problems: list[tuple[dict, BadInput]] = []
        self._pending = 0
        self._flush_every = flush_every
        self._ingested_at = datetime_now()
        self._last_jd = JD_UNIX_EPOCH + self._ingested_at.timestamp() / 86400 + 1  # now + 1 day

    @property
    def ingested_at(self) -> dt.datetime:
        """The ``ingested_at`` of every row of this batch."""
        return self._ingested_at

    def add(self, decoded: DecodedFile, records: Iterable[dict], src: Source, part: int,
            member: str | None) -> list[BadInput]:
        """Add alerts of one container (all, or the slice ``records``); returns the malformed records' errors."""
        plan = _plan_for(decoded.schema_id, decoded.schema_json)
        group = self._groups.setdefault(decoded.schema_id, (plan, [], []))
        meta = {"source_bucket": src.bucket, "source_key": src.key, "source_etag": src.etag,
                "source_member": member, "part": part}
        bad: list[BadInput] = []
        for rec in records:
            try:
                row = _top_row(rec, plan, meta, self._last_jd)
                _check_cutouts(rec)
            except Exception as exc:  # any failure of one record is that record's
                bad.append(bad_input(exc, "not_ztf_alert"))
                continue
            group[1].append(row)
            group[2].append(rec)
            self.n_alerts += 1
            if plan.unreadable:
                detail = "; ".join(plan.unreadable[k] for k in sorted(plan.unreadable))
                self.history_problems.append((row, BadInput(
                    "unreadable_history", f"alert {row['candid']} of {row['objectId']}: {detail}; its candidate "
                                          f"and cutouts are kept")))
            self._pending += 1
        if self._pending >= self._flush_every:
            self._materialise()
        return bad

    def _add_cutouts(self, rec: dict, row: dict) -> None:
        cols = self.cutout_cols
        for avro_name, kind in CUTOUT_KINDS:
            cut = rec.get(avro_name)
            if not cut or cut.get("stampData") is None:
                continue
            cols["candid"].append(row["candid"])
            cols["objectId"].append(row["objectId"])
            cols["night"].append(row["night"])
            cols["kind"].append(kind)
            cols["file_name"].append(cut.get("fileName"))
            cols["stamp_data"].append(cut["stampData"])
            for k in ("source_bucket", "source_key", "source_etag", "part"):
                cols[k].append(row[k])
            cols["survey"].append("ztf")
            self.n_cutouts += 1

    def _materialise(self) -> None:
        for plan, rows, recs in self._groups.values():
            if rows:
                table = self._convert(plan, rows, recs)
                if table is not None:
                    self._alert_tables.append(table)
                rows.clear()
                recs.clear()
        if self.cutout_cols["candid"]:
            cols = {k: pa.array(v, type=_CUTOUT_COLUMNS[k]) for k, v in self.cutout_cols.items() if k != "stamp_data"}
            cols["stamp_data"] = _binary_array(self.cutout_cols["stamp_data"])
            self._cutout_tables.append(pa.table({k: cols[k] for k in _CUTOUT_COLUMNS}))
            self.cutout_cols = {k: [] for k in _CUTOUT_COLUMNS}
        self._pending = 0

    def _convert(self, plan: SchemaPlan, rows: list[dict], recs: list[dict]) -> pa.Table | None:
        """One group's rows as an Arrow table (and their cutouts queued); a row Arrow cannot take is dropped."""
        try:
            table = _group_table(plan, rows, recs, self._ingested_at)
        except Exception:  # noqa: BLE001 (one record's value: find it, keep the others)
            keep = []
            for i, (row, rec) in enumerate(zip(rows, recs)):
                try:
                    _group_table(plan, [row], [rec], self._ingested_at)
                    keep.append(i)
                except Exception as exc:  # noqa: BLE001
                    self._drop(row, bad_input(exc, "not_ztf_alert"))
            rows, recs = [rows[i] for i in keep], [recs[i] for i in keep]
            if not rows:
                return None
            table = _group_table(plan, rows, recs, self._ingested_at)
        try:
            unified = table.schema if self._schema is None else pa.unify_schemas(
                [self._schema, table.schema], promote_options="permissive")
        except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
            for row in rows:
                self._drop(row, BadInput("schema_conflict", f"its types cannot join this chunk's: {exc}"[:1000]))
            return None
        self._schema = unified
        for row, rec in zip(rows, recs):
            self._add_cutouts(rec, row)
        return table

    def _drop(self, row: dict, err: BadInput) -> None:
        self.dropped.append((row, BadInput(err.reason, f"alert {row.get('candid')}: {err.detail}")))
        self.history_problems = [(r, e) for r, e in self.history_problems if r is not row]  # not kept after all
        self.n_alerts -= 1

    def take_dropped(self) -> list[tuple[dict, BadInput]]:
        out, self.dropped = self.dropped, []
        return out

    def take_history_problems(self) -> list[tuple[dict, BadInput]]:
        out, self.history_problems = self.history_problems, []
        return out

    def tables(self) -> tuple[pa.Table | None, pa.Table | None]:
        self._materialise()
        alerts = cutouts = None
        if self._alert_tables:
            alerts = pa.concat_tables(self._alert_tables, promote_options="permissive")
        if self._cutout_tables:
            cutouts = pa.concat_tables(self._cutout_tables)
        return alerts, cutouts


def _check_cutouts(rec: dict) -> None:
    for avro_name, _ in CUTOUT_KINDS:
        cut = rec.get(avro_name)
        if cut is None:
            continue
        if not isinstance(cut, dict) or not isinstance(cut.get("stampData"), (bytes, type(None))) \
                or not isinstance(cut.get("fileName"), (str, type(None))):
            raise BadInput("not_ztf_alert", f"{avro_name} is not a {{fileName, stampData}} record")


def _binary_array(values: list[bytes]) -> pa.Array:
    """A binary Arrow array built from one joined buffer: ~8x faster than ``pa.array`` for 14 KB stamps."""
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    if offsets[-1] >= 2**31:  # past int32 offsets: let Arrow choose
        return pa.array(values, type=pa.binary())
    return pa.Array.from_buffers(pa.binary(), len(values),
                                 [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(values))])


def datetime_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


_CUTOUT_COLUMNS = {
    "candid": pa.int64(), "objectId": pa.string(), "night": pa.date32(), "kind": pa.string(),
    "file_name": pa.string(), "stamp_data": pa.binary(),
    "source_bucket": pa.string(), "source_key": pa.string(), "source_etag": pa.string(), "part": pa.int32(),
    "survey": pa.string(),  # "ztf": the cutout table holds every survey's stamps (rows before it existed: NULL)
}


def _top_row(rec: dict, plan: SchemaPlan, meta: dict, last_jd: float) -> dict:
    cand = rec.get("candidate")
    object_id = rec.get("objectId")
    if not isinstance(cand, dict) or not (object_id is None or isinstance(object_id, str)):
        raise BadInput("not_ztf_alert", "record without a candidate record")
    candid = cand.get("candid") or rec.get("candid")
    jd = cand.get("jd")
    if not isinstance(candid, int) or not isinstance(jd, (int, float)):
        raise BadInput("not_ztf_alert", f"alert of {object_id} without candid or jd")
    _check_ranges(cand, rec, last_jd)
    extras = {k: rec[k] for k in plan.extras if rec.get(k) is not None}
    if rec.get("candid") not in (None, candid):  # pre-1.0 alerts carry -alertId at the top level
        extras["candid"] = rec["candid"]
    return {
        "objectId": object_id, "candid": candid,
        "schemavsn": rec.get("schemavsn"), "publisher": rec.get("publisher"),
        "night": night_of(jd), "jd": float(jd),
        "extra_json": json.dumps(extras, default=_json_default) if extras else None,
        **meta,
    }


def _check_ranges(cand: dict, rec: dict, last_jd: float) -> None:
    """jd, ra, dec of the candidate and of every prv_candidate / fp_hist in their physical ranges, else bad_value."""
    problem = range_problem(cand, last_jd)
    if problem:
        raise BadInput("bad_value", problem)
    for name in ("prv_candidates", "fp_hists"):
        items = rec.get(name)
        for item in items if isinstance(items, list) else ():
            problem = range_problem(item, last_jd) if isinstance(item, dict) else None
            if problem:
                raise BadInput("bad_value", f"{name}: {problem}")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def _coerce(values: list, plan: RecordPlan) -> list:
    if not plan.coerce:
        return values
    out = []
    for v in values:
        if v is None:
            out.append(v)
            continue
        v = dict(v)
        for name, cast in plan.coerce.items():
            x = v.get(name)
            if x is not None:
                try:
                    v[name] = cast(x)
                except (TypeError, ValueError, OverflowError):  # inf/NaN to int, a non-numeric string
                    v[name] = None
        out.append(v)
    return out


def _group_table(plan: SchemaPlan, rows: list[dict], recs: list[dict], ingested_at: dt.datetime) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for name, typ in _TOP_COLUMNS.items():
        cols[name] = pa.array([r[name] for r in rows], type=typ)
    for top, rplan in plan.nested.items():
        if top == "candidate":
            cols[top] = pa.array(_coerce([r[top] for r in recs], rplan), type=rplan.arrow)
        else:
            lists = [None if r.get(top) is None else _coerce(r[top], rplan) for r in recs]
            cols[top] = pa.array(lists, type=pa.list_(rplan.arrow))
    cols["ingested_at"] = pa.array([ingested_at] * len(rows), type=pa.timestamp("us", tz="UTC"))
    return pa.table(cols)


_TOP_COLUMNS = {
    "objectId": pa.string(), "candid": pa.int64(), "schemavsn": pa.string(), "publisher": pa.string(),
    "night": pa.date32(), "jd": pa.float64(), "extra_json": pa.string(),
    "source_bucket": pa.string(), "source_key": pa.string(), "source_etag": pa.string(),
    "source_member": pa.string(), "part": pa.int32(),
}

