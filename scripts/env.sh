# Sourced by the other scripts: a project virtualenv with ATEDA installed (pinned), created on first use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ATEDA_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.ateda-installed-$(cat "$ROOT/pyproject.toml" | md5sum | cut -c1-12)-${ATEDA_EXTRAS:-base}"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install -q -e "$ROOT${ATEDA_EXTRAS:+[$ATEDA_EXTRAS]}" 2>&1 | grep -v -e '^WARNING: Location' -e '^$' || true
  "$VENV/bin/python" -c "import ateda.cli" && touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
