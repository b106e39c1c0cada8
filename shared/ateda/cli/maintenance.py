"""``ateda maintain``: one lake maintenance pass now, in this process."""

from __future__ import annotations

import dataclasses
import json
import sys

from ateda.config import Settings
from ateda.events import transport
from ateda.local.runtime import running_runtime
from ateda.steps.maintenance import TASKS, run_pass


def register(sub) -> None:  # noqa: ANN001
    """``ateda maintain``: one pass now, in this process (the runtime's pinger does the same every hour)."""
    p = sub.add_parser("maintain", help="compact small files, expire snapshots, delete orphans, print lake health")
    p.add_argument("--tasks", default=",".join(TASKS),
                   help=f"comma-separated subset of {','.join(TASKS)} (default: all)")
    p.add_argument("--json", action="store_true", help="the pass's report as JSON")
    p.set_defaults(func=cmd_maintain)


def cmd_maintain(args, settings: Settings) -> int:  # noqa: ANN001
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        print(f"ateda maintain: unknown task {','.join(unknown) or '(none given)'}; --tasks takes a comma-separated "
              f"subset of {','.join(TASKS)}", file=sys.stderr)
        return 2
    if "reconcile" in tasks and not settings.sink:
        # lost objects are announced to the runtime of this home when one runs (`ateda up`), else skipped
        info = running_runtime(settings)
        if info:
            transport.register_token(info["broker"], info.get("token"))
            settings = dataclasses.replace(settings, sink=info["broker"])
    report = run_pass(settings, tasks)
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
        return 0
    for name, t in report.tables.items():
        s = t.stats
        shape = (f"{s['data_files']} files in {s['partitions']} partitions (max {s['max_files_per_partition']}), "
                 f"{s['snapshots']} snapshots, {s['manifests']} manifests" if s else "")
        print(f"{name:14s} compacted {t.compacted_files} -> {t.written_files} files, expired {t.expired_snapshots} "
              f"snapshots; {shape}")
    if "compact" in tasks and not any(t.compacted_files for t in report.tables.values()):
        m = settings.maintenance
        print(f"nothing compacted: only files older than the quiet time ({m.quiet_minutes:g} min, "
              f"ATEDA_COMPACT_QUIET_MINUTES) are rewritten, and only in a partition holding at least {m.min_files} "
              f"of them (ATEDA_COMPACT_MIN_FILES)")
    if report.reconcile is not None:
        r = report.reconcile
        print(f"reconcile: skipped, {r['skipped']}; run it while `ateda up` runs" if "skipped" in r else
              f"reconcile: {r['listed']} objects in bucket {r['bucket']}, {r['known']} known, {r['young']} within "
              f"the grace period, {r['repaired']} announced again")
    print(f"orphans deleted: {sum(report.orphans_deleted.values())} files ({report.orphan_bytes / 1e6:.1f} MB); "
          f"{report.seconds:.1f} s{' (budget used up: the next pass goes on)' if report.budget_exhausted else ''}")
    return 0
