"""Object stores: a local folder (embedded default) or any S3-compatible endpoint, behind one small interface.

Keys are '/'-separated. ETags follow S3 for single-part uploads (hex MD5 of the content), so an identical re-upload
has the same identity in both modes.

Confinement is checked here, once, for every caller: each key a store is given passes :func:`keys.check_key` (no
absolute key, no ``.``/``..``/empty segment, no control character), and a local store also refuses a key whose real
path (symlinks resolved) is not under its root. A refused key raises :class:`keys.UnsafeName` (bad input, reason
``unsafe_key``) before anything touches the filesystem or the endpoint.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Protocol
from pyarrow import fs

from ateda.config import Settings
from ateda.errors import TransientError
from ateda.keys import UnsafeName, check_bucket, check_key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    mtime: float = 0.0


class ObjectStore(Protocol):
    def uri(self, key: str) -> str: ...
    def put_bytes(self, key: str, data: bytes) -> str: ...
    def put_file(self, key: str, path: Path) -> str: ...
    def open(self, key: str) -> IO[bytes]: ...
    def get_bytes(self, key: str) -> bytes: ...
    def head(self, key: str) -> ObjectInfo | None: ...
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def delete(self, key: str) -> None: ...


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_XATTR = "user.ateda.etag"


def _remember_etag(path: str | Path, etag: str) -> None:
    """Cache the MD5 ETag with the size and mtime it belongs to (so a later change invalidates it)."""
    try:
        st = os.stat(path)
        os.setxattr(path, _XATTR, f"{etag}:{st.st_size}:{st.st_mtime_ns}".encode())
    except OSError:  # a filesystem without user xattrs: the ETag is recomputed when asked
        pass


def _cached_etag(path: Path, st: os.stat_result) -> str | None:
    try:
        etag, size, mtime = os.getxattr(path, _XATTR).decode().split(":")
    except (OSError, ValueError):
        return None
    return etag if (int(size), int(mtime)) == (st.st_size, st.st_mtime_ns) else None


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is empty or a safe key, optionally ending in '/' (a listing prefix), else UnsafeName."""
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") and len(prefix) > 1 else prefix)
    return prefix


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class LocalStore:
    """A folder as a bucket. Writes are atomic (temp file + rename), so a watcher never sees half a file."""

    def __init__(self, root: Path, etags: bool = True) -> None:
        self.root = Path(root)
        self.etags = etags  # the lake needs no ETags: skip hashing what only the functions write
        self._real_root: str | None = None

    def _path(self, key: str) -> Path:
        """The file of ``key``: a safe key whose real path (symlinks resolved) stays under the root's."""
        check_key(key)
        path = self.root / key
        real = os.path.realpath(path)
        if not _under(real, self._root_resolved()):
            raise UnsafeName(f"object key {key!r} resolves outside its store")
        return path

    def _root_resolved(self) -> str:
        """The root's real path, resolved once it exists: the bucket watcher checks a key on each of its passes
        (``os.path.realpath`` is an ``lstat`` per path component, in Python), and resolved the root every time."""
        if self._real_root is not None:
            return self._real_root
        real = os.path.realpath(self.root)
        if os.path.isdir(real):
            self._real_root = real
        return real

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def put_bytes(self, key: str, data: bytes) -> str:
        return self._put(key, [data])

    def put_file(self, key: str, path: Path) -> str:
        with open(path, "rb") as src:
            return self._put(key, iter(lambda: src.read(1 << 20), b""))

    def _put(self, key: str, blocks) -> str:  # noqa: ANN001
        """Write atomically (temp file + rename), hashing on the way; the ETag is cached in an xattr."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        h = hashlib.md5() if self.etags else None
        with os.fdopen(fd, "wb") as fh:
            for block in blocks:
                if h:
                    h.update(block)
                fh.write(block)
        etag = h.hexdigest() if h else ""
        if h:
            _remember_etag(tmp, etag)
        os.replace(tmp, path)
        return etag

    def open(self, key: str) -> IO[bytes]:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise
        except (IsADirectoryError, NotADirectoryError) as exc:  # a folder, or a path under a file: no such object
            raise FileNotFoundError(key) from exc
        except OSError as exc:  # unreadable disk, stale NFS...: worth a retry
            raise TransientError(f"cannot open {key}: {exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size, _cached_etag(path, st) or md5_file(path), st.st_mtime)

    def names(self) -> Iterator[str]:
        """Keys only (no stat): the cheap way to notice new objects in a big folder."""
        stack = [""]
        while stack:
            prefix = stack.pop()
            try:
                entries = list(os.scandir(self.root / prefix if prefix else self.root))
            except FileNotFoundError:
                continue
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(f"{prefix}{e.name}/")
                else:
                    yield prefix + e.name

    def stat(self, key: str) -> ObjectInfo | None:
        """Size and mtime (no ETag)."""
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size, "", st.st_mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` (no ETag: computing it costs a read; callers ask ``head`` when they need it)."""
        check_prefix(prefix)
        base = self.root
        folder = prefix.rpartition("/")[0]
        start = self._path(folder) if folder else base  # only the part of the tree the prefix can match
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(base).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    st = full.stat()
                except FileNotFoundError:
                    continue
                yield ObjectInfo(key, st.st_size, "", st.st_mtime)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass


class S3Store:
    """An S3 bucket (MinIO, moto, AWS...) with an optional key prefix."""

    def __init__(self, client, bucket: str, prefix: str = "") -> None:  # noqa: ANN001 (boto3 client)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _call(self, fn, **kw):  # noqa: ANN001, ANN202
        from botocore.exceptions import BotoCoreError, ClientError  # S3 mode only: botocore is loaded with boto3

        try:
            return fn(Bucket=self.bucket, **kw)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(kw.get("Key", "")) from exc
            raise TransientError(f"s3 {fn.__name__} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"s3 {fn.__name__} failed: {exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> str:
        resp = self._call(self.client.put_object, Key=self._key(key), Body=data)
        return resp["ETag"].strip('"')

    def put_file(self, key: str, path: Path) -> str:
        with open(path, "rb") as fh:
            resp = self._call(self.client.put_object, Key=self._key(key), Body=fh)
        return resp["ETag"].strip('"')

    def open(self, key: str) -> IO[bytes]:
        return self._call(self.client.get_object, Key=self._key(key))["Body"]

    def get_bytes(self, key: str) -> bytes:
        return self.open(key).read()

    def head(self, key: str) -> ObjectInfo | None:
        try:
            resp = self._call(self.client.head_object, Key=self._key(key))
        except FileNotFoundError:
            return None
        return ObjectInfo(key, resp["ContentLength"], resp["ETag"].strip('"'), resp["LastModified"].timestamp())

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        token = None
        check_prefix(prefix)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        cut = len(self.prefix) + 1 if self.prefix else 0
        while True:
            kw = {"Prefix": full, **({"ContinuationToken": token} if token else {})}
            resp = self._call(self.client.list_objects_v2, **kw)
            for item in resp.get("Contents", []):
                yield ObjectInfo(item["Key"][cut:], item["Size"], item["ETag"].strip('"'),
                                 item["LastModified"].timestamp())
            if not resp.get("IsTruncated"):
                return
            token = resp["NextContinuationToken"]

    def delete(self, key: str) -> None:
        self._call(self.client.delete_object, Key=self._key(key))


def s3_client(settings: Settings):  # noqa: ANN201
    import boto3  # S3 mode only: the local lake never loads boto3
    from botocore.config import Config  # S3 mode only (see boto3 above)

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key or None,
        aws_secret_access_key=settings.s3_secret_key or None,
        # checksums only when the operation requires one: stores that predate the 2025 defaults (Ceph RGW 16,
        # older MinIO) refuse the chunked checksum trailer with HTTP 411 (docs/s3.md)
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32,
                      request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    )


def store_for_uri(uri: str, settings: Settings, etags: bool = True) -> ObjectStore:
    """``s3://bucket/prefix`` -> S3Store, anything else -> LocalStore on that folder."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[5:].partition("/")
        return S3Store(s3_client(settings), bucket, prefix)
    return LocalStore(Path(uri), etags=etags)


def bucket_store(settings: Settings, bucket: str | None = None) -> ObjectStore:
    """The source bucket: on S3 when an endpoint is set, else a folder under ``$ATEDA_HOME/bucket``.

    ``bucket`` comes from events: it must be a valid S3 bucket name (UnsafeName otherwise), never a path."""
    name = check_bucket(bucket or settings.bucket)
    if settings.uses_s3:
        return S3Store(s3_client(settings), name)
    return LocalStore(settings.bucket_root / name)


def lake_store(settings: Settings) -> ObjectStore:
    return store_for_uri(settings.lake, settings, etags=False)


def arrow_filesystem(uri: str, settings: Settings):  # noqa: ANN201
    """A pyarrow filesystem and path for ``uri`` (a local path or s3://bucket/key)."""

    if uri.startswith("s3://"):
        return _s3_fs(settings), uri[5:]
    return fs.LocalFileSystem(), uri


@functools.cache
def _s3_fs(settings: Settings):  # noqa: ANN202
    return fs.S3FileSystem(
            endpoint_override=settings.s3_endpoint or None, region=settings.s3_region,
            access_key=settings.s3_access_key or None, secret_key=settings.s3_secret_key or None,
            scheme="https" if settings.s3_endpoint.startswith("https") else "http",
        )
