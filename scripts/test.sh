#!/usr/bin/env bash
# Installs what the tests need, then runs the whole suite on three workers (arguments go to pytest, e.g. -m "not slow"):
# - as root on Debian, the real servers the tests start themselves when missing: Prometheus
#   (tests/test_prometheus_scrape.py) and Ceph's monitor, OSD and RADOS gateway (tests/ceph.py, a real S3 with
#   bucket notifications) and Chromium (tests/test_explorer_browser.py); policy-rc.d keeps the packages from starting services, apt's output goes to a log;
# - ATEDA with its test dependencies, pinned, in .venv (scripts/env.sh);
# - helm, helmfile, task and the linters, pinned, in .tools/ (scripts/tools.sh);
# - Superset and the TOM Toolkit, pinned, each in its own venv (.tools/superset, .tools/tomvenv: scripts/superset-env.sh,
#   scripts/tomvenv.sh), in the background meanwhile.
ROOT="$(cd "$(dirname "$0")/.." && pwd)" || exit 1
APT_LOG="${TMPDIR:-/tmp}/ateda-test-apt.log"
# The two side virtualenvs (Superset, the TOM Toolkit: their pins exclude ATEDA's) install in the background while
# the Debian packages and ATEDA install: each is minutes of downloads on a fresh machine, idle on a second run.
bash "$ROOT/scripts/superset-env.sh" >/dev/null & side_superset=$!
bash "$ROOT/scripts/tomvenv.sh" >/dev/null & side_tom=$!
if ! command -v prometheus >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "scripts/test.sh: installing Prometheus (Debian package; log: $APT_LOG)" >&2
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; }
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) \
    >>"$APT_LOG" 2>&1 || echo "scripts/test.sh: could not install prometheus (see $APT_LOG)" >&2
fi
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "scripts/test.sh: installing Chromium (Debian package, for the explorer's browser tests; log: $APT_LOG)" >&2
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; }
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
    >>"$APT_LOG" 2>&1 || echo "scripts/test.sh: could not install chromium (see $APT_LOG)" >&2
fi
if ! command -v radosgw >/dev/null; then
  echo "scripts/test.sh: installing Ceph RGW (Debian packages; log: $APT_LOG)" >&2
  bash "$ROOT/scripts/ceph.sh" >>"$APT_LOG" 2>&1 || echo "scripts/test.sh: could not install Ceph RGW (see $APT_LOG)" >&2
fi
# shellcheck disable=SC1091  # env.sh is checked on its own
ATEDA_EXTRAS="test" source "$(dirname "$0")/env.sh" || exit 1
cd "$ROOT" || exit 1
bash scripts/tools.sh || exit 1  # helm, helmfile, task and the linters, pinned, into .tools/bin
wait "$side_superset" || { echo "scripts/test.sh: could not install Superset (scripts/superset-env.sh)" >&2; exit 1; }
wait "$side_tom" || { echo "scripts/test.sh: could not install the TOM Toolkit (scripts/tomvenv.sh)" >&2; exit 1; }
# Three workers, one module each at a time (--dist loadfile keeps a module's fixtures in one process): most slow
# tests wait on servers and subprocesses, so three share two cores well. `-n 0` after it runs them in one process.
python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile "$@"
