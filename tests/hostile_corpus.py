"""A bad-input corpus built at test time from the real ZTF alerts (fixed seed; never committed).

Every generated object is an :class:`Item`: its name (the object key it gets in the bucket), what it is, the
quarantine records it must produce (one per (member, allowed reasons)), and the candids it still carries, computed
here independently of the pipeline: with fastavro, zlib/gzip and a small Avro container parser of this module.

Reasons use the shared vocabulary (empty_file, not_avro, corrupt_gzip, truncated_avro, truncated_tar,
checksum_mismatch, bad_value, schema_too_deep, schema_conflict, too_large, too_many_members, too_many_alerts,
tar_member_skipped, unsafe_key, not_ztf_alert, no_alerts, missing_object). ``corrupt_avro`` is what the decoder
calls a broken block structure (a wrong sync marker): it is accepted only where the damage is structural.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import fastavro

ANY_MEMBER = "*"  # a record expected for the object, whatever member name the pipeline gives it
STRUCTURE = frozenset({"truncated_avro", "corrupt_avro", "checksum_mismatch"})
BOMB_BYTES = 512 << 20  # decompressed size of the bombs (ATEDA_MAX_MEMBER_BYTES is set far below in the tests)
TAR_JUNK_MEMBERS = 20_000


@dataclass
class Item:
    """One generated input and what the pipeline must do with it."""

    name: str  # object key in the bucket (the file name in the drop folder)
    kind: str
    records: list[tuple[str | None, frozenset[str]]] = field(default_factory=list)  # exactly one each
    candids: list[int] = field(default_factory=list)  # land exactly once under this key
    maybe: list[int] = field(default_factory=list)  # land at most once (damaged block, undetectable flip...)
    either: list[tuple[str | None, frozenset[str], list[int]]] = field(default_factory=list)
    # ^ (member, reasons, candids): the member's alerts land, or it has exactly one record - never both, never none
    bounded: tuple[int, frozenset[str], frozenset[str]] | None = None  # (max records, allowed, required reasons)

    @property
    def bad(self) -> bool:
        return bool(self.records or self.bounded)


# ---------------------------------------------------------------- Avro containers, parsed and written by hand

def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63) if n >= 0 else ((-n - 1) << 1) | 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _varint(b: bytes, p: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        x = b[p]
        p += 1
        n |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return (n >> 1) ^ -(n & 1), p


@dataclass
class Container:
    meta: dict[str, bytes]
    sync: bytes
    header_end: int
    blocks: list[tuple[int, int, int, int]]  # (count, block start, data start, data end); sync follows data end


def parse(data: bytes) -> Container:
    assert data[:4] == b"Obj\x01"
    p, meta = 4, {}
    while True:
        count, p = _varint(data, p)
        if count == 0:
            break
        if count < 0:
            _, p = _varint(data, p)
            count = -count
        for _ in range(count):
            n, p = _varint(data, p)
            k = data[p:p + n].decode()
            p += n
            n, p = _varint(data, p)
            meta[k] = data[p:p + n]
            p += n
    sync, p = data[p:p + 16], p + 16
    header_end, blocks = p, []
    while p < len(data):
        start = p
        count, p = _varint(data, p)
        size, p = _varint(data, p)
        blocks.append((count, start, p, p + size))
        p += size + 16
    return Container(meta, sync, header_end, blocks)


def container(schema_json: str, blocks: list[tuple[int, bytes]], codec: str = "null",
              sync: bytes = b"ATEDA-hostile-16") -> bytes:
    """An Avro object container from raw (already encoded, already compressed) blocks."""
    out = bytearray(b"Obj\x01")
    meta = {"avro.schema": schema_json.encode(), "avro.codec": codec.encode()}
    out += _zigzag(len(meta))
    for k, v in meta.items():
        out += _zigzag(len(k.encode())) + k.encode() + _zigzag(len(v)) + v
    out += _zigzag(0) + sync
    for count, payload in blocks:
        out += _zigzag(count) + _zigzag(len(payload)) + payload + sync
    return bytes(out)


def read_candids(data: bytes) -> tuple[list[int], Exception | None]:
    """Candids fastavro yields before it stops, and the exception that stopped it (None: the file is whole)."""
    out: list[int] = []
    try:
        for rec in fastavro.reader(io.BytesIO(data)):
            out.append(rec["candidate"]["candid"])
    except Exception as exc:  # noqa: BLE001 - any decoding error ends the readable prefix
        return out, exc
    return out, None


def _snappy_ok(block: bytes) -> bool:
    """True when a snappy block still decompresses and matches its big-endian CRC32 trailer."""
    import cramjam

    try:
        raw = bytes(cramjam.snappy.decompress_raw(block[:-4]))
    except Exception:  # noqa: BLE001
        return False
    return struct.pack(">I", zlib.crc32(raw) & 0xFFFFFFFF) == block[-4:]


# ---------------------------------------------------------------- the corpus

class _Source:
    """The real alerts, by the shape the generator needs: each picked alert is used once (distinct candids)."""

    def __init__(self, files: list[Path], skip: set[str], rng: random.Random) -> None:
        self.single_null: list[Path] = []
        self.single_snappy: list[Path] = []
        self.ztf_single: list[Path] = []
        for f in files:
            if f.name in skip:
                continue
            data = f.read_bytes()
            c = parse(data)
            if len(c.blocks) == 1 and c.blocks[0][0] == 1:
                codec = c.meta.get("avro.codec", b"null")
                (self.single_snappy if codec == b"snappy" else self.single_null).append(f)
                schema = json.loads(c.meta["avro.schema"])
                if codec == b"null" and schema.get("name") == "alert" and _candidate_field(schema):
                    self.ztf_single.append(f)
        rng.shuffle(self.single_null)
        rng.shuffle(self.single_snappy)
        self.used: set[Path] = set()

    def take(self, pool: list[Path]) -> Path:
        for f in pool:
            if f not in self.used:
                self.used.add(f)
                return f
        raise AssertionError("the real alerts ran out for the corpus")


def _candidate_field(schema: dict) -> dict | None:
    for f in schema.get("fields", []):
        if f["name"] == "candidate" and isinstance(f["type"], dict) and f["type"].get("type") == "record":
            return f
    return None


def _record(data: bytes) -> tuple[dict, dict]:
    reader = fastavro.reader(io.BytesIO(data))
    return reader.writer_schema, next(reader)


def _write(schema: dict, records: list[dict], codec: str = "null") -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, schema, records, codec=codec)
    return buf.getvalue()


def _splice_candidate_field(data: bytes, field_json: str, value: bytes) -> bytes:
    """The single-record container ``data`` with one more field at the end of ``candidate``: ``field_json`` in the
    schema (raw JSON text, so a 1000-deep type needs no recursion) and its encoded ``value`` in the record. Avro
    records are the plain concatenation of their fields, so the value goes right after the candidate's bytes."""
    c = parse(data)
    schema = json.loads(c.meta["avro.schema"])
    names = [f["name"] for f in schema["fields"]]
    upto = names.index("candidate") + 1
    prefix = dict(schema, fields=schema["fields"][:upto])
    (count, _, start, end), = c.blocks
    body = data[start:end]
    buf = io.BytesIO(body)
    fastavro.schemaless_reader(buf, prefix, None)
    cut = buf.tell()
    marker = '"__ATEDA_HOSTILE_FIELD__"'
    cand = _candidate_field(schema)
    cand["type"]["fields"].append("__ATEDA_HOSTILE_FIELD__")
    schema_json = json.dumps(schema).replace(marker, field_json)
    return container(schema_json, [(1, body[:cut] + value + body[cut:])])


def _deep_field(depth: int) -> str:
    """A field whose type is ``depth`` records nested in one another around one long (JSON built as text)."""
    inner = '{"name": "leaf", "type": "long"}'
    for i in range(depth, 0, -1):
        inner = f'{{"name": "x", "type": {{"type": "record", "name": "hostile_d{i}", "fields": [{inner}]}}}}'
    return inner.replace('"name": "x"', '"name": "hostile_deep"', 1)


def _tar(entries: list[tarfile.TarInfo | tuple[str, bytes]], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as tar:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tar.addfile(e)
            else:
                info = tarfile.TarInfo(e[0])
                info.size = len(e[1])
                tar.addfile(info, io.BytesIO(e[1]))
    return buf.getvalue()


def _special(name: str, kind: bytes, link: str = "", dev: tuple[int, int] = (0, 0)) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.devmajor, info.devminor = dev
    return info


class _Zeros(io.RawIOBase):
    """``prefix`` then zeros up to ``size`` bytes, without holding them."""

    def __init__(self, prefix: bytes, size: int) -> None:
        self.prefix, self.left = prefix, size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        n = min(len(b), self.left)
        chunk = self.prefix[:n] + bytes(n - len(self.prefix[:n]))
        self.prefix = self.prefix[n:]
        b[:n] = chunk
        self.left -= n
        return n


def _deflate_stream(prefix: bytes, size: int, wbits: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, wbits)
    out = [z.compress(prefix)]
    zeros = bytes(1 << 20)
    left = size - len(prefix)
    while left > 0:
        out.append(z.compress(zeros[:min(left, len(zeros))]))
        left -= len(zeros)
    out.append(z.flush())
    return b"".join(out)


def content_corpus(folder: Path, files: list[Path], skip: set[str], token: str, records_cap: int,
                   seed: int = 10) -> list[Item]:
    """Bad (and borderline) content, each beside the good alerts it still carries; written to ``folder``.

    ``token`` is put in the names of traversal targets, so the test can look for them outside ATEDA_HOME;
    ``records_cap`` bounds the quarantine records of the 20,000-member tar (the per-object cap plus a summary).
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    src = _Source(files, skip, rng)
    items: list[Item] = []

    def put(item: Item, data: bytes) -> None:
        (folder / item.name).write_bytes(data)
        items.append(item)

    def real(pool: list[Path] | None = None) -> tuple[bytes, int]:
        f = src.take(pool if pool is not None else src.single_null)
        data = f.read_bytes()
        return data, _record(data)[1]["candidate"]["candid"]

    # --- plain bad files
    put(Item("empty.avro", "empty file", [(None, frozenset({"empty_file"}))]), b"")
    put(Item("observing-log.avro", "text named .avro", [(None, frozenset({"not_avro"}))]),
        b"2018-11-20 04:12 dome closed, humidity\n" * 40)
    weather = {"type": "record", "name": "Weather", "fields": [{"name": "city", "type": "string"},
                                                                {"name": "celsius", "type": "double"}]}
    put(Item("weather.avro", "valid Avro, not a ZTF alert", [(None, frozenset({"not_ztf_alert"}))]),
        _write(weather, [{"city": "Palomar", "celsius": 11.5}]))
    data, _ = real(src.ztf_single)
    schema, _rec = _record(data)
    put(Item("no-records.avro", "ZTF schema, zero records", [(None, frozenset({"no_alerts"}))]), _write(schema, []))

    # --- truncations at random offsets (the intact blocks before the cut are good alerts)
    multi = [f for f in files if f.name not in skip and len(parse(f.read_bytes()).blocks) > 2]
    for i, f in enumerate([*multi[:2], *(src.take(src.single_null) for _ in range(3))]):
        data = f.read_bytes()
        c = parse(data)
        cut = rng.randrange(c.header_end + 1, len(data) - 1) if i != 4 else rng.randrange(8, c.header_end)
        cut_data = data[:cut]
        whole = [b for b in c.blocks if b[3] + 16 <= cut]
        must, _ = read_candids(data[:whole[-1][3] + 16]) if whole else ([], None)
        got, exc = read_candids(cut_data)
        name = f"truncated-{i}-at-{cut}.avro"
        if exc is None:  # cut exactly between blocks: a valid, shorter file
            put(Item(name, f"{f.name} cut at a block boundary", [], got), cut_data)
        else:
            put(Item(name, f"{f.name} cut at byte {cut} of {len(data)}", [(None, frozenset({"truncated_avro"}))],
                     must, [c for c in got if c not in must]), cut_data)

    # --- bit flips at random offsets in snappy blocks: the CRC32 each block carries must catch them
    for i in range(4):
        data, candid = real(src.single_snappy)
        c = parse(data)
        (_, _, start, end), = c.blocks
        flipped = bytearray(data)
        off = rng.randrange(start, end)
        flipped[off] ^= 1 << rng.randrange(8)
        name = f"bitflip-snappy-{i}-at-{off}.avro"
        if _snappy_ok(bytes(flipped[start:end])):
            put(Item(name, "snappy flip that changes nothing", [], [candid]), bytes(flipped))
        else:
            put(Item(name, f"snappy block bit flip at byte {off}", [(None, frozenset({"checksum_mismatch"}))]),
                bytes(flipped))

    # --- bit flips in null-codec records (no checksum): fastavro says whether the structure survived. Two
    # anywhere in the block (mostly the stamps), two among the first 256 bytes (ids, strings, candid, jd...)
    for i in range(4):
        data, candid = real()
        c = parse(data)
        (_, _, start, end), = c.blocks
        flipped = bytearray(data)
        off = rng.randrange(start, end if i < 2 else start + 256)
        flipped[off] ^= 1 << rng.randrange(8)
        got, exc = read_candids(bytes(flipped))
        name = f"bitflip-null-{i}-at-{off}.avro"
        if exc is not None or not got:
            put(Item(name, f"null-codec bit flip at byte {off} breaks the record ({type(exc).__name__})",
                     [(None, STRUCTURE | {"bad_value"})]), bytes(flipped))
        else:  # the record still decodes: only a range check can tell; it lands or is a bad_value, once
            put(Item(name, f"null-codec bit flip at byte {off}, still decodes",
                     either=[(None, frozenset({"bad_value", "not_ztf_alert", "corrupt_gzip", "checksum_mismatch"}),
                              got)]), bytes(flipped))

    # --- out-of-range physical values (3.3: jd = 0 overflowed the night computation and sank the event)
    for label, fieldname, value in (("jd0", "jd", 0.0), ("jd-huge", "jd", 1e300), ("ra400", "ra", 400.0),
                                    ("dec-95", "dec", -95.0)):
        data, _ = real(src.ztf_single)
        schema, rec = _record(data)
        rec["candidate"][fieldname] = value
        put(Item(f"badvalue-{label}.avro", f"candidate.{fieldname} = {value}", [(None, frozenset({"bad_value"}))]),
            _write(schema, [rec]))
    # one bad record among good ones in one container: the unit of failure is the alert
    data, _ = real(src.ztf_single)
    schema, rec = _record(data)
    recs = [rec, *(dict(rec, candidate=dict(rec["candidate"], candid=rec["candidate"]["candid"] + i))
                   for i in (1, 2))]
    recs[1]["candidate"]["jd"] = 0.0
    put(Item("badvalue-one-of-three.avro", "3-alert container (distinct candids), the middle one with jd = 0",
             [(None, frozenset({"bad_value"}))], [recs[0]["candidate"]["candid"], recs[2]["candidate"]["candid"]]),
        _write(schema, recs))

    # --- corrupt gzip
    data, _ = real()
    gz = bytearray(gzip.compress(data))
    mid = len(gz) // 2
    for j in range(mid, mid + 8):
        gz[j] ^= 0x5A
    assert _gunzip_fails(bytes(gz))
    put(Item("corrupt.avro.gz", "gzip with 8 flipped bytes mid-stream", [(None, frozenset({"corrupt_gzip"}))]),
        bytes(gz))
    data, _ = real()
    gz = gzip.compress(data)
    put(Item("cut.avro.gz", "gzip cut in half", [(None, frozenset({"corrupt_gzip"}))]), gz[: len(gz) // 2])
    data, _ = real()
    gz = bytearray(gzip.compress(data))
    gz[-8:-4] = bytes(b ^ 0xFF for b in gz[-8:-4])  # the CRC32 trailer
    assert _gunzip_fails(bytes(gz))
    put(Item("bad-crc.avro.gz", "gzip whose CRC32 trailer is wrong", [(None, frozenset({"corrupt_gzip"}))]),
        bytes(gz))

    # --- bombs: small files that decompress to BOMB_BYTES
    data, _ = real()
    c = parse(data)
    (_, _, start, end), = c.blocks
    record = data[start:end]
    put(Item("bomb-deflate.avro", f"deflate-codec Avro, one block inflating to {BOMB_BYTES >> 20} MiB",
             [(None, frozenset({"too_large"}))]),
        container(c.meta["avro.schema"].decode(), [(1, _deflate_stream(record, BOMB_BYTES, -15))], "deflate"))
    data, _ = real()
    put(Item("bomb.avro.gz", f"gzip of an alert followed by zeros, {BOMB_BYTES >> 20} MiB",
             [(None, frozenset({"too_large"}))]), _deflate_stream(data, BOMB_BYTES, 31))
    data, candid = real()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        info = tarfile.TarInfo("ztf_public/good.avro")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("ztf_public/huge.avro")
        info.size = BOMB_BYTES // 2
        tar.addfile(info, io.BufferedReader(_Zeros(b"Obj\x01", info.size), 1 << 20))
    put(Item("bomb-member.tar.gz", f"tar.gz: a good alert and a {BOMB_BYTES >> 21} MiB member of zeros",
             [("ztf_public/huge.avro", frozenset({"too_large"}))], [candid]), buf.getvalue())

    # --- sync markers
    data = next(f for f in multi if len(parse(f.read_bytes()).blocks) >= 4).read_bytes()
    c = parse(data)
    k = 2  # the sync marker after block 2 is wrong
    wrong = bytearray(data)
    wrong[c.blocks[k][3]:c.blocks[k][3] + 16] = bytes(16)
    must, _ = read_candids(data[:c.blocks[k - 1][3] + 16])
    everything, _ = read_candids(data)
    put(Item("sync-wrong.avro", f"{len(c.blocks)}-block container, sync after block {k} zeroed",
             [(None, STRUCTURE)], must, [x for x in everything if x not in must]), bytes(wrong))
    data, candid = real()
    c = parse(data)
    wrong = bytearray(data)
    wrong[c.header_end - 16:c.header_end] = bytes(reversed(c.sync))
    put(Item("sync-header.avro", "header sync marker differs from the block's", [(None, STRUCTURE)], [], [candid]),
        bytes(wrong))

    # --- huge declared lengths and counts
    for label, count_of, size_of, reasons in (
            ("huge-block-size", lambda n: 1, lambda n: 1 << 62, frozenset({"truncated_avro", "too_large"})),
            ("negative-block-size", lambda n: 1, lambda n: -5, STRUCTURE | {"bad_value"}),  # a negative size
            ("huge-block-count", lambda n: 1 << 40, lambda n: n,
             frozenset({"too_many_alerts", "truncated_avro", "corrupt_avro"}))):
        data, candid = real()
        c = parse(data)
        (_, bstart, start, end), = c.blocks
        body = data[start:end]
        forged = data[:bstart] + _zigzag(count_of(len(body))) + _zigzag(size_of(len(body))) + body + c.sync
        put(Item(f"{label}.avro", label.replace("-", " "), [(None, reasons)], [],
                 [candid] if label == "huge-block-count" else []), forged)
    first_is_string = [f for f in src.ztf_single
                       if json.loads(parse(f.read_bytes()).meta["avro.schema"])["fields"][0]["type"] == "string"]
    data, _ = real(first_is_string)  # a string comes first: its length is the block's first varint
    c = parse(data)
    (_, bstart, start, end), = c.blocks
    body = data[start:end]
    _, p = _varint(body, 0)  # the first field of a ZTF alert is the schemavsn string: its length comes first
    forged_body = _zigzag(1 << 60) + body[p:]
    put(Item("huge-string-length.avro", "first string declares 2^60 bytes",
             [(None, frozenset({"truncated_avro", "corrupt_avro", "too_large"}))]),
        data[:bstart] + _zigzag(1) + _zigzag(len(forged_body)) + forged_body + c.sync)

    # --- deep schemas (valid ZTF alerts with one more, deeply nested, candidate field)
    data, _ = real(src.ztf_single)
    probe = _splice_candidate_field(data, _deep_field(3), _zigzag(7))
    assert _record(probe)[1]["candidate"]["hostile_deep"] == {"x": {"x": {"leaf": 7}}}, "splice broken"
    for depth in (300, 1000):
        data, _ = real(src.ztf_single)
        put(Item(f"deep-{depth}.avro", f"ZTF alert with a {depth}-deep candidate field",
                 [(None, frozenset({"schema_too_deep"}))]),
            _splice_candidate_field(data, _deep_field(depth), _zigzag(7)))

    # --- conflicting schemas: candidate.hostile_extra is a long in one file and a record in the next
    data, candid = real(src.ztf_single)
    put(Item("conflict-1-long.avro", "candidate.hostile_extra: long",
             either=[(None, frozenset({"schema_conflict"}), [candid])]),
        _splice_candidate_field(data, '{"name": "hostile_extra", "type": "long"}', _zigzag(5)))
    data, candid2 = real(src.ztf_single)
    put(Item("conflict-2-record.avro", "candidate.hostile_extra: record{v: long}",
             either=[(None, frozenset({"schema_conflict"}), [candid2])]),
        _splice_candidate_field(data, '{"name": "hostile_extra", "type": {"type": "record", "name": '
                                      '"hostile_extra_t", "fields": [{"name": "v", "type": "long"}]}}', _zigzag(5)))

    # --- tars: each hostile member beside a good one
    junk = b"not an alert, a member with a hostile name\n"
    up = "../" * 40  # from any quarantine folder, this climbs to "/"
    data, candid = real()
    data2, candid2 = real()
    put(Item("tar-traversal.tar", "members named ../ (6, 8 and 40 levels up) and a/../..",
             [(f"{'../' * 6}escape-{token}-6.avro", frozenset({"not_avro", "unsafe_key"})),
              (f"{'../' * 8}escape-{token}-8.avro", frozenset({"not_avro", "unsafe_key"})),
              (f"{up}tmp/ateda-escape-{token}/deep.avro", frozenset({"not_avro", "unsafe_key"})),
              (f"ztf_public/../../escape-{token}-dotdot.avro", frozenset({"not_avro", "unsafe_key"}))],
             [candid],
             either=[(f"{up}tmp/ateda-escape-{token}/real.avro", frozenset({"unsafe_key"}), [candid2])]),
        _tar([("ztf_public/good.avro", data), (f"{'../' * 6}escape-{token}-6.avro", junk),
              (f"{'../' * 8}escape-{token}-8.avro", junk), (f"{up}tmp/ateda-escape-{token}/deep.avro", junk),
              (f"ztf_public/../../escape-{token}-dotdot.avro", junk),
              (f"{up}tmp/ateda-escape-{token}/real.avro", data2)]))
    data, candid = real()
    absolute = str(folder.resolve().parent / f"ateda-escape-{token}-abs" / "abs.avro")  # beside the corpus: walked
    put(Item("tar-absolute.tar", "an absolute member name",
             [(absolute, frozenset({"not_avro", "unsafe_key"}))], [candid]),
        _tar([(absolute, junk), ("ztf_public/good.avro", data)]))
    data, candid = real()
    skipped = frozenset({"tar_member_skipped"})
    links = [_special("ztf_public/passwd.avro", tarfile.SYMTYPE, "/etc/passwd"),
             _special("ztf_public/up.avro", tarfile.SYMTYPE, "../" * 12 + "etc/hostname"),
             _special("ztf_public/hard.avro", tarfile.LNKTYPE, "ztf_public/good.avro"),
             _special("ztf_public/fifo.avro", tarfile.FIFOTYPE),
             _special("ztf_public/null.avro", tarfile.CHRTYPE, dev=(1, 3)),
             _special("ztf_public/sda.avro", tarfile.BLKTYPE, dev=(8, 0))]
    put(Item("tar-links.tar", "symlink, hardlink, fifo, char and block device members",
             [(i.name, skipped) for i in links], [candid]), _tar([("ztf_public/good.avro", data), *links]))
    data, candid = real()
    dots = [("ztf_public/._ZTF18abcdefg.avro", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)),
            ("ztf_public/.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(100))]
    put(Item("tar-dotfiles.tar", "AppleDouble and .DS_Store members", [(n, skipped) for n, _ in dots], [candid]),
        _tar([("ztf_public/good.avro", data), *dots]))
    data, candid = real()
    data2, candid2 = real()
    put(Item("tar-odd-names.tar", "members named with Greek letters, an en dash and a newline",
             [("ztf_public/données_αβγ.avro", frozenset({"not_avro"})),
              ("ztf_public/line\nbreak.avro", frozenset({"not_avro", "unsafe_key"}))],
             [candid], either=[("ztf_public/M31 – Andromeda.avro", frozenset({"unsafe_key"}), [candid2])]),
        _tar([("ztf_public/données_αβγ.avro", junk), ("ztf_public/M31 – Andromeda.avro", data2),
              ("ztf_public/line\nbreak.avro", junk), ("ztf_public/good.avro", data)]))
    members = [real() for _ in range(3)]
    whole = _tar([(f"ztf_public/{i}.avro", d) for i, (d, _) in enumerate(members)])
    third = tarfile.open(fileobj=io.BytesIO(whole)).getmembers()[2]
    cut = whole[: third.offset_data + third.size // 2]
    put(Item("tar-truncated.tar", "tar cut inside its third member",
             [(ANY_MEMBER, frozenset({"truncated_tar"}))], [members[0][1], members[1][1]], [members[2][1]]), cut)
    goods = [real() for _ in range(2)]
    entries = [(f"ztf_public/good-{i}.avro", d) for i, (d, _) in enumerate(goods)]
    entries += [(f"junk/{i:05d}.avro", rng.randbytes(16)) for i in range(TAR_JUNK_MEMBERS)]
    put(Item("tar-20000-junk.tar.gz", f"{TAR_JUNK_MEMBERS} tiny junk members after 2 good ones", [], [],
             [c for _, c in goods], bounded=(records_cap, frozenset({"too_many_members", "not_avro"}),
                                             frozenset({"too_many_members"}))),
        _tar(entries, gz=True))
    return items


def name_corpus(folder: Path, files: list[Path], skip: set[str], seed: int = 11) -> list[Item]:
    """Real alerts under hostile file names. Valid names must land; unsafe ones get one ``unsafe_key`` record."""
    import os

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    src = _Source(files, skip, rng)
    items = []
    for name, ok in (("M31 – Andromeda.avro", True), ("données_αβγ.avro", True), (" leading space.avro", True),
                     ("night%2F2026%2Fztf.avro", True), ("line\nbreak.avro", False),
                     (os.fsdecode(b"latin1-caf\xe9.avro"), False)):
        f = src.take(src.single_null)
        data = f.read_bytes()
        candid = _record(data)[1]["candidate"]["candid"]
        (folder / name).write_bytes(data)
        items.append(Item(name, f"a real alert named {name!r}", [] if ok else [(None, frozenset({"unsafe_key"}))],
                          [candid] if ok else []))
    return items


def _gunzip_fails(data: bytes) -> bool:
    try:
        gzip.decompress(data)
    except Exception:  # noqa: BLE001
        return True
    return False
