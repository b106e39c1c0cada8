"""A real S3 server with bucket notifications for the tests: a one-node Ceph cluster (one monitor, one memstore OSD,
radosgw) from Debian's packages (scripts/ceph.sh installs them), started from an empty folder on free loopback
ports and stopped by PID.

    with CephRGW(tmp_path / "ceph") as rgw:
        client = rgw.client()          # boto3 S3 client with the user's keys
        sns = rgw.sns()                # the same endpoint's SNS API (notification topics)

Settings that matter (field notes): no cephx (``auth * required = none``) but ``ms * mode = crc secure`` (without
them radosgw waits 300 s on "authenticate timed out"), pools of size one, and few placement groups per pool (rgw
creates eight pools; the default 32 each would pass the per-OSD limit on one OSD). pyarrow's S3 writes need
``AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED`` and ``AWS_RESPONSE_CHECKSUM_VALIDATION=WHEN_REQUIRED``
(:data:`CLIENT_ENV`: pass them to the processes that write, never by changing this process's environment).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import ctypes
import boto3
import requests
from botocore.config import Config

from ateda.ingest import Uploaded
from ateda.local.runtime import free_port

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")
ACCESS_KEY, SECRET_KEY = "atedatestaccess", "atedatestsecret0123456789"
REGION = "us-east-1"  # any name: RGW's default zonegroup answers to it
CLIENT_ENV = {"AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED", "AWS_RESPONSE_CHECKSUM_VALIDATION": "WHEN_REQUIRED"}


def missing() -> list[str]:
    """The Ceph binaries that are not installed."""
    return [b for b in BINARIES if shutil.which(b) is None]


class CephError(RuntimeError):
    pass


class CephRGW:
    """One monitor + one memstore OSD + radosgw under ``root``; :meth:`stop` ends each daemon by its PID."""

    def __init__(self, root: Path, start_timeout: float = 90.0) -> None:
        self.root = Path(root)
        self.start_timeout = start_timeout
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = 0
        self.url = ""
        self.fsid = str(uuid.uuid4())

    # ------------------------------------------------------------------ start
    def start(self) -> "CephRGW":
        lacking = missing()
        if lacking:
            raise CephError(f"Ceph is not installed (missing {', '.join(lacking)}): run scripts/ceph.sh as root")
        t0 = time.monotonic()
        try:
            self._configure()
            self._start_mon()
            self._start_osd()
            self.port = self._start_rgw()
            self.url = f"http://127.0.0.1:{self.port}"
            self._create_user()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0
        return self

    def _configure(self) -> None:
        r = self.root
        for d in ("run", "log", "mon/ceph-a", "osd/ceph-0", "rgw"):
            (r / d).mkdir(parents=True, exist_ok=True)
        self.mon_port = free_port()
        self.conf = r / "ceph.conf"
        self.conf.write_text(f"""[global]
fsid = {self.fsid}
mon host = v2:127.0.0.1:{self.mon_port}
mon initial members = a
public addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
ms client mode = crc secure
ms mon service mode = crc secure
ms mon cluster mode = crc secure
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = {r}/run
admin socket = {r}/run/$name.asok
log file = {r}/log/$name.log
pid file = {r}/run/$name.pid
keyring = {r}/keyring
mon data = {r}/mon/$cluster-$id
osd data = {r}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd max object size = 134217728
[client.rgw]
rgw data = {r}/rgw
rgw dns name = 127.0.0.1
rgw thread pool size = 64
""")
        self._run("monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]",
                  "--fsid", self.fsid, str(r / "monmap"))
        self._run("ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(r / "monmap"))

    def _run(self, *cmd: str, timeout: float = 60.0) -> str:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if p.returncode:
            raise CephError(f"{' '.join(cmd)} failed ({p.returncode}): {(p.stderr or p.stdout)[-2000:]}")
        return p.stdout

    def _ceph(self, *args: str, timeout: float = 60.0) -> str:
        return self._run("ceph", "-c", str(self.conf), "--connect-timeout", "30", *args, timeout=timeout)

    def _daemon(self, name: str, *cmd: str) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen([*cmd, "-f", "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        self.procs[name] = proc
        return proc

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise CephError(f"{name} exited ({proc.returncode}): {self.tail(name)}")

    def tail(self, name: str, n: int = 3000) -> str:
        out = ""
        for path in (self.root / "log" / f"{name}.out", *sorted((self.root / "log").glob(f"*{name}*.log"))):
            if path.exists():
                out += f"\n--- {path.name}\n" + path.read_text(errors="replace")[-n:]
        return out

    def _start_mon(self) -> None:
        self._daemon("mon", "ceph-mon", "-i", "a")

    def _start_osd(self) -> None:
        osd_uuid = str(uuid.uuid4())
        osd_id = self._ceph("osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise CephError(f"unexpected OSD id {osd_id!r}")
        self._run("ceph-osd", "-c", str(self.conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon("osd", "ceph-osd", "-i", "0")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if '"num_up_osds":1' in self._ceph("osd", "stat", "--format", "json").replace(" ", ""):
                return
            time.sleep(0.2)
        raise CephError(f"the OSD did not come up in {self.start_timeout} s: {self.tail('osd')}")

    def _start_rgw(self) -> int:
        port = free_port()
        self._daemon("rgw", "radosgw", "-n", "client.rgw", "--rgw-frontends", f"beast endpoint=127.0.0.1:{port}")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                return port
            except requests.ConnectionError:
                time.sleep(0.2)
        raise CephError(f"radosgw did not answer in {self.start_timeout} s: {self.tail('rgw')}")

    def _create_user(self) -> None:
        self._run("radosgw-admin", "-c", str(self.conf), "-n", "client.rgw", "user", "create", "--uid=ateda",
                  "--display-name=ATEDA tests", f"--access-key={ACCESS_KEY}", f"--secret-key={SECRET_KEY}")

    # ------------------------------------------------------------------ use
    def client(self, service: str = "s3"):  # noqa: ANN201
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY,
                            config=Config(request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required",
                                          retries={"max_attempts": 2, "mode": "standard"}))

    def sns(self):  # noqa: ANN201
        return self.client("sns")

    def stop_rgw(self) -> None:
        """Stop radosgw alone (the store going away); :meth:`restart_rgw` brings it back on the same port."""
        self._end("rgw")

    def restart_rgw(self) -> None:
        self._daemon("rgw", "radosgw", "-n", "client.rgw", "--rgw-frontends",
                     f"beast endpoint=127.0.0.1:{self.port}")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                requests.get(self.url, timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise CephError(f"radosgw did not come back in {self.start_timeout} s: {self.tail('rgw')}")

    # ------------------------------------------------------------------ stop
    def _end(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        """End radosgw, the OSD and the monitor, each by its PID (newest first)."""
        for name in ("rgw", "osd", "mon"):
            self._end(name)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def __enter__(self) -> "CephRGW":
        return self.start()

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.stop()


def subscribe(rgw: CephRGW, bucket: str, bridge_url: str, token: str, persistent: bool = True) -> str:
    """A topic whose push endpoint is the bridge (the token in the URL: Ceph sends no header), bound to the bucket
    for every ObjectCreated event."""
    attrs = {"push-endpoint": f"{bridge_url}/?token={token}", "persistent": "true" if persistent else "false"}
    arn = rgw.sns().create_topic(Name=f"ateda-{bucket}", Attributes=attrs)["TopicArn"]
    rgw.client().put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "TopicConfigurations": [{"Id": "ateda", "TopicArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    return arn


def upload(client, bucket: str, files, multipart_every: int = 7) -> list:  # noqa: ANN001
    """Every file with boto3: a single put, or (every ``multipart_every``-th) a multipart upload (one part: each real
    alert is under the 5 MiB minimum of a non-last part), which RGW notifies as CompleteMultipartUpload."""
    out = []
    for i, f in enumerate(files):
        data = f.read_bytes()
        if i % multipart_every == 0:
            mp = client.create_multipart_upload(Bucket=bucket, Key=f.name)
            part = client.upload_part(Bucket=bucket, Key=f.name, UploadId=mp["UploadId"], PartNumber=1, Body=data)
            etag = client.complete_multipart_upload(
                Bucket=bucket, Key=f.name, UploadId=mp["UploadId"],
                MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})["ETag"].strip('"')
            assert etag.endswith("-1")
        else:
            etag = client.put_object(Bucket=bucket, Key=f.name, Body=data)["ETag"].strip('"')
        out.append(Uploaded(f.name, etag, len(data)))
    return out


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, so a crashed test leaves no daemon behind."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def gone(pids: list[int]) -> bool:
    """True when no process of ``pids`` exists any more."""
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True
