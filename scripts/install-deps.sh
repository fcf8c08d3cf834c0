#!/usr/bin/env bash
# Installs the Debian packages rdsbackup needs (Debian 12, as root). Idempotent and
# quick when everything is present. Services are not started by the packages: the
# project runs its own servers on its own ports and folders. xfsprogs: the tests make
# an XFS file system (on a loop device) to take Snapshot sets with reflink clones.
# chromium: the web console's browser tests (Playwright drives /usr/bin/chromium).
# redis-server: the Celery broker the scale-out tests start on their own port.
# iproute2: `ip netns`, the two "hosts" of the worker tests (tests/e2e/test_worker_hosts.py).
set -euo pipefail

PACKAGES=(
  mariadb-server mariadb-client mariadb-backup
  postgresql postgresql-client
  zstd mydumper sysbench
  python3 python3-venv
  xfsprogs
  chromium
  redis-server
  iproute2
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi

echo "installing: ${missing[*]}"
# Keep the packages' init scripts from starting system-wide servers.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
# Wait (up to 10 minutes) for another apt/dpkg run to release its lock instead of
# failing at once (apt >= 1.9.11; Debian 12 ships 2.6).
lock_wait=(-o DPkg::Lock::Timeout=600)
apt-get "${lock_wait[@]}" update -q
apt-get "${lock_wait[@]}" install -y -q --no-install-recommends "${missing[@]}"
