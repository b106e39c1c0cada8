#!/usr/bin/env bash
# Installs ATEDA (pinned, in .venv) and runs the demo on the embedded default: a synthetic ZTF night generated
# offline and, when ../shared/data/ztf is beside the checkout, the real ZTF alerts there, dropped in a local bucket,
# fanned out through the functions into Iceberg bronze tables, refreshed into silver and gold, and the richest real
# object plotted.
set -euo pipefail
# shellcheck disable=SC1091  # env.sh is checked on its own
source "$(dirname "$0")/env.sh"
export ATEDA_HOME="${ATEDA_HOME:-$ROOT/.ateda/demo}"
REAL="${ATEDA_DEMO_REAL:-$ROOT/../shared/data/ztf/alerts}"
if [ -d "$REAL" ]; then set -- --real "$REAL" "$@"; fi
ateda demo "$@"
ateda status
