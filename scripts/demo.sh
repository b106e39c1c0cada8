#!/usr/bin/env bash
# Installs ATEDA (pinned, in .venv) and runs the demo on the embedded default: a synthetic ZTF night generated
# offline, dropped in a local bucket, fanned out through the functions into Iceberg bronze tables.
source "$(dirname "$0")/env.sh"
export ATEDA_HOME="${ATEDA_HOME:-$ROOT/.ateda/demo}"
ateda demo "$@"
ateda status
