"""``ateda bench``: the single-process fastavro decoding ceiling vs end-to-end ingestion, same alerts, one run.

For N synthetic alerts, written both as N single-alert files and as one nightly tarball:
* ceiling: bare ``fastavro.reader`` over every record of the same bytes, in this one process;
* end to end: a fresh embedded runtime running the ingestion functions (split, bronze) with their default worker
  count; the clock runs from the first file's
  arrival in the bucket (its time there, as the ledger records it) to the last commit to bronze (cutouts
  included). ``ingest_command_s`` is the whole ``ateda ingest`` (copying the input into the bucket included).
Reported: alerts/s, ratio to the ceiling, Iceberg commits per 1 000 alerts, p50/p95 latency from a file's
arrival in the bucket to its commit (from the ingest ledger), and peak memory summed over all processes
(RSS, and PSS which counts pages shared by forked workers once).

``ateda bench --survey ztf|lsst`` (:func:`run_burst_bench`): a visit burst, N alerts of one survey dropped at once as
single messages (ZTF: single-alert files; Rubin: one visit's Confluent frames across its 189 detectors), the same
figures, beside the single-process decoding ceiling of the same files.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlencode

import fastavro
import numpy as np

from ateda.config import Settings, child_env
from ateda.dev import synth_lsst
from ateda.dev.synth import write_single_files, write_tarball
from ateda.lsst import schemas as lsst_schemas
from ateda.ingest import iceberg_commits, run_ingest
from ateda.lake.iceberg import ensure_tables, load_catalog
from ateda.local.runtime import Runtime, ingestion_functions
from ateda.steps.maintenance import MaintenanceConfig, lake_tables, run_pass, table_stats
from ateda.warehouse.bronze_views import prepare_bronze
from ateda.warehouse.build import refresh_models
from ateda.warehouse.location import duckdb_path


def _ceiling_files(files: list[Path]) -> float:
    start = time.perf_counter()
    n = 0
    for f in files:
        with open(f, "rb") as fh:
            for _ in fastavro.reader(fh):
                n += 1
    return n / (time.perf_counter() - start)


def _ceiling_frames(files: list[Path]) -> float:
    """Bare decoding of Confluent frames: the schema looked up by id once, then ``schemaless_reader`` per frame."""
    start = time.perf_counter()
    parsed: dict[int, object] = {}
    for f in files:
        data = f.read_bytes()
        sid = int.from_bytes(data[1:5], "big")
        if sid not in parsed:
            parsed[sid] = lsst_schemas.schema(sid).parsed  # type: ignore[union-attr]
        fastavro.schemaless_reader(io.BytesIO(data[5:]), parsed[sid], None)
    return len(files) / (time.perf_counter() - start)


def _ceiling_tar(path: Path) -> float:
    start = time.perf_counter()
    n = 0
    with tarfile.open(path, "r|gz") as tar:
        for member in tar:
            fh = tar.extractfile(member)
            if fh is None:
                continue
            for _ in fastavro.reader(io.BytesIO(fh.read())):
                n += 1
    return n / (time.perf_counter() - start)


def _make_tarball(files: list[Path], path: Path) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w|") as tar:
            for f in files:
                tar.add(f, arcname=f.name)


class RssSampler:
    """Peak memory of this process and all its descendants: RSS every 0.2 s, PSS every second.

    ``peak_rss``: the sum of every process's RSS (counts pages shared between forked workers once per process:
    an upper bound). ``peak_pss``: the sum of proportional set sizes (shared pages split between their users:
    what the tree really holds). RSS comes from ``/proc/<pid>/statm`` (a counter); PSS needs ``smaps_rollup``, which
    makes the kernel walk every mapping of the process: read every 0.2 s it cost the benchmark ~0.25 of a core
    during a burst (py-spy), taken from the pipeline it measures, so it is read every fifth sample only.
    """

    def __init__(self) -> None:
        self.peak_rss = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            with_pss = tick % PSS_EVERY == 0
            rss, pss = _tree_memory(os.getpid(), with_pss)
            self.peak_rss = max(self.peak_rss, rss)
            if with_pss:
                self.peak_pss = max(self.peak_pss, pss)
            tick += 1
            self._stop.wait(0.2)


PSS_EVERY = 5  # RssSampler: PSS (smaps_rollup, costly) on every fifth 0.2 s sample


def _children() -> dict[int, list[int]]:
    """Parent pid -> its children's pids, from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    return children


def _descendants(root: int) -> list[int]:
    children, out, stack = _children(), [], list(_children().get(root, []))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


class WorkerPeaks:
    """Peak RSS (the kernel's high-water mark, VmHWM) of each descendant process of this one whose command line
    holds ``marker`` (e.g. ``/split/main.py``: the split server and its forked gunicorn workers), read every 0.5 s
    while running and once more on exit, so a worker that exits in between loses at most its last 0.5 s."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "WorkerPeaks":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        for pid in _descendants(os.getpid()):
            try:
                if self.marker not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    continue
                hwm = vm_hwm(pid)
            except OSError:
                continue
            self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    @property
    def peak(self) -> int:
        return max(self.peaks.values(), default=0)


def _tree_memory(root: int, with_pss: bool = True) -> tuple[int, int]:
    """(RSS, PSS) summed over ``root`` and its descendants, bytes (PSS 0 unless ``with_pss``)."""
    children, page = _children(), os.sysconf("SC_PAGE_SIZE")
    rss = pss = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text() if with_pss else ""
        except (OSError, IndexError, ValueError):
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
    return rss, pss


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants still alive."""
    total, stack, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                kids.setdefault(int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    while stack:
        p = stack.pop()
        stack.extend(kids.get(p, []))
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _cpu_by_role(rt) -> dict[str, float]:  # noqa: ANN001
    """CPU seconds per function server (with its workers) and for this process (broker, watcher, ingest)."""
    me = os.times()
    out = {spec.folder: _cpu_seconds(proc.pid) for spec, proc in zip(rt.functions, rt.procs)}
    out["broker+watcher+ingest"] = me.user + me.system
    return out


def _end_to_end(home: Path, inputs: list[Path]) -> dict:
    settings = Settings(home=home).resolved()
    with RssSampler() as rss, Runtime(settings, functions=ingestion_functions()) as rt:
        before = _cpu_by_role(rt)
        summary = run_ingest(settings, inputs, quiet=True, bronze_only=True)
        after = _cpu_by_role(rt)
    ledger = ensure_tables(load_catalog(settings), settings)["ingest_ledger"].scan().to_arrow()
    arrived, committed = ledger["arrived_at"].to_pylist(), ledger["committed_at"].to_pylist()
    lat = sorted((c - a).total_seconds() for a, c in zip(arrived, committed) if a and c)
    # file in the bucket -> bronze committed: first arrival to last commit (the upload itself is not timed)
    seconds = (max(committed) - min(a for a in arrived if a)).total_seconds()
    return {
        "alerts": summary.alerts, "seconds": round(seconds, 2), "ingest_command_s": round(summary.seconds, 2),
        "alerts_per_s": round(summary.alerts / seconds, 1),
        "iceberg_commits": iceberg_commits(settings),
        "commits_per_1000_alerts": round(1000 * iceberg_commits(settings) / max(summary.alerts, 1), 3),
        "latency_p50_s": round(statistics.median(lat), 2) if lat else None,
        "latency_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 2) if lat else None,
        "peak_rss_mb": round(rss.peak_rss / 2**20, 1),
        "peak_pss_mb": round(rss.peak_pss / 2**20, 1),
        "rejected": len(summary.rejected),
        "cpu_s": {role: round(after[role] - before[role], 1) for role in after},
    }


def run_bench(n: int = 20_000, keep: bool = False, seed: int = 7) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ateda-bench-"))
    try:
        t0 = time.perf_counter()
        singles = sorted(write_single_files(work / "singles", n, seed=seed, unique_cutouts=False))
        tarball = work / "ztf_public_20261120.tar.gz"
        _make_tarball(singles, tarball)
        gen_s = time.perf_counter() - t0
        ceiling_single = _ceiling_files(singles)
        ceiling_tar = _ceiling_tar(tarball)
        tar_e2e = _end_to_end(work / "home-tar", [tarball])
        single_e2e = _end_to_end(work / "home-single", [work / "singles"])
        result = {
            "n_alerts": n, "cpus": os.cpu_count(), "generate_s": round(gen_s, 1),
            "split_workers": ingestion_functions()[0].workers,
            "tarball_mb": round(tarball.stat().st_size / 2**20, 1),
            "ceiling_single_alerts_per_s": round(ceiling_single, 1),
            "ceiling_tarball_alerts_per_s": round(ceiling_tar, 1),
            "tarball": {**tar_e2e, "ratio_to_ceiling": round(tar_e2e["alerts_per_s"] / ceiling_tar, 2)},
            "single_files": {**single_e2e, "ratio_to_ceiling": round(single_e2e["alerts_per_s"] / ceiling_single, 2)},
        }
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    result["workdir"] = str(work) if keep else None
    result["text"] = _text(result)
    return result


def run_burst_bench(survey: str, n: int = 10_000, keep: bool = False, seed: int = 7) -> dict:
    """A visit burst of ``n`` alerts of ``survey`` dropped at once as single messages, end to end, beside the
    single-process decoding ceiling of the same files (see the module doc)."""
    if survey not in ("ztf", "lsst"):
        raise ValueError(f"survey {survey!r}: ztf or lsst")
    work = Path(tempfile.mkdtemp(prefix=f"ateda-burst-{survey}-"))
    try:
        t0 = time.perf_counter()
        burst = work / "burst"
        if survey == "lsst":
            synth_lsst.write_visit_burst(burst, n, seed)
        else:
            write_single_files(burst, n, seed=seed, unique_cutouts=False)
        files = sorted(p for p in burst.iterdir() if p.is_file())
        gen_s = time.perf_counter() - t0
        ceiling = _ceiling_frames(files) if survey == "lsst" else _ceiling_files(files)
        e2e = _end_to_end(work / "home", [burst])
        result = {
            "survey": survey, "n_alerts": n, "cpus": os.cpu_count(), "generate_s": round(gen_s, 1),
            "split_workers": ingestion_functions()[0].workers,
            "burst_mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
            "ceiling_alerts_per_s": round(ceiling, 1),
            "burst": {**e2e, "ratio_to_ceiling": round(e2e["alerts_per_s"] / ceiling, 2)},
        }
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    result["workdir"] = str(work) if keep else None
    b = result["burst"]
    result["text"] = "\n".join([
        f"ateda bench --survey {survey}: a burst of {n} alerts as single messages ({result['burst_mb']} MB), "
        f"{result['cpus']} CPUs, {result['split_workers']} split workers",
        f"  ceiling (bare decode, 1 process): {result['ceiling_alerts_per_s']:.0f} alerts/s",
        f"  burst: {b['seconds']} s from first arrival to last bronze commit, {b['alerts_per_s']:.0f} alerts/s "
        f"({b['ratio_to_ceiling']:.2f}x ceiling), p50 {b['latency_p50_s']} s  p95 {b['latency_p95_s']} s "
        f"arrival to bronze, {b['commits_per_1000_alerts']:.2f} commits/1000, peak RSS {b['peak_rss_mb']:.0f} MB",
        "  CPU s: " + ", ".join(f"{k} {v}" for k, v in b["cpu_s"].items())])
    return result


def _text(r: dict) -> str:
    lines = [f"ateda bench: {r['n_alerts']} alerts, {r['cpus']} CPUs, {r['split_workers']} split workers "
             f"(tarball {r['tarball_mb']} MB)",
             f"  ceiling (fastavro, 1 process): single files {r['ceiling_single_alerts_per_s']:.0f} alerts/s, "
             f"tarball {r['ceiling_tarball_alerts_per_s']:.0f} alerts/s"]
    for name in ("tarball", "single_files"):
        x = r[name]
        lines.append(f"  {name:<12} {x['alerts_per_s']:>8.0f} alerts/s  {x['ratio_to_ceiling']:.2f}x ceiling  "
                     f"{x['commits_per_1000_alerts']:.2f} commits/1000  p50 {x['latency_p50_s']} s  "
                     f"p95 {x['latency_p95_s']} s  peak RSS {x['peak_rss_mb']:.0f} MB (PSS {x['peak_pss_mb']:.0f} MB)")
        lines.append("               CPU s: " + ", ".join(f"{k} {v}" for k, v in x["cpu_s"].items()))
    return "\n".join(lines)


def vm_hwm(pid: int | str = "self") -> int:
    """Peak RSS in bytes of process ``pid`` since its program started: the kernel's high-water mark (VmHWM) of its
    own memory map. Not ru_maxrss, which Linux carries across fork and exec, so a child of a big parent (pytest late
    in a suite) would report the parent's size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmHWM in /proc/{pid}/status")


def own_peak_rss() -> int:
    """This process's peak RSS in bytes (:func:`vm_hwm`)."""
    return vm_hwm()


_REFRESH_CHILD = """
import json, sys, time
from ateda.dev.bench import own_peak_rss
from ateda.config import settings
from ateda.warehouse.build import refresh_models
t0 = time.perf_counter()
res = refresh_models(settings(), full_refresh=sys.argv[1] == "full")
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "new_files": res.new_files, "rows": res.rows, "peak_rss": own_peak_rss()}))
"""


def refresh_in_child(settings: Settings, full_refresh: bool = False) -> dict:
    """One local dbt refresh in a fresh Python process: its time, rows and peak RSS (the kernel's own high-water
    mark of that process, not a sample: :func:`own_peak_rss`; dbt runs in-process)."""
    env = child_env(settings)
    out = subprocess.run([sys.executable, "-c", _REFRESH_CHILD, "full" if full_refresh else "incremental"],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"refresh in a child process failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_refresh_bench(n: int = 20_000, new: int = 200, seed: int = 7) -> dict:
    """dbt on the local warehouse: full build of a night of ``n`` alerts, then a refresh with nothing new, then
    one after ``new`` more alerts. Shows that a refresh costs in proportion to the new data, not the tables.

    Each refresh runs in its own process, so its peak RSS is measured exactly (``refresh_in_child``); the peak
    RSS of every split worker (server and forked workers, VmHWM) is read while the night is ingested."""

    mib = lambda b: round(b / 2**20, 1)  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="ateda-bench-refresh-"))
    try:
        night = write_tarball(work / "night.tar.gz", n, seed=seed, unique_cutouts=False)
        extra = work / "extra"
        write_single_files(extra, new, seed=seed + 1, unique_cutouts=False)
        settings = Settings(home=work / "home").resolved()
        timings, peaks = {}, {}
        with Runtime(settings, functions=ingestion_functions()):
            with WorkerPeaks(f"{os.sep}split{os.sep}main.py") as split:
                run_ingest(settings, [night], quiet=True, bronze_only=True)
            night.unlink()  # the tarball is in the bucket now; keep one copy on disk
            for name, full in (("full_build", True), ("no_new_data", False)):
                r = refresh_in_child(settings, full_refresh=full)
                timings[f"{name}_s"], peaks[f"{name}_rss_mib"] = round(r["seconds"], 2), mib(r["peak_rss"])
                rows = r["rows"]
            run_ingest(settings, [extra], quiet=True, bronze_only=True)
            r = refresh_in_child(settings)
            after = r["rows"]
            timings[f"refresh_{new}_new_alerts_s"] = round(r["seconds"], 2)
            peaks[f"refresh_{new}_new_alerts_rss_mib"] = mib(r["peak_rss"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peaks["split_worker_rss_mib"] = mib(split.peak)
    peaks["split_processes"] = len(split.peaks)
    result = {"n_alerts": n, "new_alerts": new, **timings, "peak_rss": peaks, "rows_before": rows,
              "rows_after": after}
    result["text"] = (f"dbt refresh bench ({n} alerts): full build {timings['full_build_s']} s "
                      f"(peak RSS {peaks['full_build_rss_mib']} MiB), no new data {timings['no_new_data_s']} s "
                      f"({peaks['no_new_data_rss_mib']} MiB), {new} new alerts "
                      f"{timings[f'refresh_{new}_new_alerts_s']} s ({peaks[f'refresh_{new}_new_alerts_rss_mib']} MiB); "
                      f"peak RSS of a split worker while ingesting: {peaks['split_worker_rss_mib']} MiB "
                      f"(max of {peaks['split_processes']} split processes)")
    return result


def run_maintenance_bench(n: int = 20_000, seed: int = 7) -> dict:
    """Lake maintenance on a night of ``n`` alerts ingested as single files: the lake's shape, a full scan of
    bronze.alert by DuckDB and pyiceberg's scan planning before and after one compaction pass, the pass itself, and
    the incremental dbt refresh after it (compacted rows are not new: it reads no file)."""
    import duckdb  # heavy, and only the warehouse's users need it (not the functions that import this module)


    def measure() -> dict:
        tables = lake_tables(settings)
        out = {name: table_stats(tables[name], config) for name in ("alert", "cutout")}
        t0 = time.perf_counter()
        for name in ("alert", "cutout"):
            list(tables[name].scan().plan_files())
        out["plan_files_s"] = round(time.perf_counter() - t0, 3)
        con = duckdb.connect()
        prepare_bronze(con, settings)
        t0 = time.perf_counter()
        out["scan_rows"] = con.execute("select count(*), avg(candidate.magpsf), count(distinct objectId) "
                                       "from bronze.alert").fetchone()[0]
        out["duckdb_scan_s"] = round(time.perf_counter() - t0, 3)
        return out

    work = Path(tempfile.mkdtemp(prefix="ateda-bench-maint-"))
    config = MaintenanceConfig(quiet_minutes=0)  # the night was just written: compact it now
    try:
        files = work / "night"
        write_single_files(files, n, seed=seed, unique_cutouts=False)
        settings = Settings(home=work / "home").resolved()
        with Runtime(settings, functions=ingestion_functions()):
            run_ingest(settings, [files], quiet=True, bronze_only=True)
        refresh_models(settings, full_refresh=True)
        before = measure()
        t0 = time.perf_counter()
        report = run_pass(settings, ["compact", "stats"], config)
        pass_s = round(time.perf_counter() - t0, 2)
        after = measure()
        t0 = time.perf_counter()
        res = refresh_models(settings)
        refresh_s = round(time.perf_counter() - t0, 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"n_alerts": n, "before": before, "after": after, "pass_s": pass_s,
              "compacted": {k: {"files": v.compacted_files, "written": v.written_files}
                            for k, v in report.tables.items()},
              "refresh_after_compaction": {"seconds": refresh_s, "new_files": res.new_files}}
    fmt = lambda d: (f"alert {d['alert']['data_files']} files (max {d['alert']['max_files_per_partition']}/partition), "  # noqa: E731
                     f"cutout {d['cutout']['data_files']} files; plan {d['plan_files_s']} s, DuckDB scan "
                     f"{d['duckdb_scan_s']} s")
    result["text"] = (f"maintenance bench ({n} alerts as single files)\n  before: {fmt(before)}\n"
                      f"  pass (compact + stats): {pass_s} s\n  after:  {fmt(after)}\n"
                      f"  incremental refresh after compaction: {refresh_s} s, new files read: {res.new_files}")
    return result


# ---------------------------------------------------------------- the explorer under load (ateda bench --serve)

SERVE_PORTS = range(18400, 18500)  # the ports the serve bench may listen on (the first free one)
SERVE_ENDPOINTS = ("object", "lightcurve", "cone", "cone_window", "candidates")


def build_serve_lake(settings: Settings, n: int, seed: int = 7, lsst_fraction: float = 0.1) -> dict:
    """A published warehouse over a synthetic night: ``n`` ZTF alerts (one tarball) and ``lsst_fraction * n`` Rubin
    alerts (Avro containers) of the same night, ingested to bronze by the embedded runtime, then one full dbt
    refresh, as ``ateda demo`` does. Returns the times of each step."""
    work = Path(tempfile.mkdtemp(prefix="ateda-bench-serve-input-"))
    try:
        t0 = time.perf_counter()
        night = write_tarball(work / "night.tar.gz", n, seed=seed, unique_cutouts=False)
        lsst_n = int(round(n * lsst_fraction))
        inputs = [night]
        if lsst_n:
            synth_lsst.write_containers(work / "lsst", lsst_n, seed=seed, per_file=1000)
            inputs.append(work / "lsst")
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with Runtime(settings, functions=ingestion_functions()):
            run_ingest(settings, inputs, quiet=True, bronze_only=True)
        ingest_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    refresh_models(settings, full_refresh=True)
    return {"ztf_alerts": n, "lsst_alerts": lsst_n, "generate_s": round(gen_s, 1), "ingest_s": round(ingest_s, 1),
            "refresh_s": round(time.perf_counter() - t0, 1)}


def free_serve_port(ports: range = SERVE_PORTS) -> int:
    """The first port of ``ports`` free on 127.0.0.1 (the bench's and the explorer tests' servers)."""
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}..{ports.stop - 1}")


class ServedExplorer:
    """``ateda serve`` over ``settings``' warehouse in a child process (uvicorn, as a user runs it) on a free port;
    ``pid`` is the server's own process (VmHWM is read from it)."""

    def __init__(self, settings: Settings, port: int | None = None, start_timeout_s: float = 90.0) -> None:
        self.settings, self.port, self.start_timeout_s = settings, port or free_serve_port(), start_timeout_s
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    def __enter__(self) -> "ServedExplorer":
        import httpx  # the explorer extra: only the serve bench is a client of it

        cmd = [sys.executable, "-c", "from ateda.console import run; run()", "serve", "--host", "127.0.0.1",
               "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=child_env(self.settings), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"`ateda serve` exited ({self.proc.returncode}): {self.output()[-2000:]}")
            try:
                if httpx.get(self.base + "/api/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"`ateda serve` did not answer within {self.start_timeout_s} s: "
                                   f"{self.output()[-2000:]}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def serve_bench_requests(settings: Settings, per_endpoint: int, seed: int = 7) -> dict[str, list[str]]:
    """The requests of each endpoint (paths with their query), drawn from gold.object with a fixed seed: random
    objects (object, light curve), cones of 60 arcsec around random objects' positions (without a time window,
    and with one of the five nights up to the object's last detection), and candidate lists (candidate=true, a
    random sort column and order, 50 rows, a random page of the first ten)."""
    import duckdb  # heavy, and only the warehouse's users need it (not the functions that import this module)

    with duckdb.connect(str(duckdb_path(settings)), read_only=True) as con:
        rows = con.execute("select objectId, meanra, meandec, lastmjd from gold.object "
                           "where meanra is not null and meandec is not null order by objectId").fetchall()
        n_candidates = con.execute("select count(*) from gold.transient_candidates").fetchone()[0]
    if not rows:
        raise RuntimeError("gold.object is empty: nothing to ask the explorer for")
    rng = np.random.default_rng(seed)
    pick = lambda: rows[int(rng.integers(len(rows)))]  # noqa: E731
    out: dict[str, list[str]] = {k: [] for k in SERVE_ENDPOINTS}
    sorts = ("lastmjd", "firstmjd", "ndet", "last_drb", "last_rb", "objectId")
    pages = max(1, min(10, -(-n_candidates // 50)))
    for _ in range(per_endpoint):
        oid = quote(pick()[0], safe="")
        out["object"].append(f"/api/v1/objects/{oid}")
        out["lightcurve"].append(f"/api/v1/objects/{quote(pick()[0], safe='')}/lightcurve")
        _, ra, dec, _ = pick()
        out["cone"].append("/api/v1/cone?" + urlencode({"ra": ra, "dec": dec, "radius_arcsec": 60}))
        _, ra, dec, last = pick()
        window = {"since": round(last - 5.0, 5), "until": round(last, 5)} if last is not None else {}
        out["cone_window"].append("/api/v1/cone?" + urlencode({"ra": ra, "dec": dec, "radius_arcsec": 60, **window}))
        out["candidates"].append("/api/v1/objects?" + urlencode({
            "candidate": "true", "sort": sorts[int(rng.integers(len(sorts)))],
            "order": ("asc", "desc")[int(rng.integers(2))], "limit": 50, "offset": 50 * int(rng.integers(pages))}))
    return out


def _load(base: str, paths: list[str], clients: int) -> dict:
    """``paths`` requested by ``clients`` threads at once (each its own keep-alive httpx client): per-request
    latency (from sending to the whole body read), status codes, requests/s over the run's wall time."""
    import httpx  # the explorer extra: only the serve bench is a client of it

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would drown the table
    local = threading.local()
    made: list = []

    def one(path: str) -> tuple[float, int, int]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=base, timeout=120)
            made.append(client)
        t0 = time.perf_counter()
        r = client.get(path)
        body = r.content
        return time.perf_counter() - t0, r.status_code, len(body)

    try:
        with ThreadPoolExecutor(clients) as pool:
            t0, cpu0 = time.perf_counter(), time.process_time()
            results = list(pool.map(one, paths))
            wall, client_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        for c in made:
            c.close()
    lat = sorted(r[0] for r in results)
    codes: dict[str, int] = {}
    for r in results:
        codes[str(r[1])] = codes.get(str(r[1]), 0) + 1
    q = lambda p: round(1000 * lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))], 1)  # noqa: E731
    return {"requests": len(paths), "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99),
            "max_ms": round(1000 * lat[-1], 1), "mean_ms": round(1000 * statistics.fmean(lat), 1),
            "requests_per_s": round(len(paths) / wall, 1), "status": codes,
            "client_cpu_share": round(client_cpu / wall, 2),  # cores the clients themselves kept busy
            "mean_bytes": round(statistics.fmean(r[2] for r in results))}


def run_serve_bench(n: int = 100_000, home: Path | None = None, requests: int = 400, clients: int = 8,
                    warmup: int = 40, seed: int = 7, port: int | None = None, keep: bool = False) -> dict:
    """The explorer under load: ``ateda serve`` (uvicorn, a child process) over a lake of ``n`` synthetic ZTF alerts
    and a Rubin night of ``n / 10`` (built unless ``home`` already holds a published warehouse), each endpoint hit
    ``requests`` times by ``clients`` concurrent clients after ``warmup`` requests; p50/p95 latency, requests/s,
    status codes per endpoint and the peak RSS (VmHWM) of the server process."""
    work = None
    if home is None:
        work = Path(tempfile.mkdtemp(prefix="ateda-bench-serve-"))
        home = work / "home"
    settings = Settings(home=Path(home)).resolved()
    import duckdb  # heavy, and only the warehouse's users need it (not the functions that import this module)

    built = None
    try:
        if not duckdb_path(settings).exists():
            built = build_serve_lake(settings, n, seed=seed)
        paths = serve_bench_requests(settings, requests, seed=seed)
        endpoints: dict[str, dict] = {}
        with ServedExplorer(settings, port=port) as server:
            start_rss = vm_hwm(server.pid)
            for name in SERVE_ENDPOINTS:
                _load(server.base, paths[name][:warmup], clients)  # warm-up: the warehouse opened, caches filled
                endpoints[name] = _load(server.base, paths[name], clients)
            peak = vm_hwm(server.pid)
        with duckdb.connect(str(duckdb_path(settings)), read_only=True) as con:
            sizes = {t: con.execute(f"select count(*) from gold.{t}").fetchone()[0]
                     for t in ("object", "lightcurve", "transient_candidates")}
    finally:
        if work is not None and not keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {"n_alerts": n if built else None, "home": str(home) if (keep or work is None) else None,
              "built": built, "gold_rows": sizes, "cpus": os.cpu_count(), "clients": clients,
              "requests_per_endpoint": requests, "warmup": warmup, "seed": seed,
              "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
              "server_rss_mib_at_start": round(start_rss / 2**20, 1), "server_peak_rss_mib": round(peak / 2**20, 1),
              "endpoints": endpoints}
    result["text"] = _serve_text(result)
    return result


SERVE_LABELS = {"object": "/objects/{id}", "lightcurve": "/objects/{id}/lightcurve", "cone": "/cone 60\"",
                "cone_window": "/cone 60\" + since/until", "candidates": "/objects?candidate=true (50)"}


def _serve_text(r: dict) -> str:
    g = r["gold_rows"]
    lines = [f"ateda bench --serve: gold.object {g['object']} rows, gold.lightcurve {g['lightcurve']}, "
             f"{g['transient_candidates']} candidates; {r['clients']} clients, {r['requests_per_endpoint']} requests "
             f"per endpoint after {r['warmup']} warm-up; {r['cpus']} CPUs, load {r['load_avg_1_5_15']}",
             f"  {'endpoint':<30} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'req/s':>8} "
             f"{'client CPU':>10}  status"]
    for name, e in r["endpoints"].items():
        lines.append(f"  {SERVE_LABELS[name]:<30} {e['p50_ms']:>8} {e['p95_ms']:>8} {e['p99_ms']:>8} "
                     f"{e['max_ms']:>8} {e['requests_per_s']:>8} {e['client_cpu_share']:>10}  "
                     + ", ".join(f"{k}: {v}" for k, v in sorted(e["status"].items())))
    lines.append(f"  server peak RSS (VmHWM) {r['server_peak_rss_mib']} MiB ({r['server_rss_mib_at_start']} MiB "
                 "when it first answered)")
    if r["built"]:
        b = r["built"]
        lines.append(f"  lake: {b['ztf_alerts']} ZTF + {b['lsst_alerts']} Rubin alerts; generate {b['generate_s']} s, "
                     f"ingest {b['ingest_s']} s, refresh {b['refresh_s']} s")
    return "\n".join(lines)
