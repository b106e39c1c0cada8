"""``ateda``: run the platform on one machine, ingest files, look at what landed."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from ateda.config import Settings
from ateda.keys import printable


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from ateda.serving.request import configure_logging

    configure_logging()
    return args.func(args, Settings.from_env()) or 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ateda", description=__doc__)
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="run the runtime (functions, broker, bucket watcher) until stopped")
    up.add_argument("--metrics-port", type=int, default=0,
                    help="serve this process's metrics (broker deliveries, dead letters) on this port")
    up.set_defaults(func=cmd_up)
    ing = sub.add_parser("ingest", help="put files in the bucket and wait until they are in bronze")
    ing.add_argument("paths", nargs="+", type=Path)
    ing.add_argument("--prefix", default="", help="key prefix in the bucket")
    ing.add_argument("--json", action="store_true", help="machine-readable summary")
    ing.add_argument("--timeout", type=float, default=3600)
    ing.set_defaults(func=cmd_ingest)
    st = sub.add_parser("status", help="tables, row counts, snapshots, backlog, dead letters, quarantine")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    cut = sub.add_parser("cutout", help="write an alert's three stamps as FITS files")
    cut.add_argument("candid", type=int)
    cut.add_argument("-o", "--out", type=Path, default=Path("."))
    cut.set_defaults(func=cmd_cutout)
    rep = sub.add_parser("replay", help="re-send dead-lettered events to the broker")
    rep.add_argument("--trigger", default=None,
                     help="a Trigger's name in knative/ (e.g. bronze-on-alerts-staged): the same letters locally and "
                          "in the cluster")
    rep.add_argument("--broker", default=None, help="broker URL (default: the running local runtime)")
    rep.set_defaults(func=cmd_replay)
    demo = sub.add_parser("demo", help="generate a synthetic night and ingest it, offline, with any real alerts given")
    demo.add_argument("-n", type=int, default=2000, help="alerts")
    demo.add_argument("--real", type=Path, action="append", default=[],
                      help="also ingest these real alert files/folders and plot their richest object (repeatable)")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=cmd_demo)
    bench = sub.add_parser("bench", help="decoding ceiling vs end-to-end ingestion, single files and a tarball")
    bench.add_argument("-n", type=int, default=20_000, help="alerts")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--keep", action="store_true", help="keep the benchmark's ATEDA_HOME")
    bench.add_argument("--refresh", action="store_true",
                       help="instead: dbt refresh cost (full build, nothing new, 200 new alerts)")
    bench.add_argument("--maintenance", action="store_true",
                       help="instead: the lake before and after a compaction pass (docs/maintenance.md)")
    bench.set_defaults(func=cmd_bench)
    cfg = sub.add_parser("config", help="the effective settings, by section (secrets masked); docs/settings.md")
    cfg.add_argument("--json", action="store_true", help="machine-readable: section -> variable -> value")
    cfg.add_argument("--doc", action="store_true", help="instead: the settings reference page (docs/settings.md)")
    cfg.set_defaults(func=cmd_config)
    from ateda.warehouse.science import register; register(sub)  # noqa: E702
    from ateda.steps.crossmatch import register as _xm; _xm(sub)  # noqa: E702
    from ateda.steps.maintenance import register as _mt; _mt(sub)  # noqa: E702
    return p


def cmd_up(args, settings: Settings) -> int:  # noqa: ANN001
    import signal

    from ateda.local.runtime import Runtime

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr="127.0.0.1")
    with Runtime(settings) as rt:
        print(f"ateda up: broker {rt.sink}; bucket {settings.bucket_root / settings.bucket if not settings.uses_s3 else settings.bucket}; "
              f"home {settings.home}. Ctrl-C to stop.", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def ensure_runtime(settings: Settings):  # noqa: ANN201
    """The running runtime if ``ateda up`` runs on this home, else one started for the caller's duration: the
    ingestion functions only (a background dbt refresh would be cut short when the caller exits; `ateda refresh`
    or `ateda up` run the science functions)."""
    from ateda.local.runtime import Runtime, ingestion_functions, running_runtime

    return nullcontext() if running_runtime(settings) else Runtime(settings, functions=ingestion_functions())


def run_ingest(settings: Settings, paths: list[Path], prefix: str = "", timeout: float = 3600,
               quiet: bool = False):  # noqa: ANN201
    from tqdm import tqdm

    from ateda.ingest import expand, iceberg_commits, summarise, upload, wait_committed

    files = expand(paths)
    with ensure_runtime(settings):
        commits0 = iceberg_commits(settings)  # None while the catalog is unreachable
        start = time.perf_counter()
        with tqdm(total=len(files), desc="upload", unit="file", disable=quiet, file=sys.stderr) as bar:
            uploaded = upload(settings, files, prefix, bar.update)
        with tqdm(total=len(files), desc="commit", unit="file", disable=quiet, file=sys.stderr) as bar:
            manifests = wait_committed(settings, uploaded, timeout, bar.update)
        seconds = time.perf_counter() - start
    commits1 = iceberg_commits(settings)
    return summarise(settings, uploaded, manifests, seconds,
                     None if commits0 is None or commits1 is None else commits1 - commits0)


def cmd_ingest(args, settings: Settings) -> int:  # noqa: ANN001
    from ateda.ingest import IngestFailed

    try:
        summary = run_ingest(settings, args.paths, args.prefix, args.timeout, quiet=args.json)
    except (IngestFailed, TimeoutError) as exc:
        print(f"ateda ingest: {exc}", file=sys.stderr)
        return 2
    _print_summary(summary, args.json)
    return 0


def _print_summary(summary, as_json: bool) -> None:  # noqa: ANN001
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


def cmd_status(args, settings: Settings) -> int:  # noqa: ANN001
    from ateda.redact import mask
    from ateda.status import status

    try:
        info = status(settings)
    except Exception as exc:  # noqa: BLE001 (a catalog error may carry its URI: say what failed, masked)
        secrets = (settings.s3_access_key, settings.s3_secret_key, settings.bridge_token, settings.broker_token)
        print(f"ateda status: {mask(f'{type(exc).__name__}: {exc}', secrets)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    print(f"home {info['home']}  catalog {info['catalog']}")
    for name, t in info["tables"].items():
        print(f"  {name:<24} {t['rows']:>10} rows  {t['snapshots']:>5} snapshots  {t['data_files']:>6} files")
    print(f"  backlog: {info['backlog'] if info['backlog'] is not None else 'runtime not running'}")
    rt = info.get("runtime")
    if rt:
        _print_runtime(rt)
    print(f"  dead letters: {info['dead_letters']}  quarantined: {info['quarantined']}")
    return 0


def _print_runtime(rt: dict) -> None:
    error = f"  ({rt['error']})" if rt.get("error") else ""
    print(f"  runtime: pid {rt.get('pid')}, broker {rt.get('broker')}{error}")
    for name, f in (rt.get("functions") or {}).items():
        print(f"    {name:<20} {f['state']:<10} pid {f['pid'] or '-':<8} {f['restarts']} restart(s)"
              + (f", last exit {f['last_exit']}" if f.get("last_exit") is not None else ""))
    w = rt.get("watcher")
    if w:
        age = "never" if w["last_scan_age_s"] is None else f"{w['last_scan_age_s']:.1f} s ago"
        print(f"    watcher: {w['state']}, last successful scan {age}, {w['announced']} announced, "
              f"{w['quarantined']} quarantined (unsafe name), {w['failing']} failing ({w['given_up']} given up), "
              f"{w['failures']} failed post(s)")
        for o in w["failing_objects"]:
            print(f"      failing {o['key']!r}: {o['attempts']} attempt(s) since {o['since']}"
                  f"{' (given up)' if o['given_up'] else ''}: {o['error'][:160]}")


def cmd_cutout(args, settings: Settings) -> int:  # noqa: ANN001
    from ateda.status import cutouts_of

    rows = cutouts_of(settings, args.candid)
    if not rows:
        print(f"no cutouts for candid {args.candid}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for kind, data in rows.items():
        path = args.out / f"{args.candid}_{kind}.fits"
        path.write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        print(path)
    return 0


def cmd_replay(args, settings: Settings) -> int:  # noqa: ANN001
    from ateda.lake.deadletters import default_triggers, replay
    from ateda.local.runtime import running_runtime
    from ateda.lake.storage import lake_store

    running = running_runtime(settings) or {}
    url = args.broker or running.get("broker")
    if not url:
        print("no broker: start `ateda up` or pass --broker URL", file=sys.stderr)
        return 1
    token = settings.broker_token or running.get("token") or ""  # ATEDA_BROKER_TOKEN, else the local runtime's
    triggers = default_triggers()
    if args.trigger and all(t.name != args.trigger for t in triggers):
        print(f"note: {args.trigger!r} is no Trigger in knative/ ({', '.join(t.name for t in triggers)}): only the "
              f"letters in dead-letter/{args.trigger}/ are replayed", file=sys.stderr)
    sent = replay(lake_store(settings), url, args.trigger, token=token or None, triggers=triggers)
    print(f"replayed {sent} event(s) to {url}")
    return 0


def cmd_demo(args, settings: Settings) -> int:  # noqa: ANN001
    from ateda.dev.synth import write_single_files, write_tarball

    src = settings.home / "demo-input"
    tar_n = args.n // 2
    print(f"generating a synthetic night: {args.n - tar_n} single-alert files and a tarball of {tar_n} alerts "
          f"in {src}", file=sys.stderr)
    write_single_files(src / "singles", args.n - tar_n, seed=args.seed)
    write_tarball(src / "ztf_public_20261120.tar.gz", tar_n, seed=args.seed + 1)
    summary = run_ingest(settings, [src / "singles", src / "ztf_public_20261120.tar.gz"], quiet=args.json)
    _print_summary(summary, args.json)
    real = [p for p in args.real if p.exists()]
    if real:
        if not args.json:
            print(f"\nreal ZTF alerts from {', '.join(map(str, real))} (bucket prefix {DEMO_REAL_PREFIX}):")
        _print_summary(run_ingest(settings, real, prefix=DEMO_REAL_PREFIX, quiet=args.json), args.json)
    from ateda.warehouse.build import refresh

    result = refresh(settings)  # silver and gold, as the dbt-refresh function does after commits
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


def _plot_richest_real_object(settings: Settings) -> Path | None:
    """Plot the object, among those whose alerts came in under the demo's real-data prefix, with the most
    detections: the light curve an astronomer would look at first."""
    from ateda.warehouse.science import plot_object
    from ateda.warehouse.build import connect

    with connect(settings) as con:
        row = con.execute(
            "select o.objectId from gold.object o where o.objectId in "
            "(select objectId from silver.ztf_alert where starts_with(src_key, ?)) "
            "order by o.ndet desc, o.objectId limit 1", [DEMO_REAL_PREFIX]).fetchone()
    if row is None:
        return None
    return plot_object(settings, row[0], settings.home / "demo-output" / f"{row[0]}.png")


def cmd_bench(args, settings: Settings) -> int:  # noqa: ANN001
    from ateda.dev.bench import run_bench, run_maintenance_bench, run_refresh_bench

    if args.maintenance:
        result = run_maintenance_bench(args.n)
    else:
        result = run_refresh_bench(args.n) if args.refresh else run_bench(args.n, keep=args.keep)
    print(json.dumps(result, indent=1) if args.json else result["text"])
    return 0


def cmd_config(args, settings: Settings) -> int:  # noqa: ANN001
    from ateda.config import settings_doc

    if args.doc:
        print(settings_doc(), end="")
        return 0
    values = settings.effective(masked=True)
    if args.json:
        print(json.dumps(values, indent=1))
        return 0
    for section, rows in values.items():
        print(f"[{section}]")
        for name, value in rows.items():
            shown = str(value).lower() if isinstance(value, bool) else value if value != "" else "(unset)"
            print(f"  {name} = {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
