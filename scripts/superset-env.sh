#!/usr/bin/env bash
# Installs the Superset that tests/test_superset.py imports the dashboards of deploy/superset/ into: a virtualenv of
# its own in .tools/superset (Superset's dependencies must not meet the project's), every package pinned by
# scripts/superset-requirements.txt and installed with --no-deps, from PyPI only. Idempotent: a stamp holding the
# requirements' sha256 skips the install when nothing changed. scripts/test.sh runs it; the test runs it when the
# stamp is missing or stale. Prints the virtualenv's python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${ATEDA_TOOLS_DIR:-$ROOT/.tools}"
VENV="$TOOLS/superset"
REQS="$ROOT/scripts/superset-requirements.txt"
PY="${PYTHON:-python3}"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ "$(cat "$VENV/.stamp" 2>/dev/null || true)" != "$want" ]; then
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  rm -rf "$VENV"
  { "$PY" -m venv "$VENV" && "$VENV/bin/python" -m pip install -q --no-deps -r "$REQS"; } >"$log" 2>&1 \
    || { grep -v '^WARNING: Location' "$log" >&2; echo "scripts/superset-env.sh: could not install Superset" >&2; exit 1; }
  echo "$want" >"$VENV/.stamp"
  echo "scripts/superset-env.sh: installed Superset (.tools/superset)" >&2
fi
echo "$VENV/bin/python"
