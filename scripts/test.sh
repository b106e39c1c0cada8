#!/usr/bin/env bash
# Installs ATEDA with its test dependencies (pinned, in .venv) and runs the whole test suite.
ATEDA_EXTRAS=test source "$(dirname "$0")/env.sh"
python -m pytest -q -p no:cacheprovider "$@"
