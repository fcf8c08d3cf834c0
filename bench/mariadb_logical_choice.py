"""Which parallel logical dump for MariaDB: measured, not guessed.

On a local server (``local_server``) loaded by ``sysbench oltp_read_write prepare``,
each variant dumps the ``sbtest`` database into a ``SetWriter`` over local storage
(zstd level 1, as the service stores sets), ``--runs`` times, interleaved:

* ``mariadb-dump``: one ``mariadb-dump --single-transaction`` stream (the baseline);
* ``engine N``: the engine's Logical backup with ``parallel=N`` (N ``mariadb-dump``
  workers whose snapshots open under BACKUP STAGE BLOCK_COMMIT, one object each);
* ``mydumper N``: ``mydumper -t N --rows`` (its own FLUSH TABLES WITH READ LOCK, then
  ``--trx-consistency-only``) into a scratch directory, each finished file streamed
  into the sink and deleted (mydumper 0.10 cannot write to stdout);
* ``mydumper N 64M``: the same with smaller chunks, N uploading threads, and mydumper
  paused (SIGSTOP) while the scratch directory holds more than 64 MB.

Reported per variant (median of the runs): wall seconds, CPU seconds (this process, the
tools and the server), raw and stored MB, MB/s, and the variant's own figure (the
engine's commit-lock window, mydumper's peak scratch size). Then, once per variant,
the longest commit of a writer while a ``--long-write`` seconds UPDATE was running
when the backup started (FLUSH TABLES WITH READ LOCK waits for running writes and holds
every new one meanwhile; BACKUP STAGE BLOCK_COMMIT does not). ``--restore`` also times
loading the single stream (one client) and the engine's set (a client per object).

Usage::

    .venv/bin/python bench/mariadb_logical_choice.py [--tables 8] [--rows 200000]
        [--runs 3] [--workers 2 4] [--long-write 3] [--restore]
        [--base $TMPDIR/rdsbackup-bench-mariadb]

The server (and its sysbench data) is kept in ``--base`` and reused by later runs.
sysbench logs in as ``root`` through the server's socket (unix_socket auth), so no
password is put on any command line.
"""

from __future__ import annotations

import argparse
import os
import queue
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from rdsbackup.engines.base import BackupMethod, BackupPlan, BackupStrategy, ServerAccess
from rdsbackup.engines.mariadb.engine import MariaDBEngine
from rdsbackup.engines.tools import ToolProcess, mysql_option_file
from rdsbackup.instances.servers import LocalServer, free_port, local_server
from rdsbackup.instances.servers_mariadb import MariaDBServer
from rdsbackup.manifest import Manifest
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.streams import SetReader, SetWriter

ENGINE = MariaDBEngine()
ADMIN, PASSWORD = "rds_admin", "bench-S3cret#'"
DB = "sbtest"


@dataclass
class Run:
    wall: float
    cpu: float
    raw: int
    stored: int
    figure: str = ""


@dataclass
class Variant:
    name: str
    take: Callable[[ServerAccess, SetWriter], str]
    runs: list[Run] = field(default_factory=list)


# -- the server ----------------------------------------------------------------------


def bench_server(base: Path, tables: int, rows: int) -> MariaDBServer:
    port_file = base / "port"
    port = int(port_file.read_text()) if port_file.is_file() else free_port()
    server = local_server("MariaDB", base, port, ADMIN, PASSWORD)
    assert isinstance(server, MariaDBServer)
    if not (server.data_dir / "mysql").is_dir():
        server.initialize()
    port_file.write_text(str(server.port))
    server.start()
    if not _loaded(server, tables, rows):
        _sql(server, f"DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}")
        _sysbench(server, tables, rows, "prepare")
        names = ", ".join(f"{DB}.sbtest{n}" for n in range(1, tables + 1))
        _sql(server, f"ANALYZE TABLE {names}")
    return server


def _loaded(server: MariaDBServer, tables: int, rows: int) -> bool:
    try:
        out = _sql(server, f"SELECT COUNT(*) FROM {DB}.sbtest{tables}")
    except subprocess.CalledProcessError:
        return False
    return out.strip() == str(rows)


def _sql(server: MariaDBServer, sql: str) -> str:
    args = ["mariadb", f"--socket={server.socket}", "-uroot", "-N", "-e", sql]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def _sysbench(server: MariaDBServer, tables: int, rows: int, *command: str) -> None:
    args = [
        "sysbench",
        "oltp_read_write",
        f"--mysql-socket={server.socket}",
        "--mysql-user=root",
        f"--mysql-db={DB}",
        f"--tables={tables}",
        f"--table-size={rows}",
        "--threads=2",
        *command,
    ]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# -- the variants --------------------------------------------------------------------


def single_dump(access: ServerAccess, sink: SetWriter) -> str:
    with mysql_option_file(access.host, access.port, access.user, access.password) as options:
        args = [
            "mariadb-dump",
            f"--defaults-extra-file={options}",
            "--single-transaction",
            "--quick",
            "--hex-blob",
            "--databases",
            DB,
        ]
        with ToolProcess(args) as tool:
            sink.put("dump.sql", tool.stdout)
            tool.check(600)
    return ""


def engine_dump(workers: int) -> Callable[[ServerAccess, SetWriter], str]:
    def take(access: ServerAccess, sink: SetWriter) -> str:
        plan = BackupPlan(
            BackupMethod.LOGICAL, BackupStrategy.DB, databases=(DB,), parallel=workers
        )
        result = ENGINE.backup(access, plan, sink, lambda _: None)
        return f"lock {result.extra['lock_ms']} ms"

    return take


def mydumper_dump(
    workers: int, rows: int, bound: int | None = None
) -> Callable[[ServerAccess, SetWriter], str]:
    """mydumper into a scratch directory, streamed out as files finish; with ``bound``
    (bytes), mydumper is paused (SIGSTOP) while the scratch directory holds more, and
    ``workers`` threads upload."""

    def take(access: ServerAccess, sink: SetWriter) -> str:
        scratch = Path(tempfile.mkdtemp(prefix="bench-mydumper-"))
        out = scratch / "out"
        try:
            with mysql_option_file(
                access.host, access.port, access.user, access.password
            ) as options:
                args = ["mydumper", f"--defaults-file={options}", f"--host={access.host}"]
                args += [f"--port={access.port}", f"--user={access.user}", "-B", DB]
                args += ["-t", str(workers), "-r", str(rows), "-o", str(out)]
                args += ["--trx-consistency-only"]
                with ToolProcess(args, stdout=subprocess.DEVNULL) as tool:
                    streamer = _Streamer(tool, out, sink, workers if bound else 1, bound)
                    peak = streamer.run()
                    tool.check(600)
            return f"scratch peak {peak / 1e6:.0f} MB, paused {streamer.paused:.1f} s"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return take


class _Streamer:
    """Puts every file mydumper has closed into the sink and deletes it. A file no
    descriptor of mydumper points at is finished (it never reopens one); ``metadata*``
    is renamed at the end, so it waits until mydumper exits."""

    def __init__(
        self, tool: ToolProcess, out: Path, sink: SetWriter, uploaders: int, bound: int | None
    ) -> None:
        self.tool, self.out, self.sink, self.bound = tool, out, sink, bound
        self.queue: queue.Queue[Path | None] = queue.Queue()
        self.taken: set[Path] = set()
        self.paused = 0.0
        self.threads = [threading.Thread(target=self._upload) for _ in range(uploaders)]

    def _upload(self) -> None:
        while (path := self.queue.get()) is not None:
            with open(path, "rb") as f:
                self.sink.put(path.name, f)
            path.unlink()

    def run(self) -> int:
        for t in self.threads:
            t.start()
        peak, stopped_at = 0, None
        try:
            while True:
                running = self.tool.proc.poll() is None
                names = sorted(self.out.iterdir()) if self.out.is_dir() else []
                size = sum(_size(p) for p in names)
                peak = max(peak, size)
                if self.bound and running:
                    stopped_at = self._throttle(size, stopped_at)
                busy = _open_files(self.tool.proc.pid) if running else set()
                for path in names:
                    if path in self.taken or str(path) in busy:
                        continue
                    if running and path.name.startswith("metadata"):
                        continue
                    self.taken.add(path)
                    self.queue.put(path)
                if not running:
                    return peak
                time.sleep(0.02)
        finally:
            if stopped_at is not None:
                os.kill(self.tool.proc.pid, signal.SIGCONT)
            for _ in self.threads:
                self.queue.put(None)
            for t in self.threads:
                t.join()

    def _throttle(self, size: int, stopped_at: float | None) -> float | None:
        assert self.bound is not None
        if stopped_at is None and size > self.bound:
            os.kill(self.tool.proc.pid, signal.SIGSTOP)
            return time.monotonic()
        if stopped_at is not None and size < self.bound // 2:
            os.kill(self.tool.proc.pid, signal.SIGCONT)
            self.paused += time.monotonic() - stopped_at
            return None
        return stopped_at


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _open_files(pid: int) -> set[str]:
    found = set()
    fd_dir = Path("/proc") / str(pid) / "fd"
    for fd in list(fd_dir.iterdir()) if fd_dir.is_dir() else []:
        try:
            found.add(os.readlink(fd))
        except OSError:
            continue
    return found


# -- measuring -----------------------------------------------------------------------


def measure(variant: Variant, server: LocalServer, scratch: Path) -> Run:
    storage_dir = scratch / "storage"
    shutil.rmtree(storage_dir, ignore_errors=True)
    sink = SetWriter(LocalStorage(storage_dir), "set")
    server_pid = server.pid()
    assert server_pid is not None
    cpu0, server0, t0 = own_cpu(), cpu_seconds(server_pid), time.monotonic()
    figure = variant.take(server.access(), sink)
    wall = time.monotonic() - t0
    cpu = own_cpu() - cpu0 + cpu_seconds(server_pid) - server0
    raw = sum(o.raw_size for o in sink.objects)
    stored = sum(o.size for o in sink.objects)
    return Run(wall, cpu, raw, stored, figure)


class Stall:
    """While it runs: a long UPDATE (a batch job) runs in another database, and a writer
    commits one-row inserts there, noting the longest commit. FLUSH TABLES WITH READ
    LOCK waits for running write statements (not for SELECTs, in MariaDB 10.11) and
    holds every new write meanwhile; BACKUP STAGE BLOCK_COMMIT waits for commits only."""

    def __init__(self, access: ServerAccess, seconds: float) -> None:
        self.access, self.seconds = access, seconds
        self.stop = threading.Event()
        self.longest = 0.0
        with _connect(access) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS benchw")
            cur.execute("CREATE TABLE IF NOT EXISTS benchw.w (id INT AUTO_INCREMENT PRIMARY KEY)")
            cur.execute(
                "CREATE OR REPLACE TABLE benchw.slow SELECT seq AS n FROM benchw.seq_1_to_10"
            )
        self.threads = [threading.Thread(target=self._update), threading.Thread(target=self._write)]

    def __enter__(self) -> Stall:
        for t in self.threads:
            t.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _update(self) -> None:
        with _connect(self.access) as conn, conn.cursor() as cur:
            cur.execute(f"UPDATE benchw.slow SET n = n + 1 WHERE SLEEP({self.seconds / 10}) = 0")

    def _write(self) -> None:
        with _connect(self.access) as conn, conn.cursor() as cur:
            while not self.stop.is_set():
                t0 = time.monotonic()
                cur.execute("INSERT INTO benchw.w VALUES ()")
                self.longest = max(self.longest, time.monotonic() - t0)
                time.sleep(0.01)


def _connect(access: ServerAccess) -> Any:
    return pymysql.connect(
        host=access.host,
        port=access.port,
        user=access.user,
        password=access.password,
        autocommit=True,
    )


def stall_test(variants: list[Variant], server: LocalServer, scratch: Path, seconds: float) -> None:
    print(f"\nwith a {seconds:g} s UPDATE running when the backup starts:")
    for v in variants:
        with Stall(server.access(), seconds) as stall:
            run = measure(v, server, scratch)
        print(f"{v.name:<16} wall {run.wall:5.1f} s, longest commit {stall.longest:5.2f} s")
        time.sleep(seconds)


def report(variants: list[Variant]) -> None:
    head = f"{'variant':<14}{'wall s':>8}{'cpu s':>8}{'raw MB':>9}{'stored MB':>11}{'MB/s':>8}"
    print(f"\n{head}  note")
    for v in variants:
        wall = statistics.median(r.wall for r in v.runs)
        cpu = statistics.median(r.cpu for r in v.runs)
        raw = statistics.median(r.raw for r in v.runs) / 1e6
        stored = statistics.median(r.stored for r in v.runs) / 1e6
        walls = "/".join(f"{r.wall:.1f}" for r in v.runs)
        print(
            f"{v.name:<14}{wall:>8.1f}{cpu:>8.1f}{raw:>9.0f}{stored:>11.0f}{raw / wall:>8.0f}"
            f"  {v.runs[-1].figure} (runs {walls})"
        )


def restore_times(server: LocalServer, scratch: Path, workers: int) -> None:
    """Load the single stream with one client and the engine's set with one per object."""
    for name, take in (("mariadb-dump", single_dump), (f"engine {workers}", engine_dump(workers))):
        storage = LocalStorage(scratch / f"restore-{workers}-{name.split()[0]}")
        sink = SetWriter(storage, "set")
        take(server.access(), sink)
        manifest = Manifest(
            "i", "MariaDB", "x", "Logical", "FullBackup", "db", [DB], list(sink.objects), "", ""
        )
        base = scratch / f"target-{name.split()[0]}"
        target = local_server("MariaDB", base, free_port(), ADMIN, PASSWORD)
        target.initialize()
        target.start()
        try:
            t0 = time.monotonic()
            ENGINE.restore_logical(manifest, SetReader(storage, "set", manifest), target.access())
            print(f"restore {name:<14}{time.monotonic() - t0:>8.1f} s")
        finally:
            target.stop()
            shutil.rmtree(target.base_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    default_base = Path(tempfile.gettempdir()) / "rdsbackup-bench-mariadb"
    parser.add_argument("--base", type=Path, default=default_base)
    parser.add_argument("--restore", action="store_true")
    parser.add_argument("--long-write", type=float, default=3.0, help="0: no stall test")
    args = parser.parse_args()
    args.base.mkdir(parents=True, exist_ok=True)
    args.base.chmod(0o711)
    server = bench_server(args.base / "server", args.tables, args.rows)
    scratch = Path(tempfile.mkdtemp(prefix="bench-logical-", dir=args.base))
    scratch.chmod(0o711)  # restore targets run as mysql under it
    variants = [Variant("mariadb-dump", single_dump)]
    for n in args.workers:
        variants.append(Variant(f"engine {n}", engine_dump(n)))
        variants.append(Variant(f"mydumper {n}", mydumper_dump(n, args.rows // 4)))
        bounded = mydumper_dump(n, args.rows // 8, 64 << 20)
        variants.append(Variant(f"mydumper {n} 64M", bounded))
    try:
        print(f"{args.tables} x {args.rows} sysbench rows, {os.cpu_count()} CPUs")
        for run in range(args.runs):
            for v in variants:  # interleaved: a busy moment of the machine hits all
                v.runs.append(measure(v, server, scratch))
                print(f"run {run + 1} {v.name}: {v.runs[-1].wall:.1f} s", flush=True)
        report(variants)
        if args.long_write > 0:
            stall_test(variants, server, scratch, args.long_write)
        if args.restore:
            restore_times(server, scratch, max(args.workers))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        server.stop()


if __name__ == "__main__":
    main()
