#!/usr/bin/env bash
# Installs Debian's Ceph monitor, OSD and RADOS gateway (a real S3 server with bucket notifications) when missing.
# tests/ceph.py starts its own one-node cluster from an empty temp folder on a free loopback port; policy-rc.d
# keeps the packages from starting any service. Exit status 0 when radosgw is (now) installed, 1 otherwise.
set -u
if command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
  echo "scripts/ceph.sh: radosgw is missing and cannot be installed here (needs apt-get as root)" >&2
  exit 1
fi
[ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; }
if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ceph-mon ceph-osd radosgw ceph-common >/dev/null); then
  echo "scripts/ceph.sh: could not install ceph-mon ceph-osd radosgw; the Ceph tests will fail" >&2
  exit 1
fi
