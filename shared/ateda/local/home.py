"""One runtime per home, shared safely: the runtime lock, the gate, the ingests' leases, and process groups.

* ``$ATEDA_HOME/runtime.lock``: held (``flock``, exclusive) by the process that runs the home's runtime, and holding
  its PID. A second runtime on the home is refused (:class:`RuntimeBusy`, naming that PID). A crashed runtime's lock
  is released by the kernel with its last file descriptor, so a stale lock never blocks anyone.
* ``$ATEDA_HOME/runtime.gate``: held briefly while a process decides to start, attach to or stop a runtime, so
  that an ingest never attaches to a runtime that is deciding to stop.
* ``$ATEDA_HOME/leases/<pid>-<n>.lease``: one per attached ingest, held (``flock``) while it runs. A temporary runtime
  (started by an ingest) stops only when no lease is held; a lease whose holder died is free and removed.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
import uuid
from pathlib import Path
from typing import IO

from ateda.errors import AtedaError
from ateda.lake.locks import file_lock

LOCK = "runtime.lock"
GATE = "runtime.gate"
LEASES = "leases"


class RuntimeBusy(AtedaError):
    """Another process already runs a runtime on this home."""

    def __init__(self, home: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"a runtime already runs on {home} ({who}); stop it first, or use another ATEDA_HOME")
        self.pid = pid


def _read_pid(fh: IO[str]) -> int | None:
    fh.seek(0)
    text = fh.read().strip()
    return int(text) if text.isdigit() else None


class RuntimeLock:
    """The home's runtime lock, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOCK
        self._fh: IO[str] | None = None

    def acquire(self, wait_s: float = 0.0) -> "RuntimeLock":
        """Take the lock (waiting up to ``wait_s`` for a runtime that is stopping), or raise :class:`RuntimeBusy`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pid = _read_pid(fh)
                    fh.close()
                    raise RuntimeBusy(self.path.parent, pid) from None
                time.sleep(0.1)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        self._fh.seek(0)
        self._fh.truncate()  # never unlinked: a process waiting on this inode must get the same file
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None


def lock_holder(home: Path) -> int | None:
    """The PID holding the home's runtime lock (0 when held but unreadable), or None when no runtime holds it."""
    path = Path(home) / LOCK
    try:
        fh = open(path)
    except FileNotFoundError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fh) or 0
        fcntl.flock(fh, fcntl.LOCK_UN)
        return None


def gate(home: Path):  # noqa: ANN201
    """Serialise start / attach / stop decisions on ``home`` (held for seconds at most)."""
    return file_lock(Path(home) / GATE)


class Lease:
    """An attached ingest's lease on the home's runtime: held from creation to :meth:`release`."""

    def __init__(self, home: Path) -> None:
        folder = Path(home) / LEASES
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.lease"
        self._fh: IO[str] | None = open(self.path, "w")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        self._fh.write(f"{os.getpid()}\n")
        self._fh.flush()

    def release(self) -> None:
        if self._fh is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None


def live_leases(home: Path, besides: Lease | None = None) -> int:
    """Leases held now (besides ``besides``); removes the leases of processes that died (their flock is free)."""
    folder = Path(home) / LEASES
    live = 0
    for path in sorted(folder.glob("*.lease")) if folder.is_dir() else []:
        if besides is not None and path == besides.path:
            continue
        try:
            fh = open(path)
        except FileNotFoundError:
            continue
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live += 1
                continue
            path.unlink(missing_ok=True)  # its holder is gone
            fcntl.flock(fh, fcntl.LOCK_UN)
    return live


# ---------------------------------------------------------------- process groups

def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``, read from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            out.append(int(entry))
    return out


def stop_groups(pgids: list[int], grace_s: float) -> list[int]:
    """SIGTERM every process of each group, SIGKILL what is left after ``grace_s`` seconds; returns the PIDs that
    needed SIGKILL."""
    for pgid in pgids:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    left = [p for g in pgids for p in group_members(g)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for g in pgids for p in group_members(g)]
    for pgid in pgids:
        _signal_group(pgid, signal.SIGKILL)
    end = time.monotonic() + 5.0
    while any(group_members(g) for g in pgids) and time.monotonic() < end:
        time.sleep(0.05)
    return left


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
