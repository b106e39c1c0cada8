"""The Grafana dashboards (deploy/dashboards/*.json, shipped as ConfigMaps by the ateda-platform chart): valid
Grafana JSON, every panel query parses as PromQL (promql-parser) and names only metrics the code exports
(shared/ateda/serving/metrics.py, read from the live registry) or that Knative/Kubernetes export (METRIC_ALLOWLIST,
each with its source). Moved out of tests/test_deploy.py, which keeps what concerns helm and helmfile.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "deploy" / "dashboards"

# Metrics the dashboards may use besides the ones shared/ateda/serving/metrics.py exports, with where each comes from.
# Knative >= 1.19 emits OpenTelemetry instruments; Prometheus (OTLP receiver with UnderscoreEscapingWithSuffixes,
# or the Prometheus exporter) names them with dots -> underscores, unit suffixes (s -> _seconds; {annotations}
# dropped) and _bucket/_sum/_count for histograms.
METRIC_ALLOWLIST = {
    # knative/serving autoscaler (pkg/autoscaler/metrics; knative docs serving/observability/metrics/serving-metrics)
    "kn_revision_pods_desired": "autoscaler kn.revision.pods.desired (Int64Gauge, {pod})",
    "kn_revision_pods_requested": "autoscaler kn.revision.pods.requested",
    "kn_revision_pods_count": "autoscaler kn.revision.pods.count",
    "kn_revision_pods_not_ready_count": "autoscaler kn.revision.pods.not_ready.count",
    "kn_revision_pods_pending_count": "autoscaler kn.revision.pods.pending.count",
    "kn_revision_concurrency_stable": "autoscaler kn.revision.concurrency.stable (Float64Gauge, {concurrency})",
    "kn_revision_concurrency_panic": "autoscaler kn.revision.concurrency.panic",
    "kn_revision_concurrency_target": "autoscaler kn.revision.concurrency.target",
    "kn_revision_panic_mode": "autoscaler kn.revision.panic.mode (Int64 gauge, no unit)",
    # knative/serving activator (same docs page, section Activator)
    "kn_revision_request_concurrency": "activator kn.revision.request.concurrency ({request})",
    # knative/serving queue-proxy sidecar (same docs page, section Workload Metrics)
    "kn_serving_queue_depth": "queue-proxy kn.serving.queue.depth ({request})",
    "kn_serving_invocation_duration_seconds_bucket": "queue-proxy kn.serving.invocation.duration (Float64Histogram, s)",
    "kn_serving_invocation_duration_seconds_count": "queue-proxy kn.serving.invocation.duration",
    # knative/eventing broker filter / dispatchers (pkg/broker/filter, pkg/kncloudevents: kn.eventing.dispatch.duration)
    "kn_eventing_dispatch_duration_seconds_count": "broker filter kn.eventing.dispatch.duration (Float64Histogram, s)",
    # Kubernetes: kubelet cAdvisor (scraped by kube-prometheus-stack) and kube-state-metrics
    "container_cpu_usage_seconds_total": "kubelet/cAdvisor",
    "container_memory_working_set_bytes": "kubelet/cAdvisor",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
}


# ================================================================================================================
# Dashboards


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict) -> Iterator[dict]:
    for p in board.get("panels", []):
        yield p
        yield from p.get("panels", [])


GRAFANA_VARS = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")


def promql_of(expr: str) -> str:
    """Grafana's variables replaced by what Grafana would put there, so the text is plain PromQL."""
    expr = GRAFANA_VARS.sub("5m", expr)
    return re.sub(r"\$\{?(\w+)\}?", "x", expr)


def metric_names(expr: str) -> set[str]:
    import promql_parser  # test extra: promql-parser

    names: set[str] = set()

    def visit(node):  # noqa: ANN001, ANN202
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(promql_of(expr)), visit)
    return names


@functools.lru_cache(maxsize=None)
def exported_metrics() -> frozenset[str]:
    """Sample names shared/ateda/serving/metrics.py exports, read from the prometheus_client registry after creating them."""
    from prometheus_client import REGISTRY

    from ateda.serving.metrics import instruments

    instruments()
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("", "_sum", "_count")}
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("ateda_"):
            names |= {family.name + s for s in suffixes[family.type]}
    return frozenset(names)


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    for fname, board in dashboards().items():
        for p in panels(board):
            for t in p.get("targets", []):
                if t.get("expr"):
                    yield fname, p.get("title", "?"), t["expr"]
        for var in board.get("templating", {}).get("list", []):
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if var.get("type") == "query" and q:
                m = re.match(r"^label_values\((.*),\s*\w+\)$", q.strip(), re.S)
                yield fname, f"variable {var['name']}", m.group(1) if m else q


def test_dashboards_are_valid_grafana_json():
    boards = dashboards()
    assert {"autoscaling.json", "pipeline.json", "errors.json", "lake.json"} <= set(boards)
    uids = [b["uid"] for b in boards.values()]
    assert len(uids) == len(set(uids)), "dashboard uids must be unique"
    for fname, board in boards.items():
        assert board.get("title") and board.get("panels"), fname
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), f"{fname}: duplicate panel ids"
        for p in panels(board):
            if p["type"] == "row":
                continue
            assert p.get("targets"), f"{fname}: panel {p.get('title')!r} has no query"
            assert p.get("datasource", {}).get("uid") == "${datasource}", f"{fname}: {p.get('title')}: datasource"
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{fname}: {p['title']} outside the grid"


def test_every_dashboard_query_parses_as_promql():
    queries = list(dashboard_queries())
    assert len(queries) >= 30
    failures = []
    for fname, title, expr in queries:
        try:
            metric_names(expr)
        except Exception as exc:  # noqa: BLE001 (promql-parser raises ValueError)
            failures.append(f"{fname}: {title}: {exc}: {expr}")
    assert not failures, "\n".join(failures)


def test_every_dashboard_metric_is_exported_by_the_code_or_knative_or_kubernetes():
    known = exported_metrics() | set(METRIC_ALLOWLIST)
    unknown = [f"{fname}: {title}: {name}" for fname, title, expr in dashboard_queries()
               for name in sorted(metric_names(expr)) if name not in known]
    assert not unknown, "metrics nobody exports:\n" + "\n".join(unknown)


def test_dashboards_cover_the_issue():
    used = {name for _, _, expr in dashboard_queries() for name in metric_names(expr)}
    by_board = {f: {n for ff, _, e in dashboard_queries() if ff == f for n in metric_names(e)} for f in dashboards()}
    assert {"kn_revision_pods_desired", "kn_revision_pods_count", "kn_revision_concurrency_stable",
            "kn_serving_invocation_duration_seconds_bucket"} <= by_board["autoscaling.json"]
    assert {"ateda_alerts_processed_total", "ateda_end_to_end_lag_seconds_bucket", "ateda_stage_seconds_bucket"} \
        <= by_board["pipeline.json"]
    assert {"ateda_rejected_total", "ateda_dead_letters_total", "ateda_broker_deliveries_total"} <= by_board["errors.json"]
    assert {"ateda_iceberg_commits_total", "ateda_iceberg_rows_committed_total", "ateda_commit_batch_alerts_bucket"} \
        <= by_board["lake.json"]
    stale = set(METRIC_ALLOWLIST) - used
    assert not stale, f"allow-listed but unused (remove them): {sorted(stale)}"


def test_metric_checks_can_fail():
    with pytest.raises(Exception):  # noqa: B017
        metric_names("sum(rate(ateda_alerts_processed_total[5m])")  # unbalanced
    assert metric_names('sum by (f) (rate(nope_total{a="$x"}[$__rate_interval])) / on() group_left b') == {"nope_total", "b"}
    assert "nope_total" not in exported_metrics() | set(METRIC_ALLOWLIST)
    assert "ateda_alerts_processed_total" in exported_metrics()
    assert "ateda_end_to_end_lag_seconds_bucket" in exported_metrics()
