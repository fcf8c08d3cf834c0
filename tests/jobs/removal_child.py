"""A retention pass in a process of its own, for tests/jobs/test_removal_crash.py:

    python -m tests.jobs.removal_child CATALOG_URL STORAGE_DIR DAYS STALL SIGNAL_FILE

runs ``Retention.run`` as if ``DAYS`` days had passed, on local storage whose first
``delete_prefix`` stalls at STALL (``marked``: before deleting anything, ``halfway``:
after one object, ``deleted``: after all of the set's objects, before its record goes;
``none``: no stall). At the stall it writes its pid into SIGNAL_FILE and sleeps, to be
killed. Without a stall it prints the removed ids as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from rdsbackup.catalog.db import Catalog
from rdsbackup.jobs.retention import Retention
from rdsbackup.storage.local import LocalStorage
from rdsbackup.timeutil import utcnow

STALLS = ("marked", "halfway", "deleted", "none")


class StallingStorage(LocalStorage):
    def __init__(self, root: Path, stall: str, signal: Path) -> None:
        super().__init__(root)
        self.stall, self.signal = stall, signal

    def delete_prefix(self, prefix: str) -> int:
        files = sorted(p for p in self.path(prefix.rstrip("/")).rglob("*") if p.is_file())
        self._maybe_stall("marked")
        for index, path in enumerate(files):
            path.unlink()
            if index == 0:
                self._maybe_stall("halfway")
        self._maybe_stall("deleted")
        return super().delete_prefix(prefix) + len(files)

    def _maybe_stall(self, point: str) -> None:
        if self.stall != point:
            return
        self.signal.write_text(str(os.getpid()))
        time.sleep(600)


def main() -> None:
    url, root, days, stall, signal = sys.argv[1:]
    assert stall in STALLS, stall
    catalog = Catalog(url)
    storage = StallingStorage(Path(root), stall, Path(signal))
    removed = Retention(catalog, storage).run(utcnow() + timedelta(days=float(days)))
    print(json.dumps(removed))


if __name__ == "__main__":
    main()
