"""Scale: CreateBackup admissions for 1,000 instances, and DescribeBackups on a catalog of
1,000,000 backup sets, against a real ``rdsbackup serve`` on SQLite and on PostgreSQL.

Everything runs on this machine: one throw-away MariaDB server (the instances' server),
one throw-away PostgreSQL server when the PostgreSQL catalog is asked for (each run gets
its own database in it), and one ``rdsbackup serve`` per measurement with its state
under ``bench/.data/scale/r<time>/``. The service's per-key rate limit is raised
(``api_rate_per_second`` / ``api_burst``) so that it never answers Throttling; the
scheduler and log shipper are off, and the health / janitor loops are slowed down (they
would only add noise). Calls are signed like ``bench/rdsapi.py``'s RdsClient (V1,
HMAC-SHA1); ``--client keepalive`` (default) keeps one HTTP/1.1 connection per thread,
``--client urllib`` is RdsClient itself (a new connection per call).

1. **Admissions.** ``--instances`` instance rows (default 1,000) are written into the
   catalog, all pointing at the one MariaDB server (the config has no memory engine:
   these are real instances and the jobs really run). ``--admission-threads`` client
   threads (default 8) send one ``CreateBackup BackupMethod=Logical`` per instance;
   admission = the call returning a BackupJobId. Reported: admissions/s over the wall
   time of the burst, p50/p99 of the call, refusals by code, then how many jobs the
   workers ran and how each ended (waited for up to ``--job-timeout`` s).

2. **DescribeBackups on ``--sets`` sets** (default 1,000,000), bulk-inserted straight
   into the catalog (SQLAlchemy Core executemany, batches of 10k, one object row each,
   one shared stored manifest so that per-database link lookups succeed), in two
   shapes: ``spread`` (``--instances`` instances, sets/instances each) and ``single``
   (one instance holding every set). Sets are spread evenly over the last 365 days.
   Calls: PageSize=30 page 1 without filters, and with a 7-day StartTime/EndTime window
   at a random place; sequential (``--seq-requests``) for p50/p99 and req/s, then
   ``--threads`` threads (``--par-requests`` each) for req/s under load. Then the SQL
   the service issues (captured by running its own BackupService on the same catalog)
   is explained (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE), and with ``--try-index`` the
   candidate index is created by hand on the bench's catalog and the calls re-measured
   (labelled "with the index added by hand").

Usage::

    .venv/bin/python bench/scale.py [--catalogs sqlite,postgresql] [--instances 1000]
        [--sets 1000000] [--shapes spread,single] [--skip-admissions] [--skip-describe]
        [--admission-threads 8] [--threads 8] [--seq-requests 300] [--par-requests 150]
        [--client keepalive|urllib] [--try-index] [--job-timeout 1800] [--keep]

Smoke run: ``.venv/bin/python bench/scale.py --instances 50 --sets 20000``.
Results (markdown) go to stdout and ``bench/.data/scale/results-<time>.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import math
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
from cryptography.fernet import Fernet
from measure import machine_busy, tree_cpu, wait_for_quiet
from rdsapi import ApiError, Key, RdsClient, ServiceProcess, rdsbackup_binary, signed_query
from runs import save_run
from sqlalchemy import Table, event, func, insert, select, text

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import (
    BackupJob,
    BackupObject,
    BackupSet,
    Instance,
)
from rdsbackup.catalog.secrets import SecretBox
from rdsbackup.instances.inventory import new_instance_id
from rdsbackup.instances.servers import LocalServer, free_port, local_server
from rdsbackup.jobs.celery_dispatch import DEFAULT_QUEUE
from rdsbackup.manifest import MANIFEST_NAME, Manifest, StoredObject
from rdsbackup.service.auth import AccountAdmin, Principal
from rdsbackup.service.backups import BackupFilter
from rdsbackup.storage.local import LocalStorage
from rdsbackup.testing import memory_rig

DATA = Path(__file__).resolve().parent / ".data" / "scale"
ADMIN = "bench_admin"
ACCOUNT = "bench"
WIRE_MINUTES = "%Y-%m-%dT%H:%MZ"
SPAN = timedelta(days=365)
WINDOW = timedelta(days=7)
BATCH = 10_000
SHARED_PREFIX = "bench-shared/set/"
ADMISSION_GOAL = 1000.0
P50_GOAL_MS = 20.0
RPS_GOAL = 500.0
BENCH_SETTINGS: dict[str, Any] = {
    # The per-key limit (default 100/s, burst 200) would otherwise answer Throttling.User
    # long before the service itself is the limit.
    "api_rate_per_second": 1_000_000.0,
    "api_burst": 1_000_000,
    "scheduler_enabled": False,
    "log_backup_enabled": False,
    "probe_interval_seconds": 3600.0,
    "janitor_interval_seconds": 86400.0,
    "log_format": "json",
}
CANDIDATE_INDEX = (
    "ix_bench_backup_sets_listing",
    "backup_sets (instance_id, account_id, deleting_at, start_time, id)",
)
"""What ``--try-index`` creates by hand: the listing's equality columns, then its order."""


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} / {fifteen:.2f}"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


# -- signed calls -------------------------------------------------------------------------------


class KeepAliveClient:
    """RdsClient's signing (V1, HMAC-SHA1) over one kept HTTP/1.1 connection per thread."""

    def __init__(self, port: int, key: Key, timeout: float = 60) -> None:
        self.port, self.key, self.timeout = port, key, timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def call(self, action: str, **params: str) -> dict[str, Any]:
        path = "/?" + signed_query(self.key, action, params)
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request("POST", path, body=b"", headers={"Content-Length": "0"})
                resp = conn.getresponse()
                body = resp.read()
                break
            except (http.client.HTTPException, ConnectionError) as e:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise ApiError(0, "Connection", repr(e)) from None
        if resp.status >= 400:
            try:
                err = json.loads(body)
            except ValueError:
                raise ApiError(resp.status, "HTTP", body.decode(errors="replace")[:300]) from None
            raise ApiError(resp.status, str(err.get("Code")), str(err.get("Message")))
        return dict(json.loads(body))


Caller = Callable[..., dict[str, Any]]


def make_client(kind: str, service: ServiceProcess, key: Key) -> Caller:
    if kind == "urllib":
        return RdsClient(service.url, key).call
    return KeepAliveClient(service.port, key).call


@dataclass
class Burst:
    """Calls made by ``threads`` threads: each call's latency and outcome."""

    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    results: list[dict[str, Any]] = field(default_factory=list)
    client_cpu: float = 0.0
    service_cpu: float = 0.0
    machine_cpu: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.results)

    @property
    def rate(self) -> float:
        return self.ok / self.wall if self.wall else math.nan

    def ms(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000


def burst(
    call: Caller,
    jobs: list[tuple[str, dict[str, str]]],
    threads: int,
    service_pid: int,
    deadline_s: float = 600,
) -> Burst:
    """Run ``jobs`` (action, params) from ``threads`` threads sharing one queue; stops
    at ``deadline_s`` whatever is left."""
    out = Burst()
    lock = threading.Lock()
    queue = list(reversed(jobs))
    start_gate = threading.Barrier(threads + 1)
    stop_at = 0.0

    def worker() -> None:
        start_gate.wait()
        while time.monotonic() < stop_at:
            with lock:
                if not queue:
                    return
                action, params = queue.pop()
            t0 = time.perf_counter()
            try:
                answer = call(action, **params)
            except ApiError as e:
                took = time.perf_counter() - t0
                with lock:
                    out.errors[f"{e.status} {e.code}"] += 1
                    out.latencies.append(took)
                continue
            took = time.perf_counter() - t0
            with lock:
                out.latencies.append(took)
                out.results.append(answer)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    cpu0, svc0, all0 = time.process_time(), tree_cpu(service_pid), machine_busy()
    stop_at = time.monotonic() + deadline_s
    t0 = time.perf_counter()
    start_gate.wait()
    for t in pool:
        t.join()
    out.wall = time.perf_counter() - t0
    out.client_cpu = time.process_time() - cpu0
    out.service_cpu = tree_cpu(service_pid) - svc0
    out.machine_cpu = machine_busy() - all0
    if queue:
        out.errors["not sent (deadline)"] += len(queue)
    return out


# -- profiles ---------------------------------------------------------------------------------


@contextmanager
def profiled(pyspy: str, pid: int, out: Path) -> Iterator[None]:
    """``py-spy record`` of the service meanwhile (collapsed stacks into ``out``); nothing
    when ``pyspy`` is empty."""
    if not pyspy:
        yield
        return
    # --gil: only the thread holding the GIL is sampled, so shares are of the CPU the
    # interpreter spends, not of threads waiting for it.
    command = [pyspy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
    command += ["--gil", "--nonblocking", "--output", str(out)]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def profile_summary(path: Path, top: int = 18) -> list[str]:
    """The frames most samples of busy threads passed through (inclusive share)."""
    if not path.exists():
        return []
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        frames = {
            re.sub(r" \((?:.*/)?(?:site-packages/)?([^)]*)\)", r" (\1)", f)
            for f in stack.split(";")
        }
        for f in frames:
            counts[f] += int(n)
    if not total:
        return []
    skip = ("<module>", "run (threading.py", "_bootstrap", "worker (concurrent")
    lines = [f"{total} samples of busy threads; inclusive share:"]
    for frame, hits in counts.most_common(top * 3):
        if any(k in frame for k in skip):
            continue
        lines.append(f"{100 * hits / total:5.1f}%  {frame[:150]}")
        if len(lines) > top:
            break
    return lines


# -- servers and catalogs ---------------------------------------------------------------------


def new_server(engine: str, base: Path, password: str) -> LocalServer:
    server = local_server(engine, base, free_port(), ADMIN, password)
    server.initialize()
    server.start()
    return server


@dataclass
class Backends:
    """The throw-away servers of a run: MariaDB always, PostgreSQL when asked for."""

    root: Path
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    mariadb: LocalServer | None = None
    postgres: LocalServer | None = None
    redis: subprocess.Popen[bytes] | None = None
    redis_port: int = 0
    _dbs: int = 0

    def start(self, with_postgres: bool, with_redis: bool) -> None:
        say("starting the MariaDB server (the instances' server)")
        self.mariadb = new_server("MariaDB", self.root / "m", self.password)
        if with_postgres:
            say("starting the PostgreSQL server (the catalog's server)")
            self.postgres = new_server("PostgreSQL", self.root / "p", self.password)
        if with_redis:
            say("starting redis-server (the Celery broker)")
            self.redis_port = free_port()
            (self.root / "r").mkdir(parents=True, exist_ok=True)
            self.redis = subprocess.Popen(
                ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.root / "r")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 20
            while not _redis_answers(self.redis_port):
                if self.redis.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.1)

    @property
    def broker_url(self) -> str:
        if self.redis is None:
            raise RuntimeError("no redis-server")
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait()
        for server in (self.postgres, self.mariadb):
            if server is not None:
                try:
                    server.stop()
                except Exception as e:  # keep cleaning up
                    say(f"stopping {server.engine} failed: {e!r}")

    def catalog_url(self, kind: str, state: Path) -> str | None:
        """None: the service's default (SQLite under its state folder)."""
        if kind == "sqlite":
            return None
        if self.postgres is None:
            raise RuntimeError("no PostgreSQL server")
        self._dbs += 1
        name = f"scale{self._dbs}"
        with psycopg.connect(
            host="127.0.0.1",
            port=self.postgres.port,
            user=ADMIN,
            password=self.password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # name is ours: scale<n>
        return f"postgresql+psycopg://{ADMIN}:{self.password}@127.0.0.1:{self.postgres.port}/{name}"


def _redis_answers(port: int) -> bool:
    said = subprocess.run(
        ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
    )
    return said.stdout.strip() == "PONG"


@contextmanager
def celery_worker(service: ServiceProcess, concurrency: int) -> Iterator[None]:
    """``rdsbackup worker`` on the default queue (the bench's instances name no host
    queue), started only after the burst: the API process admits, the worker runs."""
    log = open(service.root / "worker.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [rdsbackup_binary(), "worker", "--queue", DEFAULT_QUEUE,
         "--concurrency", str(concurrency)],
        env=service.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    log.close()
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Rig:
    """A configured (not yet started) service and the catalog the bench fills."""

    service: ServiceProcess
    catalog: Catalog
    box: SecretBox
    key: Key
    account_id: int
    kind: str

    def start(self) -> None:
        self.catalog.dispose()  # the service takes over; the bench reconnects on demand
        t0 = time.monotonic()
        self.service.start(timeout=900)
        say(f"service up in {time.monotonic() - t0:.1f} s (pid {self.service.pid})")


def new_rig(root: Path, kind: str, backends: Backends, extra: dict[str, Any]) -> Rig:
    root.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {**BENCH_SETTINGS, "secret_key": Fernet.generate_key().decode()}
    url = backends.catalog_url(kind, root)
    if url is not None:
        settings["catalog_url"] = url
    settings.update(extra)
    service = ServiceProcess(root, free_port(), settings)
    catalog_url = url or f"sqlite:///{(root / 'state' / 'catalog.db').resolve()}"
    catalog = Catalog(catalog_url)
    catalog.upgrade()  # in-process; the service then finds the schema at head
    box = SecretBox(settings["secret_key"].encode())
    admin = AccountAdmin(catalog, box)
    account_id = admin.ensure_account(ACCOUNT)
    key = Key(*admin.create_key(ACCOUNT, description="bench/scale.py"))
    return Rig(service, catalog, box, key, account_id, kind)


def add_instances(rig: Rig, server: LocalServer, count: int) -> list[str]:
    """``count`` Running MariaDB instance rows, all on ``server`` (one transaction)."""
    sealed = rig.box.seal(server.admin_password)
    now = datetime.now(UTC).replace(tzinfo=None)
    ids = [new_instance_id("MariaDB") for _ in range(count)]
    rows = [
        {
            "id": i,
            "account_id": rig.account_id,
            "engine": "MariaDB",
            "engine_version": "",
            "host": "127.0.0.1",
            "port": server.port,
            "admin_user": server.admin_user,
            "password_ciphertext": sealed,
            "data_dir": None,
            "os_user": None,
            "local": False,
            "status": "Running",
            "description": f"bench scale {n}",
            "created_at": now,
        }
        for n, i in enumerate(ids)
    ]
    with rig.catalog.write() as s:
        s.execute(insert(cast(Table, Instance.__table__)), rows)
    return ids


# -- 1. admissions ------------------------------------------------------------------------------


@dataclass
class AdmissionResult:
    kind: str
    instances: int
    threads: int
    client: str
    burst: Burst
    load_before: str
    load_after: str
    quiet_wait: float
    job_states: dict[str, int]
    jobs_ran: int
    sets_by_status: dict[str, int]
    failed_reasons: list[tuple[str, int]]
    jobs_seconds: float
    unfinished: int
    workers: int
    dispatch: str
    api_processes: int
    service_errors: list[str]
    profile: list[str] = field(default_factory=list)


def job_counts(catalog: Catalog) -> tuple[dict[str, int], int, dict[str, int]]:
    with catalog.read() as s:
        states = {
            str(k): int(v)
            for k, v in s.execute(
                select(BackupJob.status, func.count()).group_by(BackupJob.status)
            ).all()
        }
        ran = int(s.scalar(select(func.count()).where(BackupJob.started_at.is_not(None))) or 0)
        sets = {
            str(k): int(v)
            for k, v in s.execute(
                select(BackupSet.status, func.count()).group_by(BackupSet.status)
            ).all()
        }
    return states, ran, sets


def service_problems(service: ServiceProcess) -> list[str]:
    """Log lines at WARNING or above (JSON lines), and tracebacks."""
    found: list[str] = []
    if not service.log_path.exists():
        return found
    for line in service.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                found.append(line[:300])
            continue
        if isinstance(record, dict) and str(record.get("level", "")).upper() in (
            "WARNING",
            "ERROR",
            "CRITICAL",
        ):
            found.append(
                f"{record.get('level')}: {str(record.get('message', record))[:300]}"
                + (" (traceback)" if record.get("exc_info") or record.get("exception") else "")
            )
    return found


def admissions(
    kind: str, root: Path, backends: Backends, args: argparse.Namespace
) -> AdmissionResult:
    assert backends.mariadb is not None
    extra: dict[str, Any] = {}
    if args.workers:
        extra["max_parallel_jobs"] = args.workers
    if args.dispatch == "celery":
        extra.update(dispatcher="celery", broker_url=backends.broker_url)
    if args.api_processes > 1:
        extra["api_processes"] = args.api_processes
    rig = new_rig(root, kind, backends, extra)
    ids = add_instances(rig, backends.mariadb, args.instances)
    say(f"{kind}: {len(ids)} instances written; starting the service (probes each once)")
    rig.start()
    try:
        call = make_client(args.client, rig.service, rig.key)
        call("DescribeDBInstances", RegionId="cn-hangzhou", PageSize="30")  # warm up
        waited, _ = wait_for_quiet(args.quiet_cores, args.quiet_timeout)
        before = load()
        jobs = [(("CreateBackup"), {"DBInstanceId": i, "BackupMethod": "Logical"}) for i in ids]
        say(f"{kind}: {len(jobs)} CreateBackup from {args.admission_threads} threads ({before})")
        profile = args.profile_dir / f"admissions-{kind}.txt"
        with profiled(args.py_spy, rig.service.pid, profile):
            b = burst(call, jobs, args.admission_threads, rig.service.pid)
        after = load()
        say(
            f"{kind}: {b.ok} admitted in {b.wall:.2f} s = {b.rate:.0f}/s,"
            f" p50 {b.ms(50):.1f} ms p99 {b.ms(99):.1f} ms; errors {dict(b.errors)}"
        )
        workers = int(args.workers or 2)
        t0 = time.monotonic()
        with (
            celery_worker(rig.service, workers)
            if args.dispatch == "celery"
            else contextlib.nullcontext()
        ):
            deadline = t0 + args.job_timeout
            while time.monotonic() < deadline:
                states, ran, sets = job_counts(rig.catalog)
                unfinished = sum(v for k, v in states.items() if k not in ("Finished", "Failed"))
                if unfinished == 0:
                    break
                time.sleep(2)
        jobs_seconds = time.monotonic() - t0
        states, ran, sets = job_counts(rig.catalog)
        unfinished = sum(v for k, v in states.items() if k not in ("Finished", "Failed"))
        with rig.catalog.read() as s:
            reasons = [
                (str(r)[:200], int(n))
                for r, n in s.execute(
                    select(BackupJob.failed_reason, func.count())
                    .where(BackupJob.status == "Failed")
                    .group_by(BackupJob.failed_reason)
                    .order_by(func.count().desc())
                    .limit(5)
                ).all()
            ]
        say(f"{kind}: jobs {states}, ran {ran}, sets {sets} after {jobs_seconds:.0f} s more")
        return AdmissionResult(
            kind,
            len(ids),
            args.admission_threads,
            args.client,
            b,
            before,
            after,
            waited,
            states,
            ran,
            sets,
            reasons,
            jobs_seconds,
            unfinished,
            workers,
            args.dispatch,
            args.api_processes,
            service_problems(rig.service),
            profile_summary(profile),
        )
    finally:
        rig.service.stop()
        rig.catalog.dispose()


# -- 2. DescribeBackups -------------------------------------------------------------------------


def shared_manifest(storage_dir: Path) -> str:
    """One stored manifest every bulk set points at; returns its sha256 (the sets'
    checksum), so the service's per-database link lookup reads a real, matching file."""
    manifest = Manifest(
        instance_id="bench",
        engine="MariaDB",
        engine_version="10.11",
        method="Physical",
        kind="FullBackup",
        strategy="instance",
        databases=[],
        objects=[StoredObject("data.zst", 4, 4, hashlib.sha256(b"data").hexdigest())],
        started_at="2025-01-01T02:00:00Z",
        finished_at="2025-01-01T02:05:00Z",
    )
    data = manifest.to_json()
    storage = LocalStorage(storage_dir)
    storage.write_bytes(SHARED_PREFIX + MANIFEST_NAME, data)
    storage.write_bytes(SHARED_PREFIX + "data.zst", b"data")
    return hashlib.sha256(data).hexdigest()


def bulk_sets(rig: Rig, instance_ids: list[str], per_instance: int, checksum: str) -> float:
    """``per_instance`` sets for each instance (ids 1..N), one object row each, spread
    evenly over the last :data:`SPAN`; returns the seconds it took."""
    t0 = time.monotonic()
    end = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    step = SPAN / per_instance
    start = end - SPAN
    next_id = 1
    rng = random.Random(13)
    sets_table = cast(Table, BackupSet.__table__)
    objects_table = cast(Table, BackupObject.__table__)
    sets: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []

    def flush() -> None:
        if not sets:
            return
        with rig.catalog.write() as s:
            s.execute(insert(sets_table), sets)
            s.execute(insert(objects_table), objects)
        sets.clear()
        objects.clear()

    total = len(instance_ids) * per_instance
    for instance_id in instance_ids:
        for n in range(per_instance):
            when = start + step * n
            failed = rng.random() < 0.01
            sets.append(
                {
                    "id": next_id,
                    "instance_id": instance_id,
                    "account_id": rig.account_id,
                    "job_id": None,
                    "status": "Failed" if failed else "Success",
                    "method": "Physical",
                    "kind": "FullBackup",
                    "mode": "Automated",
                    "initiator": "System",
                    "strategy": "instance",
                    "db_names": "",
                    "start_time": when,
                    "end_time": when + timedelta(minutes=5),
                    "size": 4,
                    "raw_size": 4,
                    "storage_prefix": SHARED_PREFIX,
                    "checksum": checksum,
                    "consistent_time": when + timedelta(minutes=5),
                    "consistent_position": "{}",
                    "engine": "MariaDB",
                    "engine_version": "10.11",
                    "host_instance_id": "",
                    "store_status": "Enabled",
                    "is_avail": not failed,
                    "meta_status": "OK",
                    "encryption": "{}",
                    "encryption_key_id": "",
                    "wrapped_data_key": "",
                    "retention_days": None,
                    "expire_time": None,
                    "parent_id": None,
                    "failed_reason": "bench: a failed set" if failed else "",
                    "fingerprints": "",
                    "fingerprint_source": "",
                    "verify_status": "",
                    "verify_reason": "",
                    "verified_at": None,
                    "restore_seconds": None,
                    "pinned": False,
                    "deleting_at": None,
                }
            )
            objects.append(
                {
                    "backup_id": next_id,
                    "name": "data.zst",
                    "size": 4,
                    "raw_size": 4,
                    "sha256": hashlib.sha256(b"data").hexdigest(),
                    "compression": "zstd",
                }
            )
            next_id += 1
            if len(sets) >= BATCH:
                flush()
                if (next_id - 1) % 100_000 == 0:
                    say(f"  {next_id - 1}/{total} sets ({time.monotonic() - t0:.0f} s)")
    flush()
    with rig.catalog.write() as s:
        if rig.catalog.is_sqlite:
            s.execute(text("ANALYZE"))
        else:
            s.execute(
                text("SELECT setval(pg_get_serial_sequence('backup_sets', 'id'), :n)"), {"n": total}
            )
    if not rig.catalog.is_sqlite:
        with rig.catalog.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE backup_sets"))
            c.execute(text("VACUUM ANALYZE backup_objects"))
    return time.monotonic() - t0


@dataclass
class Variant:
    name: str
    seq: Burst
    par: Burst
    profile: list[str] = field(default_factory=list)


@dataclass
class DescribeResult:
    kind: str
    shape: str
    instances: int
    sets: int
    insert_seconds: float
    variants: list[Variant]
    plans: dict[str, list[tuple[str, list[str]]]]
    load_before: str
    load_after: str
    quiet_wait: float
    by_hand: list[Variant] = field(default_factory=list)
    by_hand_plans: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    index_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def describe_params(instance_ids: list[str], windowed: bool, rng: random.Random) -> dict[str, str]:
    params = {"DBInstanceId": rng.choice(instance_ids), "PageSize": "30"}
    if windowed:
        end = datetime.now(UTC)
        begin = end - SPAN + rng.random() * (SPAN - WINDOW)
        params["StartTime"] = begin.strftime(WIRE_MINUTES)
        params["EndTime"] = (begin + WINDOW).strftime(WIRE_MINUTES)
    return params


def measure_variants(
    rig: Rig, instance_ids: list[str], args: argparse.Namespace, seed: int, label: str
) -> list[Variant]:
    call = make_client(args.client, rig.service, rig.key)
    rng = random.Random(seed)
    out: list[Variant] = []
    for name, windowed in (("PageSize=30, no filter", False), ("PageSize=30, 7-day window", True)):
        warm = [("DescribeBackups", describe_params(instance_ids, windowed, rng)) for _ in range(5)]
        burst(call, warm, 1, rig.service.pid)
        seq_jobs = [
            ("DescribeBackups", describe_params(instance_ids, windowed, rng))
            for _ in range(args.seq_requests)
        ]
        seq = burst(call, seq_jobs, 1, rig.service.pid, deadline_s=args.max_seconds)
        par_jobs = [
            ("DescribeBackups", describe_params(instance_ids, windowed, rng))
            for _ in range(args.par_requests * args.threads)
        ]
        profile = args.profile_dir / f"{label}-{'window' if windowed else 'plain'}.txt"
        with profiled(args.py_spy, rig.service.pid, profile):
            par = burst(call, par_jobs, args.threads, rig.service.pid, deadline_s=args.max_seconds)
        say(
            f"  {name}: sequential p50 {seq.ms(50):.1f} ms p99 {seq.ms(99):.1f} ms"
            f" ({seq.rate:.0f} req/s); {args.threads} threads {par.rate:.0f} req/s"
            f" p50 {par.ms(50):.1f} ms; errors {dict(seq.errors + par.errors)}"
        )
        out.append(Variant(name, seq, par, profile_summary(profile)))
    return out


@contextmanager
def captured(catalog: Catalog) -> Iterator[list[tuple[str, Any]]]:
    """Statements (and parameters) the catalog's engine runs meanwhile."""
    found: list[tuple[str, Any]] = []

    def listen(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        found.append((statement, params))

    event.listen(catalog.engine, "before_cursor_execute", listen)
    try:
        yield found
    finally:
        event.remove(catalog.engine, "before_cursor_execute", listen)


def explain(rig: Rig, instance_id: str) -> dict[str, list[tuple[str, list[str]]]]:
    """The service's own DescribeBackups queries (its BackupService on this catalog),
    each explained as the database runs it."""
    rig_service = memory_rig(rig.catalog)
    who = Principal(rig.account_id, ACCOUNT, rig.key.access_key_id)
    end = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    begin = end - SPAN / 2
    plans: dict[str, list[tuple[str, list[str]]]] = {}
    for name, filters in (
        ("no filter", BackupFilter()),
        ("7-day window", BackupFilter(start=begin, end=begin + WINDOW)),
    ):
        with captured(rig.catalog) as statements:
            rig_service.service.describe_backups(who, instance_id, filters, 1, 30)
        explained: list[tuple[str, list[str]]] = []
        for statement, params in statements:
            if "backup_sets" not in statement or not statement.lstrip().upper().startswith(
                "SELECT"
            ):
                continue
            prefix = (
                "EXPLAIN QUERY PLAN " if rig.catalog.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
            )
            with rig.catalog.engine.connect() as conn:
                rows = conn.exec_driver_sql(prefix + statement, params).all()
            if rig.catalog.is_sqlite:
                lines = [" ".join(str(c) for c in row[1:]) for row in rows]
                t0 = time.perf_counter()
                with rig.catalog.engine.connect() as conn:
                    conn.exec_driver_sql(statement, params).all()
                lines.append(f"(ran in {(time.perf_counter() - t0) * 1000:.1f} ms)")
            else:
                lines = [str(row[0]) for row in rows]
            explained.append((" ".join(statement.split()), lines))
        plans[name] = explained
    rig_service.close()
    return plans


def describe(
    kind: str, shape: str, root: Path, backends: Backends, args: argparse.Namespace
) -> DescribeResult:
    assert backends.mariadb is not None
    rig = new_rig(root, kind, backends, {})
    instances = args.instances if shape == "spread" else 1
    per_instance = max(1, args.sets // instances)
    ids = add_instances(rig, backends.mariadb, instances)
    checksum = shared_manifest(rig.service.storage_dir)
    say(f"{kind}/{shape}: inserting {instances * per_instance} sets ({per_instance} per instance)")
    took = bulk_sets(rig, ids, per_instance, checksum)
    say(f"{kind}/{shape}: inserted in {took:.0f} s")
    rig.start()
    try:
        waited, _ = wait_for_quiet(args.quiet_cores, args.quiet_timeout)
        before = load()
        variants = measure_variants(rig, ids, args, 1, f"describe-{kind}-{shape}")
        after = load()
        plans = explain(rig, ids[0])
        result = DescribeResult(
            kind,
            shape,
            instances,
            instances * per_instance,
            took,
            variants,
            plans,
            before,
            after,
            waited,
        )
        if args.try_index:
            name, target = CANDIDATE_INDEX
            t0 = time.monotonic()
            with rig.catalog.write() as s:
                s.execute(text(f"CREATE INDEX {name} ON {target}"))
                if rig.catalog.is_sqlite:
                    s.execute(text("ANALYZE"))
            if not rig.catalog.is_sqlite:
                with rig.catalog.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT"
                ) as c:
                    c.execute(text("VACUUM ANALYZE backup_sets"))
            result.index_seconds = time.monotonic() - t0
            rig.catalog.dispose()
            say(f"{kind}/{shape}: index added by hand in {result.index_seconds:.0f} s; again")
            # the service's pooled connections see the new index (SQLite re-prepares on a
            # schema change; PostgreSQL plans each statement)
            result.by_hand = measure_variants(rig, ids, args, 2, f"describe-{kind}-{shape}-index")
            result.by_hand_plans = explain(rig, ids[0])
        result.errors = service_problems(rig.service)
        return result
    finally:
        rig.service.stop()
        rig.catalog.dispose()


# -- report ----------------------------------------------------------------------------------


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


def uptime() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _variant_rows(kind: str, shape: str, label: str, variants: list[Variant]) -> list[str]:
    rows = []
    for v in variants:
        errs = v.seq.errors + v.par.errors
        capped = errs.pop("not sent (deadline)", 0)
        goal = v.seq.ms(50) <= P50_GOAL_MS and v.par.rate >= RPS_GOAL
        rows.append(
            f"| {kind} | {shape}{label} | {v.name} | {v.seq.ok} | {v.seq.ms(50):.1f}"
            f" | {v.seq.ms(99):.1f} | {v.seq.rate:.0f} | {v.par.ok} | {v.par.rate:.0f}"
            f" | {v.par.ms(50):.1f} | {v.par.ms(99):.1f}"
            f" | {v.par.service_cpu / v.par.wall if v.par.wall else 0:.2f}"
            f" / {v.par.client_cpu / v.par.wall if v.par.wall else 0:.2f}"
            f" | {sum(errs.values()) or 0} | {capped} | {_met(goal)} |"
        )
    return rows


def _plans(plans: dict[str, list[tuple[str, list[str]]]]) -> list[str]:
    lines: list[str] = []
    for name, explained in plans.items():
        for statement, plan in explained:
            lines += [f"*{name}*: `{statement}`", "", *(f"    {p}" for p in plan), ""]
    return lines


def report(
    adms: list[AdmissionResult],
    descs: list[DescribeResult],
    errors: list[str],
    argv: str,
    loads: list[str],
) -> str:
    lines = [
        f"# Scale bench ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`{argv}`; HEAD {git_head()}; {os.cpu_count()} CPUs",
        "",
        "Machine load (`uptime`): " + "; ".join(loads),
        "",
        "Service settings for every run: `api_rate_per_second = 1000000`, `api_burst ="
        " 1000000` (raised from 100 / 200 so the per-key limit never throttles the bench),"
        " `scheduler_enabled = false`, `log_backup_enabled = false`,"
        " `probe_interval_seconds = 3600`, `janitor_interval_seconds = 86400`.",
        "",
    ]
    if adms:
        lines += [
            f"## 1. CreateBackup admissions (goal >= {ADMISSION_GOAL:.0f}/s)",
            "",
            "| catalog | API processes | jobs run by | instances | client threads | client"
            " | admitted | refused | wall s | admissions/s | p50 ms | p99 ms"
            " | service / client / machine cores | load before -> after | goal |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for a in adms:
            b = a.burst
            ran_by = "the service, meanwhile" if a.dispatch == "threads" else "a worker, after"
            lines.append(
                f"| {a.kind} | {a.api_processes} | {ran_by} | {a.instances} | {a.threads}"
                f" | {a.client} | {b.ok}"
                f" | {sum(b.errors.values())} | {b.wall:.2f} | {b.rate:.0f} | {b.ms(50):.1f}"
                f" | {b.ms(99):.1f} | {b.service_cpu / b.wall:.2f} / {b.client_cpu / b.wall:.2f}"
                f" / {b.machine_cpu / b.wall:.2f}"
                f" | {a.load_before} -> {a.load_after} | {_met(b.rate >= ADMISSION_GOAL)} |"
            )
        lines += [
            "",
            "| catalog | admitted | jobs by status at the end | jobs the workers ran"
            " | sets by status | workers (max_parallel_jobs) | seconds after the burst"
            " until none unfinished | still unfinished |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for a in adms:
            lines.append(
                f"| {a.kind} | {a.burst.ok} | {json.dumps(a.job_states)} | {a.jobs_ran}"
                f" | {json.dumps(a.sets_by_status)} | {a.workers} | {a.jobs_seconds:.0f}"
                f" | {a.unfinished} |"
            )
        lines.append("")
        for a in adms:
            if a.burst.errors:
                lines.append(f"{a.kind}: refusals {dict(a.burst.errors)}.")
            if a.failed_reasons:
                lines.append(f"{a.kind}: failed jobs' reasons: {a.failed_reasons}.")
            if a.profile:
                lines += [f"{a.kind}: service profile during the burst (py-spy):", ""]
                lines += [f"    {p}" for p in a.profile]
                lines.append("")
            if a.service_errors:
                lines += [f"{a.kind}: service log warnings/errors ({len(a.service_errors)}):", ""]
                lines += [f"    {e}" for e in a.service_errors[:15]]
            lines.append("")
    if descs:
        lines += [
            f"## 2. DescribeBackups (goals: sequential p50 <= {P50_GOAL_MS:.0f} ms,"
            f" >= {RPS_GOAL:.0f} req/s from the threads)",
            "",
            "| catalog | shape | call | seq n | seq p50 ms | seq p99 ms | seq req/s | threads n"
            " | threads req/s | threads p50 ms | threads p99 ms | service / client cores"
            " | errors | not sent (--max-seconds cap) | goal |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for d in descs:
            shape = f"{d.shape} ({d.instances} x {d.sets // d.instances})"
            lines += _variant_rows(d.kind, shape, "", d.variants)
            if d.by_hand:
                lines += _variant_rows(
                    d.kind, shape, " **with the index added by hand**", d.by_hand
                )
        lines += [""]
        for d in descs:
            lines += [
                f"### {d.kind}, {d.shape}: {d.sets} sets on {d.instances} instance(s)",
                "",
                f"Bulk insert {d.insert_seconds:.0f} s; load {d.load_before} -> {d.load_after};"
                f" waited {d.quiet_wait:.0f} s for a quiet machine.",
                "",
                "The SQL the service issues (its BackupService on this catalog), explained:",
                "",
                *_plans(d.plans),
            ]
            if d.by_hand:
                name, target = CANDIDATE_INDEX
                lines += [
                    f"With the index added by hand (`CREATE INDEX {name} ON {target}`,"
                    f" built in {d.index_seconds:.0f} s):",
                    "",
                    *_plans(d.by_hand_plans),
                ]
            for label, group in (("", d.variants), (" (index added by hand)", d.by_hand)):
                for v in group:
                    if v.profile:
                        lines += [f"Service profile, {v.name}{label}, threads (py-spy):", ""]
                        lines += [f"    {p}" for p in v.profile]
                        lines.append("")
            if d.errors:
                lines += [f"Service log warnings/errors ({len(d.errors)}):", ""]
                lines += [f"    {e}" for e in d.errors[:15]]
                lines.append("")
    if errors:
        lines += ["## Failures", "", *(f"- {e}" for e in errors), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalogs", default="sqlite,postgresql")
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--sets", type=int, default=1_000_000)
    parser.add_argument("--shapes", default="spread,single")
    parser.add_argument("--admission-threads", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8, help="DescribeBackups client threads")
    parser.add_argument("--seq-requests", type=int, default=300)
    parser.add_argument("--par-requests", type=int, default=150, help="per thread")
    parser.add_argument("--max-seconds", type=float, default=120, help="cap per measured burst")
    parser.add_argument("--client", choices=("keepalive", "urllib"), default="keepalive")
    parser.add_argument(
        "--api-processes", type=int, default=1, help="api_processes (needs --dispatch celery)"
    )
    parser.add_argument(
        "--dispatch",
        choices=("threads", "celery"),
        default="threads",
        help="threads: the service runs the jobs during the burst; celery: it only admits "
        "(Redis broker), and one rdsbackup worker runs them after the burst",
    )
    parser.add_argument("--workers", type=int, default=0, help="max_parallel_jobs (0: default)")
    parser.add_argument("--job-timeout", type=float, default=1800)
    parser.add_argument("--try-index", action="store_true", help="re-measure with an index")
    parser.add_argument("--quiet-cores", type=float, default=0.5)
    parser.add_argument("--quiet-timeout", type=float, default=60)
    parser.add_argument("--skip-admissions", action="store_true")
    parser.add_argument("--skip-describe", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    parser.add_argument(
        "--py-spy", default="", help="py-spy binary: profile the service during the bursts"
    )
    args = parser.parse_args()
    kinds = [k.strip() for k in args.catalogs.split(",") if k.strip()]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    DATA.mkdir(parents=True, exist_ok=True)
    for folder in (DATA.parent, DATA):
        folder.chmod(0o711)
    run_dir = DATA / f"r{stamp[-6:]}"  # short: socket paths must fit 107 bytes
    args.profile_dir = DATA / f"profiles-{stamp}"
    if args.py_spy:
        args.profile_dir.mkdir()
    run_dir.mkdir()
    run_dir.chmod(0o711)
    backends = Backends(run_dir / "srv")
    adms: list[AdmissionResult] = []
    descs: list[DescribeResult] = []
    errors: list[str] = []
    loads = [f"start: {uptime()}"]
    try:
        backends.start("postgresql" in kinds, args.dispatch == "celery")
        for kind in kinds:
            if not args.skip_admissions:
                root = run_dir / f"a{kind[0]}"
                try:
                    adms.append(admissions(kind, root, backends, args))
                except (RuntimeError, ApiError, OSError) as e:
                    errors.append(f"admissions {kind}: {e}")
                    say(f"admissions {kind} failed: {e}")
                loads.append(f"after admissions {kind}: {uptime()}")
            if not args.skip_describe:
                for shape in shapes:
                    root = run_dir / f"d{kind[0]}-{shape}"
                    try:
                        descs.append(describe(kind, shape, root, backends, args))
                    except (RuntimeError, ApiError, OSError) as e:
                        errors.append(f"DescribeBackups {kind}/{shape}: {e}")
                        say(f"DescribeBackups {kind}/{shape} failed: {e}")
                    loads.append(f"after DescribeBackups {kind}/{shape}: {uptime()}")
    finally:
        backends.stop()
        text_ = report(adms, descs, errors, "bench/scale.py " + " ".join(sys.argv[1:]), loads)
        logs = {log.parent.name: log for log in run_dir.glob("*/service.log")}
        save_run(DATA, stamp, text_, logs, run_dir, args.keep, say)


if __name__ == "__main__":
    main()
