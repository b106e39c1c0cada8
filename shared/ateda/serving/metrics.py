"""Prometheus metrics shared by every function (one registry per process; served on /metrics by each function).

Names are stable: Grafana dashboards and the deploy checks refer to them.
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@functools.cache
def instruments():  # noqa: ANN201
    """The Prometheus instruments (counters, gauges, histograms) of this process, created on first use (never at
    import time)."""

    class _Instruments:
        alerts = Counter("ateda_alerts_processed_total", "Alerts processed, by survey (ztf, lsst)", ["function", "survey"])
        objects = Counter("ateda_objects_processed_total", "Bucket objects processed", ["function"])
        rejected = Counter("ateda_rejected_total", "Inputs quarantined, by reason", ["function", "reason"])
        events_in = Counter("ateda_events_received_total", "CloudEvents received", ["function", "type"])
        events_out = Counter("ateda_events_emitted_total", "CloudEvents emitted", ["function", "type"])
        duplicates = Counter("ateda_duplicates_total", "Re-delivered work acknowledged without effect", ["function"])
        latency = Histogram("ateda_stage_seconds", "Time spent per request, by stage", ["function", "stage"],
                            buckets=_LATENCY_BUCKETS)
        lag = Histogram("ateda_end_to_end_lag_seconds", "Object arrival in the bucket to bronze commit",
                        buckets=_LATENCY_BUCKETS)
        inflight = Gauge("ateda_inflight_requests", "Requests being processed", ["function"])
        commits = Counter("ateda_iceberg_commits_total", "Iceberg commits", ["table"])
        commit_rows = Counter("ateda_iceberg_rows_committed_total", "Rows committed", ["table"])
        commit_retries = Counter("ateda_iceberg_commit_failures_total", "Failed Iceberg commit attempts", ["table"])
        batch_size = Histogram("ateda_commit_batch_alerts", "Alerts per bronze group commit",
                               buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000))
        dead_letters = Counter("ateda_dead_letters_total", "Events dead-lettered", ["trigger"])
        deliveries = Counter("ateda_broker_deliveries_total", "Broker delivery attempts", ["trigger", "outcome"])
        # lake maintenance (ateda.steps.maintenance): what a pass did, and the lake's shape after it
        maintenance_runs = Counter("ateda_maintenance_runs_total", "Maintenance passes", ["outcome"])
        compacted = Counter("ateda_maintenance_files_compacted_total", "Small data files rewritten", ["table"])
        expired = Counter("ateda_maintenance_snapshots_expired_total", "Iceberg snapshots expired", ["table"])
        orphans = Counter("ateda_maintenance_orphans_deleted_total", "Unreferenced files deleted", ["area"])
        lake = Gauge("ateda_lake_table_stat", "Shape of each lake table at the last maintenance pass "
                     "(data_files, partitions, max_files_per_partition, small_files, bytes, rows, snapshots, "
                     "manifests)", ["table", "stat"], multiprocess_mode="mostrecent")
        # the embedded runtime (ateda up): broker ingress, bucket watcher, function supervision
        broker_rejected = Counter("ateda_broker_rejected_total", "Requests the local broker's ingress refused",
                                  ["reason"])
        watcher_failures = Counter("ateda_watcher_failures_total", "Failed announcements of a batch of bucket objects")
        watcher_last_scan = Gauge("ateda_watcher_last_scan_timestamp_seconds",
                                  "Unix time of the bucket watcher's last successful scan", multiprocess_mode="max")
        watcher_failing = Gauge("ateda_watcher_failing_objects",
                                "Bucket objects whose announcement is failing (retrying or given up)",
                                multiprocess_mode="mostrecent")
        # the dbt refresh: sets of conflicting copies of one detection/limit/forced point (silver.copy_conflict)
        copy_conflicts = Gauge("ateda_copy_conflicts", "Rows of silver.copy_conflict after the last refresh",
                               multiprocess_mode="mostrecent")
        repaired = Counter("ateda_reconcile_repaired_total", "Bucket objects re-announced by reconciliation (their "
                           "notification was lost)", ["bucket"])
        restarts = Counter("ateda_function_restarts_total", "Function servers restarted by the runtime", ["service"])

    return _Instruments
