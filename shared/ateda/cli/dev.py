"""``ateda demo`` and ``ateda bench``: a synthetic night end to end; the benchmarks (dev tools)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ateda.cli.ingest import print_summary
from ateda.cli.options import non_negative_int, positive_int
from ateda.config import Settings
from ateda.dev.bench import run_bench, run_burst_bench, run_maintenance_bench, run_refresh_bench, run_serve_bench
from ateda.dev.synth import write_single_files, write_tarball
from ateda.dev.synth_lsst import write_containers
from ateda.ingest import run_ingest
from ateda.warehouse.build import refresh_models
from ateda.warehouse.plots import plot_object
from ateda.warehouse.queries import richest_object
from ateda.ztf.alerts import decode_container


def register(sub) -> None:  # noqa: ANN001
    demo = sub.add_parser("demo", help="generate a synthetic night and ingest it, offline, with any real alerts given")
    demo.add_argument("-n", type=positive_int, default=2000, help="synthetic alerts to generate (count, default 2000)")
    demo.add_argument("--real", type=Path, action="append", default=[],
                      help="also ingest these real alert files/folders and plot their richest object (repeatable)")
    demo.add_argument("--lsst", type=non_negative_int, default=500,
                      help="synthetic Rubin alerts of the same night, beside the ZTF ones (count, default 500; 0: none)")
    demo.add_argument("--seed", type=int, default=1, help="random seed of the synthetic night (integer, default 1)")
    demo.add_argument("--json", action="store_true", help="machine-readable summary")
    demo.set_defaults(func=cmd_demo)
    bench = sub.add_parser("bench", help="decoding ceiling vs end-to-end ingestion, single files and a tarball")
    bench.add_argument("-n", type=positive_int, default=None,
                       help="synthetic alerts per run (count; default 20000, a burst 10000, --serve 100000)")
    bench.add_argument("--survey", choices=("ztf", "lsst"), default=None,
                       help="instead: a visit burst of one survey's alerts as single messages (ztf, lsst)")
    bench.add_argument("--json", action="store_true", help="machine-readable results")
    bench.add_argument("--keep", action="store_true", help="keep the benchmark's ATEDA_HOME")
    bench.add_argument("--refresh", action="store_true",
                       help="instead: dbt refresh cost (full build, nothing new, 200 new alerts)")
    bench.add_argument("--maintenance", action="store_true",
                       help="instead: the lake before and after a compaction pass (docs/maintenance.md)")
    bench.add_argument("--serve", action="store_true",
                       help="instead: the explorer (`ateda serve`) under concurrent clients, p50/p95 per endpoint")
    bench.add_argument("--home", type=Path, default=None,
                       help="--serve: use (or build once) the lake in this ATEDA_HOME instead of a temporary one")
    bench.add_argument("--requests", type=positive_int, default=400,
                       help="--serve: requests per endpoint (count, default 400)")
    bench.add_argument("--clients", type=positive_int, default=8,
                       help="--serve: concurrent clients (count, default 8)")
    bench.set_defaults(func=cmd_bench)


def cmd_demo(args, settings: Settings) -> int:  # noqa: ANN001
    missing = [p for p in args.real if not p.exists()]
    if missing:  # a typo must not cost a synthetic night first
        raise FileNotFoundError(2, "No such file or directory (--real)", str(missing[0]))
    src = settings.home / "demo-input"
    tar_n = args.n // 2
    print(f"generating a synthetic night: {args.n - tar_n} single-alert files and a tarball of {tar_n} alerts "
          f"in {src}", file=sys.stderr)
    write_single_files(src / "singles", args.n - tar_n, seed=args.seed)
    write_tarball(src / "ztf_public_20261120.tar.gz", tar_n, seed=args.seed + 1)
    summary = run_ingest(settings, [src / "singles", src / "ztf_public_20261120.tar.gz"], quiet=args.json)
    print_summary(summary, args.json)
    real = list(args.real)
    if args.lsst:
        # a Rubin night of the same sky: a few of its objects sit on real ZTF transients given with --real, so
        # gold.survey_match pairs them (docs/rubin.md)
        also_at = _real_positions(real, limit=min(3, args.lsst))
        if not args.json:
            print(f"\ngenerating a synthetic Rubin night: {args.lsst} alerts in Avro containers"
                  + (f", {len(also_at)} of its objects at real ZTF objects' positions" if also_at else ""),
                  file=sys.stderr)
        write_containers(src / "lsst", args.lsst, seed=args.seed, per_file=250, also_at=also_at)
        print_summary(run_ingest(settings, [src / "lsst"], quiet=args.json), args.json)
    if real:
        if not args.json:
            print(f"\nreal ZTF alerts from {', '.join(map(str, real))} (bucket prefix {DEMO_REAL_PREFIX}):")
        print_summary(run_ingest(settings, real, prefix=DEMO_REAL_PREFIX, quiet=args.json), args.json)
    result = refresh_models(settings)  # silver and gold, as the dbt-refresh function does after commits
    plotted = _plot_richest_real_object(settings) if real else None
    if args.json:
        print(json.dumps({"refresh": result.as_dict(), "plot": plotted and str(plotted)}, indent=1, default=str))
        return 0
    print(f"\nsilver and gold refreshed in {result.seconds:.1f} s: " +
          ", ".join(f"{t} {n}" for t, n in sorted(result.rows.items()) if t.startswith("gold.")))
    if plotted:
        print(f"light curve and cutouts of the real object with the most detections: {plotted}")
    print(f"\nnext: `ateda status`, `ateda query \"select * from gold.transient_candidates limit 5\"`, "
          f"`ateda object OBJECTID`, `ateda plot OBJECTID -o lc.png`, `ateda cutout CANDID`; data in {settings.home}")
    return 0


DEMO_REAL_PREFIX = "ztf-real/"


def _real_positions(paths: list[Path], limit: int) -> list[tuple[float, float]]:
    """(ra, dec) of up to ``limit`` distinct ZTF objects among the alert files under ``paths`` (unreadable files
    skipped: the ingest quarantines them)."""
    found: dict[str, tuple[float, float]] = {}
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    for f in files:
        try:
            records = decode_container(f.read_bytes()).records
        except Exception:  # noqa: BLE001 - bad input rides along in the demo; the ingest says why
            continue
        for rec in records:
            cand = rec.get("candidate") or {}
            if rec.get("objectId") and cand.get("ra") is not None and cand.get("dec") is not None:
                found.setdefault(rec["objectId"], (float(cand["ra"]), float(cand["dec"])))
        if len(found) >= limit:
            break
    return list(found.values())[:limit]


def _plot_richest_real_object(settings: Settings) -> Path | None:
    """Plot the object, among those whose alerts came in under the demo's real-data prefix, with the most
    detections: the light curve an astronomer would look at first."""
    object_id = richest_object(settings, DEMO_REAL_PREFIX)
    if object_id is None:
        return None
    return plot_object(settings, object_id, settings.home / "demo-output" / f"{object_id}.png")


def cmd_bench(args, settings: Settings) -> int:  # noqa: ANN001
    n = args.n or (10_000 if args.survey else 100_000 if args.serve else 20_000)
    if args.serve:
        result = run_serve_bench(n, home=args.home, requests=args.requests, clients=args.clients, keep=args.keep)
    elif args.survey:
        result = run_burst_bench(args.survey, n, keep=args.keep)
    elif args.maintenance:
        result = run_maintenance_bench(n)
    else:
        result = run_refresh_bench(n) if args.refresh else run_bench(n, keep=args.keep)
    print(json.dumps(result, indent=1) if args.json else result["text"])
    return 0
