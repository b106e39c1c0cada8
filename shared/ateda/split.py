"""Split: bucket objects -> staged Parquet (alert rows, cutouts), one ``alerts.staged`` event per chunk.

Reads single-alert ``.avro``, multi-alert containers, and ``.tar``/``.tar.gz`` of ``.avro`` members (streamed:
a tarball is never held in memory). Parts are deterministic (part = alert index in the object // chunk size), so
a re-run stages the same parts, which bronze recognises as already committed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .alerts import AlertBatch, DecodedFile, Source, decode_container
from .config import Settings
from .errors import BadInput
from .quarantine import quarantine
from .storage import ObjectStore

Emit = Callable[[str, dict, str], None]  # (event type, data, subject)


class _Prefixed(io.RawIOBase):
    """A stream that replays bytes already read (for sniffing) before the rest of the underlying stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)


def _read_head(stream: IO[bytes], n: int = 512) -> bytes:
    head = b""
    while len(head) < n:
        block = stream.read(n - len(head))
        if not block:
            break
        head += block
    return head


def iter_containers(stream: IO[bytes]) -> Iterator[tuple[str | None, bytes | BadInput]]:
    """Yield (member name or None, Avro container bytes or the BadInput for that member)."""
    head = _read_head(stream)
    if not head:
        yield None, BadInput("empty_file", "zero bytes")
        return
    if head[:2] == b"\x1f\x8b":
        gz = io.BufferedReader(gzip.GzipFile(fileobj=io.BufferedReader(_Prefixed(head, stream))), 1 << 20)
        try:
            inner = _read_head(gz)
        except (OSError, EOFError) as exc:
            yield None, BadInput("corrupt_gzip", str(exc))
            return
        yield from _dispatch(inner, gz)
        return
    yield from _dispatch(head, stream)


def _dispatch(head: bytes, stream: IO[bytes]) -> Iterator[tuple[str | None, bytes | BadInput]]:
    if head[257:262] == b"ustar":
        yield from _tar_members(io.BufferedReader(_Prefixed(head, stream), 1 << 20))
    elif head[:4] == b"Obj\x01":
        yield None, head + stream.read()
    elif not head:
        yield None, BadInput("empty_file", "zero bytes after decompression")
    else:
        yield None, BadInput("not_avro", f"neither Avro nor tar (starts with {head[:8]!r})")


def _tar_members(stream: IO[bytes]) -> Iterator[tuple[str | None, bytes | BadInput]]:
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                fh = tar.extractfile(member)
                data = fh.read() if fh else b""
                yield member.name, data
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        yield "<tar stream>", BadInput("truncated_tar", f"{type(exc).__name__}: {exc}")


@dataclass
class _ObjectProgress:
    src: Source
    fixed_part: int | None = None  # set when this is one part of a fanned-out tarball
    alerts: int = 0
    fanned_parts: int = 0
    rejected: list[dict] = field(default_factory=list)


@dataclass
class Splitter:
    """Splits the objects of one ``object.created`` event. ``emit`` posts follow-up events."""

    settings: Settings
    bucket: ObjectStore
    lake: ObjectStore
    emit: Emit
    function: str = "split"
    batch: AlertBatch = field(default_factory=AlertBatch)
    parts: dict[tuple[str, str, str, int], int] = field(default_factory=dict)
    chunks: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    arrivals: dict[tuple[str, str, str], str | None] = field(default_factory=dict)

    def run(self, bucket_name: str, objects: list[dict]) -> dict:
        done = []
        for obj in objects:
            part_of = obj.get("part_of")
            if part_of:  # a part of a big tarball, re-emitted by the split that read the tarball
                src = Source(part_of["bucket"], part_of["key"], part_of["etag"], obj.get("time"))
                prog = _ObjectProgress(src, fixed_part=int(part_of["part"]))
                self.parts[(src.bucket, src.key, src.etag, prog.fixed_part)] = 0  # committed even if all junk
                self._split_stream(prog, self.lake, obj["key"])
            else:
                src = Source(bucket_name, obj["key"], obj.get("etag") or "", obj.get("time"))
                prog = _ObjectProgress(src)
                self._split_stream(prog, self.bucket, src.key)
            self.arrivals[(src.bucket, src.key, src.etag)] = src.arrived_at
            done.append(prog)
        self._flush()
        self._write_manifest(done)
        return {"chunks": self.chunks, "rejected": self.rejected,
                "alerts": sum(p.alerts for p in done), "objects": len(done)}

    # -- one object

    def _split_stream(self, prog: _ObjectProgress, store: ObjectStore, key: str) -> None:
        try:
            stream = store.open(key)
        except FileNotFoundError:
            self._reject(prog, BadInput("missing_object", "gone from the store before it was read"), None, None)
            return
        members: list[tuple[str, bytes]] = []  # tar members held back until we know the tarball's size
        with stream:
            for member, payload in iter_containers(stream):
                if isinstance(payload, BadInput):
                    self._reject(prog, payload, member, None)
                elif member is None or prog.fixed_part is not None:
                    self._split_container(prog, member, payload)
                else:
                    members.append((member, payload))
                    if len(members) == self.settings.chunk_alerts:  # a big tarball: fan its parts out
                        self._fan_out(prog, members)
                        members = []
        if prog.fanned_parts and members:
            self._fan_out(prog, members)
        else:
            for member, payload in members:
                self._split_container(prog, member, payload)
        if prog.alerts == 0 and not prog.rejected and not prog.fanned_parts:
            self._reject(prog, BadInput("no_alerts", "no Avro alert found in the object"), None, None)

    def _fan_out(self, prog: _ObjectProgress, members: list[tuple[str, bytes]]) -> None:
        """Write one part of a tarball as a plain tar in the lake and emit it as its own object.created, so the
        parts of one tarball are decoded by many split instances at once."""
        src, part = prog.src, prog.fanned_parts
        key = f"staging/raw/{hashlib.sha1(f'{src.bucket}/{src.key}@{src.etag}'.encode()).hexdigest()[:20]}/part-{part:06d}.tar"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        self.lake.put_bytes(key, buf.getvalue())
        obj = {"key": key, "etag": "", "store": "lake", "time": src.arrived_at,
               "part_of": {"bucket": src.bucket, "key": src.key, "etag": src.etag, "part": part}}
        self.emit("dev.ateda.object.created", {"bucket": src.bucket, "objects": [obj]}, f"{src.key}#part-{part}")
        prog.fanned_parts += 1

    def _split_container(self, prog: _ObjectProgress, member: str | None, data: bytes) -> None:
        try:
            decoded = decode_container(data)
        except BadInput as err:
            self._reject(prog, err, member, data)
            return
        if prog.fixed_part is not None:
            self._add(prog, decoded, decoded.records, prog.fixed_part, member, data)
        else:
            self._split_records(prog, decoded, member, data)
        if decoded.error is not None:
            self._reject(prog, decoded.error, member, data, kept=len(decoded.records))

    def _split_records(self, prog: _ObjectProgress, decoded: DecodedFile, member: str | None, data: bytes) -> None:
        """Parts are deterministic: part = alert index in the object // chunk size; flush at part boundaries."""
        size = self.settings.chunk_alerts
        start = 0
        while start < len(decoded.records):
            part = prog.alerts // size
            n = min(len(decoded.records) - start, size - prog.alerts % size)
            self._add(prog, decoded, decoded.records[start:start + n], part, member, data)
            start += n
            if prog.alerts % size == 0 and self.batch.n_alerts >= size:
                self._flush()

    def _add(self, prog: _ObjectProgress, decoded: DecodedFile, records: list[dict], part: int,
             member: str | None, data: bytes) -> None:
        before = self.batch.n_alerts
        bad = self.batch.add(decoded, records, prog.src, part, member)
        added = self.batch.n_alerts - before
        prog.alerts += len(records)  # malformed records still advance the index: parts stay deterministic
        key = (prog.src.bucket, prog.src.key, prog.src.etag, part)
        self.parts[key] = self.parts.get(key, 0) + added
        if bad:
            detail = "; ".join(sorted({b.detail for b in bad}))[:500]
            self._reject(prog, BadInput(bad[0].reason, f"{len(bad)} malformed record(s): {detail}"), member, data,
                         kept=added)

    def _reject(self, prog: _ObjectProgress, err: BadInput, member: str | None, payload: bytes | None,
                kept: int = 0) -> None:
        from .metrics import m

        record = quarantine(self.lake, prog.src, err, member, payload, kept)
        prog.rejected.append(record)
        self.rejected.append(record)
        m().rejected.labels(self.function, err.reason).inc()
        self.emit("dev.ateda.input.rejected", record, f"{prog.src.key}" + (f"#{member}" if member else ""))

    # -- staging

    def _flush(self) -> None:
        if not self.parts:
            return
        alerts, cutouts = self.batch.tables()
        part_keys = sorted(self.parts)
        chunk_id = hashlib.sha1(json.dumps(part_keys).encode()).hexdigest()[:20]
        attempt = uuid.uuid4().hex[:8]
        files: dict[str, list[str]] = {"alert": [], "cutout": []}
        nights: set[str] = set()
        for table_name, table in (("alert", alerts), ("cutout", cutouts)):
            if table is None:
                continue
            for night, piece in _by_night(table):
                nights.add(night)
                key = f"staging/{chunk_id}/{attempt}/{table_name}-{night}.parquet"
                files[table_name].append(self._write_parquet(key, piece, table_name))
        data = {
            "chunk": chunk_id,
            "alerts": self.batch.n_alerts,
            "cutouts": 0 if cutouts is None else cutouts.num_rows,
            "nights": sorted(nights),
            "sources": [{"bucket": b, "key": k, "etag": e, "part": p, "alerts": self.parts[(b, k, e, p)],
                         "arrived_at": self.arrivals.get((b, k, e))} for b, k, e, p in part_keys],
            "files": files,
        }
        self.emit("dev.ateda.alerts.staged", data, chunk_id)
        self.chunks.append(data)
        self.batch = AlertBatch()
        self.parts = {}

    def _write_parquet(self, key: str, table: pa.Table, table_name: str) -> str:
        sink = io.BytesIO()
        if table_name == "cutout":
            # stamps are gzipped FITS already: no compression, no dictionary, no min/max statistics on them
            others = [c for c in table.column_names if c != "stamp_data"]
            pq.write_table(table, sink, compression={c: "zstd" for c in others} | {"stamp_data": "NONE"},
                           use_dictionary=others, write_statistics=others, row_group_size=50_000)
        else:
            pq.write_table(table, sink, compression="zstd", row_group_size=50_000)
        self.lake.put_bytes(key, sink.getvalue())
        return self.lake.uri(key)

    def _write_manifest(self, done: list[_ObjectProgress]) -> None:
        """One manifest per request: how many parts each object has (None for a part of a fanned-out tarball,
        whose count the tarball's own manifest gives) and what was rejected. ``ateda ingest`` waits on these."""
        objects = []
        for prog in done:
            src = prog.src
            if prog.fixed_part is not None:
                parts = None
            elif prog.fanned_parts:
                parts = prog.fanned_parts
            else:
                parts = -(-prog.alerts // self.settings.chunk_alerts)
            objects.append({"key": src.key, "etag": src.etag, "parts": parts, "part": prog.fixed_part,
                            "rejected": [{"reason": r["reason"], "member": r["member"], "detail": r["detail"]}
                                         for r in prog.rejected]})
        record = {"bucket": done[0].src.bucket if done else "", "objects": objects,
                  "split_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
        blob = json.dumps(record).encode()
        key = f"manifests/{record['bucket']}/{hashlib.sha1(blob).hexdigest()[:20]}.json"
        self.lake.put_bytes(key, blob)


def _by_night(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    nights = pc.unique(table["night"]).to_pylist()
    if len(nights) == 1:
        yield nights[0].isoformat(), table
        return
    for night in sorted(nights):
        yield night.isoformat(), table.filter(pc.equal(table["night"], pa.scalar(night, pa.date32())))
