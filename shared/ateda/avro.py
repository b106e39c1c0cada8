"""Avro object containers, survey-neutral: what decoding one input may cost (:class:`Limits`), how an unexpected
exception while decoding becomes bad input (:func:`bad_input`), the container header, the block codecs with their
bounds and checks (:data:`BLOCK_CODECS`), the block reader (:func:`read_blocks`) and a schema's nesting depth
(:func:`schema_depth`). Used by both surveys' decoders (``ztf/alerts.py``, ``lsst/alerts.py``); imports only
``errors``.
"""

from __future__ import annotations

import bz2
import functools
import io
import lzma
import zlib
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.read import HEADER_SCHEMA

from ateda.errors import BadInput, TransientError

_COMPLEX = frozenset({"record", "error", "array", "map"})  # the Avro types that nest (one level each)


@dataclass(frozen=True)
class Limits:
    """What decoding one input may cost; past a limit the input is bad (quarantined with the reason in brackets).

    Defaults are :class:`~ateda.config.Settings`' defaults; :meth:`of` takes a function's settings.
    """

    max_bytes: int = 128 << 20  # decompressed bytes of one member / plain object / container's blocks (too_large)
    max_alerts: int = 200_000  # records of one container (too_many_alerts: the records before the limit go on)
    max_schema_depth: int = 32  # nesting of record/array/map types in a writer schema (schema_too_deep)
    max_members: int = 2_000_000  # members of one tarball (too_many_members: the members before go on)

    @classmethod
    def of(cls, s) -> "Limits":  # noqa: ANN001 (Settings: not imported here to keep this module I/O-free)
        return cls(s.max_member_bytes, s.max_container_alerts, s.max_schema_depth, s.max_tar_members)


def bad_input(exc: BaseException, default: str) -> BadInput:
    """What an unexpected exception while decoding one input means: out-of-range numbers are ``bad_value``, a
    short read ``truncated_avro``, anything else ``default``. A store failure is never bad input: re-raised."""
    if isinstance(exc, BadInput):
        return exc
    if isinstance(exc, TransientError):
        raise exc
    if isinstance(exc, (ArithmeticError, ValueError)) and not isinstance(exc, UnicodeError):
        reason = "bad_value"
    elif isinstance(exc, (EOFError, IndexError)):
        reason = "truncated_avro"
    elif isinstance(exc, RecursionError):
        reason = "schema_too_deep"
    else:
        reason = default
    return BadInput(reason, f"{type(exc).__name__}: {exc}"[:1000])


@functools.cache
@functools.lru_cache(maxsize=1)
def header_schema() -> Any:
    """The parsed schema of an Avro container's header (magic, metadata map, sync marker), parsed once per process
    (every single-alert file has a header: parsing it per file cost ~0.02 ms)."""
    return fastavro.parse_schema(HEADER_SCHEMA)


def _snappy(block: bytes, limit: int) -> bytes:
    """Avro's snappy block: raw snappy, then the 4-byte big-endian CRC32 of the uncompressed data (verified)."""
    import cramjam  # only for snappy-coded blocks: files in the other codecs never load it

    body, crc = block[:-4], block[-4:]
    if len(crc) != 4:
        raise BadInput("checksum_mismatch", "snappy block shorter than its CRC")
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except Exception as exc:  # cramjam.DecompressionError
        raise BadInput("checksum_mismatch", f"snappy block does not decompress: {exc}") from exc
    if size > limit:
        raise BadInput("too_large", f"snappy block declares {size} bytes, over the {limit} left of the limit")
    try:
        out = bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:
        raise BadInput("checksum_mismatch", f"snappy block does not decompress: {exc}") from exc
    if zlib.crc32(out) != int.from_bytes(crc, "big"):
        raise BadInput("checksum_mismatch", "snappy block CRC32 differs from its data's")
    return out


def _bounded(make, name: str):  # noqa: ANN001, ANN202
    """A block decompressor that stops at ``limit`` output bytes (a bomb is ``too_large``: at most ``limit`` + 1 MiB
    is ever inflated, in 1 MiB steps) and checks that the compressed stream is complete and well-formed (else
    ``checksum_mismatch``). ``make`` builds a zlib/bz2/lzma decompressor object."""

    def decompress(block: bytes, limit: int) -> bytes:
        d, out, pending = make(), io.BytesIO(), block
        try:
            while True:
                piece = d.decompress(pending, _STEP)
                out.write(piece)
                if out.tell() > limit:
                    raise BadInput("too_large", f"{name} block inflates past the {limit} bytes left of the limit")
                if d.eof:
                    return out.getvalue()
                # zlib hands back the input it has not used yet; bz2 and lzma keep it and want b"" to go on
                pending = d.unconsumed_tail if hasattr(d, "unconsumed_tail") else b""
                if not piece and not pending and getattr(d, "needs_input", True):
                    raise BadInput("checksum_mismatch", f"{name} block ends before its compressed stream does")
        except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError) as exc:
            raise BadInput("checksum_mismatch", f"{name} block is corrupt: {exc}") from exc

    return decompress


_STEP = 1 << 20


BLOCK_CODECS = {
    "null": lambda b, limit: b,
    "deflate": _bounded(lambda: zlib.decompressobj(-15), "deflate"),
    "snappy": _snappy,
    "bzip2": _bounded(bz2.BZ2Decompressor, "bzip2"),
    "xz": _bounded(lzma.LZMADecompressor, "xz"),
}


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    n, shift, pos = b & 0x7F, 7, pos + 1
    while b & 0x80:
        b = buf[pos]
        n |= (b & 0x7F) << shift
        shift, pos = shift + 7, pos + 1
        if shift > 70:
            raise BadInput("bad_value", f"a block header varint longer than 10 bytes at offset {pos}")
    return (n >> 1) ^ -(n & 1), pos


def read_blocks(data: bytes, pos: int, sync: bytes, decompress, parsed, out: list[dict],  # noqa: ANN001
                 limits: Limits) -> None:
    """Avro object container blocks: count, size, (compressed) records, sync marker. The records before a failure
    are kept; a block whose records do not use exactly its bytes (a wrong count, a corrupted length inside: the
    null codec has no checksum, this is the check it allows) keeps none of its records."""
    end, inflated = len(data), 0
    while pos < end:
        count, pos = _read_long(data, pos)
        size, pos = _read_long(data, pos)
        if count < 0 or size < 0:
            raise BadInput("bad_value", f"block at offset {pos} declares {count} records of {size} bytes")
        if pos + size + 16 > end:
            raise EOFError(f"block of {size} bytes at offset {pos} runs past the end ({end} bytes)")
        raw = decompress(data[pos:pos + size], limits.max_bytes - inflated)
        inflated += len(raw)
        if inflated > limits.max_bytes:
            raise BadInput("too_large", f"blocks inflate past {limits.max_bytes} bytes")
        pos += size
        if data[pos:pos + 16] != sync:
            raise ValueError(f"sync marker mismatch at offset {pos}")
        pos += 16
        room = limits.max_alerts - len(out)
        block, records = io.BytesIO(raw), []
        try:
            for _ in range(min(count, room)):
                records.append(fastavro.schemaless_reader(block, parsed, None))
        except Exception:
            out.extend(records)  # the records before the damage are kept, as a damaged tail's are
            raise
        if count <= room and block.tell() != len(raw):  # the count or a length inside is wrong: no record is sure
            raise ValueError(f"block at offset {pos - size - 16} has {len(raw) - block.tell()} bytes past its "
                             f"{count} records")
        out.extend(records)
        if count > room:
            raise BadInput("too_many_alerts", f"more than {limits.max_alerts} records: the rest not read")


def schema_depth(schema: Any) -> int:
    """How many record/array/map types nest in an Avro schema (parsed JSON) at most; walked without recursion.
    A ZTF alert is 3 deep (alert > prv_candidates array > prv_candidate record)."""
    deepest, stack = 0, [(schema, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, list):  # a union: no level of its own
            stack.extend((x, depth) for x in node)
        elif isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str) and kind in _COMPLEX:
                depth += 1
                deepest = max(deepest, depth)
            elif isinstance(kind, (dict, list)):
                stack.append((kind, depth))
            fields = node.get("fields")
            if isinstance(fields, list):
                stack.extend((f.get("type"), depth) for f in fields if isinstance(f, dict))
            for key in ("items", "values"):
                if key in node:
                    stack.append((node[key], depth))
    return deepest
