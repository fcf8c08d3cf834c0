"""What backup-time fingerprints cost PostgreSQL Physical and Snapshot sets.

On a throw-away server under ``--base`` holding ``pgbench -i -s --scale`` (70: about
1 GiB), while ``pgbench`` writes with ``--clients`` clients, takes ``--runs`` sets of each
method through the engine, without and with ``fingerprint``, and reports the wall time,
how long writes to user tables waited for the restore point (``write_lock_ms``) and the
WAL segments the set holds. pgbench's latency percentiles over the whole run are
printed at the end (``--load-seconds`` must outlast the backups).

Usage::

    .venv/bin/python bench/postgres_fingerprints.py --base /tmp/fp [--scale 70] [--runs 2]
        [--clients 2] [--load-seconds 150]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from postgres_snapshot_window import load, make_server

from rdsbackup.engines.base import BackupMethod, BackupPlan
from rdsbackup.engines.postgres.engine import PostgresEngine
from rdsbackup.instances.servers import LocalServer
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetWriter

ENGINE = PostgresEngine()


def take(server: LocalServer, storage: LocalStorage, method: BackupMethod, fp: bool) -> None:
    sink = SetWriter(storage, f"{method.value}-{fp}-{time.monotonic_ns()}")
    started = time.monotonic()
    result = ENGINE.backup(server.access(), BackupPlan(method, fingerprint=fp), sink, print_none)
    wall = time.monotonic() - started
    extra = result.extra
    tables = len(result.fingerprints or {})
    lock = f"writes waited {extra['write_lock_ms']:>4} ms" if "write_lock_ms" in extra else ""
    print(
        f"{method.value:8} fingerprint={'on ' if fp else 'off'} {wall:5.2f} s"
        f"  {lock:24} {tables} tables fingerprinted {extra.get('fingerprints', '')}"
    )


def print_none(_: str) -> None:
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--scale", type=int, default=70)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--load-seconds", type=int, default=150)
    args = parser.parse_args()
    args.base.mkdir(parents=True, exist_ok=True)
    args.base.chmod(0o711)
    base = Path(tempfile.mkdtemp(prefix="bench-pg-fingerprints-", dir=args.base))
    base.chmod(0o711)
    server = make_server(base, args.scale)
    try:
        storage = LocalStorage(base / "storage")
        writer = load(server, args.clients, args.load_seconds, latency=True)
        time.sleep(2)
        try:
            for _ in range(args.runs):
                for method in (BackupMethod.PHYSICAL, BackupMethod.SNAPSHOT):
                    for fp in (False, True):
                        take(server, storage, method, fp)
                        shutil.rmtree(base / "storage", ignore_errors=True)
        except BaseException:
            writer.kill()
            raise
        report, _ = writer.communicate()
        wanted = ("tps", "latency average", "latency stddev")
        print("pgbench: " + "; ".join(ln for ln in report.splitlines() if ln.startswith(wanted)))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
