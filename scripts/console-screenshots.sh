#!/usr/bin/env bash
# Screenshots of the web console's main pages into docs/console/*.png: the browser test
# (tests/console/test_browser.py) saves them as it goes when RDSBACKUP_CONSOLE_SHOTS is set.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3
cd "$root"
RDSBACKUP_CONSOLE_SHOTS="$root/docs/console" PYTHONPATH="$root/src:$root" \
  "$python" -m pytest -q -p no:cacheprovider tests/console/test_browser.py -k live
ls -l docs/console/*.png
