"""How long a PostgreSQL Snapshot keeps the server in backup mode, cloned or streamed.

Makes a throw-away server under ``--base`` (which should be on a file system that makes
reflink clones, such as XFS: see docs/performance.md) holding ``pgbench -i -s
--scale`` (70: about 1 GiB), and while ``pgbench`` writes with ``--clients`` clients,
takes ``--runs`` pairs of Snapshot sets through the engine module: one with clones
(``reflink``, where the folder makes them) and one streamed. Reports per set: the copy,
the wall time, the time in backup mode (``pg_backup_start`` to the return of
``pg_backup_stop``: full-page writes forced, WAL kept) and the WAL segments the set
needed. ``--check`` restores the last cloned set into a fresh server, and runs
``pg_amcheck`` on it.

Usage::

    .venv/bin/python bench/postgres_snapshot_window.py --base /mnt/xfs/pg [--scale 70]
        [--runs 3] [--clients 2] [--load-seconds 120] [--check]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rdsbackup.engines.postgres.common import pg_binary, session, tool_env
from rdsbackup.engines.postgres.engine import PostgresEngine
from rdsbackup.engines.postgres.snapshot import snapshot_backup
from rdsbackup.engines.tools import ToolProcess
from rdsbackup.instances.servers import LocalServer, free_port, local_server
from rdsbackup.manifest import Manifest
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetReader, SetWriter

ENGINE = PostgresEngine()
ADMIN, PASSWORD, DB = "bench_admin", "bench-pw", "bench"


def make_server(base: Path, scale: int) -> LocalServer:
    server = local_server("PostgreSQL", base / "server", free_port(), ADMIN, PASSWORD)
    server.initialize()
    server.start()
    access = server.access()
    _run([pg_binary("createdb"), "--no-password", DB], tool_env(access))
    started = time.monotonic()
    _run([pg_binary("pgbench"), "-i", "-q", f"-s{scale}"], tool_env(access, DB))
    print(f"pgbench -i -s {scale}: {time.monotonic() - started:.0f} s")
    return server


def _run(args: list[str], env: dict[str, str]) -> None:
    with ToolProcess(args, env=env, stdout=subprocess.DEVNULL) as tool:
        tool.check()


def load(
    server: LocalServer, clients: int, seconds: int, latency: bool = False
) -> subprocess.Popen[str]:
    args = [pg_binary("pgbench"), f"-c{clients}", f"-T{seconds}", "-n", "--no-vacuum"]
    if latency:
        args.append("--report-per-command")
    return subprocess.Popen(
        args, env=tool_env(server.access(), DB), stdout=subprocess.PIPE, text=True
    )


def take(server: LocalServer, storage: LocalStorage, reflink: bool) -> SetReader:
    sink = SetWriter(storage, f"snapshot-{reflink}-{time.monotonic_ns()}")
    access = server.access()
    started = time.monotonic()
    with session(access) as conn:
        result = snapshot_backup(conn, access, sink, lambda _: None, reflink=reflink)
    wall = time.monotonic() - started
    extra = result.extra
    cloned = int(extra.get("cloned_bytes", "0")) / 1e6
    print(
        f"Snapshot {wall:5.1f} s  ({extra['copy']:7}) in backup mode"
        f" {float(extra['in_backup_seconds']):6.3f} s, {extra['wal_segments']} WAL segment(s),"
        f" {sink.raw_bytes / 1e6:.0f} MB stored" + (f", {cloned:.0f} MB cloned" if cloned else "")
    )
    manifest = Manifest(
        "i",
        "PostgreSQL",
        result.engine_version,
        "Snapshot",
        "FullBackup",
        "instance",
        result.databases,
        list(sink.objects),
        "",
        "",
        consistent_position=result.consistent_position,
        extra=extra,
    )
    return SetReader(storage, sink.prefix, manifest)


def check(reader: SetReader, scratch: Path) -> None:
    target = local_server("PostgreSQL", scratch / "target", free_port(), ADMIN, PASSWORD)
    target.create_dirs()
    started = time.monotonic()
    ENGINE.restore_physical(reader.manifest, reader, target.data_dir, [])
    target.start(timeout=300)
    print(f"restored and recovered in {time.monotonic() - started:.1f} s")
    try:
        out = subprocess.run(
            [
                pg_binary("pg_amcheck"),
                "--no-password",
                "--all",
                "--install-missing",
                "--heapallindexed",
            ],
            env=tool_env(target.access()),
            capture_output=True,
            text=True,
        )
        found = (out.stdout + out.stderr)[-500:]
        print("pg_amcheck: " + ("no corruption" if out.returncode == 0 else found))
    finally:
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--scale", type=int, default=70)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--load-seconds", type=int, default=120, help="longer than the backups")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    args.base.mkdir(parents=True, exist_ok=True)
    args.base.chmod(0o711)
    base = Path(tempfile.mkdtemp(prefix="bench-pg-snapshot-", dir=args.base))
    base.chmod(0o711)
    server = make_server(base, args.scale)
    try:
        storage = LocalStorage(base / "storage")
        writer = load(server, args.clients, args.load_seconds)
        time.sleep(2)
        try:
            for _ in range(args.runs):
                cloned = take(server, storage, reflink=True)
                take(server, storage, reflink=False)
        except BaseException:
            writer.kill()
            raise
        report, _ = writer.communicate()
        tps = [ln for ln in report.splitlines() if ln.startswith("tps")]
        print(f"pgbench over {args.load_seconds} s: {'; '.join(tps) or '?'}")
        if args.check:
            check(cloned, base)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
