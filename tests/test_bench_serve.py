"""`ateda bench --serve` on a tiny lake (60 synthetic ZTF alerts and 6 Rubin ones): the command builds the lake,
starts `ateda serve` in a child process, hits every endpoint from 8 concurrent clients and reports a table. Checked:
the result's shape and that every request of every endpoint was answered 200. No timing is asserted (the figures
are a benchmark: docs/performance.md, "Explorer latency")."""

from __future__ import annotations

import json

from ateda.cli import main
from ateda.config import Settings
from ateda.dev.bench import SERVE_ENDPOINTS, SERVE_LABELS, SERVE_PORTS, ServedExplorer

REQUESTS = 24


def test_bench_serve_answers_every_request(tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["bench", "--serve", "-n", "60", "--home", str(home), "--requests", str(REQUESTS), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["built"]["ztf_alerts"] == 60 and result["built"]["lsst_alerts"] == 6
    assert result["gold_rows"]["object"] > 0 and result["gold_rows"]["lightcurve"] > 0
    assert result["clients"] == 8 and result["requests_per_endpoint"] == REQUESTS
    assert list(result["endpoints"]) == list(SERVE_ENDPOINTS)
    for name, e in result["endpoints"].items():
        assert e["status"] == {"200": REQUESTS}, (name, e["status"])
        assert e["requests"] == REQUESTS
        assert 0 < e["p50_ms"] <= e["p95_ms"] <= e["p99_ms"] <= e["max_ms"], (name, e)
        assert e["requests_per_s"] > 0 and e["mean_bytes"] > 0
        assert SERVE_LABELS[name] in result["text"]
    assert result["server_peak_rss_mib"] >= result["server_rss_mib_at_start"] > 0
    assert len(result["load_avg_1_5_15"]) == 3
    # --home reuses the lake: nothing is built the second time, the same gold is asked
    assert main(["bench", "--serve", "--home", str(home), "--requests", "8", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["built"] is None and again["gold_rows"] == result["gold_rows"]
    assert all(e["status"] == {"200": 8} for e in again["endpoints"].values())


def test_the_server_stops_with_the_bench(tmp_path):
    """The child `ateda serve` is gone once the bench is done with it (even when nothing is published: 503s)."""
    settings = Settings(home=tmp_path / "empty").resolved()
    with ServedExplorer(settings) as server:
        assert server.port in SERVE_PORTS
        proc = server.proc
    assert proc.poll() is not None
