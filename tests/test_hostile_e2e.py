"""Issue 10's suite: never lose, never duplicate, never escape - under bad input, hostile names and concurrency.

Everything goes through the CLI (`ateda ingest`, `ateda up` in subprocesses, ATEDA_HOME in a tmp dir) or through
the functions' real HTTP servers. The truth is independent of the pipeline: candids straight from fastavro
(conftest.expected_alerts and tests/hostile_corpus.py), bronze read straight from Iceberg, quarantine records
read from the lake.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import requests

from ateda.config import Settings
from ateda.events import catalogue as events, transport
from ateda.lake.iceberg import ensure_tables, load_catalog
from conftest import ALERTS, DAMAGED_TAIL, HALF_BROKEN, REPO, Sink, alert_files, expected_alerts, put_alerts
from hostile_corpus import ANY_MEMBER, STRUCTURE, Item, content_corpus, name_corpus

MAX_MEMBER = 8 << 20  # ATEDA_MAX_MEMBER_BYTES for these runs: the bombs inflate to 64x this
MAX_TAR_MEMBERS = 10_000  # the 20,000-member tar is over it
RECORDS_CAP = 100  # ATEDA_QUARANTINE_RECORDS_PER_OBJECT (the default, said explicitly)
RSS_LIMIT_MIB = 512  # peak RSS of any process of an ingest (split, bronze, the CLI itself); ~220 MiB measured
BRIDGE_RSS_LIMIT_MIB = 256  # the bridge's memory limit in the cluster
SKIP = HALF_BROKEN | {DAMAGED_TAIL}

# runs the command given, then writes its exit code and the peak RSS of its process tree (RUSAGE_CHILDREN: every
# descendant that was waited for, i.e. the CLI, its runtime's gunicorn masters and their workers)
RSS_WRAPPER = ("import json, resource, subprocess, sys\n"
               "r = subprocess.run(sys.argv[2:])\n"
               "open(sys.argv[1], 'w').write(json.dumps({'rc': r.returncode, "
               "'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
               "sys.exit(r.returncode)\n")


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATEDA_", "K_SINK"))}
    env.update(ATEDA_HOME=str(home), ATEDA_METRICS_PORT="0", ATEDA_COMMIT_WINDOW_MS="300",
               ATEDA_MAX_MEMBER_BYTES=str(MAX_MEMBER), ATEDA_MAX_TAR_MEMBERS=str(MAX_TAR_MEMBERS),
               ATEDA_QUARANTINE_RECORDS_PER_OBJECT=str(RECORDS_CAP), ATEDA_MAINTENANCE_EVERY_S="0",
               ATEDA_REFRESH_DEBOUNCE_MS="3600000", ATEDA_REFRESH_MAX_WAIT_MS="3600000")
    env.update(extra)
    return env


def ateda(*args: str) -> list[str]:
    return [sys.executable, "-m", "ateda.cli", *args]


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


def bronze_rows(s: Settings) -> Counter:
    """(source_key, candid) -> rows in bronze.alert, read straight from Iceberg."""
    t = ensure_tables(load_catalog(s), s)["alert"]
    a = t.scan(selected_fields=("source_key", "candid")).to_arrow()
    return Counter(zip(a["source_key"].to_pylist(), a["candid"].to_pylist()))


def as_named(rows: Counter, records: list[dict], *folders: Path) -> tuple[Counter, list[dict]]:
    """``ateda ingest FOLDER`` keys a file ``<folder name>/<path inside>``: the same rows and records keyed by the
    path inside, as the corpus names its items."""
    heads = tuple(f"{f.name}/" for f in folders)

    def inside(key: str) -> str:
        return next((key[len(h):] for h in heads if key.startswith(h)), key)

    named = Counter({(inside(k), c): n for (k, c), n in rows.items()})
    return named, [{**r, "source": {**r["source"], "key": inside(r["source"]["key"])}} for r in records]


def quarantine_records(s: Settings) -> list[dict]:
    from ateda.lake.quarantine import list_reasons
    from ateda.lake.storage import lake_store

    return list_reasons(lake_store(s))


def duplicates(rows: Counter) -> int:
    return sum(n - 1 for n in rows.values() if n > 1)


def walk(root: Path, exclude: Path | None = None) -> set[str]:
    """Every path under ``root`` (files, dirs, links), relative, except ``exclude`` and what is under it."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if exclude is not None and (d == exclude or exclude in d.parents):
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            p = d / n
            if exclude is None or (p != exclude and exclude not in p.parents):
                out.add(str(p.relative_to(root)))
    return out


def tmp_escapes(token: str) -> list[str]:
    return sorted(str(p) for p in Path("/tmp").iterdir() if token in p.name)


def tail(text: str, lines: int = 3) -> str:
    """The last lines of a process's stderr (the exception, not the whole traceback)."""
    return " | ".join([x.strip() for x in text.strip().splitlines()][-lines:])


def fmt(items, n: int = 25) -> str:  # noqa: ANN001
    items = list(items)
    return "\n  ".join([*map(str, items[:n]), *([f"... and {len(items) - n} more"] if len(items) > n else [])])


# ---------------------------------------------------------------- expectations against what landed

def check_alerts(rows: Counter, must: Counter, maybe: set) -> list[str]:
    """Problems: a required (key, candid) missing, any row twice, any row nobody expected."""
    problems = []
    for k in sorted(must):
        if rows.get(k, 0) == 0:
            problems.append(f"missing: {k!r} (expected exactly once, found 0)")
    for k, n in sorted(rows.items(), key=str):
        if n > 1:
            problems.append(f"duplicated: {k!r} x{n}")
        if k not in must and k not in maybe:
            problems.append(f"unexpected row: {k!r} (no input carries this candid under this key)")
    return problems


def expectations(items: list[Item], real: dict[str, list[int]]) -> tuple[Counter, set]:
    must = Counter((k, c) for k, cs in real.items() for c in cs)
    maybe: set = set()
    for it in items:
        must.update((it.name, c) for c in it.candids)
        maybe.update((it.name, c) for c in it.maybe)
        maybe.update((it.name, c) for _, _, cs in it.either for c in cs)
    return must, maybe


def check_records(items: list[Item], records: list[dict], rows: Counter) -> tuple[list[str], int]:
    """Problems with the quarantine records, and how many expected records were found right (once, right reason)."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_key[r["source"]["key"]].append(r)
    problems, right = [], 0
    known = {it.name for it in items}
    for it in items:
        recs = by_key.get(it.name, [])
        if it.bounded:
            cap, allowed, required = it.bounded
            reasons = Counter(r["reason"] for r in recs)
            if len(recs) > cap:
                problems.append(f"{it.name!r} ({it.kind}): {len(recs)} quarantine records, at most {cap} allowed "
                                f"(reasons {dict(reasons)})")
            if not required <= set(reasons):
                problems.append(f"{it.name!r} ({it.kind}): no record with reason {sorted(required - set(reasons))}; "
                                f"got {dict(reasons)}")
            elif len(recs) <= cap and set(reasons) <= allowed:
                right += 1
            if set(reasons) - allowed:
                problems.append(f"{it.name!r}: unexpected reasons {sorted(set(reasons) - allowed)}")
            continue
        expected_members = {m for m, _ in it.records} | {m for m, _, _ in it.either}
        for member, reasons in it.records:
            if member == ANY_MEMBER:
                got = [r for r in recs if r["member"] not in expected_members]
            else:
                got = [r for r in recs if r["member"] == member]
            if len(got) != 1:
                problems.append(f"{it.name!r}{'' if member is None else f' member {member!r}'} ({it.kind}): "
                                f"{len(got)} quarantine records, expected exactly 1 with reason in {sorted(reasons)}"
                                + (f"; got {[g['reason'] for g in got]}" if got else ""))
            elif got[0]["reason"] not in reasons:
                problems.append(f"{it.name!r}{'' if member is None else f' member {member!r}'} ({it.kind}): reason "
                                f"{got[0]['reason']!r}, expected one of {sorted(reasons)} "
                                f"(detail: {got[0].get('detail', '')[:160]!r})")
            else:
                right += 1
        for member, reasons, candids in it.either:
            got = [r for r in recs if r["member"] == member]
            landed = [c for c in candids if rows.get((it.name, c), 0)]
            if got and landed:
                problems.append(f"{it.name!r}{'' if member is None else f' member {member!r}'} ({it.kind}): both "
                                f"landed ({landed}) and quarantined ({[g['reason'] for g in got]})")
            elif not got and len(landed) != len(candids):
                problems.append(f"{it.name!r}{'' if member is None else f' member {member!r}'} ({it.kind}): "
                                f"neither landed (candids {candids}) nor quarantined")
            elif len(got) > 1 or (got and got[0]["reason"] not in reasons):
                problems.append(f"{it.name!r} ({it.kind}): quarantined as {[g['reason'] for g in got]}, expected "
                                f"one record with reason in {sorted(reasons)}")
        covered = expected_members if ANY_MEMBER not in expected_members else {r["member"] for r in recs}
        for r in recs:
            if r["member"] not in covered:
                problems.append(f"{it.name!r} ({it.kind}): unexpected record for member {r['member']!r}: "
                                f"{r['reason']} - {r.get('detail', '')[:120]!r}")
    for key, recs in sorted(by_key.items()):
        if key not in known:
            problems.append(f"unexpected quarantine record(s) for {key!r}: {[(r['member'], r['reason']) for r in recs]}")
    return problems, right


def real_bad_items() -> list[Item]:
    """The real alerts that are (partly) bad input themselves (conftest): two with an unreadable history, one damaged
    tail."""
    return [Item(n, "real alert, unreadable history", [(None, frozenset({"unreadable_history"}))])
            for n in sorted(HALF_BROKEN)] + [
        Item(DAMAGED_TAIL, "real alert, damaged after its first record", [(None, STRUCTURE)])]


# ---------------------------------------------------------------- the hostile corpus beside every real alert

def _procs() -> dict[int, tuple[int, list[bytes]]]:
    """pid -> (parent pid, argv) of every process (those that vanish while read are skipped)."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int(next(x for x in (d / "status").read_text().splitlines() if x.startswith("PPid:")).split()[1])
                out[int(d.name)] = (ppid, (d / "cmdline").read_bytes().split(b"\0"))
            except (OSError, StopIteration, ValueError):
                pass
    return out


def _function_of(argv: list[bytes]) -> str | None:
    if b"functions_framework" not in argv:
        return None
    src = next((a for a in argv if a.endswith(b"/main.py")), b"")
    return Path(src.decode()).parent.name or None


class Servers(threading.Thread):
    """Every function server (gunicorn master) and worker under ``root_pid``, seen every 0.3 s: a replaced one
    shows as a second pid for the same function."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.root_pid: int | None = None
        self.stop = threading.Event()
        self.masters: dict[str, set[int]] = defaultdict(set)
        self.workers: dict[str, set[int]] = defaultdict(set)
        self.polls = 0

    def run(self) -> None:
        while not self.stop.wait(0.3):
            if self.root_pid is None:
                continue
            procs = _procs()
            mine, frontier = set(), {self.root_pid}
            while frontier:
                mine |= frontier
                frontier = {p for p, (pp, _) in procs.items() if pp in frontier} - mine
            for pid in mine:
                ppid, argv = procs.get(pid, (0, []))
                fn = _function_of(argv)
                if fn:
                    is_worker = _function_of(procs.get(ppid, (0, []))[1]) == fn
                    (self.workers if is_worker else self.masters)[fn].add(pid)
            self.polls += 1


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """One `ateda ingest` of all 475 real alerts and the generated corpus into one bucket; what it left behind."""
    root = tmp_path_factory.mktemp("hostile")
    token = uuid.uuid4().hex[:10]
    sandbox = root / "sandbox"
    home = sandbox / "h1" / "h2" / "home"
    home.parent.mkdir(parents=True)
    corpus = root / "corpus"
    items = content_corpus(corpus, alert_files(), SKIP, token, records_cap=RECORDS_CAP + 2)
    env = cli_env(home)
    before = {"sandbox": walk(sandbox), "root": walk(root, exclude=sandbox), "alerts": walk(ALERTS),
              "tmp": tmp_escapes(token)}
    rss_file = root / "rss.json"
    servers = Servers()
    servers.start()
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", RSS_WRAPPER, str(rss_file),
                             *ateda("ingest", "--bronze-only", "--json", "--timeout", "420", str(ALERTS),
                                    str(corpus))],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    servers.root_pid = proc.pid
    out, err = proc.communicate(timeout=600)
    run = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    seconds = time.monotonic() - start
    servers.stop.set()
    servers.join()
    s = settings_of(env)
    rows, records = as_named(bronze_rows(s), quarantine_records(s), ALERTS, corpus)
    return {"items": items, "run": run, "seconds": seconds, "env": env, "settings": s, "home": home,
            "sandbox": sandbox, "root": root, "token": token, "before": before, "servers": servers,
            "rss": json.loads(rss_file.read_text()) if rss_file.exists() else None,
            "rows": rows, "records": records}


@pytest.mark.slow
def test_hostile_corpus_ingest_completes_with_a_summary(hostile_run):
    run = hostile_run["run"]
    assert run.returncode == 0, (f"`ateda ingest` of the real alerts and the hostile corpus exited {run.returncode} "
                                 f"after {hostile_run['seconds']:.0f}s: {tail(run.stderr)}")
    summary = json.loads(run.stdout)
    assert summary["files"] == 475 + len(hostile_run["items"])


@pytest.mark.slow
def test_hostile_corpus_every_good_alert_lands_exactly_once(hostile_run):
    real = expected_alerts(alert_files())
    must, maybe = expectations(hostile_run["items"], real)
    rows = hostile_run["rows"]
    problems = check_alerts(rows, must, maybe)
    landed = sum(1 for k in must if rows.get(k, 0) == 1)
    print(f"FIGURES good alerts landed exactly once: {landed} / {len(must)}; duplicates {duplicates(rows)}")
    assert not problems, (f"good alerts landed exactly once: {landed} / {len(must)} ({sum(rows.values())} rows, "
                          f"{duplicates(rows)} duplicates); {len(problems)} problem(s):\n  {fmt(problems)}")


@pytest.mark.slow
def test_hostile_corpus_every_bad_input_has_one_record_with_its_reason(hostile_run):
    items = hostile_run["items"] + real_bad_items()
    problems, right = check_records(items, hostile_run["records"], hostile_run["rows"])
    expected = sum(len(it.records) + (1 if it.bounded else 0) for it in items)
    print(f"FIGURES bad inputs with one record and the right reason: {right} / {expected}; "
          f"{len(hostile_run['records'])} records in all")
    assert not problems, (f"bad inputs with exactly one record and the right reason: {right} / {expected} "
                          f"({len(hostile_run['records'])} records in all); {len(problems)} problem(s):\n  "
                          f"{fmt(problems, 60)}")


@pytest.mark.slow
def test_hostile_corpus_nothing_written_outside_ateda_home(hostile_run):
    r = hostile_run
    home_rel = r["home"].relative_to(r["sandbox"])
    new_in_sandbox = {p for p in walk(r["sandbox"]) - r["before"]["sandbox"]
                      if not (p == str(home_rel) or p.startswith(str(home_rel) + os.sep))}
    new_in_root = walk(r["root"], exclude=r["sandbox"]) - r["before"]["root"] - {"rss.json"}
    changed_alerts = walk(ALERTS) ^ r["before"]["alerts"]
    in_tmp = sorted(set(tmp_escapes(r["token"])) - set(r["before"]["tmp"]))
    passwd = Path("/etc/passwd").read_bytes().splitlines()[0]
    leaked = [str(p) for p in (r["home"] / "lake" / "quarantine").rglob("*")
              if p.is_file() and p.stat().st_size < (64 << 20) and passwd in p.read_bytes()]
    outside = sorted(new_in_sandbox | new_in_root | changed_alerts) + in_tmp
    print(f"FIGURES paths written outside ATEDA_HOME: {len(outside)}; quarantine files holding /etc/passwd: "
          f"{len(leaked)}")
    assert not outside and not leaked, (
        f"{len(outside)} path(s) written outside ATEDA_HOME={r['home']}:\n  {fmt(outside)}\n"
        f"quarantine files holding /etc/passwd (a symlink member was followed): {leaked}")


@pytest.mark.slow
def test_hostile_corpus_runtime_stays_up(hostile_run):
    """No function server or worker of the ingest's runtime died and was replaced while the corpus went through
    (a dead server that was not replaced would have left the ingest unfinished: see the test above)."""
    seen = hostile_run["servers"]
    assert seen.polls >= 5, f"the function servers were looked at {seen.polls} time(s) only"
    masters = {f: sorted(p) for f, p in seen.masters.items()}
    workers = {f: sorted(p) for f, p in seen.workers.items()}
    # the ingest's temporary runtime runs every function `ateda up` runs: split with a worker per core, the rest one
    assert {"split", "bronze"} <= set(masters), masters
    want = {f: (max(2, os.cpu_count() or 2) if f == "split" else 1) for f in masters}
    assert {f: len(p) for f, p in masters.items()} == dict.fromkeys(masters, 1) and \
        {f: len(p) for f, p in workers.items()} == want, (
            f"function servers were replaced during the ingest: masters {masters}, workers {workers} (expected one "
            f"master each and {want} workers, never replaced)")


@pytest.mark.slow
def test_hostile_corpus_peak_rss_bounded(hostile_run):
    rss = hostile_run["rss"]
    assert rss is not None, "the RSS wrapper did not report (killed?)"
    peak_mib = rss["maxrss_kib"] / 1024
    print(f"FIGURES peak RSS of the ingest's process tree: {peak_mib:.0f} MiB; ingest took "
          f"{hostile_run['seconds']:.0f} s")
    assert peak_mib < RSS_LIMIT_MIB, (f"peak RSS of the ingest's processes {peak_mib:.0f} MiB >= {RSS_LIMIT_MIB} MiB "
                                      f"with {MAX_MEMBER >> 20} MiB max member bytes: a bomb was inflated in memory")


def test_bombs_alone_stay_within_memory(tmp_path):
    """The three bombs (deflate-codec Avro, gzip, tar.gz member), each inflating to 256-512 MiB, on their own (the
    corpus run above only measures them if nothing before them sank the event): `too_large`, bounded RSS."""
    items = [it for it in content_corpus(tmp_path / "corpus", alert_files(), SKIP, uuid.uuid4().hex[:10],
                                         records_cap=RECORDS_CAP + 2) if it.name.startswith("bomb")]
    assert len(items) == 3
    drop = tmp_path / "bombs"
    drop.mkdir()
    for it in items:
        (tmp_path / "corpus" / it.name).rename(drop / it.name)
    env = cli_env(tmp_path / "home")
    rss_file = tmp_path / "rss.json"
    run = subprocess.run([sys.executable, "-c", RSS_WRAPPER, str(rss_file),
                          *ateda("ingest", "--bronze-only", "--json", "--timeout", "120", str(drop))],
                         env=env, capture_output=True, text=True, timeout=300)
    s = settings_of(env)
    rows, records = as_named(bronze_rows(s), quarantine_records(s), drop)
    must, maybe = expectations(items, {})
    problems = check_alerts(rows, must, maybe) + check_records(items, records, rows)[0]
    peak_mib = json.loads(rss_file.read_text())["maxrss_kib"] / 1024
    print(f"FIGURES peak RSS with the three bombs alone: {peak_mib:.0f} MiB")
    assert run.returncode == 0 and peak_mib < RSS_LIMIT_MIB and not problems, (
        f"`ateda ingest` of the bombs exited {run.returncode} ({tail(run.stderr)}); peak RSS {peak_mib:.0f} MiB "
        f"(limit {RSS_LIMIT_MIB}, ATEDA_MAX_MEMBER_BYTES {MAX_MEMBER >> 20} MiB); {len(problems)} problem(s):\n  "
        f"{fmt(problems)}")


# ---------------------------------------------------------------- hostile file names

def test_hostile_file_names_land_or_are_refused_by_name(tmp_path):
    """Real alerts named with an en dash, Greek letters, a leading space and %2F land under exactly that key; a
    newline or a non-UTF-8 byte in the name gives one `unsafe_key` record that keeps the name as data."""
    items = name_corpus(tmp_path / "names", alert_files(), SKIP)
    plain = [f for f in alert_files() if f.name not in SKIP][:5]
    home = tmp_path / "home"
    env = cli_env(home, ATEDA_COMMIT_WINDOW_MS="200")
    run = subprocess.run(ateda("ingest", "--bronze-only", "--json", "--timeout", "180", *map(str, plain),
                               str(tmp_path / "names")), env=env, capture_output=True, text=True, timeout=300)
    s = settings_of(env)
    rows, records = as_named(bronze_rows(s), quarantine_records(s), tmp_path / "names")
    must, maybe = expectations(items, expected_alerts(plain))
    problems = check_alerts(rows, must, maybe) + check_records(items, records, rows)[0]
    assert run.returncode == 0 and not problems, (
        f"`ateda ingest` exited {run.returncode}: {tail(run.stderr)}\n{len(problems)} problem(s):\n  {fmt(problems)}")


# ---------------------------------------------------------------- concurrency: several `ateda ingest` on one home

@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3])
def test_concurrent_ingests_on_one_home_are_exact(tmp_path, n):
    """n `ateda ingest` at once, no `ateda up`: each starts its own runtime; inputs overlap by half."""
    files = alert_files()[:240]
    step = len(files) // (n + 1)
    sets = [files[i * step:i * step + 2 * step] for i in range(n)]
    sets[-1] = sets[-1] + files[:step // 2]  # and the last one re-sends the start of the first
    home = tmp_path / "home"
    env = cli_env(home)
    procs = [subprocess.Popen(ateda("ingest", "--bronze-only", "--json", "--timeout", "240", *map(str, fs)), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for fs in sets]
    outs = [p.communicate(timeout=300) for p in procs]
    s = settings_of(env)
    rows = bronze_rows(s)
    want = expected_alerts(sorted({f for fs in sets for f in fs}))
    must = Counter((k, c) for k, cs in want.items() for c in cs)
    problems = check_alerts(rows, must, set())
    print(f"FIGURES {n} concurrent ingests: {duplicates(rows)} duplicate row(s), {sum(rows.values())} rows for "
          f"{len(must)} (key, candid)")
    failed = [f"ingest {i} exited {p.returncode}: {tail(out[1])}" for i, (p, out) in enumerate(zip(procs, outs))
              if p.returncode != 0]
    assert not failed and not problems, (
        f"{n} concurrent ingests: {duplicates(rows)} duplicate row(s), {sum(rows.values())} rows for {len(must)} "
        f"(key, candid); {fmt(failed)}\n  {fmt(problems)}")


# ---------------------------------------------------------------- replay after 100 intervening commits

@pytest.mark.slow
def test_replay_after_100_intervening_commits_is_exact(env_settings, sink, monkeypatch):
    """A chunk's data is committed, its ledger commit fails (the catalog refuses that one commit: the state a crash
    between the two commits leaves), other runtimes commit 100 times to bronze.alert, then the chunk is delivered
    again (as `ateda replay` would): its alerts must be in bronze once."""
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog

    from conftest import app, post

    s = env_settings
    files = [f for f in alert_files() if f.name not in SKIP][:4]
    objects = put_alerts(s, files)
    split, bronze = app("split"), app("bronze")
    for obj in objects:
        assert post(split, events.OBJECT_CREATED, {"bucket": s.bucket, "objects": [obj]}).status_code == 200
    staged = sink.of(events.ALERTS_STAGED)
    victim = next(e for e in staged if {x["key"] for x in e["data"]["sources"]} == {files[0].name})
    others = [e for e in staged if e is not victim]
    assert bronze_rows(s) == Counter()

    real_commit, armed, fired = SqlCatalog.commit_table, [True], []

    def commit_table(self, table, requirements, updates):  # noqa: ANN001, ANN202
        appends = any(type(u).__name__ == "AddSnapshotUpdate" for u in updates)
        if armed[0] and appends and table.name()[-1] == "ingest_ledger":
            fired.append(table.name())
            raise OSError("injected: catalog connection lost before the ledger commit")
        return real_commit(self, table, requirements, updates)

    monkeypatch.setattr(SqlCatalog, "commit_table", commit_table)
    resp = post(bronze, events.ALERTS_STAGED, victim["data"])
    armed[0] = False
    assert fired, "the fault was not injected: no ledger commit was attempted"
    assert resp.status_code >= 500, "a failed ledger commit must not be acknowledged"
    for e in others:  # this runtime goes on
        assert post(bronze, events.ALERTS_STAGED, e["data"]).status_code == 200
    alert = ensure_tables(load_catalog(s), s)["alert"]
    snaps_before = len(alert.metadata.snapshots)
    # others commit 100 times (one row each, under keys of their own), in 4 catalog commits of 25 snapshots
    cols = ("objectId", "candid", "source_bucket", "source_key", "source_etag", "part", "night")
    arrow = alert.schema().as_arrow()
    night = alert.scan(selected_fields=("night",), limit=1).to_arrow()["night"][0].as_py()
    for t in range(4):
        with alert.transaction() as tx:
            for i in range(25):
                row = {"objectId": "ZTF-other", "candid": 1000 + 25 * t + i, "source_bucket": s.bucket,
                       "source_key": f"intervening/{25 * t + i:03d}", "source_etag": "e", "part": 0,
                       "night": night}
                tx.append(pa.Table.from_pylist([row], schema=pa.schema([arrow.field(c) for c in cols])))
        alert = alert.refresh()
    intervening = len(alert.metadata.snapshots) - snaps_before
    assert intervening >= 100, f"only {intervening} commits in between"
    assert post(bronze, events.ALERTS_STAGED, victim["data"]).status_code == 200  # the replay
    rows = bronze_rows(s)
    want = Counter((k, c) for k, cs in expected_alerts(files).items() for c in cs)
    want.update((f"intervening/{i:03d}", 1000 + i) for i in range(100))
    problems = check_alerts(rows, want, set())
    assert not problems, (f"replay after {intervening} intervening commits: {duplicates(rows)} duplicate(s):\n  "
                          f"{fmt(problems)}")


# ---------------------------------------------------------------- kill -9 of a function server under `ateda up`

def _server_pids(up_pid: int, folder: str) -> list[int]:
    """Pids of the functions-framework servers (gunicorn masters) of ``folder`` that are children of ``up_pid``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            ppid = int(next(x for x in (d / "status").read_text().splitlines() if x.startswith("PPid:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
        if ppid == up_pid and b"functions_framework" in cmd and any(
                x.endswith(f"/{folder}/main.py".encode()) for x in cmd):
            out.append(int(d.name))
    return out


@pytest.mark.slow
def test_kill_9_function_servers_under_ateda_up_are_restarted_and_exact(tmp_path):
    from ateda.local.runtime import running_runtime

    home = tmp_path / "home"
    env = cli_env(home)
    s = settings_of(env)
    up = subprocess.Popen(ateda("up"), env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "up.err", "wb"))
    try:
        deadline = time.monotonic() + 90
        while running_runtime(s) is None:
            assert up.poll() is None and time.monotonic() < deadline, \
                f"`ateda up` did not start: {(tmp_path / 'up.err').read_text()[-2000:]}"
            time.sleep(0.3)
        victims = {f: _server_pids(up.pid, f) for f in ("split", "bronze")}
        assert all(len(p) == 1 for p in victims.values()), f"function servers found: {victims}"
        files = [f for f in alert_files() if f.name not in SKIP][:150]
        ingest = subprocess.Popen(ateda("ingest", "--bronze-only", "--json", "--timeout", "150", *map(str, files)), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.kill(victims["split"][0], signal.SIGKILL)  # split dies as the files arrive
        ledger = ensure_tables(load_catalog(s), s)["ingest_ledger"]
        deadline = time.monotonic() + 60
        while ledger.refresh().current_snapshot() is None and time.monotonic() < deadline and ingest.poll() is None:
            time.sleep(0.2)
        os.kill(victims["bronze"][0], signal.SIGKILL)  # bronze dies once the first batch is committed
        killed_bronze_after_first_commit = ledger.current_snapshot() is not None
        out, err = ingest.communicate(timeout=240)
        rows = bronze_rows(s)
        want = expected_alerts(files)
        problems = check_alerts(rows, Counter((k, c) for k, cs in want.items() for c in cs), set())
        now = {f: _server_pids(up.pid, f) for f in victims}
        assert up.poll() is None, "`ateda up` exited"
        restarted = {f: p for f, p in now.items() if p and set(p).isdisjoint(victims[f])}
        assert ingest.returncode == 0 and not problems and restarted.keys() == victims.keys() \
            and killed_bronze_after_first_commit, (
            f"after kill -9 of {victims} (bronze killed after a first commit: {killed_bronze_after_first_commit}): "
            f"ingest exited {ingest.returncode} ({tail(err)}); servers now {now}; "
            f"{duplicates(rows)} duplicate(s), {len(problems)} problem(s):\n  {fmt(problems)}")
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


# ---------------------------------------------------------------- hostile requests to the bridge, broker, split

def _start_bridge(tmp_path: Path, sink: Sink, **env_extra: str) -> tuple[subprocess.Popen, str]:
    from ateda.local.runtime import free_port

    port = free_port()
    env = cli_env(tmp_path / "bridge-home", K_SINK=sink.url, ATEDA_BATCH_WINDOW_MS="100", WORKERS="1",
                  THREADS="8", **env_extra)
    log = open(tmp_path / "bridge.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "functions_framework", "--target", "handle", "--source",
                             str(REPO / "functions" / "minio_bridge" / "main.py"), "--signature-type", "http",
                             "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def _wait_up(proc: subprocess.Popen, url: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            requests.head(url, timeout=1)
            return True
        except requests.RequestException:
            time.sleep(0.2)
    return False


def _minio(bucket, key, event: str = "s3:ObjectCreated:Put") -> dict:  # noqa: ANN001
    return {"EventName": event, "Key": f"{bucket}/{key}", "Records": [{
        "eventVersion": "2.0", "eventSource": "minio:s3", "eventTime": "2026-11-21T09:12:03.420Z", "eventName": event,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 18863, "eTag": "78f33c859e650ca4"}}}]}


def _post_big(url: str, size: int, token: str | None) -> int | str:
    """POST ``size`` bytes (declared up front), streamed; the status, or what went wrong if none came back."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.putrequest("POST", "/")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(size))
    if token:
        conn.putheader("Authorization", f"Bearer {token}")
    conn.endheaders()
    block = b" " * (1 << 20)
    try:
        for _ in range(size // len(block)):
            conn.send(block)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered early and closed: read its answer
    try:
        return conn.getresponse().status
    except (http.client.HTTPException, OSError) as exc:
        return f"no status ({type(exc).__name__})"
    finally:
        conn.close()


def _tree_hwm_mib(pid: int) -> float:
    """Peak RSS (VmHWM) of ``pid`` and its children, MiB."""
    pids = [pid] + [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]
    peak = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


def test_bridge_refuses_hostile_requests(tmp_path, sink):
    token = "t0k-" + uuid.uuid4().hex
    proc, url = _start_bridge(tmp_path, sink, ATEDA_BRIDGE_TOKEN=token)
    try:
        assert _wait_up(proc, url), f"bridge did not start: {(tmp_path / 'bridge.log').read_text()[-1500:]}"
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        problems = []

        def expect(label: str, status: int | str, want: set[int], body: str = "", reason: str = "") -> None:
            if status not in want or (reason and reason not in body):
                problems.append(f"{label}: got {status} {body[:120]!r}, expected {sorted(want)}"
                                + (f" naming {reason!r}" if reason else ""))

        good = _minio("alerts", "night%2F2026+11+20%2Fztf%2B1.avro")
        for label, headers in (("no token", {}), ("bad token", {"Authorization": "Bearer nope"}),
                               ("token without Bearer", {"Authorization": token})):
            r = requests.post(url, json=good, headers=headers, timeout=10)
            expect(label, r.status_code, {401, 403}, r.text)
        malformed = {"[]": "[]", "null": "null", "a string": '"hello"', "Records of ints": '{"Records": [1]}',
                     "Records a string": '{"Records": "x"}', "not json": "not json", "invalid utf-8": b"\xff\xfe{",
                     "bucket a list": json.dumps(_minio(["alerts"], "a.avro")),
                     "key a number": json.dumps(_minio("alerts", 5)),
                     "eventName a number": json.dumps(_minio("alerts", "a.avro", event=7)),
                     "s3 null": '{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": null}]}'}
        for label, body in malformed.items():
            r = requests.post(url, data=body, headers=auth, timeout=10)
            expect(f"malformed body ({label})", r.status_code, {400}, r.text)
        traversal = {"../ key": ("alerts", "..%2F..%2F..%2Foutside%2Fsecret.txt"),
                     "absolute key": ("alerts", "%2Fetc%2Fpasswd"),
                     "a/../.. key": ("alerts", "night%2F..%2F..%2F..%2Fsecret.txt"),
                     "newline in key": ("alerts", "a%0Ab.avro"),
                     "NUL in key": ("alerts", "a%00b.avro"),
                     "../ bucket": ("../../outside", "a.avro"),
                     "bucket with a slash": ("alerts/../lake", "a.avro")}
        for label, (bucket, key) in traversal.items():
            r = requests.post(url, json=_minio(bucket, key), headers=auth, timeout=10)
            expect(f"traversal ({label})", r.status_code, {400, 403, 422}, r.text, "unsafe_key")
        # one bad body and one good one in the same coalescing window: the good one is delivered
        with_bad = []
        threads = [threading.Thread(target=lambda b=b: with_bad.append(
            requests.post(url, data=json.dumps(b), headers=auth, timeout=30).status_code))
            for b in (_minio(["alerts"], "x.avro"), _minio("alerts", "same-window.avro"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if sorted(with_bad) != [200, 400]:
            problems.append(f"a bad body (list-valued bucket) and a good one in one window: {sorted(with_bad)}, "
                            f"expected [200, 400]")
        r = requests.post(url, json=good, headers=auth, timeout=30)
        expect("good body", r.status_code, {200}, r.text)
        for i in range(8):  # eight 50 MB bodies: refused before they are read
            status = _post_big(url, 50 << 20, token if i % 2 == 0 else None)
            expect(f"50 MB body #{i} ({'with' if i % 2 == 0 else 'without'} token)", status,
                   {413} if i % 2 == 0 else {401, 413})
        hwm = _tree_hwm_mib(proc.pid)
        if hwm >= BRIDGE_RSS_LIMIT_MIB:
            problems.append(f"bridge peak RSS {hwm:.0f} MiB >= {BRIDGE_RSS_LIMIT_MIB} MiB after eight 50 MB bodies")
        time.sleep(0.5)  # one coalescing window (100 ms) and more: anything accepted has been posted by now
        delivered = sorted(o["key"] for e in sink.of(events.OBJECT_CREATED) for o in e["data"]["objects"])
        if delivered != sorted(["same-window.avro", "night/2026 11 20/ztf+1.avro"]):
            problems.append(f"events the bridge sent on: {delivered}; expected the two good keys only")
        assert proc.poll() is None, f"the bridge died: {(tmp_path / 'bridge.log').read_text()[-1500:]}"
        assert not problems, f"{len(problems)} hostile request(s) mishandled:\n  {fmt(problems, 40)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bridge_fails_closed_without_a_token(tmp_path, sink):
    proc, url = _start_bridge(tmp_path, sink)
    try:
        if _wait_up(proc, url, timeout=20):
            r = requests.post(url, json=_minio("alerts", "a.avro"), timeout=10)
            time.sleep(0.5)
            assert r.status_code >= 400 and not sink.events, (
                f"a bridge with no token and no ATEDA_BRIDGE_INSECURE_OPEN accepted an unauthenticated webhook: "
                f"{r.status_code}, {len(sink.events)} event(s) sent on")
        else:
            assert proc.poll() not in (None, 0), "the bridge neither started nor exited with an error"
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def test_split_never_reads_outside_the_bucket(env_settings, sink):
    """object.created events naming `../`, absolute keys or a `../` bucket (as a hostile bridge or broker client
    would send): each is one `unsafe_key` rejection, never read; the good object in the same event is split."""
    from conftest import app, post

    s = env_settings
    token = uuid.uuid4().hex
    outside = Path(s.home).parent
    (outside / f"secret-{token}.txt").write_bytes(f"TOPSECRET {token}\n".encode() * 4)
    real = [f for f in alert_files() if f.name not in SKIP]
    (outside / "elsewhere.avro").write_bytes(real[1].read_bytes())  # a real alert outside the bucket
    (good,) = put_alerts(s, real[:1])
    hostile = [{"key": f"../../../secret-{token}.txt", "etag": "x"},
               {"key": str(outside / "elsewhere.avro"), "etag": "x"},
               {"key": f"night/../../../../secret-{token}.txt", "etag": "x"}]
    split = app("split")
    statuses = [post(split, events.OBJECT_CREATED, {"bucket": s.bucket, "objects": [*hostile, good]}).status_code,
                post(split, events.OBJECT_CREATED,
                     {"bucket": "../../..", "objects": [{"key": f"secret-{token}.txt", "etag": "x"}]}).status_code]
    rejected = [e["data"] for e in sink.of(events.INPUT_REJECTED)]
    staged = [src["key"] for e in sink.of(events.ALERTS_STAGED) for src in e["data"]["sources"]]
    by_key = Counter((r["source"]["bucket"], r["source"]["key"], r["reason"]) for r in rejected)
    want = Counter([(s.bucket, o["key"], "unsafe_key") for o in hostile] +
                   [("../../..", f"secret-{token}.txt", "unsafe_key")])
    secret = f"TOPSECRET {token}"
    leaked_events = [e["type"] for e in sink.events if secret in json.dumps(e, default=str)]
    leaked_files = [str(p) for p in Path(s.home).rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert all(st < 500 for st in statuses) and by_key == want and staged == [good["key"]] \
        and not leaked_events and not leaked_files, (
            f"statuses {statuses}; rejections {dict(by_key)}, expected {dict(want)}; staged keys {staged}, expected "
            f"{[good['key']]}; secret bytes in events {leaked_events}, in files {leaked_files}")


def test_broker_ingress_refuses_unauthenticated_events(tmp_path):
    from ateda.local.runtime import Runtime, ingestion_functions

    s = Settings(home=tmp_path / "home").resolved()
    with Runtime(s, functions=ingestion_functions(split_workers=1), watch=False) as rt:
        event = events.make_event(events.OBJECT_CREATED, "/elsewhere", {"bucket": "alerts", "objects": [
            {"key": "a.avro", "etag": "x"}]}, "a.avro")
        headers, body = transport.to_binary(event)
        r = requests.post(rt.sink, data=body, headers=headers, timeout=10)
        assert r.status_code in (401, 403), (f"the local broker accepted an event with no token from any local "
                                             f"process: {r.status_code} {r.text[:200]!r}")
