#!/usr/bin/env bash
# Installs ATEDA with its test dependencies (pinned, in .venv) and runs the whole test suite.
# Debian's Prometheus is installed too when missing (tests/test_prometheus_scrape.py starts its own server on a
# free loopback port with its own config and storage; policy-rc.d keeps the package from starting a service).
if ! command -v prometheus >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; }
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
    || echo "scripts/test.sh: could not install prometheus; the live scrape test will be skipped" >&2
fi
ATEDA_EXTRAS=test source "$(dirname "$0")/env.sh" || exit 1
cd "$ROOT"
python -m pytest -q -p no:cacheprovider "$@"
