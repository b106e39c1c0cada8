"""``ateda ingest``: put files in the bucket, wait until they are in bronze, print the summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ateda.config import Settings
from ateda.ingest import IngestFailed, run_ingest
from ateda.keys import printable


def register(sub) -> None:  # noqa: ANN001
    ing = sub.add_parser("ingest", help="put files in the bucket and wait until they are in bronze")
    ing.add_argument("paths", nargs="+", type=Path)
    ing.add_argument("--prefix", default="", help="key prefix in the bucket")
    ing.add_argument("--json", action="store_true", help="machine-readable summary")
    ing.add_argument("--timeout", type=float, default=3600)
    ing.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    try:
        summary = run_ingest(settings, args.paths, args.prefix, args.timeout, quiet=args.json)
    except (IngestFailed, TimeoutError) as exc:
        print(f"ateda ingest: {exc}", file=sys.stderr)
        return 2
    print_summary(summary, args.json)
    return 0


def print_summary(summary, as_json: bool) -> None:  # noqa: ANN001
    if as_json:
        print(json.dumps(summary.as_dict(), indent=1, default=str))
        return
    s = summary
    print(f"{s.files} file(s), {s.bytes / 1e6:.1f} MB -> {s.alerts} alerts of {s.objects} objects "
          f"on {len(s.nights)} night(s) {', '.join(s.nights[:5])}{' ...' if len(s.nights) > 5 else ''}")
    commits = "?" if s.commits is None else s.commits
    print(f"{s.seconds:.1f} s, {s.alerts_per_second:.0f} alerts/s, {commits} Iceberg commit(s)")
    if s.rejected:
        print(f"{len(s.rejected)} rejected (quarantined):")
        for r in s.rejected:
            member = f" [{printable(r['member'])}]" if r.get("member") else ""
            print(f"  {printable(r['key'])}{member}: {r['reason']} - {printable(r['detail'][:120])}")
