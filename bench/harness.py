"""The bench's moving parts: options, the context every variant runs in (servers,
service, client, scratch folder), and :class:`BenchPath`, one compared operation with
its raw-tool variants and its API variant.

Adding a path is adding a :class:`BenchPath` whose ``api`` and ``raws`` are callables
``(Bench) -> Run``; :func:`run_path` times them in turns. A variant that leaves
something to undo (a restored server) registers it with :meth:`Bench.after_run`: it
runs once the run's figures are taken, outside its time and its ``others`` window.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import ADMIN_USER, DATA_ROOT, BenchServer, admin_password, remove
from measure import (
    ProcessSampler,
    Run,
    Stage,
    Unavailable,
    all_processes_cpu,
    fsync_file,
    machine_busy,
    median,
    process_cpu,
    run_pipeline,
    self_cpu,
    top_consumers,
    tree_size,
    wait_for_quiet,
)
from rdsapi import ApiError, RdsClient, ServiceProcess

from rdsbackup.instances.servers import LocalServer, free_port, local_server

PY_SPY = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy"
PROFILE_FLAGS = {"wall": ("--idle",), "cpu": (), "gil": ("--gil",)}


@dataclass(frozen=True)
class Options:
    engines: tuple[str, ...]
    only: tuple[str, ...]
    size_gib: float
    reps: int
    level: int
    threads: int
    parallel: int
    heartbeat: float | None
    poll: float
    warmup_runs: int
    profile: str
    """"" (off), "wall" (every thread, blocked or not), "cpu" (running threads only) or
    "gil" (only the thread holding the GIL)."""
    keep_servers: bool
    quiet_threshold: float
    quiet_timeout: float
    max_others: float
    retries: int
    mariadb_tables: int
    mariadb_table_size: int | None
    pgbench_scale: int | None


@dataclass(frozen=True)
class StoredSetRef:
    """A backup set the service stored during this run, for the restore paths: its
    BackupId, and the folder holding its objects (``state/backups/<instance>/<job>/``),
    which the raw restores read directly."""

    engine: str
    method: str
    backup_id: str
    folder: Path
    size: int

    def manifest(self) -> dict[str, Any]:
        return dict(json.loads((self.folder / "manifest.json").read_text()))

    def objects(self) -> list[str]:
        return sorted(str(o["name"]) for o in self.manifest()["objects"])

    def path(self, name: str) -> Path:
        """The stored file of object ``name`` (given with or without ``.zst``)."""
        for stored in self.objects():
            if name in (stored, stored.removesuffix(".zst")):
                return self.folder / stored
        raise KeyError(f"set {self.backup_id} has no object {name}")


@dataclass
class Bench:
    """What a variant needs: the servers, the service and its client, options, a scratch
    folder, and ``state`` that paths share (e.g. the LSN of the last raw full backup)."""

    options: Options
    servers: dict[str, BenchServer]
    service: ServiceProcess
    client: RdsClient
    instances: dict[str, str]
    scratch: Path = DATA_ROOT / "out"
    state: dict[str, Any] = field(default_factory=dict)
    last_set: dict[str, str] = field(default_factory=dict)
    sets: dict[tuple[str, str], StoredSetRef] = field(default_factory=dict)
    """The last full set of each (engine, method) the API runs stored."""
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    profile_dir: Path = DATA_ROOT / "profiles"
    current: str = ""
    """Slug of the run in progress (names its logs and profiles)."""

    # -- raw side --------------------------------------------------------------------------

    @property
    def zstd(self) -> list[str]:
        return ["zstd", "-q", "-c", f"-{self.options.level}", f"-T{self.options.threads}"]

    def log_file(self) -> Path:
        folder = DATA_ROOT / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{self.current}.log"

    def fresh_dir(self, name: str) -> Path:
        path = self.scratch / name
        remove(path)
        path.mkdir(parents=True)
        return path

    def pipeline(self, engine: str, stages: list[Stage], output_name: str) -> Run:
        """Time ``stages`` writing to a file (fsync included, as the service does); the
        file is measured and removed."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        output = self.scratch / output_name
        server_pid = self.servers[engine].pid()
        server_cpu = process_cpu(server_pid)
        result = run_pipeline(stages, output, self.log_file())
        synced = fsync_file(output)
        size = tree_size(output)
        remove(output)
        return Run(
            seconds=result.seconds + synced,
            size=size,
            cpu_seconds=result.cpu_seconds,
            server_cpu_seconds=process_cpu(server_pid) - server_cpu,
            extra={"fsync_seconds": round(synced, 3)},
        )

    def after_run(self, cleanup: Callable[[], None]) -> None:
        """Undo something once the current run's figures are taken (see the module doc)."""
        self.cleanups.append(cleanup)

    def run_cleanups(self) -> None:
        while self.cleanups:
            self.cleanups.pop()()

    def restore_server(self, engine: str, name: str) -> LocalServer:
        """A new, empty local server (not initialised) in the scratch folder, with the
        bench servers' admin account (which physical sets also carry)."""
        server = local_server(
            engine, self.fresh_dir(name), free_port(), ADMIN_USER, admin_password()
        )
        self.after_run(lambda: self._drop_server(server))
        return server

    @staticmethod
    def _drop_server(server: LocalServer) -> None:
        try:
            server.stop()
        finally:
            remove(server.base_dir)

    # -- API side --------------------------------------------------------------------------

    def stored_set(self, engine: str, method: str) -> StoredSetRef:
        """The last full ``method`` set of ``engine`` made in this run; one more (untimed)
        when the backup path did not run."""
        if (engine, method) not in self.sets:
            self.api_backup(engine, method)
        return self.sets[(engine, method)]

    def api_clone(self, engine: str, method: str) -> Run:
        """CloneDBInstance of the last ``method`` set, then DescribeDBInstanceAttribute
        every ``poll`` seconds until the new instance is Running; timed from the call to
        the poll that saw Running. The clone is stopped and removed after the run."""
        stored = self.stored_set(engine, method)
        pid = self.service.pid
        cpu0 = process_cpu(pid)
        statuses: list[str] = []
        seen_at: list[float] = []
        with ProcessSampler(pid) as sampler, self._profiler(pid):
            t0 = time.monotonic()
            try:
                created = self.client.call(
                    "CloneDBInstance",
                    DBInstanceId=self.instances[engine],
                    BackupId=stored.backup_id,
                    PayType="Postpaid",
                )
            except ApiError as e:
                raise Unavailable(f"CloneDBInstance answered {e.code}: {e.message}") from None
            clone = str(created["DBInstanceId"])
            self.after_run(lambda: self._drop_clone(engine, clone))
            while True:
                attr = self.client.call("DescribeDBInstanceAttribute", DBInstanceId=clone)
                item = attr["Items"]["DBInstanceAttribute"][0]
                status = str(item["DBInstanceStatus"])
                if not statuses or statuses[-1] != status:
                    statuses.append(status)
                    seen_at.append(round(time.monotonic() - t0, 2))
                if status == "Running":
                    seconds = time.monotonic() - t0
                    break
                if status == "Failed":
                    raise Unavailable(f"the clone Failed: {item.get('StatusReason', '?')}")
                time.sleep(self.options.poll)
        server = local_server(
            engine, self.service.instances_dir / clone, int(item["Port"]), ADMIN_USER, "-"
        )
        tasks = self.client.call("DescribeRestoreTasks", DBInstanceId=clone)
        task = tasks["Items"]["RestoreTask"][0]
        return Run(
            seconds=seconds,
            size=tree_size(server.data_dir),
            cpu_seconds=process_cpu(pid) - cpu0,
            server_cpu_seconds=process_cpu(server.pid()),
            extra={
                "rss_start_mb": round(sampler.rss_start / 2**20, 1),
                "rss_max_mb": round(sampler.rss_max / 2**20, 1),
                "statuses": statuses,
                "status_seen_at": seen_at,
                "service_threads_cpu": {k: round(v, 2) for k, v in sampler.cpu_by_thread().items()},
                "backup_id": stored.backup_id,
                "set_bytes": stored.size,
                "clone": clone,
                "task": {k: task.get(k) for k in ("TaskId", "StartTime", "EndTime", "Status")},
            },
        )

    def _drop_clone(self, engine: str, clone: str) -> None:
        """Stop the clone (``rdsbackup instance stop``: its status becomes Stopped, so the
        health monitor leaves it down) and remove its folder. The service has no
        DeleteDBInstance yet, so the record stays."""
        base = self.service.instances_dir / clone
        for _ in range(3):
            self.service.cli("instance", "stop", clone)
            server = local_server(engine, base, 0, ADMIN_USER, "-")
            if not server.is_running():  # else the health monitor restarted it meanwhile
                break
        remove(base)

    def api_backup(self, engine: str, method: str, kind: str = "FullBackup") -> Run:
        """CreateBackup, then DescribeBackupTasks every ``poll`` seconds until Finished;
        timed from the CreateBackup call to the poll that saw Finished."""
        instance = self.instances[engine]
        pid = self.service.pid
        server_pid = self.servers[engine].pid()
        cpu0, server_cpu0 = process_cpu(pid), process_cpu(server_pid)
        processes: list[int] = []
        phases: list[str] = []
        phase_at: list[float] = []
        """When each phase was first seen, seconds after the CreateBackup call."""
        with ProcessSampler(pid) as sampler, self._profiler(pid):
            t0 = time.monotonic()
            try:
                created = self.client.call(
                    "CreateBackup", DBInstanceId=instance, BackupMethod=method, BackupType=kind
                )
            except ApiError as e:
                raise Unavailable(f"CreateBackup answered {e.code}: {e.message}") from None
            job_id = str(created["BackupJobId"])
            while True:
                job = self.client.call(
                    "DescribeBackupTasks", DBInstanceId=instance, BackupJobId=job_id
                )["Items"]["BackupJob"][0]
                process = int(job.get("Process") or 0)
                if not processes or processes[-1] != process:
                    processes.append(process)
                if not phases or phases[-1] != job["BackupStatus"]:
                    phases.append(str(job["BackupStatus"]))
                    phase_at.append(round(time.monotonic() - t0, 2))
                if job["BackupStatus"] == "Finished":
                    seconds = time.monotonic() - t0
                    break
                if job["BackupStatus"] == "Failed":
                    raise Unavailable(f"the job Failed: {job.get('FailedReason', '?')}")
                time.sleep(self.options.poll)
        backup_id = str(job["BackupId"])
        backup = self.client.call("DescribeBackups", DBInstanceId=instance, BackupId=backup_id)
        stored = backup["Items"]["Backup"][0]
        self.last_set[engine] = backup_id
        if kind == "FullBackup":
            self.sets[(engine, method)] = StoredSetRef(
                engine,
                method,
                backup_id,
                self.service.storage_dir / instance / job_id,
                int(stored["BackupSize"]),
            )
        return Run(
            seconds=seconds,
            size=int(stored["BackupSize"]),
            cpu_seconds=process_cpu(pid) - cpu0,
            server_cpu_seconds=process_cpu(server_pid) - server_cpu0,
            extra={
                "rss_start_mb": round(sampler.rss_start / 2**20, 1),
                "rss_max_mb": round(sampler.rss_max / 2**20, 1),
                "process_values": processes,
                "distinct_process": len(set(processes)),
                "phases": phases,
                "phase_seen_at": phase_at,
                "service_threads_cpu": {k: round(v, 2) for k, v in sampler.cpu_by_thread().items()},
                "backup_id": backup_id,
                "backup_type": stored.get("BackupType"),
            },
        )

    @contextlib.contextmanager
    def _profiler(self, pid: int) -> Iterator[None]:
        """py-spy on the service while the API run goes on (``--profile``); the collapsed
        stacks go to ``bench/.data/profiles/<run>.txt``."""
        if not self.options.profile:
            yield
            return
        if not PY_SPY.exists():
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{self.current}.txt"
        spy = subprocess.Popen(
            [
                *(str(PY_SPY), "record", "--pid", str(pid), "--rate", "200", "--format", "raw"),
                *("--threads", "--nonblocking", "--output", str(out)),
                *PROFILE_FLAGS[self.options.profile],
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # let it attach
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()


Variant = Callable[[Bench], Run]


@dataclass(frozen=True)
class RawVariant:
    label: str
    run: Variant
    same_compression: bool = True
    """zstd at the bench's level and threads, like the service: counts for the target."""
    target: float | None = None
    """A target for API/raw against this variant (else: the path's ``ratio_target``
    against the best raw variant with the same compression)."""
    reference: bool = False
    """Shown for reference only: never the variant the path's target is judged on."""


@dataclass(frozen=True)
class BenchPath:
    key: str
    title: str
    engine: str
    operation: str = "backup"
    api: Variant | None = None
    api_label: str = ""
    raws: tuple[RawVariant, ...] = ()
    before_rep: Callable[[Bench, int], None] | None = None
    """Runs before each repetition (e.g. changes the rows an incremental copies)."""
    pending: str = ""
    """Non-empty: not measured yet; the row says this."""
    note: str = ""
    relative_to: str = ""
    """Key of a path to compare time and size against (an incremental vs its full)."""
    setup: Callable[[Bench], None] | None = None
    """Runs once, untimed, before the first repetition (e.g. makes the set to restore)."""
    ratio_target: float = 1.10
    """API/raw target against the best raw variant with the same compression."""


@dataclass
class VariantResult:
    label: str
    runs: list[Run] = field(default_factory=list)
    unavailable: str | None = None
    same_compression: bool = True
    target: float | None = None
    reference: bool = False

    @property
    def seconds(self) -> float:
        return median([r.seconds for r in self.runs])

    @property
    def size(self) -> float:
        return median([float(r.size) for r in self.runs])

    @property
    def ok(self) -> bool:
        return self.unavailable is None and bool(self.runs)


@dataclass
class PathResult:
    path: BenchPath
    data_bytes: int
    api: VariantResult | None
    raws: list[VariantResult]

    def best_raw(self) -> VariantResult | None:
        same = [r for r in self.raws if r.ok and r.same_compression and not r.reference]
        return min(same, key=lambda r: r.seconds) if same else None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


def run_path(bench: Bench, path: BenchPath, say: Callable[[str], None]) -> PathResult:
    """Warm-up runs (untimed), then ``reps`` timed repetitions; within a repetition the
    variants run one after the other, in reverse order every other time (A B B A), so
    drift of the machine affects them alike."""
    data_bytes = bench.servers[path.engine].data_bytes
    api = VariantResult(path.api_label or "API") if path.api else None
    raws = [
        VariantResult(r.label, [], None, r.same_compression, r.target, r.reference)
        for r in path.raws
    ]
    if path.pending:
        return PathResult(path, data_bytes, api, raws)
    if path.setup:
        bench.current = f"{path.key}-setup"
        path.setup(bench)
    pairs: list[tuple[VariantResult, Variant]] = []
    if path.api and api:
        pairs.append((api, path.api))
    pairs += [(res, raw.run) for res, raw in zip(raws, path.raws, strict=True)]
    total = bench.options.warmup_runs + bench.options.reps
    for rep in range(total):
        timed = rep >= bench.options.warmup_runs
        if path.before_rep:
            path.before_rep(bench, rep)
        order = pairs if rep % 2 == 0 else list(reversed(pairs))
        for result, variant in order:
            if result.unavailable:
                continue
            bench.current = f"{path.key}-{_slug(result.label)}-{rep}"
            # A run of a path that changes the data before each repetition (incremental)
            # cannot be repeated: its second try would copy nothing new.
            tries = 1 if path.before_rep else 1 + max(0, bench.options.retries)
            attempts: list[Run] = []
            for attempt in range(1, tries + 1):
                run = _one_run(bench, result, variant, say)
                if run is None:
                    break
                others = float(run.extra["others_cores"])
                noisy = others > bench.options.max_others
                run.extra.update(attempt=attempt, noisy=noisy)
                attempts.append(run)
                tag = "run" if timed else "warm-up"
                say(
                    f"  {tag} {rep + 1}/{total} {result.label}: {run.seconds:.2f} s,"
                    f" {run.size / 2**20:.0f} MiB; other processes used {others:.2f} cores"
                    + (" (noisy)" if noisy else "")
                )
                if noisy:
                    say("    busiest processes: " + ", ".join(run.extra["top_processes"]))
                else:
                    break
                if attempt < tries:
                    say(f"    repeating: others used more than {bench.options.max_others} cores")
            if attempts and timed:
                # The quietest attempt counts; the others are kept for the record.
                kept = min(attempts, key=lambda r: float(r.extra["others_cores"]))
                kept.extra["discarded_seconds"] = [
                    round(r.seconds, 2) for r in attempts if r is not kept
                ]
                result.runs.append(kept)
    return PathResult(path, data_bytes, api, raws)


def _one_run(
    bench: Bench, result: VariantResult, variant: Variant, say: Callable[[str], None]
) -> Run | None:
    """One run, with what other processes did meanwhile in ``extra``; None (and the
    variant marked unavailable) when it cannot run. Every run starts with no dirty page
    left by an earlier one: its writeback would otherwise slow whichever run comes next
    (the first clone of each restore path was 1.5-2x slower than the second)."""
    os.sync()
    waited, busy_before = wait_for_quiet(bench.options.quiet_threshold, bench.options.quiet_timeout)
    busy0, self0, procs0 = machine_busy(), self_cpu(), all_processes_cpu()
    try:
        try:
            run = variant(bench)
        except Unavailable as e:
            result.unavailable = str(e)
            say(f"  {result.label}: not available ({e})")
            return None
        ours = run.cpu_seconds + run.server_cpu_seconds + self_cpu() - self0
        others = max(0.0, machine_busy() - busy0 - ours)
        run.extra.update(
            others_cpu_seconds=round(others, 2),
            others_cores=round(others / run.seconds, 2),
            quiet_wait_seconds=round(waited, 1),
            busy_cores_before=round(busy_before, 2),
            top_processes=top_consumers(procs0, all_processes_cpu()),
        )
        return run
    finally:
        bench.run_cleanups()
