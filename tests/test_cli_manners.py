"""The `ateda` command's manners (issue 12, design 11; review 1.9, 1.24, 1.25), run as a person runs it: the installed
console script in a subprocess. A user's mistake is one line on stderr saying what to do, exit 2, no traceback
(``--debug`` shows it); Ctrl-C says how to resume and exits 130; ``--version``; every option has help, numbers with
their unit."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from ateda.cli import _parser
from ateda.cli.options import positive_int
from conftest import ALERTS, alert_files

ATEDA = Path(sys.executable).with_name("ateda")  # the console script pip installed beside this interpreter


def ateda(*args: str, home: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full = {**os.environ, "ATEDA_HOME": str(home), **(env or {})}
    return subprocess.run([str(ATEDA), *args], env=full, capture_output=True, text=True, timeout=timeout)


def one_line_no_traceback(run: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The run exited with ``code``, said one line on stderr (naming ``words``) and printed no traceback."""
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_the_console_script_is_installed():
    assert ATEDA.exists(), f"{ATEDA}: install the package (pip install -e .[test])"


def test_version(tmp_path):
    run = ateda("--version", home=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == f"ateda {version('ateda')}", run


@pytest.mark.parametrize("args, words", [
    (["bogus"], ["invalid choice", "ateda --help"]),
    (["cutout"], ["required", "ateda cutout --help"]),
    (["plot", "ZTF18aauqcsv", "--dpi", "0"], ["--dpi", "greater than 0"]),
    (["plot", "ZTF18aauqcsv", "-o", "lc.bogus"], ["lc.bogus", ".png"]),
    (["maintain", "--tasks", "compact,bogus"], ["bogus", "compact,expire,orphans,stats"]),
    (["ingest", "no/such/folder"], ["no/such/folder"]),
    (["demo", "-n", "10", "--real", "no/such/alerts"], ["no/such/alerts"]),
    (["demo", "-n", "-5"], ["-n", "greater than 0"]),
])
def test_a_users_mistake_is_one_line_exit_2(tmp_path, args, words):
    one_line_no_traceback(ateda(*args, home=tmp_path / "home"), 2, *words)
    assert not (tmp_path / "home" / "demo-input").exists()  # nothing was started before the mistake was seen


def test_serve_with_an_unknown_backend_is_one_line_and_never_says_it_serves(tmp_path):
    run = ateda("serve", "--port", "18199", home=tmp_path / "home", env={"ATEDA_EXPLORER_BACKEND": "mysql"})
    one_line_no_traceback(run, 2, "ATEDA_EXPLORER_BACKEND", "duckdb, starrocks", "mysql")
    assert run.stdout == ""  # not "ateda explorer on http://..." first


def test_a_bad_setting_is_one_line_naming_it_and_debug_shows_the_traceback(tmp_path):
    env = {"ATEDA_COMMIT_WINDOW_MS": "soon"}
    one_line_no_traceback(ateda("config", home=tmp_path, env=env), 2, "ATEDA_COMMIT_WINDOW_MS", "soon", "integer")
    for args in (["--debug", "config"], ["config", "--debug"]):  # --debug anywhere on the line
        run = ateda(*args, home=tmp_path, env=env)
        assert run.returncode == 2 and "Traceback" in run.stderr and "ConfigError" in run.stderr, run.stderr


def test_a_pass_that_compacts_nothing_says_why(tmp_path):
    run = ateda("maintain", "--tasks", "compact", home=tmp_path / "home")
    assert run.returncode == 0, run.stderr
    assert "nothing compacted" in run.stdout and "quiet time (30 min" in run.stdout, run.stdout
    assert "Traceback" not in run.stderr


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        else:
            yield " ".join(path), action


UNITS = ("second", "minute", "hour", "degree", "arcsec", "MJD", "count", "alerts", "rows", "characters",
         "dots per inch", "integer", "port", "power of two")


def test_every_option_has_help_and_every_number_its_unit():
    missing, unitless = [], []
    for command, action in _options(_parser()):
        name = f"ateda {command} {'/'.join(action.option_strings) or action.dest}"
        if not (action.help or "").strip():
            missing.append(name)
        elif action.type in (int, float, positive_int) and not any(u in action.help for u in UNITS):
            unitless.append(f"{name}: {action.help}")
    assert missing == [] and unitless == []


@pytest.mark.slow  # a real ingest of the 475 alerts, interrupted
def test_ctrl_c_during_an_ingest_says_how_to_resume_and_exits_130(tmp_path):
    """Ctrl-C in a terminal interrupts the whole foreground process group: do the same once the ingest is under way
    (it has said something on stderr), and look at everything the group printed."""
    home = tmp_path / "home"
    env = {**os.environ, "ATEDA_HOME": str(home)}
    proc = subprocess.Popen([str(ATEDA), "ingest", "--bronze-only", str(ALERTS)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert len(alert_files()) == 475
    try:
        first = proc.stderr.read(1)  # blocks until the ingest has started talking (progress, or an error)
        assert first, "the ingest ended without a word"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        try:  # whatever of the group is left (it should be nothing): stop it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    err = (first + err).decode(errors="replace")
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "interrupted; run again to resume" in err
    assert "Traceback" not in err + out.decode(errors="replace"), err[-3000:]


FINALIZER_INTERRUPTED = """
import os, signal, sys, time, weakref
from ateda.cli import ingest
signal.signal(signal.SIGINT, ingest._interrupt)
class Held:
    pass
def finalizer():  # the signal arrives while the finalizer runs (Python runs handlers between bytecodes)
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(200_000):
        pass
    print("finalizer done", flush=True)
held = Held()
weakref.finalize(held, finalizer)
try:
    del held
    time.sleep(5)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted after the finalizer")
"""


def test_a_ctrl_c_inside_a_finalizer_interrupts_after_it_without_a_traceback():
    """A Ctrl-C that lands inside a weakref finalizer (as one did while the ingest's temporary files were being
    cleaned up): Python would print "Exception ignored in ..." with a traceback and drop the interrupt. The
    ingest's handler delivers it again once the finalizer is done."""
    run = subprocess.run([sys.executable, "-c", FINALIZER_INTERRUPTED], capture_output=True, text=True, timeout=60)
    assert run.stdout.splitlines() == ["finalizer done", "interrupted after the finalizer"], run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr


def test_a_core_only_install_says_which_extra_the_cli_needs(tmp_path):
    """A function image installs the core only: its `ateda` says to install the `local` extra, in one line."""
    code = ("import sys; sys.modules['tqdm'] = None  # as if the extra were not installed\n"
            "from ateda.console import run; run()")
    res = subprocess.run([sys.executable, "-c", code, "status"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "ATEDA_HOME": str(tmp_path)})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "ateda[local]" in res.stderr and "tqdm" in res.stderr
