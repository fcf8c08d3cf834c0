"""How long a MariaDB Snapshot blocks commits, under write load.

On the sysbench server of ``bench/mariadb_logical_choice.py`` (kept in ``--base``),
while ``sysbench oltp_write_only`` writes with ``--threads`` threads, takes ``--runs``
Snapshot sets and, for comparison, Physical (mariadb-backup) sets through the engine,
and reports per set: the copy (``reflink`` clones where the server's folder is on a
file system that makes them, such as XFS; then a streamed Snapshot is taken too, for
comparison), the wall time, the commit-lock window (BACKUP STAGE BLOCK_COMMIT
to END), the DDL-lock window (FLUSH to END), the copy rounds under the lock and the
bytes they copied, and sysbench's worst latency over its run (``--load-seconds``, which
must outlast the backups). ``--check`` restores the
last Snapshot into a fresh server and runs CHECK TABLE on every sbtest table.

Usage::

    .venv/bin/python bench/mariadb_snapshot_window.py [--runs 3] [--threads 2]
        [--tables 8] [--rows 200000] [--load-seconds 60] [--check]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mariadb_logical_choice import ADMIN, DB, PASSWORD, bench_server

from rdsbackup.engines.base import BackupMethod, BackupPlan
from rdsbackup.engines.mariadb import snapshot as mariadb_snapshot
from rdsbackup.engines.mariadb.engine import MariaDBEngine
from rdsbackup.instances.servers import free_port, local_server
from rdsbackup.instances.servers_mariadb import MariaDBServer
from rdsbackup.manifest import Manifest
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetReader, SetWriter

ENGINE = MariaDBEngine()


def load(server: MariaDBServer, args: argparse.Namespace, seconds: int) -> subprocess.Popen[str]:
    command = [
        "sysbench",
        "oltp_write_only",
        f"--mysql-socket={server.socket}",
        "--mysql-user=root",
        f"--mysql-db={DB}",
        f"--tables={args.tables}",
        f"--table-size={args.rows}",
        f"--threads={args.threads}",
        f"--time={seconds}",
        "--percentile=100",
        "run",
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def worst_latency(report: str) -> str:
    found = re.search(r"max:\s+([\d.]+)", report)
    return f"{found.group(1)} ms" if found else "?"


def take(server: MariaDBServer, storage: LocalStorage) -> Manifest:
    sink = SetWriter(storage, "physical")
    started = time.monotonic()
    result = ENGINE.backup(server.access(), BackupPlan(BackupMethod.PHYSICAL), sink, lambda _: None)
    print(f"Physical  {time.monotonic() - started:5.1f} s  (mariadb-backup)")
    return _manifest(BackupMethod.PHYSICAL, sink, result.engine_version, result.extra)


def take_snapshot(server: MariaDBServer, storage: LocalStorage, reflink: bool) -> SetReader:
    """A Snapshot through the engine module, which can be told not to clone."""
    sink = SetWriter(storage, f"snapshot-{reflink}")
    started = time.monotonic()
    out = mariadb_snapshot.backup_snapshot(server.access(), sink, reflink=reflink)
    wall = time.monotonic() - started
    extra = out.extra
    cloned = (
        f", {int(extra['cloned_bytes']) / 1e6:.0f} MB cloned" if "cloned_bytes" in extra else ""
    )
    print(
        f"Snapshot  {wall:5.1f} s  ({extra['copy']}) commits blocked {extra['lock_ms']:>5} ms,"
        f" DDL blocked {extra['ddl_lock_ms']:>5} ms, {extra['locked_rounds']} round(s)"
        f" storing {int(extra['locked_bytes']) / 1e6:.0f} MB under the lock,"
        f" {int(extra['copied_bytes']) / 1e6:.0f} MB stored in all{cloned}"
    )
    return SetReader(storage, sink.prefix, _manifest(BackupMethod.SNAPSHOT, sink, "", extra))


def _manifest(
    method: BackupMethod, sink: SetWriter, version: str, extra: dict[str, str]
) -> Manifest:
    return Manifest(
        "i",
        "MariaDB",
        version,
        method.value,
        "FullBackup",
        "instance",
        [],
        list(sink.objects),
        "",
        "",
        extra=extra,
    )


def check(reader: SetReader, scratch: Path, tables: int) -> None:
    target = local_server("MariaDB", scratch / "target", free_port(), ADMIN, PASSWORD)
    target.create_dirs()
    started = time.monotonic()
    ENGINE.restore_physical(reader.manifest, reader, target.data_dir, [])
    target.start(timeout=300)
    print(f"restored and recovered in {time.monotonic() - started:.1f} s")
    try:
        assert isinstance(target, MariaDBServer)
        names = ", ".join(f"{DB}.sbtest{n}" for n in range(1, tables + 1))
        out = subprocess.run(
            ["mariadb", f"--socket={target.socket}", "-uroot", "-N", "-e", f"CHECK TABLE {names}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        bad = [ln for ln in out.splitlines() if not ln.rstrip().endswith("OK")]
        print("CHECK TABLE: " + ("all OK" if not bad else "; ".join(bad)))
    finally:
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--load-seconds", type=int, default=60, help="longer than the backups")
    default_base = Path(tempfile.gettempdir()) / "rdsbackup-bench-mariadb"
    parser.add_argument("--base", type=Path, default=default_base)
    args = parser.parse_args()
    args.base.mkdir(parents=True, exist_ok=True)
    args.base.chmod(0o711)
    server = bench_server(args.base / "server", args.tables, args.rows)
    scratch = Path(tempfile.mkdtemp(prefix="bench-snapshot-", dir=args.base))
    scratch.chmod(0o711)
    try:
        writer = load(server, args, args.load_seconds)
        time.sleep(2)
        try:
            storage = LocalStorage(scratch / "storage")
            for _ in range(args.runs):
                take(server, storage)
                snapshot = take_snapshot(server, storage, reflink=True)
                if snapshot.manifest.extra["copy"] == "reflink":  # and the streamed copy beside it
                    take_snapshot(server, storage, reflink=False)
        except BaseException:
            writer.kill()
            raise
        report, _ = writer.communicate()  # sysbench reports when its time is up
        print(f"sysbench worst latency over {args.load_seconds} s: {worst_latency(report)}")
        if args.check:
            check(snapshot, scratch, args.tables)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        server.stop()


if __name__ == "__main__":
    main()
