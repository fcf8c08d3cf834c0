"""Point-in-time restore and recovery-point lag of log backups, MariaDB and PostgreSQL.

Two measurements, each on fresh throw-away servers and a fresh ``rdsbackup serve`` (its
state under ``bench/.data/pitr/run-<time>/``):

1. **PITR restore time, API vs raw tools, same run.** A source server is registered,
   ModifyBackupPolicy switches its log backups on (EnableBackupLog=1), CreateBackup takes
   a full Physical base set, then a writer makes about ``--log-mib`` MiB of binlog / WAL
   (multi-row inserts of 1 KiB rows), followed by a slow tail of one-row transactions
   whose commit times are recorded. T is a whole second in the tail that no transaction
   straddles. Once DescribeLocalAvailableRecoveryTime's RecoveryEndTime >= T,
   ``CloneDBInstance RestoreTime=T`` is timed to the poll that sees the clone Running;
   then the same restore by hand from the service's own stored objects (the base set's
   folder and ``<instance>/logs/<timeline>/<name>.zst``, decompressed with ``zstd -d``,
   counted in the raw time):

   * MariaDB: ``zstd -d | mbstream -x`` into a new data directory, ``mariadb-backup
     --prepare``, start, ``mariadb-binlog --start-position=<base pos>
     --stop-datetime=T <files> | mariadb --binary-mode``;
   * PostgreSQL: ``zstd -d | tar -x`` into a new data directory, the WAL files
     decompressed into a folder, ``restore_command = 'cp <folder>/%f %p'``,
     ``recovery_target_time = T`` (exclusive), ``recovery_target_action = promote``,
     start, wait until ``pg_is_in_recovery()`` is false.

   Both restored servers must hold the rows of the transactions committed before T.

2. **RPO lag under steady writes.** A writer commits one row every ``--rpo-interval``
   seconds for ``--rpo-seconds``; DescribeLocalAvailableRecoveryTime is polled every
   ``--poll`` seconds. A commit's lag is the time from its commit to the first poll
   whose RecoveryEndTime (and, separately, LastDurableTime) is at or after it (the API
   has whole seconds: a commit at 12:00:00.4 is restorable once the end reads
   12:00:01). Run once per ``--switch-seconds`` value (log_switch_seconds).

Usage::

    .venv/bin/python bench/pitr.py [--engines MariaDB,PostgreSQL] [--log-mib 1024]
        [--pitr-switch-seconds 10] [--switch-seconds 5,60] [--ship-seconds 1.0]
        [--rpo-seconds 120] [--rpo-interval 0.05] [--poll 0.2] [--reps 2] [--raw-first]
        [--skip-pitr] [--skip-rpo] [--keep]

Results (markdown) go to stdout and ``bench/.data/pitr/results-<time>.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pymysql
from measure import wait_for_quiet
from rdsapi import ApiError, RdsClient, ServiceProcess
from restore_paths import client_options
from runs import save_run

from rdsbackup.instances.servers import LocalServer, free_port, local_server

MARIADB, POSTGRES = "MariaDB", "PostgreSQL"
DATA = Path(__file__).resolve().parent / ".data" / "pitr"
ADMIN = "bench_admin"
WIRE = "%Y-%m-%dT%H:%M:%SZ"
RATIO_TARGET = 1.15
ROW_PAD_BYTES = 512
"""Random bytes per row, stored as hex (1 KiB of text per row)."""
ROWS_PER_TXN = 500
TAIL_SECONDS = 6.0
TAIL_PAUSE = 0.1
UTC_ENV = {**os.environ, "TZ": "UTC"}


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def wire_time(value: str) -> datetime | None:
    return datetime.strptime(value, WIRE).replace(tzinfo=UTC) if value else None


def to_wire(value: datetime) -> str:
    return value.astimezone(UTC).strftime(WIRE)


# -- servers and SQL -------------------------------------------------------------------------


def new_server(engine: str, base: Path, password: str) -> LocalServer:
    server = local_server(engine, base, free_port(), ADMIN, password)
    server.initialize()
    server.start()
    return server


def connect(engine: str, port: int, password: str, database: str | None = None) -> Any:
    if engine == MARIADB:
        return pymysql.connect(
            host="127.0.0.1",
            port=port,
            user=ADMIN,
            password=password,
            database=database,
            autocommit=True,
            read_timeout=3600,
        )
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=ADMIN,
        password=password,
        dbname=database or "postgres",
        autocommit=True,
    )


def sql(engine: str, port: int, password: str, statement: str, db: str | None = None) -> list[Any]:
    conn = connect(engine, port, password, db)
    try:
        cur = conn.cursor()
        cur.execute(statement)
        rows = list(cur.fetchall()) if cur.description else []
        cur.close()
        return rows
    finally:
        conn.close()


def table(engine: str) -> str:
    return "w.t" if engine == MARIADB else "t"


def db_of(engine: str) -> str | None:
    return None if engine == MARIADB else "w"


def create_table(engine: str, server: LocalServer) -> None:
    pw = server.admin_password
    sql(engine, server.port, pw, "CREATE DATABASE w")
    if engine == MARIADB:
        ddl = "CREATE TABLE w.t (id BIGINT PRIMARY KEY, at DATETIME(6) NOT NULL, pad TEXT NOT NULL)"
    else:
        ddl = "CREATE TABLE t (id bigint PRIMARY KEY, at timestamptz NOT NULL, pad text NOT NULL)"
    sql(engine, server.port, pw, ddl, db_of(engine))


def log_position(engine: str, server: LocalServer) -> int:
    """Bytes of log the server has written so far (binlog sizes / the WAL insert LSN)."""
    pw = server.admin_password
    if engine == MARIADB:
        return sum(int(r[1]) for r in sql(engine, server.port, pw, "SHOW BINARY LOGS"))
    (row,) = sql(engine, server.port, pw, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    return int(row[0])


def row_facts(engine: str, port: int, password: str) -> tuple[int, int]:
    """(count, sum of ids) of the written table."""
    ((count, total),) = sql(
        engine,
        port,
        password,
        f"SELECT COUNT(*), COALESCE(SUM(id), 0) FROM {table(engine)}",
        db_of(engine),
    )
    return int(count), int(total)


# -- the writer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Txn:
    """One committed transaction: rows ``first``..``last``, sent at ``before`` (client
    clock), acknowledged at ``after``."""

    before: datetime
    after: datetime
    first: int
    last: int


@dataclass
class Writer:
    engine: str
    server: LocalServer
    txns: list[Txn] = field(default_factory=list)
    next_id: int = 1

    def _now_sql(self) -> str:
        return "NOW(6)" if self.engine == MARIADB else "clock_timestamp()"

    def commit(self, cur: Any, rows: int) -> None:
        ids = range(self.next_id, self.next_id + rows)
        now = self._now_sql()
        values = ",".join(f"({i}, {now}, '{secrets.token_hex(ROW_PAD_BYTES)}')" for i in ids)
        statement = f"INSERT INTO {table(self.engine)} (id, at, pad) VALUES {values}"
        before = datetime.now(UTC)
        cur.execute(statement)  # autocommit: one transaction
        self.txns.append(Txn(before, datetime.now(UTC), ids[0], ids[-1]))
        self.next_id += rows

    def bulk(self, log_bytes: int) -> int:
        """Multi-row transactions until the server wrote ``log_bytes`` of log; the bytes."""
        start = log_position(self.engine, self.server)
        conn = connect(
            self.engine, self.server.port, self.server.admin_password, db_of(self.engine)
        )
        done = 0
        try:
            cur = conn.cursor()
            n = 0
            while done < log_bytes:
                self.commit(cur, ROWS_PER_TXN)
                n += 1
                if n % 20 == 0:
                    done = log_position(self.engine, self.server) - start
        finally:
            conn.close()
        return log_position(self.engine, self.server) - start

    @contextmanager
    def steady(self, pause: float) -> Iterator[None]:
        """One-row transactions every ``pause`` seconds in a thread, while the block runs."""
        stop = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            try:
                conn = connect(
                    self.engine, self.server.port, self.server.admin_password, db_of(self.engine)
                )
                try:
                    cur = conn.cursor()
                    next_at = time.monotonic()
                    while not stop.is_set():
                        self.commit(cur, 1)
                        next_at += pause
                        stop.wait(max(0.0, next_at - time.monotonic()))
                finally:
                    conn.close()
            except BaseException as e:  # reported by the main thread
                failed.append(e)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        if failed:
            raise RuntimeError(f"the writer failed: {failed[0]!r}")

    def clean_second(self, after: datetime, before: datetime) -> datetime:
        """A whole second in (after, before) no transaction straddles."""
        t = after.replace(microsecond=0) + timedelta(seconds=1)
        while t < before:
            if not any(x.before <= t <= x.after for x in self.txns):
                return t
            t += timedelta(seconds=1)
        raise RuntimeError(f"no clean second between {after} and {before}")

    def expected_at(self, when: datetime) -> tuple[int, int]:
        """(count, sum of ids) of the rows committed before ``when``."""
        rows = [x for x in self.txns if x.after < when]
        count = sum(x.last - x.first + 1 for x in rows)
        total = sum((x.first + x.last) * (x.last - x.first + 1) // 2 for x in rows)
        return count, total


# -- the service -----------------------------------------------------------------------------


@dataclass
class Service:
    proc: ServiceProcess
    client: RdsClient

    def call(self, action: str, **params: str) -> dict[str, Any]:
        return self.client.call(action, **params)

    def recovery(self, instance: str) -> dict[str, Any]:
        return self.call("DescribeLocalAvailableRecoveryTime", DBInstanceId=instance)

    def enable_logs(self, instance: str) -> None:
        self.call(
            "ModifyBackupPolicy",
            DBInstanceId=instance,
            BackupPolicyMode="LogBackupPolicy",
            EnableBackupLog="1",
        )

    def wait_streaming(self, instance: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.recovery(instance)
            if state["LogBackupStatus"] == "Streaming":
                return
            time.sleep(0.3)
        raise RuntimeError(f"the log stream did not start: {self.recovery(instance)}")

    def backup(self, instance: str) -> tuple[dict[str, Any], Path]:
        """A full Physical set; (its DescribeBackups item, its folder in storage)."""
        job = self.client.full_backup(instance, poll=0.3)
        job_id = str(job["BackupJobId"])
        found = self.call("DescribeBackups", DBInstanceId=instance, BackupId=str(job["BackupId"]))
        return dict(found["Items"]["Backup"][0]), self.proc.storage_dir / instance / job_id

    def wait_end(self, instance: str, until: datetime, timeout: float) -> float:
        """Wait until RecoveryEndTime >= ``until``; the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            end = wire_time(self.recovery(instance)["RecoveryEndTime"])
            if end is not None and end >= until:
                return time.monotonic() - t0
            time.sleep(0.2)
        raise RuntimeError(f"RecoveryEndTime did not reach {until}: {self.recovery(instance)}")

    def log_files(self, instance: str, since: datetime) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            got = self.call(
                "DescribeBinlogFiles",
                DBInstanceId=instance,
                StartTime=to_wire(since - timedelta(hours=1)),
                EndTime=to_wire(datetime.now(UTC) + timedelta(hours=1)),
                PageSize="100",
                PageNumber=str(page),
            )
            batch = got["Items"]["BinLogFile"]
            items += batch
            if not batch or len(items) >= int(got["TotalRecordCount"]):
                return items
            page += 1

    def drop_clone(self, engine: str, clone: str) -> None:
        base = self.proc.instances_dir / clone
        for _ in range(3):
            self.proc.cli("instance", "stop", clone)
            if not local_server(engine, base, 0, ADMIN, "-").is_running():
                break
        shutil.rmtree(base, ignore_errors=True)


def start_service(root: Path, settings: dict[str, Any]) -> Service:
    proc = ServiceProcess(root, free_port(), settings)
    proc.start()
    key = proc.add_key("bench")
    return Service(proc, RdsClient(proc.url, key))


# -- raw tools -------------------------------------------------------------------------------


def logged_source(
    engine: str,
    root: Path,
    password: str,
    switch: float,
    ship: float,
    cleanups: list[Callable[[], None]],
) -> tuple[Service, LocalServer, str, Writer]:
    """A service and a fresh source server registered with it, its log backup streaming;
    what to stop is appended to ``cleanups``."""
    settings = {
        "log_switch_seconds": switch,
        "log_ship_interval_seconds": ship,
        "scheduler_enabled": False,
    }
    service = start_service(root / "s", settings)
    cleanups.append(service.proc.stop)
    source = new_server(engine, root / "src", password)
    cleanups.append(source.stop)
    create_table(engine, source)
    instance = service.proc.register(source, "bench")
    service.enable_logs(instance)
    service.wait_streaming(instance)
    return service, source, instance, Writer(engine, source)


def pipe(
    commands: list[list[str]],
    out: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run ``commands`` as a pipeline (stdout of each into the next); raise on failure."""
    procs: list[subprocess.Popen[bytes]] = []
    sink = out.open("wb") if out is not None else None
    try:
        prev = None
        for i, args in enumerate(commands):
            last = i == len(commands) - 1
            stdout: Any = (sink or subprocess.DEVNULL) if last else subprocess.PIPE
            p = subprocess.Popen(
                args, stdin=prev, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd, env=env
            )
            if prev is not None:
                prev.close()
            prev = p.stdout
            procs.append(p)
        errors = []
        for p in reversed(procs):
            _, err = p.communicate()
            if p.returncode != 0:
                errors.append(f"{Path(str(p.args[0])).name} exited {p.returncode}: {err[-800:]!r}")
        if errors:
            raise RuntimeError("; ".join(errors))
    finally:
        if sink is not None:
            sink.close()


def unzstd_into(files: list[Path], folder: Path) -> None:
    """Decompress ``files`` (``<name>.zst``) into ``folder`` as ``<name>``."""
    folder.mkdir(parents=True, exist_ok=True)
    pipe([["zstd", "-d", "-q", "-f", f"--output-dir-flat={folder}", *(str(f) for f in files)]])


@dataclass(frozen=True)
class Chain:
    """The stored log files a restore to T replays, as the service would choose them."""

    names: list[str]
    stored: list[Path]
    raw_bytes: int
    stored_bytes: int
    base_position: dict[str, str]


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def chain_for(
    engine: str, service: Service, instance: str, set_dir: Path, since: datetime, when: datetime
) -> Chain:
    """From the file holding the base set's position to the first whose last commit is at
    or after ``when`` (``jobs/logchain.py``'s rule, read through DescribeBinlogFiles)."""
    manifest = json.loads((set_dir / "manifest.json").read_text())
    position = {str(k): str(v) for k, v in manifest["consistent_position"].items()}
    items = [i for i in service.log_files(instance, since) if i["LogFileType"] != "history"]
    if engine == MARIADB:
        items.sort(key=lambda i: int(i["LogFileName"].rsplit(".", 1)[1]))
        names = [i["LogFileName"] for i in items]
        start = names.index(position["binlog_file"])
    else:
        timeline = int(position["timeline"])
        items = [i for i in items if int(i["Timeline"]) == timeline]
        items.sort(key=lambda i: _lsn(i["StartPosition"]))
        lsn = _lsn(position["start_lsn"])
        start = next(
            n
            for n, i in enumerate(items)
            if _lsn(i["StartPosition"]) <= lsn < _lsn(i["EndPosition"])
        )
    chosen: list[dict[str, Any]] = []
    for item in items[start:]:
        chosen.append(item)
        end = wire_time(item["LogEndTime"])
        if end is not None and end >= when:
            break
    else:
        raise RuntimeError(f"the stored logs do not reach {when}")
    folder = service.proc.storage_dir / instance / "logs"
    stored = []
    for item in chosen:
        matches = list(folder.glob(f"{int(item['Timeline']):08X}/{item['LogFileName']}.zst"))
        if len(matches) != 1:
            raise RuntimeError(f"log file {item['LogFileName']} not found under {folder}")
        stored.append(matches[0])
    return Chain(
        [str(i["LogFileName"]) for i in chosen],
        stored,
        sum(int(i["RawFileSize"]) for i in chosen),
        sum(int(i["FileSize"]) for i in chosen),
        position,
    )


def raw_mariadb(
    server: LocalServer, work: Path, set_dir: Path, chain: Chain, when: datetime
) -> dict[str, float]:
    """The base set restored into ``server`` and the binlogs replayed with the tools;
    the seconds of each step."""
    steps: dict[str, float] = {}
    t0 = time.monotonic()
    server.create_dirs()
    data = server.data_dir
    pipe(
        [
            ["zstd", "-d", "-q", "-c", str(set_dir / "data.xbstream.zst")],
            ["mbstream", "-x", "-C", str(data)],
        ],
        cwd=data,
    )
    steps["extract_s"] = time.monotonic() - t0
    pipe([["mariadb-backup", "--prepare", f"--target-dir={data}"]], cwd=data)
    steps["prepare_s"] = time.monotonic() - t0 - sum(steps.values())
    logs = work / "binlogs"
    unzstd_into(chain.stored, logs)
    steps["logs_unzstd_s"] = time.monotonic() - t0 - sum(steps.values())
    server.start(timeout=300)
    steps["start_s"] = time.monotonic() - t0 - sum(steps.values())
    stop = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    pipe(
        [
            [
                "mariadb-binlog",
                f"--start-position={chain.base_position['binlog_pos']}",
                f"--stop-datetime={stop}",
                *(str(logs / n) for n in chain.names),
            ],
            ["mariadb", f"--defaults-extra-file={client_options(server)}", "--binary-mode"],
        ],
        env=UTC_ENV,
    )
    steps["replay_s"] = time.monotonic() - t0 - sum(steps.values())
    return steps


def raw_postgres(
    server: LocalServer, work: Path, set_dir: Path, chain: Chain, when: datetime
) -> dict[str, float]:
    """The base set restored, the WAL decompressed into a folder, recovery to T with
    ``restore_command = cp``, promoted; the seconds of each step."""
    steps: dict[str, float] = {}
    t0 = time.monotonic()
    server.create_dirs()
    data = server.data_dir
    pipe(
        [["zstd", "-d", "-q", "-c", str(set_dir / "base.tar.zst")], ["tar", "-x", "-C", str(data)]]
    )
    steps["extract_s"] = time.monotonic() - t0
    wal = work / "wal"
    unzstd_into(chain.stored, wal)
    wal.chmod(0o755)
    steps["logs_unzstd_s"] = time.monotonic() - t0 - sum(steps.values())
    stop = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    with (data / "postgresql.auto.conf").open("a") as conf:
        conf.write(
            f"restore_command = 'cp {wal}/%f %p'\n"
            f"recovery_target_time = '{stop}'\n"
            "recovery_target_inclusive = off\n"
            "recovery_target_action = 'promote'\n"
        )
    (data / "recovery.signal").touch()
    server.start(timeout=3600)
    steps["start_s"] = time.monotonic() - t0 - sum(steps.values())
    while sql(POSTGRES, server.port, server.admin_password, "SELECT pg_is_in_recovery()")[0][0]:
        time.sleep(0.2)
    steps["replay_to_promotion_s"] = time.monotonic() - t0 - sum(steps.values())
    return steps


# -- 1. point-in-time restore ------------------------------------------------------------------


@dataclass
class PitrResult:
    engine: str
    log_bytes_written: int
    chain_files: int
    chain_raw_bytes: int
    chain_stored_bytes: int
    restore_time: str
    api_seconds: float
    """The median of ``api_runs``."""
    raw_seconds: float
    api_runs: list[float]
    raw_runs: list[float]
    api_rows: tuple[int, int]
    raw_rows: tuple[int, int]
    expected_rows: tuple[int, int]
    raw_steps: dict[str, float]
    service_lines: list[str]
    durable_wait_s: float
    base_size: int
    switch_seconds: float
    ship_seconds: float
    order: str

    @property
    def ratio(self) -> float:
        return self.api_seconds / self.raw_seconds


def _service_lines(log: Path, start_at: int) -> list[str]:
    text = log.read_text(errors="replace")[start_at:]
    wanted = ("replayed", "restored into", "Traceback", "ERROR", "error")
    out = []
    for line in text.splitlines():
        if any(w in line for w in wanted):
            try:
                record = json.loads(line)
                out.append(str(record.get("message", line))[:300])
            except ValueError:
                out.append(line[:300])
    return out


def settle(engine: str, server: LocalServer, quiet_cores: float) -> tuple[float, float]:
    """Let the source finish its own background writes (InnoDB flushing, a PostgreSQL
    checkpoint after the bulk's WAL) and the machine go quiet, so whichever side is timed
    first does not pay for them; (seconds waited, cores busy at the end)."""
    t0 = time.monotonic()
    pw = server.admin_password
    if engine == MARIADB:
        sql(engine, server.port, pw, "SET GLOBAL innodb_max_dirty_pages_pct = 0")
        while time.monotonic() - t0 < 120:
            rows = sql(engine, server.port, pw, "SHOW STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
            if int(rows[0][1]) == 0:
                break
            time.sleep(0.5)
    else:
        sql(engine, server.port, pw, "CHECKPOINT")
    os.sync()
    _, busy = wait_for_quiet(quiet_cores, 60)
    return time.monotonic() - t0, busy


def _warm(*folders: Path) -> None:
    """Read the stored files once, so neither side pays the first read from disk."""
    buf = bytearray(1 << 20)
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                with path.open("rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
    os.sync()


def pitr(engine: str, root: Path, args: argparse.Namespace) -> PitrResult:
    password = secrets.token_hex(12)
    cleanups: list[Callable[[], None]] = []
    try:
        service, source, instance, writer = logged_source(
            engine, root, password, args.pitr_switch_seconds, args.ship_seconds, cleanups
        )
        writer.bulk(1 << 20)  # a little data before the base set
        base, set_dir = service.backup(instance)
        base_end = wire_time(str(base["BackupEndTime"]))
        assert base_end is not None
        say(f"{engine}: base set {base['BackupId']} ({int(base['BackupSize']) / 2**20:.1f} MiB)")
        t0 = time.monotonic()
        written = writer.bulk(args.log_mib << 20)
        say(
            f"{engine}: wrote {written / 2**20:.0f} MiB of log, {writer.next_id - 1} rows,"
            f" in {time.monotonic() - t0:.0f} s"
        )
        tail_start = datetime.now(UTC)
        with writer.steady(TAIL_PAUSE):
            time.sleep(TAIL_SECONDS)
        when = writer.clean_second(
            tail_start + timedelta(seconds=1), writer.txns[-1].after - timedelta(seconds=1.5)
        )
        expected = writer.expected_at(when)
        say(f"{engine}: T = {to_wire(when)}; {expected[0]} rows committed before it")
        waited = service.wait_end(instance, when, timeout=600 + 3 * args.pitr_switch_seconds)
        say(f"{engine}: RecoveryEndTime >= T after {waited:.1f} s more")
        chain = chain_for(engine, service, instance, set_dir, base_end, when)
        say(
            f"{engine}: {len(chain.names)} log files, {chain.raw_bytes / 2**20:.0f} MiB"
            f" ({chain.stored_bytes / 2**20:.0f} MiB stored) from {chain.names[0]}"
        )

        settled: list[str] = []

        def api_side() -> tuple[float, tuple[int, int], list[str]]:
            _warm(set_dir, *(p.parent for p in chain.stored[:1]))
            waited, busy = settle(engine, source, args.quiet_cores)
            settled.append(f"API: settled {waited:.1f} s, {busy:.2f} cores busy")
            log_at = service.proc.log_path.stat().st_size
            t0 = time.monotonic()
            clone = str(
                service.call(
                    "CloneDBInstance",
                    DBInstanceId=instance,
                    RestoreTime=to_wire(when),
                    PayType="Postpaid",
                )["DBInstanceId"]
            )
            while True:
                item = service.call("DescribeDBInstanceAttribute", DBInstanceId=clone)["Items"][
                    "DBInstanceAttribute"
                ][0]
                if item["DBInstanceStatus"] == "Running":
                    seconds = time.monotonic() - t0
                    break
                if item["DBInstanceStatus"] not in ("Creating", "Restoring"):
                    tasks = service.call("DescribeRestoreTasks", DBInstanceId=clone)
                    raise RuntimeError(f"clone {clone}: {item['DBInstanceStatus']}: {tasks}")
                time.sleep(args.poll)
            say(f"{engine}: API clone Running after {seconds:.2f} s")
            rows = row_facts(engine, int(item["Port"]), password)
            time.sleep(0.5)  # let the service log its lines
            lines = _service_lines(service.proc.log_path, log_at)
            service.drop_clone(engine, clone)
            return seconds, rows, lines

        def raw_side() -> tuple[float, tuple[int, int], dict[str, float]]:
            _warm(set_dir, *(p.parent for p in chain.stored[:1]))
            waited, busy = settle(engine, source, args.quiet_cores)
            settled.append(f"raw: settled {waited:.1f} s, {busy:.2f} cores busy")
            work = root / "raw"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            work.chmod(0o711)
            t0 = time.monotonic()
            server = local_server(engine, work / "server", free_port(), ADMIN, password)
            try:
                restore = raw_mariadb if engine == MARIADB else raw_postgres
                steps = restore(server, work, set_dir, chain, when)
                seconds = time.monotonic() - t0
                say(f"{engine}: raw restore done after {seconds:.2f} s")
                rows = row_facts(engine, server.port, password)
            finally:
                server.stop()
                shutil.rmtree(work, ignore_errors=True)
            return seconds, rows, steps

        # --reps pairs in alternating order (A B, B A, ...): whichever side runs first
        # on a machine still busy from the writes pays for it, so each order counts once
        api_runs: list[float] = []
        raw_runs: list[float] = []
        api_all: list[tuple[int, int]] = []
        raw_all: list[tuple[int, int]] = []
        for rep in range(args.reps):
            raw_first = args.raw_first != (rep % 2 == 1)
            for side in ("raw", "api") if raw_first else ("api", "raw"):
                if side == "raw":
                    seconds, raw_rows, steps = raw_side()
                    raw_runs.append(seconds)
                    raw_all.append(raw_rows)
                else:
                    seconds, api_rows, lines = api_side()
                    api_runs.append(seconds)
                    api_all.append(api_rows)
        if any(rows != expected for rows in [*api_all, *raw_all]):
            api_rows = next((r for r in api_all if r != expected), api_rows)
            raw_rows = next((r for r in raw_all if r != expected), raw_rows)
        return PitrResult(
            engine=engine,
            log_bytes_written=written,
            chain_files=len(chain.names),
            chain_raw_bytes=chain.raw_bytes,
            chain_stored_bytes=chain.stored_bytes,
            restore_time=to_wire(when),
            api_seconds=statistics.median(api_runs),
            raw_seconds=statistics.median(raw_runs),
            api_runs=api_runs,
            raw_runs=raw_runs,
            api_rows=api_rows,
            raw_rows=raw_rows,
            expected_rows=expected,
            raw_steps={k: round(v, 2) for k, v in steps.items()},
            service_lines=lines,
            durable_wait_s=waited,
            base_size=int(base["BackupSize"]),
            switch_seconds=args.pitr_switch_seconds,
            ship_seconds=args.ship_seconds,
            order=f"{args.reps} pair(s), alternating, "
            + ("raw first" if args.raw_first else "API first")
            + f" ({'; '.join(settled)} before each)",
        )
    finally:
        for undo in reversed(cleanups):
            try:
                undo()
            except Exception as e:  # keep cleaning up
                say(f"cleanup failed: {e!r}")


# -- 2. RPO lag ------------------------------------------------------------------------------


@dataclass
class RpoResult:
    engine: str
    switch_seconds: float
    ship_seconds: float
    commits: int
    polls: int
    lag_end: list[float]
    lag_durable: list[float]
    uncovered_end: int
    uncovered_durable: int


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


def _lags(
    commits: list[datetime], polls: list[tuple[datetime, datetime | None]]
) -> tuple[list[float], int]:
    """Per commit: first poll (time, end) with end >= commit, minus the commit."""
    lags: list[float] = []
    uncovered = 0
    j = 0
    for c in commits:
        while j < len(polls) and (polls[j][1] is None or polls[j][1] < c):
            j += 1
        if j == len(polls):
            uncovered += 1
            continue
        lags.append((polls[j][0] - c).total_seconds())
    return lags, uncovered


def rpo(engine: str, switch: float, root: Path, args: argparse.Namespace) -> RpoResult:
    password = secrets.token_hex(12)
    cleanups: list[Callable[[], None]] = []
    try:
        service, _source, instance, writer = logged_source(
            engine, root, password, switch, args.ship_seconds, cleanups
        )
        writer.bulk(1 << 16)
        service.backup(instance)
        # the window exists once a file after the base set is stored
        deadline = time.monotonic() + 3 * switch + 60
        while not service.recovery(instance)["RecoveryEndTime"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no recovery window: {service.recovery(instance)}")
            writer.bulk(1)
            time.sleep(0.5)
        writer.txns.clear()
        polls_end: list[tuple[datetime, datetime | None]] = []
        polls_durable: list[tuple[datetime, datetime | None]] = []

        def poll() -> None:
            state = service.recovery(instance)
            now = datetime.now(UTC)  # when the answer arrived
            polls_end.append((now, wire_time(state["RecoveryEndTime"])))
            polls_durable.append((now, wire_time(state["LastDurableTime"])))

        say(
            f"{engine}: switch {switch} s: one commit every {args.rpo_interval} s"
            f" for {args.rpo_seconds} s"
        )
        with writer.steady(args.rpo_interval):
            stop_at = time.monotonic() + args.rpo_seconds
            while time.monotonic() < stop_at:
                t = time.monotonic()
                poll()
                time.sleep(max(0.0, args.poll - (time.monotonic() - t)))
            # the writer goes on (steady writes) until the window's last commit is covered
            counted = len(writer.txns)
            last = writer.txns[counted - 1].after
            deadline = time.monotonic() + 2 * switch + 30
            while time.monotonic() < deadline:
                t = time.monotonic()
                poll()
                end = polls_end[-1][1]
                if end is not None and end >= last:
                    break
                time.sleep(max(0.0, args.poll - (time.monotonic() - t)))
        commits = [x.after for x in writer.txns[:counted]]
        lag_end, unc_end = _lags(commits, polls_end)
        lag_dur, unc_dur = _lags(commits, polls_durable)
        return RpoResult(
            engine,
            switch,
            args.ship_seconds,
            len(commits),
            len(polls_end),
            lag_end,
            lag_dur,
            unc_end,
            unc_dur,
        )
    finally:
        for undo in reversed(cleanups):
            try:
                undo()
            except Exception as e:  # keep cleaning up
                say(f"cleanup failed: {e!r}")


# -- report ------------------------------------------------------------------------------------


def git_head() -> str:
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def report(pitrs: list[PitrResult], rpos: list[RpoResult], errors: list[str], argv: str) -> str:
    mib = 2**20
    lines = [
        f"# Point-in-time restore bench ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`{argv}`; HEAD {git_head()}; {os.cpu_count()} CPUs",
        "",
    ]
    if pitrs:
        lines += [
            "## 1. CloneDBInstance RestoreTime=T vs the raw tools",
            "",
            "| engine | log MiB replayed (files; stored MiB) | base set MiB | API s | raw s | ratio"
            f" (target <= {RATIO_TARGET}) | rows API | rows raw | rows expected | equal |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in pitrs:
            equal = r.api_rows == r.raw_rows == r.expected_rows
            mark = "yes" if equal else "**NO**"
            ok = "ok" if r.ratio <= RATIO_TARGET else "**over**"
            lines.append(
                f"| {r.engine} | {r.chain_raw_bytes / mib:.0f} ({r.chain_files};"
                f" {r.chain_stored_bytes / mib:.0f}) | {r.base_size / mib:.1f}"
                f" | {r.api_seconds:.2f}"
                f" | {r.raw_seconds:.2f} | {r.ratio:.2f} {ok} | {r.api_rows[0]} | {r.raw_rows[0]}"
                f" | {r.expected_rows[0]} | {mark} |"
            )
        lines += [""]
        for r in pitrs:
            lines += [
                f"**{r.engine}**: T = {r.restore_time};"
                f" log written {r.log_bytes_written / mib:.0f} MiB;"
                f" log_switch_seconds={r.switch_seconds},"
                f" log_ship_interval_seconds={r.ship_seconds};"
                f" RecoveryEndTime reached T {r.durable_wait_s:.1f} s after the writes ended;"
                f" order: {r.order}.",
                "Runs (s): API "
                + ", ".join(f"{x:.2f}" for x in r.api_runs)
                + "; raw "
                + ", ".join(f"{x:.2f}" for x in r.raw_runs)
                + " (medians in the table).",
                f"(count, sum of ids): API {r.api_rows}, raw {r.raw_rows},"
                f" expected {r.expected_rows}.",
                f"Raw steps (s): {json.dumps(r.raw_steps)}.",
                "Service log during the clone:",
                "",
                *(f"    {s}" for s in r.service_lines or ["(nothing matched)"]),
                "",
            ]
    if rpos:
        lines += [
            "## 2. RPO lag under steady writes (commit -> first poll whose end covers it)",
            "",
            "| engine | log_switch_seconds | log_ship_interval_seconds | commits"
            " | RecoveryEndTime p50 / p99 / max s | LastDurableTime p50 / p99 / max s"
            " | never covered (end/durable) |",
            "|---|---|---|---|---|---|---|",
        ]
        for q in rpos:

            def trio(values: list[float]) -> str:
                return " / ".join(f"{percentile(values, p):.2f}" for p in (50, 99, 100))

            lines.append(
                f"| {q.engine} | {q.switch_seconds:g} | {q.ship_seconds:g} | {q.commits}"
                f" | {trio(q.lag_end)} | {trio(q.lag_durable)}"
                f" | {q.uncovered_end}/{q.uncovered_durable} |"
            )
        lines += [
            "",
            "Lag of a commit: the arrival of the first DescribeLocalAvailableRecoveryTime answer"
            " whose end (whole seconds) is at or after the commit's acknowledgement, minus that"
            " acknowledgement. The writer keeps committing after the measured window until its"
            " last commit is covered (an idle server's last second is never covered: the window"
            " ends at its last stored commit, and a restore holds the commits before T).",
            "",
        ]
    if errors:
        lines += ["## Failures", "", *(f"* {e}" for e in errors), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default=f"{MARIADB},{POSTGRES}")
    parser.add_argument("--log-mib", type=int, default=1024)
    parser.add_argument("--pitr-switch-seconds", type=float, default=10.0)
    parser.add_argument(
        "--switch-seconds", default="5,60", help="log_switch_seconds values for the RPO runs"
    )
    parser.add_argument("--ship-seconds", type=float, default=1.0, help="log_ship_interval_seconds")
    parser.add_argument("--rpo-seconds", type=float, default=120.0)
    parser.add_argument("--rpo-interval", type=float, default=0.05)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--raw-first", action="store_true", help="time the raw restore first")
    parser.add_argument(
        "--reps", type=int, default=2, help="timed API/raw pairs, order alternating (default 2)"
    )
    parser.add_argument(
        "--quiet-cores", type=float, default=0.3, help="wait for the machine below this"
    )
    parser.add_argument("--skip-pitr", action="store_true")
    parser.add_argument("--skip-rpo", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    switches = [float(s) for s in args.switch_seconds.split(",") if s.strip()]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    DATA.mkdir(parents=True, exist_ok=True)
    for folder in (DATA.parent, DATA):
        folder.chmod(0o711)
    run_dir = DATA / f"r{stamp[-6:]}"  # short: socket paths must fit 107 bytes
    pitrs: list[PitrResult] = []
    rpos: list[RpoResult] = []
    errors: list[str] = []
    try:
        for engine in engines:
            if not args.skip_pitr:
                try:
                    pitrs.append(pitr(engine, run_dir / f"p{engine[0].lower()}", args))
                except (RuntimeError, ApiError, OSError) as e:
                    errors.append(f"PITR {engine}: {e}")
                    say(f"PITR {engine} failed: {e}")
            if not args.skip_rpo:
                for switch in switches:
                    try:
                        rpos.append(
                            rpo(engine, switch, run_dir / f"r{engine[0].lower()}{switch:g}", args)
                        )
                    except (RuntimeError, ApiError, OSError) as e:
                        errors.append(f"RPO {engine} switch {switch:g}: {e}")
                        say(f"RPO {engine} switch {switch:g} failed: {e}")
    finally:
        text = report(pitrs, rpos, errors, "bench/pitr.py " + " ".join(sys.argv[1:]))
        logs = {log.parent.parent.name: log for log in run_dir.glob("*/s/service.log")}
        save_run(DATA, stamp, text, logs, run_dir, args.keep, say)


if __name__ == "__main__":
    main()
