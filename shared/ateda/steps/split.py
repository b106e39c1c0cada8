"""Split: bucket objects -> staged Parquet (alert rows, cutouts), one ``alerts.staged`` event per chunk.

Reads single-alert ``.avro``, multi-alert containers, and ``.tar``/``.tar.gz`` of ``.avro`` members (streamed:
a tarball is never held in memory). Parts are deterministic (part = alert index in the object // chunk size), so
a re-run stages the same parts, which bronze recognises as already committed.

Failures stay with the smallest unit they belong to: a part of one alert (an unreadable history is quarantined as
``unreadable_history`` while the alert's candidate and cutouts go on), one alert, one tar member, one object.
Anything that goes wrong while decoding is bad input for that unit (quarantined with a reason; the rest goes on);
only a failure of the store itself (:class:`TransientError`, an ``OSError`` writing the lake) fails the request, for the broker to retry.
Reading is bounded (:class:`~ateda.avro.Limits`: bytes per member or object, members per tarball, alerts per
container), and so is quarantine: past ``quarantine_records_per_object`` records an object's further rejections are
counted into one summary record per reason.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ateda.config import Settings
from ateda.errors import BadInput, TransientError
from ateda.keys import name_segment
from ateda.lake.quarantine import quarantine
from ateda.lake.storage import ObjectStore
from ateda.serving.metrics import instruments
from ateda.lsst import alerts as lsst
from ateda.lsst.schemas import is_plausible_id
from ateda.avro import Limits, bad_input
from ateda.ztf.alerts import AlertBatch, DecodedFile, Source, check_header, decode_container

Emit = Callable[..., None]  # (event type, data, subject, survey=None): survey is the event's extension attribute
TAR_STREAM = "<tar stream>"  # the member name of a failure of the tarball itself (not of one member)
_BLOCK = 1 << 20
_SUMMARY_NAMES = 5  # member names a summary record lists
_NOT_AN_OBJECT = (FileNotFoundError, IsADirectoryError, NotADirectoryError)  # the key names no object (now)
_SNIFF = 1 << 16  # bytes of a container the survey is told from


class _StoreStream(io.RawIOBase):
    """The object as the store streams it. A failure to read it is the store's (TransientError: retried), never the
    input's; this keeps it apart from decoding errors that share its types (``gzip.BadGzipFile`` is an OSError)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        try:
            data = self._raw.read(len(b))
        except TransientError:
            raise
        except Exception as exc:
            raise TransientError(f"reading the object failed: {type(exc).__name__}: {exc}") from exc
        b[: len(data)] = data
        return len(data)


class _Gunzip(io.RawIOBase):
    """The decompressed side of a gzip stream; any decompression failure (zlib.error, a CRC or length mismatch,
    a stream cut short) is the input's: ``BadInput("corrupt_gzip")``."""

    def __init__(self, compressed: IO[bytes]) -> None:
        self._gz = gzip.GzipFile(fileobj=compressed)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        try:
            data = self._gz.read(len(b))
        except TransientError:
            raise
        except (zlib.error, EOFError, OSError, ValueError) as exc:
            raise BadInput("corrupt_gzip", f"{type(exc).__name__}: {exc}") from exc
        b[: len(data)] = data
        return len(data)


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


def _read_limited(stream: IO[bytes], limit: int, head: bytes = b"") -> bytes:
    """``head`` and the rest of ``stream``, read in bounded blocks; past ``limit`` bytes: ``BadInput("too_large")``
    (at most ``limit`` + one block is ever held)."""
    parts, got = [head], len(head)
    while got <= limit:
        block = stream.read(min(_BLOCK, limit + 1 - got))
        if not block:
            return b"".join(parts)
        parts.append(block)
        got += len(block)
    raise BadInput("too_large", f"more than {limit} bytes (decompressed)")


def iter_containers(stream: IO[bytes], limits: Limits | None = None) -> Iterator[tuple[str | None, bytes | BadInput]]:
    """Yield (member name or None, Avro container bytes or the BadInput for that member).

    Never raises for bad input (a gzip, tar or size failure is yielded as a BadInput, the members before it having
    been yielded); raises TransientError when the store fails to deliver the bytes.
    """
    limits = limits or Limits()
    stream = io.BufferedReader(_StoreStream(stream), 1 << 16)
    head = _read_head(stream)
    if not head:
        yield None, BadInput("empty_file", "zero bytes")
        return
    try:
        if head[:2] == b"\x1f\x8b":
            gz = io.BufferedReader(_Gunzip(io.BufferedReader(_Prefixed(head, stream))), 1 << 20)
            yield from _dispatch(_read_head(gz), gz, limits)
        else:
            yield from _dispatch(head, stream, limits)
    except BadInput as err:  # raised by a layer below the member being read (gzip, size)
        yield None, err


def _dispatch(head: bytes, stream: IO[bytes], limits: Limits) -> Iterator[tuple[str | None, bytes | BadInput]]:
    if head[257:262] == b"ustar":
        yield from _tar_members(io.BufferedReader(_Prefixed(head, stream), 1 << 20), limits)
    elif head[:4] == b"Obj\x01" or _is_frame(head):
        yield None, _read_limited(stream, limits.max_bytes, head)
    elif not head:
        yield None, BadInput("empty_file", "zero bytes after decompression")
    else:
        yield None, BadInput("not_avro", f"neither Avro nor tar (starts with {head[:8]!r})")


def _is_frame(head: bytes) -> bool:
    """A Confluent wire-format message (Rubin's Kafka stream): byte 0 = 0, then a plausible Rubin schema id."""
    return len(head) > 5 and head[0] == 0 and is_plausible_id(int.from_bytes(head[1:5], "big"))


def _survey(data: bytes) -> str | None:
    """"lsst" for Rubin's forms (container, frame, gzip of either), "ztf" or None otherwise (the ZTF path decides)."""
    try:
        return lsst.survey_of(data[:_SNIFF])
    except Exception:  # noqa: BLE001 (hostile bytes: the ZTF path quarantines them with its reasons)
        return None


def _skip_reason(member: tarfile.TarInfo) -> str | None:
    """Why a tar member carries no alert to read (None for a regular, visible file)."""
    kind = ("symbolic link to " + repr(member.linkname) if member.issym()
            else "hard link to " + repr(member.linkname) if member.islnk()
            else "character device" if member.ischr() else "block device" if member.isblk()
            else "fifo" if member.isfifo() else None if member.isfile() else f"member of tar type {member.type!r}")
    if kind:
        return f"{kind}: not a regular file"
    if member.name.rstrip("/").rsplit("/", 1)[-1].startswith("."):
        return "dot-file (AppleDouble ._ resource fork, .DS_Store...): not an alert"
    return None


def _tar_members(stream: IO[bytes], limits: Limits) -> Iterator[tuple[str | None, bytes | BadInput]]:
    """Members of a tar stream, each read whole but bounded. Directories carry no data and are passed over
    silently; links, devices, fifos and dot-files are yielded as ``tar_member_skipped``."""
    seen = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.isdir():
                    continue
                seen += 1
                if seen > limits.max_members:
                    yield TAR_STREAM, BadInput("too_many_members",
                                               f"more than {limits.max_members} members: the rest is not read")
                    return
                skip = _skip_reason(member)
                if skip:
                    yield member.name, BadInput("tar_member_skipped", skip)
                elif member.size > limits.max_bytes:
                    yield member.name, BadInput("too_large", f"member of {member.size} bytes (limit "
                                                             f"{limits.max_bytes})")
                else:
                    fh = tar.extractfile(member)
                    yield member.name, _read_limited(fh, limits.max_bytes) if fh else b""
    except BadInput as err:
        yield TAR_STREAM, err
    except TransientError:
        raise
    except Exception as exc:  # tarfile.TarError, EOFError, a header that does not parse...
        yield TAR_STREAM, BadInput("truncated_tar", f"{type(exc).__name__}: {exc}")


@dataclass
class _ObjectProgress:
    src: Source
    store: ObjectStore
    key: str  # where the object is read from (the bucket key, or a tarball part's key in the lake)
    fixed_part: int | None = None  # set when this is one part of a fanned-out tarball
    alerts: int = 0
    fanned_parts: int = 0
    rejected: list[dict] = field(default_factory=list)
    records: int = 0  # quarantine records written for this object (summaries excluded)
    overflow: dict[str, dict] = field(default_factory=dict)  # reason -> {count, members} past the record cap
    survey: str | None = None  # of the alerts added last: a part never holds two surveys (see _start_survey)


@dataclass
class Splitter:
    """Splits the objects of one ``object.created`` event. ``emit`` posts follow-up events."""

    settings: Settings
    bucket: ObjectStore
    lake: ObjectStore
    emit: Emit
    function: str = "split"
    batch: AlertBatch = field(default_factory=AlertBatch)
    # Rubin rows of the pending chunk, checked, converted to Arrow at the flush: (progress, alert row, cutout rows)
    lsst_pending: list[tuple[_ObjectProgress, dict, list[dict]]] = field(default_factory=list)
    parts: dict[tuple[str, str, str, int], int] = field(default_factory=dict)
    chunks: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    arrivals: dict[tuple[str, str, str], str | None] = field(default_factory=dict)
    progress: dict[tuple[str, str, str], _ObjectProgress] = field(default_factory=dict)
    by_survey: dict[str, int] = field(default_factory=dict)  # alerts staged per survey (ztf, lsst)

    @property
    def limits(self) -> Limits:
        return Limits.of(self.settings)

    def run(self, bucket_name: str, objects: list[dict]) -> dict:
        done = []
        for obj in objects:
            part_of = obj.get("part_of")
            if part_of:  # a part of a big tarball, re-emitted by the split that read the tarball
                src = Source(part_of["bucket"], part_of["key"], part_of["etag"], obj.get("time"))
                prog = _ObjectProgress(src, self.lake, obj["key"], fixed_part=int(part_of["part"]))
                self.parts[(src.bucket, src.key, src.etag, prog.fixed_part)] = 0  # committed even if all junk
            else:
                src = Source(bucket_name, str(obj["key"]), str(obj.get("etag") or ""), obj.get("time"))
                prog = _ObjectProgress(src, self.bucket, src.key)
            self.progress[(src.bucket, src.key, src.etag)] = prog
            self._split_object(prog)
            self.arrivals[(src.bucket, src.key, src.etag)] = src.arrived_at
            done.append(prog)
        self._flush()
        for prog in done:  # rows dropped at the last conversion may have added to an object's summaries
            self._write_summaries(prog)
        self._write_manifest(done)
        return {"chunks": self.chunks, "rejected": self.rejected,
                "alerts": sum(p.alerts for p in done), "objects": len(done), "by_survey": dict(self.by_survey)}

    # -- one object

    def _split_object(self, prog: _ObjectProgress) -> None:
        """One object; whatever its bytes do, only a store failure leaves this method by raising."""
        try:
            self._split_stream(prog)
        except (TransientError, OSError):  # the store's or the lake's: the request fails, the broker retries
            raise
        except Exception as exc:  # a decoding failure none of the layers below turned into bad input
            self._reject(prog, bad_input(exc, "corrupt_avro"), None, None)
        self._write_summaries(prog)

    def _split_stream(self, prog: _ObjectProgress) -> None:
        try:
            stream = prog.store.open(prog.key)
        except _NOT_AN_OBJECT as exc:
            self._reject(prog, BadInput("missing_object", f"not an object in the store ({type(exc).__name__})"),
                         None, None)
            return
        except BadInput as err:  # a key the store refuses (unsafe_key): never read
            self._reject(prog, err, None, None)
            return
        members: list[tuple[str, bytes]] = []  # tar members held back until we know the tarball's size
        held = 0
        with stream:
            for member, payload in iter_containers(stream, self.limits):
                if isinstance(payload, BadInput):
                    self._reject(prog, payload, member, None)
                elif member is None or prog.fixed_part is not None:
                    self._split_container(prog, member, payload)
                elif _survey(payload) != "lsst" and (problem := _header_problem(payload, self.limits)) is not None:
                    self._reject(prog, problem, member, payload)  # here, not in a part: one cap per tarball
                else:
                    members.append((member, payload))
                    held += len(payload)
                    # a big tarball (by members, or by bytes held: memory stays bounded): fan its parts out
                    if len(members) == self.settings.chunk_alerts or held > self.settings.max_member_bytes:
                        self._fan_out(prog, members)
                        members, held = [], 0
        if prog.fanned_parts and members:
            self._fan_out(prog, members)
        else:
            for member, payload in members:
                self._split_container(prog, member, payload)
        if prog.alerts == 0 and not prog.rejected and not prog.overflow and not prog.fanned_parts:
            self._reject(prog, BadInput("no_alerts", "no Avro alert found in the object"), None, None)

    def _fan_out(self, prog: _ObjectProgress, members: list[tuple[str, bytes]]) -> None:
        """Write parts of a tarball as plain tars in the lake and emit each as its own object.created, so the parts
        of one tarball are decoded by many split instances at once. A run of members of one survey is one part."""
        run: list[tuple[str, bytes]] = []
        for member in members:
            if run and _survey(member[1]) != _survey(run[-1][1]):
                self._fan_out_part(prog, run)
                run = []
            run.append(member)
        if run:
            self._fan_out_part(prog, run)

    def _fan_out_part(self, prog: _ObjectProgress, members: list[tuple[str, bytes]]) -> None:
        src, part = prog.src, prog.fanned_parts
        key = f"staging/raw/{hashlib.sha1(f'{src.bucket}/{src.key}@{src.etag}'.encode()).hexdigest()[:20]}/part-{part:06d}.tar"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
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
        if _survey(data) == "lsst":
            self._split_lsst(prog, member, data)
            return
        try:
            decoded = decode_container(data, self.limits)
        except Exception as exc:  # BadInput, or anything fastavro raises on hostile bytes
            self._reject(prog, bad_input(exc, "corrupt_avro"), member, data)
            return
        if prog.fixed_part is not None:
            self._start_survey(prog, "ztf")
            self._add(prog, decoded, decoded.records, prog.fixed_part, member, data)
        else:
            self._split_records(prog, decoded, member, data)
        if decoded.error is not None:
            self._reject(prog, decoded.error, member, data, kept=len(decoded.records))

    def _split_records(self, prog: _ObjectProgress, decoded: DecodedFile, member: str | None, data: bytes) -> None:
        """Parts are deterministic: part = alert index in the object // chunk size; flush at part boundaries."""
        size = self.settings.chunk_alerts
        self._start_survey(prog, "ztf")
        start = 0
        while start < len(decoded.records):
            part = prog.alerts // size
            n = min(len(decoded.records) - start, size - prog.alerts % size)
            self._add(prog, decoded, decoded.records[start:start + n], part, member, data)
            start += n
            if prog.alerts % size == 0 and self._pending_alerts() >= size:
                self._flush()

    def _start_survey(self, prog: _ObjectProgress, survey: str) -> None:
        """Alerts of another survey than the object's previous ones start a new part (indices skipped up to the
        next boundary: parts stay deterministic), so a part's rows are in one alert table and bronze's recovery of
        an abandoned commit, which reads one alert table, always sees a whole part."""
        size = self.settings.chunk_alerts
        if prog.survey not in (None, survey) and prog.fixed_part is None and prog.alerts % size:
            prog.alerts += size - prog.alerts % size
        prog.survey = survey
        if self._pending_survey() not in (None, survey):  # a chunk holds one survey: its event says which
            self._flush()

    def _pending_survey(self) -> str | None:
        """The survey of the rows staged so far in this chunk (None: none yet)."""
        if self.lsst_pending:
            return "lsst"
        return "ztf" if self.batch.n_alerts or self.batch.dropped else None

    def _pending_alerts(self) -> int:
        return self.batch.n_alerts + len(self.lsst_pending)

    # -- Rubin

    def _split_lsst(self, prog: _ObjectProgress, member: str | None, data: bytes) -> None:
        """Rubin alerts (a container, a Confluent frame, gzip of either): same parts, ledger and quarantine as ZTF;
        rows for bronze.lsst_alert and the cutout table (survey "lsst")."""
        try:
            decoded = lsst.decode_lsst(data, self.limits)
        except Exception as exc:  # BadInput (unknown_schema_id, truncated...), or fastavro on hostile bytes
            self._reject(prog, bad_input(exc, "not_lsst_alert"), member, data)
            return
        size = self.settings.chunk_alerts
        self._start_survey(prog, "lsst")
        start, records = 0, decoded.records
        while start < len(records):
            part = prog.fixed_part if prog.fixed_part is not None else prog.alerts // size
            n = len(records) - start if prog.fixed_part is not None else min(len(records) - start,
                                                                            size - prog.alerts % size)
            self._add_lsst(prog, decoded, records[start:start + n], part, member, data)
            start += n
            if prog.fixed_part is None and prog.alerts % size == 0 and self._pending_alerts() >= size:
                self._flush()
        if decoded.error is not None:
            self._reject(prog, decoded.error, member, data, kept=len(records))

    def _add_lsst(self, prog: _ObjectProgress, decoded: lsst.LsstDecoded, records: list[dict], part: int,
                  member: str | None, data: bytes) -> None:
        src = prog.src
        meta = {"source_bucket": src.bucket, "source_key": src.key, "source_etag": src.etag,
                "source_member": member, "part": part, "schema_version": decoded.schema_version,
                "schema_id": decoded.schema_id, "ingested_at": self.batch.ingested_at}
        rows, rejected = lsst.lsst_rows(records, meta)  # checked now, converted with the whole chunk at the flush
        prog.alerts += len(records)  # rejected records still advance the index: parts stay deterministic
        key = (src.bucket, src.key, src.etag, part)
        self.parts[key] = self.parts.get(key, 0) + len(rows)
        self.by_survey["lsst"] = self.by_survey.get("lsst", 0) + len(rows)
        self.lsst_pending.extend((prog, row, cuts) for _, row, cuts in rows)
        if rejected:
            bad = [err for _, err in rejected]
            detail = "; ".join(sorted({b.detail for b in bad}))[:500]
            self._reject(prog, BadInput(bad[0].reason, f"{len(bad)} malformed record(s): {detail}"), member, data,
                         kept=len(rows))

    def _add(self, prog: _ObjectProgress, decoded: DecodedFile, records: list[dict], part: int,
             member: str | None, data: bytes) -> None:
        before = self.batch.n_alerts
        bad = self.batch.add(decoded, records, prog.src, part, member)
        # rows the batch dropped while converting (any part's) were counted out of n_alerts there; they are taken
        # out of their own part's count by _take_dropped
        added = self.batch.n_alerts - before + len(self.batch.dropped)
        prog.alerts += len(records)  # malformed records still advance the index: parts stay deterministic
        key = (prog.src.bucket, prog.src.key, prog.src.etag, part)
        self.parts[key] = self.parts.get(key, 0) + added
        self.by_survey["ztf"] = self.by_survey.get("ztf", 0) + added
        if bad:
            detail = "; ".join(sorted({b.detail for b in bad}))[:500]
            self._reject(prog, BadInput(bad[0].reason, f"{len(bad)} malformed record(s): {detail}"), member, data,
                         kept=added)
        for _row, err in self.batch.take_history_problems():  # kept without its unreadable history
            self._reject(prog, err, member, data, kept=1)
        self._take_dropped()

    def _take_dropped(self) -> None:
        """Quarantine the rows the batch could not convert (see AlertBatch): each is taken out of its part."""
        for row, err in self.batch.take_dropped():
            key = (row["source_bucket"], row["source_key"], row["source_etag"], row["part"])
            self.parts[key] = self.parts.get(key, 1) - 1
            prog = self.progress.get(key[:3])
            if prog is not None:
                self._reject(prog, err, row["source_member"], None)

    def _reject(self, prog: _ObjectProgress, err: BadInput, member: str | None, payload: bytes | None,
                kept: int = 0) -> None:
        """Quarantine one rejection of ``prog``'s object: a record (and a copy of the bytes, capped) for each of
        the first ``quarantine_records_per_object`` members or alerts, then only a count per reason (see
        _write_summaries). A failure of the object or tarball itself (no member, or ``<tar stream>``) is always
        recorded, with a copy of the original object."""

        instruments().rejected.labels(self.function, err.reason).inc()
        whole = member in (None, TAR_STREAM)  # a failure of the object itself: at most a few, always recorded
        if not whole and prog.records >= self.settings.quarantine_records_per_object:
            over = prog.overflow.setdefault(err.reason, {"count": 0, "members": []})
            over["count"] += 1
            if len(over["members"]) < _SUMMARY_NAMES:
                over["members"].append(member)
            return
        prog.records += 1
        if payload is None and whole:
            with self._original(prog) as original:
                self._record(prog, err, member, original, kept)
        else:
            self._record(prog, err, member, payload, kept)

    def _record(self, prog: _ObjectProgress, err: BadInput, member: str | None, payload: bytes | IO[bytes] | None,
                kept: int) -> None:
        record = quarantine(self.lake, prog.src, err, member, payload, kept,
                            copy_limit=self.settings.quarantine_copy_bytes)
        prog.rejected.append(record)
        self.rejected.append(record)
        self.emit("dev.ateda.input.rejected", record, f"{prog.src.key}#{member}" if member else prog.src.key)

    def _original(self, prog: _ObjectProgress) -> IO[bytes] | _NoStream:
        try:
            return io.BufferedReader(_StoreStream(prog.store.open(prog.key)), _BLOCK)
        except (*_NOT_AN_OBJECT, BadInput):  # gone, or a key the store refuses: the record still says why
            return _NoStream()

    def _write_summaries(self, prog: _ObjectProgress) -> None:
        """One record per reason for the rejections past the per-object cap: how many, and the first members."""
        for reason, over in sorted(prog.overflow.items()):
            names = ", ".join(repr(n) for n in over["members"])
            more = ", ..." if over["count"] > len(over["members"]) else ""
            err = BadInput(reason, f"summary: {over['count']} more rejection(s) of this object for {reason}, past "
                                   f"the first {self.settings.quarantine_records_per_object} records; members: "
                                   f"{names}{more}")
            self._record(prog, err, None, None, 0)
        prog.overflow.clear()

    # -- staging

    def _flush(self) -> None:
        if not self.parts:
            return
        alerts, cutouts = self.batch.tables()
        self._take_dropped()
        lsst_alerts, lsst_cutouts = self._lsst_tables()
        part_keys = sorted(self.parts)
        chunk_id = hashlib.sha1(json.dumps(part_keys).encode()).hexdigest()[:20]
        attempt = uuid.uuid4().hex[:8]
        files: dict[str, list[str]] = {"alert": [], "cutout": []}
        if lsst_alerts is not None:
            files["lsst_alert"] = []
        nights: set[str] = set()
        staged = (("alert", "alert", alerts), ("cutout", "cutout", cutouts),
                  ("lsst_alert", "lsst_alert", lsst_alerts), ("cutout", "cutout-lsst", lsst_cutouts))
        for table_name, stem, table in staged:
            if table is None or table.num_rows == 0:
                continue
            for night, piece in _by_night(table):
                nights.add(night)
                key = f"staging/{chunk_id}/{attempt}/{stem}-{night}.parquet"
                files[table_name].append(self._write_parquet(key, piece, table_name))
        data = {
            "chunk": chunk_id,
            "alerts": self.batch.n_alerts + (0 if lsst_alerts is None else lsst_alerts.num_rows),
            "cutouts": (0 if cutouts is None else cutouts.num_rows) + (0 if lsst_cutouts is None else lsst_cutouts.num_rows),
            "nights": sorted(nights),
            "sources": [{"bucket": b, "key": k, "etag": e, "part": p, "alerts": self.parts[(b, k, e, p)],
                         "arrived_at": self.arrivals.get((b, k, e))} for b, k, e, p in part_keys],
            "files": files,
        }
        self.emit("dev.ateda.alerts.staged", data, chunk_id, survey="lsst" if lsst_alerts is not None else "ztf")
        self.chunks.append(data)
        self.batch = AlertBatch()
        self.lsst_pending = []
        self.parts = {}

    def _lsst_tables(self) -> tuple[pa.Table | None, pa.Table | None]:
        """The pending Rubin rows as Arrow tables, converted at once; a row Arrow cannot hold is quarantined and
        taken out of its part (as :meth:`_take_dropped` does for ZTF)."""
        if not self.lsst_pending:
            return None, None
        alerts, cutouts, dropped = lsst.rows_to_tables([(0, row, cuts) for _, row, cuts in self.lsst_pending])
        for j, err in dropped:
            prog, row, _ = self.lsst_pending[j]
            key = (row["source_bucket"], row["source_key"], row["source_etag"], row["part"])
            self.parts[key] = self.parts.get(key, 1) - 1
            self.by_survey["lsst"] -= 1
            self._reject(prog, err, row["source_member"], None)
        return alerts, cutouts

    def _write_parquet(self, key: str, table: pa.Table, table_name: str) -> str:
        sink = io.BytesIO()
        if table_name == "cutout":
            # stamps are gzipped FITS already: no compression, no dictionary, no min/max statistics on them
            others = [c for c in table.column_names if c != "stamp_data"]
            pq.write_table(table, sink, compression={c: "zstd" for c in others} | {"stamp_data": "NONE"},
                           use_dictionary=others, write_statistics=others, row_group_size=50_000)
        elif table_name == "lsst_alert":
            # ~1,800 nested leaf columns, mostly unique floats: dictionary pages cost time (~30 % of the write) and
            # bytes for nothing
            pq.write_table(table, sink, compression="zstd", use_dictionary=False, row_group_size=50_000)
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
        key = f"manifests/{name_segment(record['bucket'])}/{hashlib.sha1(blob).hexdigest()[:20]}.json"
        self.lake.put_bytes(key, blob)


def _header_problem(data: bytes, limits: Limits) -> BadInput | None:
    try:
        check_header(data, limits)
    except Exception as exc:  # noqa: BLE001 (whatever it is, it is this member's)
        return bad_input(exc, "corrupt_avro")
    return None


class _NoStream:
    """Stands in for an original object that cannot be read again: no copy, the record alone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _by_night(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    nights = pc.unique(table["night"]).to_pylist()
    if len(nights) == 1:
        yield nights[0].isoformat(), table
        return
    for night in sorted(nights):
        yield night.isoformat(), table.filter(pc.equal(table["night"], pa.scalar(night, pa.date32())))
