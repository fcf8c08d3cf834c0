"""rdsbackup benchmark: the service's backups against the raw tool pipelines, same run,
same machine, same compression; prints the ratios (``make bench``; ``--help``).

Everything lives in ``bench/.data`` (git-ignored): the bench's own MariaDB and
PostgreSQL servers with ~1 GiB each (made once, reused), the service's state, scratch
output, logs, and each run's results (``results/<time>.json`` and ``.md``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PINNED = "RDSBACKUP_BENCH_SRC"


def pin_source() -> None:
    """Run the whole bench (this process and the service) on a copy of ``src/`` taken
    now: the tree is shared with engineers editing it, and a run takes a while. Re-execs
    this script with ``PYTHONPATH`` on the copy (``--no-pin``: use the live tree)."""
    if os.environ.get(PINNED) or "--no-pin" in sys.argv or {"-h", "--help"} & set(sys.argv):
        return
    copy = BENCH_DIR / ".data" / "src"
    shutil.rmtree(copy, ignore_errors=True)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        BENCH_DIR.parent / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    path = os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path, PINNED: str(copy)}
    argv = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
    os.execve(sys.executable, argv, env)  # noqa: S606 - this script again, on the copy


if __name__ == "__main__":
    pin_source()
    sys.path.insert(0, str(BENCH_DIR))
    from orchestrate import main

    sys.exit(main())
