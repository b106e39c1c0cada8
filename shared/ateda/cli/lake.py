"""``ateda status``, ``ateda replay``: what is in the lake, dead letters re-sent."""

from __future__ import annotations

import json
import sys

from pathlib import Path

from ateda.config import Settings
from ateda.lake.deadletters import default_triggers, letters, replay, selected
from ateda.lake.storage import lake_store
from ateda.local.runtime import running_runtime
from ateda.redact import mask
from ateda.status import NoHome, backlog_text, freshness_text, status


def register(sub) -> None:  # noqa: ANN001
    st = sub.add_parser("status", help="tables, row counts, snapshots, silver/gold freshness, backlog, dead letters, "
                                       "quarantine")
    st.add_argument("--json", action="store_true", help="print the status as one JSON object")
    st.set_defaults(func=cmd_status)
    rep = sub.add_parser("replay", help="re-send dead-lettered events to the broker")
    rep.add_argument("--trigger", default=None,
                     help="a Trigger's name in knative/ (e.g. bronze-on-alerts-staged): the same letters locally and "
                          "in the cluster")
    rep.add_argument("--broker", default=None, help="broker URL (default: the running local runtime)")
    rep.set_defaults(func=cmd_replay)


def cmd_status(args, settings: Settings) -> int:  # noqa: ANN001
    try:
        info = status(settings)
    except NoHome as exc:
        print(f"ateda status: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 (a catalog error may carry its URI: say what failed, masked, one line)
        secrets = (settings.s3_access_key, settings.s3_secret_key, settings.bridge_token, settings.broker_token)
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"ateda status: {mask(f'{type(exc).__name__}: {first}', secrets)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    print(f"home {info['home']}  catalog {info['catalog']}")
    if info.get("empty"):
        print("  empty: no bronze table yet (`ateda ingest FILES` or `ateda up` fills it)")
    for name, t in info["tables"].items():
        print(f"  {name:<24} {t['rows']:>10} rows  {t['snapshots']:>5} snapshots  {t['data_files']:>6} files")
    if not info.get("empty"):
        for line in freshness_text(info.get("freshness")):
            print(f"  {line}")
    print(f"  backlog: {backlog_text(info['backlog'])}")
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


def cmd_replay(args, settings: Settings) -> int:  # noqa: ANN001
    triggers = default_triggers()
    if args.trigger and all(t.name != args.trigger for t in triggers):
        print(f"note: {args.trigger!r} is no Trigger in knative/ ({', '.join(t.name for t in triggers)}): only the "
              f"letters in dead-letter/{args.trigger}/ are replayed", file=sys.stderr)
    lake = lake_store(settings) if Path(settings.home).is_dir() else None
    waiting = sum(1 for letter in letters(lake) if selected(letter, args.trigger, triggers)) if lake else 0
    if not waiting:
        print("nothing to replay: no dead letter" + (f" of {args.trigger}" if args.trigger else ""))
        return 0
    running = running_runtime(settings) or {}
    url = args.broker or running.get("broker")
    if not url:
        print(f"{waiting} dead letter(s) to replay but no broker: start `ateda up` or pass --broker URL",
              file=sys.stderr)
        return 2
    token = settings.broker_token or running.get("token") or ""  # ATEDA_BROKER_TOKEN, else the local runtime's
    sent = replay(lake, url, args.trigger, token=token or None, triggers=triggers)
    print(f"replayed {sent} event(s) to {url}")
    return 0
