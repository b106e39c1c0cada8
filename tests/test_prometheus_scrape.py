"""Debian's Prometheus scrapes a short local run of the pipeline; every dashboard panel built only on ATEDA's own
metrics (ateda_*) must return data from Prometheus's HTTP API.

The run covers what a short healthy run would not show on its own: a bad input (rejections), duplicate deliveries
(ateda_duplicates_total), a briefly locked catalog (failed Iceberg commit attempts) and a runtime whose catalog is
unreachable (dead letters). The broker runs in this process, so its metrics (deliveries, dead letters) are served
from this process's registry; split and bronze serve theirs on ``ATEDA_METRICS_PORT_<FOLDER>``.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from ateda.config import Settings
from ateda.ingest import IngestFailed, run_ingest
from ateda.local.runtime import FunctionSpec, Runtime, free_port, ping
from conftest import HALF_BROKEN, REPO, alert_files

PROMETHEUS = shutil.which("prometheus")
DASHBOARDS = REPO / "deploy" / "dashboards"
RANGE = "1m"  # what $__range / $__rate_interval / $__interval become: covers the whole run

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (CI installs Debian's)")


# ---------------------------------------------------------------------------------------------------------------
# Dashboard queries


def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        stack = list(board.get("panels", []))
        while stack:
            p = stack.pop(0)
            stack.extend(p.get("panels", []))
            out += [(path.name, p.get("title", "?"), t["expr"]) for t in p.get("targets", []) if t.get("expr")]
    return out


def variables() -> dict[str, str]:
    """Query variables of all boards: name -> the metric selector their label_values() reads, and the label."""
    out = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        for var in json.loads(path.read_text()).get("templating", {}).get("list", []):
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.match(r"^label_values\((.*),\s*(\w+)\)$", (q or "").strip(), re.S) if var.get("type") == "query" else None
            if m:
                out[var["name"]] = (m.group(1), m.group(2))
    return out


def plain(expr: str) -> str:
    return re.sub(r"\$\{?__(rate_interval|interval|range)\}?", RANGE, expr)


def metric_names(expr: str) -> set[str]:
    import promql_parser  # test extra

    names: set[str] = set()

    def visit(node):  # noqa: ANN001, ANN202
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(re.sub(r"\$\{?(\w+)\}?", "x", plain(expr))), visit)
    return names


def own_queries() -> list[tuple[str, str, str]]:
    return [q for q in panel_queries() if all(n.startswith("ateda_") for n in metric_names(q[2]))]


def test_own_query_selection_is_what_the_dashboards_hold():
    own = own_queries()
    assert len(own) >= 30, len(own)
    assert {f for f, _, _ in own} == {"autoscaling.json", "errors.json", "lake.json", "pipeline.json"}
    assert not any(n.startswith("kn_") for _, _, e in own for n in metric_names(e))
    assert plain("rate(x[$__rate_interval]) + increase(y[${__range}])") == "rate(x[1m]) + increase(y[1m])"


# ---------------------------------------------------------------------------------------------------------------
# Prometheus


class Prometheus:
    def __init__(self, root: Path, targets: list[int]) -> None:
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        cfg = root / "prometheus.yml"
        cfg.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "ateda", "static_configs": [
                {"targets": [f"127.0.0.1:{p}" for p in targets]}]}]}))
        self.log = open(root / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={root / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
             f"--web.console.templates={root}", f"--web.console.libraries={root}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (root / "prometheus.log").read_text()[-3000:]
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError("prometheus did not become ready")

    def query(self, expr: str) -> list[dict]:
        r = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def label_values(self, selector: str, label: str) -> list[str]:
        r = requests.get(f"{self.url}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10)
        return r.json()["data"]

    def targets_up(self) -> dict[str, str]:
        active = requests.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {t["scrapeUrl"]: t["health"] for t in active}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def scraped(url: str, name: str) -> float:
    """Sum of a metric's samples on one /metrics endpoint (what Prometheus would scrape next)."""
    try:
        text = requests.get(url, timeout=2).text
    except requests.RequestException:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def wait_for(cond, seconds: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def wait_idle(rt: Runtime, seconds: float = 60) -> None:
    quiet = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        quiet = quiet + 1 if rt.idle() else 0
        if quiet >= 5:
            return
        time.sleep(0.2)
    raise TimeoutError("pipeline did not go idle")


# ---------------------------------------------------------------------------------------------------------------
# The live test


def test_every_own_dashboard_panel_returns_data_from_a_live_scrape(tmp_path, monkeypatch):
    from prometheus_client import start_http_server

    t0 = time.monotonic()
    ports = {"split": free_port(), "bronze": free_port(), "maintenance": free_port(), "broker": free_port()}
    monkeypatch.setenv("ATEDA_METRICS_PORT_SPLIT", str(ports["split"]))
    monkeypatch.setenv("ATEDA_METRICS_PORT_BRONZE", str(ports["bronze"]))
    monkeypatch.setenv("ATEDA_METRICS_PORT_MAINTENANCE", str(ports["maintenance"]))
    monkeypatch.setenv("ATEDA_COMPACT_QUIET_MINUTES", "0")  # a one-minute run: compact what it just wrote
    monkeypatch.setenv("ATEDA_COMPACT_MIN_FILES", "2")
    monkeypatch.setenv("ATEDA_METRICS_ADDR", "127.0.0.1")
    server, thread = start_http_server(ports["broker"], addr="127.0.0.1")  # the broker runs in this process
    prom = None
    functions = [FunctionSpec("ateda-split", "split", workers=2, threads=1, parallelism=4),
                 FunctionSpec("ateda-bronze", "bronze", workers=1, threads=16, parallelism=16)]
    files = [f for f in alert_files() if f.name not in HALF_BROKEN][:24] + [f for f in alert_files() if f.name in HALF_BROKEN]
    bad = tmp_path / "in" / "observing-notes.avro"
    bad.parent.mkdir()
    bad.write_bytes(b"observing log, not an alert\n" * 10)
    try:
        prom = Prometheus(tmp_path / "prom", list(ports.values()))
        # 1. A catalog nobody answers on: bronze fails, the broker retries fast and dead-letters.
        down = Settings(home=tmp_path / "down", commit_window_ms=50,
                        catalog_uri="postgresql+psycopg2://nobody@127.0.0.1:1/none").resolved()
        with Runtime(down, functions=list(functions), backoff_scale=0.01) as rt:
            with pytest.raises(IngestFailed, match="dead-lettered"):
                run_ingest(down, files[:2], quiet=True, timeout=60)
            wait_idle(rt)
        t_down = time.monotonic() - t0

        # 2. A healthy runtime with every delivery made twice (duplicates), a bad input (rejections) and a catalog
        #    briefly write-locked by another writer (failed commit attempts that the retry then gets through).
        good = Settings(home=tmp_path / "good", commit_window_ms=50).resolved()
        maintenance = FunctionSpec("ateda-maintenance", "maintenance", workers=1, threads=1, parallelism=1)
        with Runtime(good, functions=[*functions, maintenance], duplicate_deliveries=True) as rt:
            run_ingest(good, files[:12] + [bad], quiet=True, timeout=60)
            catalog_db = Path(good.catalog_uri.removeprefix("sqlite:///"))
            lock = sqlite3.connect(catalog_db, timeout=0, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # holds the write lock: readers go on, commits fail
            bronze_metrics = f"http://127.0.0.1:{ports['bronze']}/metrics"
            ingest = threading.Thread(target=run_ingest, args=(good, files[12:]), kwargs={"quiet": True, "timeout": 60})
            ingest.start()
            try:
                wait_for(lambda: scraped(bronze_metrics, "ateda_iceberg_commit_failures_total") > 0, 30,
                         "no failed commit attempt while the catalog was locked")
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            ingest.join(60)
            assert not ingest.is_alive()
            wait_idle(rt)
            # 3. The hourly maintenance ping (lake health: files per partition, compaction, expiry, orphans).
            ping(rt.sink)
            wait_for(lambda: scraped(f"http://127.0.0.1:{ports['maintenance']}/metrics",
                                     "ateda_maintenance_runs_total") > 0, 60, "no maintenance pass")
            time.sleep(3)  # a few more scrapes at 1 s

            assert set(prom.targets_up().values()) == {"up"}, prom.targets_up()
            subst = {name: "|".join(prom.label_values(sel, label)) or "NONE" for name, (sel, label) in variables().items()
                     if all(n.startswith("ateda_") for n in metric_names(sel))}
            assert subst.keys() >= {"function", "table"} and "bronze" in subst["function"] and "alert" in subst["table"]
            empty = []
            for fname, title, expr in own_queries():
                q = re.sub(r"\$\{?(\w+)\}?", lambda m: subst.get(m.group(1), m.group(0)), plain(expr))
                if not prom.query(q):
                    empty.append(f"{fname}: {title}: {q}")
            assert not empty, "panels without data:\n" + "\n".join(empty)
            # and the data is the run's: alerts reached bronze, rejections have the reason of the bad file
            assert float(prom.query('sum(ateda_alerts_processed_total{function="bronze"})')[0]["value"][1]) > 0
            reasons = {r["metric"]["reason"] for r in prom.query("ateda_rejected_total")}
            assert "not_avro" in reasons, reasons
            assert float(prom.query("sum(ateda_dead_letters_total)")[0]["value"][1]) > 0
        print(f"\nprometheus scrape test: dead-letter phase {t_down:.1f}s, total {time.monotonic() - t0:.1f}s, "
              f"{len(own_queries())} queries")
    finally:
        if prom:
            prom.stop()
        server.shutdown()
