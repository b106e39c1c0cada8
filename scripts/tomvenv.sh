#!/usr/bin/env bash
# Installs the TOM Toolkit (PyPI tomtoolkit, pinned with everything it pulls in: scripts/tom-requirements.txt) into
# its own virtualenv, .tools/tomvenv of the checkout (git-ignored), for tests/test_tom.py, which runs a real TOM in
# it. Its own: tomtoolkit 3.1.0 needs numpy<2.2, astropy<8 and plotly<6, which ATEDA's pins exclude (docs/explorer.md,
# "TOM Toolkit"). ATEDA itself is not installed there: the TOM imports ateda.tom from the checkout (PYTHONPATH), and
# that module needs nothing beyond what tomtoolkit brings. Idempotent: a venv installed from the same requirements
# file is left alone (nothing printed); a first install takes about 2.5 minutes on 2 cores. Prints the venv's python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ATEDA_TOM_VENV:-$ROOT/.tools/tomvenv}"
REQS="$ROOT/scripts/tom-requirements.txt"
PY="${PYTHON:-python3}"
stamp="$VENV/.installed-$(md5sum <"$REQS" | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "scripts/tomvenv.sh: installing tomtoolkit (pinned) into $VENV" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" 2>"$VENV/.pip-errors"; then
    grep -v -e '^WARNING: Location' -e '^$' "$VENV/.pip-errors" >&2
    echo "scripts/tomvenv.sh: pip install failed (above)" >&2
    exit 1
  fi
  "$VENV/bin/python" -c "import django, tom_alerts, tom_setup" || { echo "scripts/tomvenv.sh: tomtoolkit does not import" >&2; exit 1; }
  touch "$stamp"
fi
echo "$VENV/bin/python"
