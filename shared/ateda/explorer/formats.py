"""Tables as the explorer answers them: JSON (the default), CSV, VOTable.

JSON keeps 64-bit identifiers exact: an integer whose column name ends in ``id`` (any case: ``candid``,
``diaSourceId``, ``ps1_objid``, ``point_id``, and ``fid`` too) or is ``pid`` is written as a string, since a JSON
number above 2^53 is rounded by JavaScript. NaN and infinities become null. CSV and VOTable carry the integers as
they are (VOTable: ``long``).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import math
from typing import Any

ID_NAMES = {"candid", "pid", "point_id"}


def is_id(name: str | None) -> bool:
    """Whether an integer under this name is written as a JSON string."""
    if not name:
        return False
    low = name.lower()
    return low.endswith("id") or low in ID_NAMES


def jsonable(value: Any, name: str | None = None) -> Any:
    """``value`` as JSON can hold it exactly (``name``: its column or key, for the id rule)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value) if is_id(name) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, name) for v in value]
    if isinstance(value, decimal.Decimal):
        return jsonable(int(value) if value == value.to_integral_value() else float(value), name)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    if hasattr(value, "item"):  # a numpy scalar
        return jsonable(value.item(), name)
    return str(value)


def json_rows(columns: list[str], rows: list[tuple]) -> list[dict]:
    return [{c: jsonable(v, c) for c, v in zip(columns, r)} for r in rows]


def csv_text(columns: list[str], rows: list[tuple]) -> str:
    """CSV with a header; NULL and NaN as empty cells, floats at full precision (repr)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if v is None or (isinstance(v, float) and not math.isfinite(v)) else
                    repr(v) if isinstance(v, float) else v for v in r])
    return buf.getvalue()


def votable_bytes(columns: list[str], types: list[str], rows: list[tuple], name: str = "results",
                  ucds: dict[str, str] | None = None, units: dict[str, str] | None = None,
                  description: str = "") -> bytes:
    """A VOTable (TABLEDATA) of the rows: integers as long, floats as double, NULLs masked."""
    from astropy.io.votable import tree  # heavy (astropy): on a VOTable only

    Field, Resource, VOTableFile = tree.Field, tree.Resource, tree.VOTableFile
    Table = getattr(tree, "TableElement", None) or tree.Table  # astropy >= 6 names it TableElement

    vot = VOTableFile()
    resource = Resource()
    vot.resources.append(resource)
    table = Table(vot, name=name)
    if description:
        table.description = description
    resource.tables.append(table)
    kinds = [_vo_kind(t, [r[i] for r in rows]) for i, t in enumerate(types)]
    for col, (datatype, arraysize) in zip(columns, kinds):
        table.fields.append(Field(vot, name=col, ID=_vo_id(col), datatype=datatype, arraysize=arraysize,
                                  ucd=(ucds or {}).get(col), unit=(units or {}).get(col)))
    table.create_arrays(len(rows))
    for i, r in enumerate(rows):
        values, mask = [], []
        for v, (datatype, _) in zip(r, kinds):
            missing = v is None or (isinstance(v, float) and not math.isfinite(v))
            values.append(_vo_value(v, datatype) if not missing else _vo_null(datatype))
            mask.append(missing)
        table.array[i] = tuple(values)
        table.array.mask[i] = tuple(mask)
    out = io.BytesIO()
    vot.to_xml(out)
    return out.getvalue()


def error_votable(message: str) -> bytes:
    """An IVOA error VOTable: ``INFO name="QUERY_STATUS" value="ERROR"`` and SCS 1.03's ``INFO name="Error"`` in
    the RESOURCE."""
    from astropy.io.votable.tree import Info, Resource, VOTableFile  # heavy (astropy): on a VOTable only

    vot = VOTableFile()
    resource = Resource()
    vot.resources.append(resource)
    for name, value in (("QUERY_STATUS", "ERROR"), ("Error", message)):
        info = Info(name=name, value=value)
        info.content = message
        resource.infos.append(info)
    out = io.BytesIO()
    vot.to_xml(out)
    return out.getvalue()


def _vo_id(col: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in col) or "col"


def _vo_kind(duck_type: str, values: list) -> tuple[str, str | None]:
    t = duck_type.upper()
    if t in ("BOOLEAN", "BOOL"):
        return "boolean", None
    if t in ("TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"):
        return "long", None
    if t in ("FLOAT", "REAL", "FLOAT4"):
        return "float", None
    if t in ("DOUBLE", "FLOAT8") or t.startswith("DECIMAL"):
        return "double", None
    return "unicodeChar", "*"  # text, dates, anything else: as text


def _vo_value(v: Any, datatype: str) -> Any:
    if datatype == "unicodeChar":
        return v if isinstance(v, str) else str(jsonable(v))
    if datatype == "long":
        return int(v)
    if datatype in ("double", "float"):
        return float(v)
    return bool(v)


def _vo_null(datatype: str) -> Any:
    return {"unicodeChar": "", "long": 0, "double": math.nan, "float": math.nan, "boolean": False}[datatype]
