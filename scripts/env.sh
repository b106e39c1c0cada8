# shellcheck shell=bash
# Source it (`source scripts/env.sh`) for the project virtualenv on PATH, with ATEDA installed (pinned) on first use.
# It leaves your shell as it was (options, directory) apart from PATH, ROOT and VENV, and never exits your shell:
# a failed install prints one line and returns 1. ATEDA_EXTRAS picks the extras (default `local`: CLI + runtime).
_ateda_env() {
  local root venv py extras stamp
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
  venv="${ATEDA_VENV:-$root/.venv}"
  py="${PYTHON:-python3}"
  extras="${ATEDA_EXTRAS:-local}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "scripts/env.sh: creating $venv" >&2
    "$py" -m venv "$venv" || { echo "scripts/env.sh: could not create a virtualenv with $py" >&2; return 1; }
  fi
  stamp="$venv/.ateda-installed-$(md5sum <"$root/pyproject.toml" | cut -c1-12)-$extras"
  if [ ! -f "$stamp" ]; then
    echo "scripts/env.sh: installing ATEDA[$extras] (pinned) into $venv: a few minutes on the first run" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1
    if ! "$venv/bin/python" -m pip install -q -e "${root}[$extras]" 2>"$venv/.pip-errors"; then
      grep -v -e '^WARNING: Location' -e '^$' "$venv/.pip-errors" >&2
      echo "scripts/env.sh: pip install failed (above)" >&2
      return 1
    fi
    "$venv/bin/python" -c "import ateda.cli" && touch "$stamp" || return 1
  fi
  # shellcheck disable=SC2034  # ROOT and VENV are for the shell that sources this file
  ROOT="$root" VENV="$venv"
  case ":$PATH:" in *":$venv/bin:"*) ;; *) PATH="$venv/bin:$PATH" ;; esac
  export PATH
}
_ateda_env
_ateda_rc=$?
unset -f _ateda_env
# shellcheck disable=SC2317  # exit is reached only when the file is run instead of sourced
return "$_ateda_rc" 2>/dev/null || exit "$_ateda_rc"
