"""A newcomer's first session, scripted (issue 12, "done when"): the README's commands in a fresh ATEDA_HOME, in a
bash that sourced the env script the README's way, plus the mistakes a newcomer makes. Each command ends with the
exit code the README promises, and nothing anywhere prints a traceback.

The env script installs ATEDA into `.venv` on first use; this test never installs: it needs the stamp the script
leaves once the current pyproject.toml is installed (`bash scripts/test.sh` leaves the `test` one).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import fastavro
import pytest

from conftest import REPO, alert_files

VENV = REPO / ".venv"
README_OBJECT = "ZTF18aauqcsv"  # the object the README's example plots


def _extras() -> str:
    """The extras whose install stamp the env script will find for the current pyproject.toml (no install)."""
    digest = hashlib.md5((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    for extras in ("local", "test"):
        if (VENV / f".ateda-installed-{digest}-{extras}").exists():
            return extras
    pytest.skip("the env script would install ATEDA first: run `bash scripts/test.sh` once")


class Session:
    """One newcomer's terminal: every command runs in bash, after `source scripts/env.sh`, from ``cwd``."""

    def __init__(self, cwd: Path, home: Path) -> None:
        self.cwd, self.home, self.extras = cwd, home, _extras()
        self.outputs: list[str] = []

    def run(self, command: str, code: int, env: dict | None = None, timeout: float = 900) -> str:
        script = f"set +e\ncd {q(self.cwd)}\nsource {q(REPO / 'scripts' / 'env.sh')} || exit 99\n{command}\n"
        full = {**os.environ, "ATEDA_HOME": str(self.home), "ATEDA_EXTRAS": self.extras, **(env or {})}
        full.pop("VIRTUAL_ENV", None)
        run = subprocess.run(["bash", "-c", script], env=full, capture_output=True, text=True, timeout=timeout)
        said = run.stdout + run.stderr
        self.outputs.append(f"$ {command}\n{said}")
        assert run.returncode == code, f"$ {command}: exit {run.returncode}, expected {code}\n{said[-3000:]}"
        assert "Traceback" not in said, f"$ {command}\n{said[-3000:]}"
        return said


def q(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


def files_of(object_ids: set[str]) -> list[Path]:
    out = []
    for f in alert_files():
        try:
            with open(f, "rb") as fh:
                if any(rec.get("objectId") in object_ids for rec in fastavro.reader(fh)):
                    out.append(f)
        except Exception:  # noqa: BLE001 - the damaged and non-ZTF files are not what this session ingests
            continue
    return out


def jpeg_object() -> str:
    """The first real object (by file name) whose alert carries JPEG stamps (old 0.x alerts)."""
    for f in alert_files():
        try:
            with open(f, "rb") as fh:
                for rec in fastavro.reader(fh):
                    if (rec.get("cutoutScience") or {}).get("fileName", "").endswith(".jpg"):
                        return rec["objectId"]
        except Exception:  # noqa: BLE001 - the damaged and non-ZTF files
            continue
    raise AssertionError("no real alert with JPEG stamps")


def test_sourcing_the_env_script_leaves_the_shell_as_it_was(tmp_path):
    """Review 1.1: options (set -o, shopt) and directory unchanged, `ateda` on PATH, and a failing command after it
    does not close the shell."""
    extras = _extras()
    script = f"""set +e
cd {q(tmp_path)}
before="$(set +o; shopt -p)"
source {q(REPO / 'scripts' / 'env.sh')}
echo "rc=$?"
after="$(set +o; shopt -p)"
[ "$before" = "$after" ] && echo "options unchanged" || diff <(echo "$before") <(echo "$after")
echo "cwd=$PWD"
echo "ateda=$(command -v ateda)"
false
ls /no/such/path 2>/dev/null
echo "still here"
"""
    env = {**os.environ, "ATEDA_EXTRAS": extras}
    env.pop("VIRTUAL_ENV", None)
    run = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "rc=0" in lines and "options unchanged" in lines, run.stdout
    assert f"cwd={tmp_path}" in lines and f"ateda={VENV / 'bin' / 'ateda'}" in lines, run.stdout
    assert lines[-1] == "still here"


def test_a_newcomers_first_session(tmp_path):
    home = tmp_path / "home"
    home.mkdir()  # a fresh, empty ATEDA_HOME
    work = tmp_path / "work"
    work.mkdir()
    jpeg = jpeg_object()
    alerts = work / "alerts"
    alerts.mkdir()
    for f in files_of({README_OBJECT, "ZTF23abjjncz", jpeg}):
        (alerts / f.name).symlink_to(f)
    me = Session(work, home)

    assert me.run("ateda --version", 0).startswith("ateda ")
    assert "empty" in me.run("ateda status", 0)  # the empty home: says what fills it
    me.run("ateda status", 2, env={"ATEDA_HOME": str(tmp_path / "hoem")})  # a mistyped home
    me.run("ateda ingest alerts/no-such-file.avro", 2)  # a typo in a path: before any runtime starts
    me.run("ateda status", 2, env={"ATEDA_COMMIT_WINDOW_MS": "fast"})  # a bad setting
    me.run("ateda ingest --bogus alerts", 2)  # an option that does not exist

    said = me.run("ateda ingest alerts", 0)  # the README's way: waits for bronze, crossmatch and gold
    assert "alert" in said
    assert any(p.is_file() for p in (home / "bucket").rglob("*.avro"))  # the README says inputs are copied there
    said = me.run("ateda status", 0)
    assert "bronze.alert" in said
    said = me.run(f"ateda query \"select objectId from gold.object where objectId = '{README_OBJECT}'\" "
                  f"--format csv", 0)
    assert README_OBJECT in said

    for oid in (README_OBJECT, jpeg):
        said = me.run(f"ateda plot {oid.lower()} -o plots/{oid}.png", 0)
        assert (work / "plots" / f"{oid}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        said = me.run(f"ateda cutout {oid} -o stamps/{oid}", 0)
        written = sorted(p.suffix for p in (work / "stamps" / oid).iterdir())
        assert written == ([".jpg"] * 3 if oid == jpeg else [".fits"] * 3), written
    me.run("ateda plot ZTF00aaaaaaa", 1)  # an unknown object: one line saying so
    me.run("ateda maintain --tasks bogus", 2)

    # output into a pipe closed early: quiet, and ateda's own exit is 0
    said = me.run("ateda query \"select * from range(200000)\" --format csv | head -1; "
                  "echo \"ateda exit=${PIPESTATUS[0]}\"", 0)
    assert said.splitlines() == ["range", "ateda exit=0"], said
