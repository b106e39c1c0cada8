"""``ateda ingest``: put files in the bucket, wait until the pipeline is done with them, print what each stage did.

Exit codes: 0 done; 1 nothing of the input reached bronze (every file rejected) or the refresh failed; 2 a user
mistake found before anything is uploaded (a missing path, no file at all, a bucket key that already holds other
bytes, a file argument named like a temporary file), a dead-lettered ingestion event or a timeout; 130 interrupted
(run the same command again to resume).
"""

from __future__ import annotations

import _thread
import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ateda.config import Settings
from ateda.ingest import IngestFailed, InputRefused, NothingToIngest, run_ingest
from ateda.keys import printable
from ateda.local.home import RuntimeBusy


def register(sub) -> None:  # noqa: ANN001
    ing = sub.add_parser("ingest", help="put files in the bucket and wait until bronze, crossmatch and the silver/gold "
                                        "refresh are done with them (as `ateda up` would leave the lake)")
    ing.add_argument("paths", nargs="+", type=Path,
                     help="Avro files, tarballs, or folders (a folder's files are keyed <folder name>/<path inside>)")
    ing.add_argument("--prefix", default="", help="key prefix in the bucket (e.g. 'night1/')")
    ing.add_argument("--bronze-only", action="store_true",
                     help="stop once bronze has the files (bulk loads; crossmatch and refresh run later)")
    ing.add_argument("--json", action="store_true", help="machine-readable summary")
    ing.add_argument("--timeout", type=float, default=3600, metavar="SECONDS",
                     help="give up after this many seconds of waiting (default 3600)")
    ing.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    _interrupted.clear()
    _raised.clear()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C (children included)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        summary = run_ingest(settings, args.paths, args.prefix, args.timeout, quiet=args.json,
                             bronze_only=args.bronze_only)
    except NothingToIngest as exc:
        print(f"ateda ingest: warning: {exc}", file=sys.stderr)
        return 2
    except (InputRefused, RuntimeBusy, IngestFailed, TimeoutError) as exc:
        print(f"ateda ingest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ateda ingest: interrupted; run again to resume", file=sys.stderr)
        return 130
    if _interrupted:  # the KeyboardInterrupt was raised inside a finalizer, where Python ignores it
        print("ateda ingest: interrupted; run again to resume", file=sys.stderr)
        return 130
    print_summary(summary, args.json)
    if summary.all_rejected:
        print(f"ateda ingest: warning: not one alert of the {summary.files} file(s) reached bronze "
              f"({len(summary.rejected)} rejection(s))", file=sys.stderr)
        return 1
    if summary.refresh and summary.refresh.get("failed"):
        print(f"ateda ingest: warning: bronze has the files but the refresh failed: {summary.refresh['failed']}",
              file=sys.stderr)
        return 1
    return 0


_interrupted: list[int] = []  # the signals received: a KeyboardInterrupt raised in a __del__ is printed and dropped
REDELIVER_S = 0.05  # an interrupt that arrived inside a finalizer is delivered again this much later


def _interrupt(signum: int, frame: FrameType | None = None) -> None:
    """SIGINT/SIGTERM: a KeyboardInterrupt in the main thread, never inside a finalizer. Python runs the handler
    between two bytecodes of whatever the main thread runs, a ``weakref.finalize`` callback or a ``__del__``
    included; an exception raised there is printed as "Exception ignored in ..." with a traceback and dropped. So
    there the signal is only noted, and delivered again a moment later (``_thread.interrupt_main`` calls this
    handler again in the main thread), until it lands outside the finalizer."""
    _interrupted.append(signum)
    if _in_finalizer(frame):
        timer = threading.Timer(REDELIVER_S, _redeliver, (signum, len(_raised)))
        timer.daemon = True
        timer.start()
        return
    _raised.append(signum)
    raise KeyboardInterrupt


_raised: list[int] = []  # the KeyboardInterrupts raised: a redelivery after one of them is moot


def _redeliver(signum: int, raised_before: int) -> None:
    if len(_raised) == raised_before:
        _thread.interrupt_main(signum)


def _in_finalizer(frame: FrameType | None) -> bool:
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or (code.co_name in ("__call__", "_exitfunc")
                                         and Path(code.co_filename).name == "weakref.py"):
            return True
        frame = frame.f_back
    return False


def print_summary(summary, as_json: bool) -> None:  # noqa: ANN001
    if as_json:
        print(json.dumps(summary.as_dict(), indent=1, default=str))
        return
    s = summary
    names = {"ztf": "ZTF", "lsst": "Rubin"}
    split = (" (" + ", ".join(f"{names.get(k, k)} {n}" for k, n in s.by_survey.items()) + ")"
             if len(s.by_survey) > 1 or set(s.by_survey) - {"ztf"} else "")
    print(f"bronze: {s.files} file(s), {s.bytes / 1e6:.1f} MB -> {s.alerts} alerts{split} of {s.objects} objects "
          f"on {len(s.nights)} night(s) {', '.join(s.nights[:5])}{' ...' if len(s.nights) > 5 else ''}")
    already = s.alerts - s.new_alerts
    print(f"  {s.new_alerts} committed by this run" + (f" ({already} were already in bronze)" if already > 0 else "")
          + f" in {s.seconds:.1f} s, {s.alerts_per_second:.0f} alerts/s, {s.commits if s.commits is not None else '?'}"
          f" bronze commit(s)")
    if s.rejected:
        print(f"{len(s.rejected)} rejected (quarantined):")
        for r in s.rejected:
            member = f" [{printable(r['member'])}]" if r.get("member") else ""
            print(f"  {printable(r['key'])}{member}: {r['reason']} - {printable(r['detail'][:120])}")
    if s.crossmatch is not None:
        print(f"crossmatch: {s.crossmatch['matches']} match(es) of these alerts against the registered catalogs")
    if s.refresh is not None:
        r = s.refresh
        gold = r.get("gold_rows") or {}
        rows = ", ".join(f"gold.{t} {n} rows" for t, n in gold.items())
        state = "FAILED" if r.get("failed") else "ran" if r.get("ran") else "nothing to refresh"
        took = f", dbt {r['run_seconds']:.1f} s" if r.get("run_seconds") is not None else ""
        print(f"refresh: {state} (waited {r['seconds']:.1f} s{took})" + (f"; {rows}" if rows else ""))
        if r.get("failed"):
            print(f"  {printable(r['failed'])}")
    elif s.bronze_only:
        print("crossmatch, refresh: not waited for (--bronze-only); `ateda refresh` or `ateda up` bring silver/gold up")
