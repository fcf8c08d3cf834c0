"""The composition root: the only place that builds concrete classes and wires them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from starlette.applications import Starlette

from rdsbackup.api.actions import Services, action_table
from rdsbackup.api.download import DownloadEndpoint
from rdsbackup.api.http import RpcEndpoint, asgi_app
from rdsbackup.api.metrics import ApiMetrics, MetricsEndpoint, metrics_registry
from rdsbackup.api.protocol import Protocol
from rdsbackup.catalog.db import HEAD_REVISION, Catalog
from rdsbackup.catalog.secrets import SecretBox
from rdsbackup.clock import Clock, SystemClock
from rdsbackup.config import Settings
from rdsbackup.console.app import console_app
from rdsbackup.engines.registry import EngineRegistry, default_registry
from rdsbackup.instances.home import instances_home
from rdsbackup.instances.inventory import Inventory
from rdsbackup.instances.supervisor import HealthMonitor, Supervisor
from rdsbackup.jobs.dispatch import JobDispatcher, ThreadDispatcher
from rdsbackup.jobs.janitor import Janitor
from rdsbackup.jobs.leases import RESTORE_TASKS, Leases
from rdsbackup.jobs.logretention import LogRetention
from rdsbackup.jobs.logship import LogShipper, ShipOptions
from rdsbackup.jobs.logstore import LogOptions, LogStore
from rdsbackup.jobs.planning import Planner
from rdsbackup.jobs.restore import RestoreRunner
from rdsbackup.jobs.runner import JobRunner, RunOptions
from rdsbackup.jobs.sets import SetStore
from rdsbackup.processes import kill_tool_groups, stop_leftover_servers
from rdsbackup.ratelimit import Throttle
from rdsbackup.service.auth import AccountAdmin, KeyStore
from rdsbackup.service.backups import BackupRules, BackupService
from rdsbackup.service.encryption import EncryptionService
from rdsbackup.service.instances import InstanceService
from rdsbackup.service.lease import NamedLease
from rdsbackup.service.links import LinkMaker, LinkSigner
from rdsbackup.service.logs import LogService
from rdsbackup.service.metrics import CatalogCollector
from rdsbackup.service.payloads import Payloads
from rdsbackup.service.policies import PolicyService
from rdsbackup.service.releases import ReleaseService
from rdsbackup.service.restores import RestoreService
from rdsbackup.service.scheduler import LEASE_NAME, Scheduler
from rdsbackup.storage.base import Storage
from rdsbackup.storage.keys import Keyring
from rdsbackup.storage.local import LocalStorage

log = logging.getLogger(__name__)


@dataclass
class Core:
    """Everything but the HTTP edge and the background loops: what the CLI needs too."""

    settings: Settings
    catalog: Catalog
    box: SecretBox
    engines: EngineRegistry
    inventory: Inventory
    supervisor: Supervisor
    storage: Storage
    keys: KeyStore
    accounts: AccountAdmin
    instances: InstanceService
    keyring: Keyring | None = None
    """Backup encryption keys (settings ``encryption_keys``, else the state folder's)."""


def build_core(
    settings: Settings, engines: EngineRegistry | None = None, storage: Storage | None = None
) -> Core:
    """``engines`` and ``storage`` replace the real ones (tests: rdsbackup.testing)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    instances_dir = instances_home(settings)
    catalog = Catalog(settings.resolved_catalog_url)
    if settings.auto_migrate:
        catalog.upgrade(apart=True)
    elif (found := catalog.revision()) != HEAD_REVISION:
        raise RuntimeError(
            f"the catalog's schema is at {found or 'nothing'}, this version needs "
            f"{HEAD_REVISION}: run `rdsbackup migrate` (auto_migrate is off)"
        )
    box = SecretBox(settings.resolved_secret_key())
    engines = engines or default_registry()
    inventory = Inventory(catalog, box, engines)
    supervisor = Supervisor(catalog, inventory, instances_dir)
    return Core(
        settings=settings,
        catalog=catalog,
        box=box,
        engines=engines,
        inventory=inventory,
        supervisor=supervisor,
        storage=storage or build_storage(settings),
        keys=KeyStore(catalog, box),
        accounts=AccountAdmin(catalog, box),
        instances=InstanceService(catalog, inventory, settings.database_probe_seconds),
        keyring=Keyring.from_settings(*settings.resolved_encryption_keys()),
    )


def build_storage(settings: Settings) -> Storage:
    """The S3 bucket ``storage_url`` names, else the local folder."""
    if not settings.storage_url:
        return LocalStorage(settings.resolved_storage_dir)
    # here: boto3 and the S3 model cost a service on local storage 24 MiB it never uses
    from rdsbackup.storage.s3 import PARTS_PER_STEP, S3Location, S3Storage, s3_client

    client = s3_client(
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.s3_access_key_id,
        settings.s3_secret_access_key,
        settings.s3_addressing_style,
        max_pool=settings.s3_max_concurrency * settings.max_parallel_jobs + 4,
    )
    return S3Storage(
        client,
        S3Location.parse(settings.storage_url),
        part_size=settings.s3_part_size_mb * 1024 * 1024,
        max_concurrency=settings.s3_max_concurrency,
        parts_per_step=PARTS_PER_STEP if settings.s3_part_growth else None,
    )


@dataclass
class Service:
    """The running service: API, job workers and the background loops around them."""

    core: Core
    leases: Leases
    dispatcher: JobDispatcher
    runner: JobRunner
    backups: BackupService
    restores: RestoreService
    restore_runner: RestoreRunner
    restore_dispatcher: JobDispatcher
    janitor: Janitor
    health: HealthMonitor
    asgi: Starlette
    scheduler: Scheduler | None = None
    """Automated backups (None or ``scheduler_enabled`` off: no loop)."""
    shipper: LogShipper | None = None
    """Log backups (``log_backup_enabled`` off: no loop)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        """Fail what died with an earlier process, start local servers, resume queued
        jobs, then start the loops."""
        self._reap()
        self.janitor.resume_removals()  # sets a killed process left half removed
        self.core.supervisor.start_all()
        self.health.check_all()
        for job_id in self.leases.pending():
            self.dispatcher.submit(job_id)
        for task_id in self.restore_runner.leases.pending():
            self.restore_dispatcher.submit(task_id)
        s = self.core.settings
        self._spawn("reaper", self._reap, max(1.0, s.heartbeat_seconds))
        self._spawn("health", self.health.check_all, s.probe_interval_seconds)
        self._spawn("janitor", self._maintenance, s.janitor_interval_seconds)
        if self.scheduler is not None and s.scheduler_enabled:
            self._spawn("scheduler", self.scheduler.tick, s.scheduler_interval_seconds)
        if self.shipper is not None and s.log_backup_enabled:
            self._spawn("logship", self.shipper.tick, s.log_ship_interval_seconds)

    def _reap(self) -> None:
        self.janitor.reap_jobs()
        self.restore_runner.reap()

    def _maintenance(self) -> None:
        self.janitor.expire_sets()
        self.janitor.expire_logs()
        self.core.keys.purge_nonces()

    def _spawn(self, name: str, task: Callable[[], object], interval: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    task()
                except Exception:
                    log.exception("background task %s failed", name)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, *, stop_local_servers: bool = False, wait_seconds: float = 10) -> None:
        """Stop in order: the loops; the workers (queued work stays queued for the next
        start; running work has its tools killed and fails with "service stopped", and
        what outlasts ``wait_seconds`` is failed for it); then, with
        ``stop_local_servers``, the local servers."""
        started = time.monotonic()
        self._stop.set()
        self.leases.stopping.set()
        self.dispatcher.shutdown(wait=False)
        self.restore_dispatcher.shutdown(wait=False)
        if not self._end_workers(wait_seconds):
            log.warning("workers still running after %g s: failing their work", wait_seconds)
        jobs = self.janitor.fail_running()
        tasks = self.restore_runner.fail_running()
        self.restore_runner.fail_abandoned_clones(tasks)
        for thread in self._threads:
            thread.join(timeout=5)
        if self.scheduler is not None and self.core.settings.scheduler_enabled:
            self.scheduler.stop()
        if self.shipper is not None:
            self.shipper.stop()
        if stop_local_servers:
            self.core.supervisor.stop_all(timeout=10)
            stop_leftover_servers()
        self.janitor.remove_partial(jobs)  # what a stuck worker wrote meanwhile
        log.info("service stopped in %.1f s", time.monotonic() - started)

    def _end_workers(self, seconds: float) -> bool:
        """Kill the workers' tools until the workers return (a worker may start its next
        tool before it notices its work was failed); False if some outlast ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            killed = kill_tool_groups()
            if killed:
                log.info("killed the process groups of running tools: %s", killed)
            if self.dispatcher.join(0.2) and self.restore_dispatcher.join(0.2):
                return True
            if time.monotonic() > deadline:
                return False


def build_service(
    settings: Settings,
    engines: EngineRegistry | None = None,
    storage: Storage | None = None,
    clock: Clock | None = None,
) -> Service:
    """``clock``: the scheduler's (tests move it; default: the system's UTC clock)."""
    core = build_core(settings, engines, storage)
    work = build_runners(core)
    leases, planner, runner = work.leases, work.planner, work.runner
    restore_runner, log_store = work.restore_runner, work.log_store
    dispatcher: JobDispatcher
    restore_dispatcher: JobDispatcher
    if settings.dispatcher == "celery":
        # imported only here: Celery costs every other process memory and start-up time
        from rdsbackup.jobs.celery_dispatch import (
            BACKUP_TASK,
            RESTORE_TASK,
            CeleryDispatcher,
            celery_app,
            job_queue,
            restore_queue,
        )

        celery = celery_app(settings.broker_url)
        dispatcher = CeleryDispatcher(celery, BACKUP_TASK, job_queue(core.catalog))
    else:
        dispatcher = ThreadDispatcher(runner.run, settings.max_parallel_jobs)
    backups = BackupService(
        core.catalog,
        core.instances,
        dispatcher,
        core.storage,
        planner,
        BackupRules(
            daily_limit=settings.daily_backup_limit,
            client_token_hours=settings.client_token_hours,
            default_retention_days=settings.default_retention_days,
        ),
    )
    actions = action_table()
    protocol = Protocol(
        core.keys,
        actions,
        window_seconds=settings.signature_window_seconds,
        throttle=Throttle(settings.api_rate_per_second, settings.api_burst),
    )
    payloads = Payloads(core.catalog, core.storage)
    links = build_links(core, payloads)
    if settings.dispatcher == "celery":
        restore_dispatcher = CeleryDispatcher(celery, RESTORE_TASK, restore_queue(core.catalog))
    else:
        restore_dispatcher = ThreadDispatcher(restore_runner.run, settings.max_parallel_jobs)
    restores = RestoreService(
        core.catalog, core.instances, core.inventory, restore_dispatcher, core.supervisor
    )
    releases = ReleaseService(core.catalog, core.supervisor, core.storage)
    clock = clock or SystemClock()
    policies = PolicyService(
        core.catalog,
        core.instances,
        settings.compression,
        clock=clock,
        encrypt_default=settings.encrypt_backups,
    )
    services = Services(
        backups,
        core.instances,
        links=links,
        restores=restores,
        releases=releases,
        policies=policies,
        encryption=EncryptionService(core.catalog, core.keyring),
        logs=LogService(core.catalog, core.instances, core.engines),
    )
    registry = metrics_registry(CatalogCollector(core.catalog))
    api_metrics = ApiMetrics(registry, actions)
    endpoint = RpcEndpoint(protocol, services, actions, settings.host_id, api_metrics)
    metrics = MetricsEndpoint(registry, settings.metrics_token)
    lease = NamedLease(
        core.catalog, LEASE_NAME, leases.owner, settings.scheduler_lease_seconds, clock
    )
    return Service(
        core=core,
        leases=leases,
        dispatcher=dispatcher,
        runner=runner,
        backups=backups,
        restores=restores,
        restore_runner=restore_runner,
        restore_dispatcher=restore_dispatcher,
        janitor=Janitor(
            core.catalog,
            leases,
            core.storage,
            LogRetention(core.catalog, core.storage, core.engines),
        ),
        health=HealthMonitor(core.inventory, core.supervisor),
        asgi=asgi_app(
            endpoint,
            DownloadEndpoint(links.signer, payloads, settings.host_id),
            metrics if settings.metrics_enabled else None,
            console=console_app(
                services,
                core.keys,
                settings.resolved_secret_key(),
                https_only=settings.resolved_public_url.startswith("https:"),
            ),
        ),
        scheduler=Scheduler(core.catalog, backups, lease, clock),
        shipper=build_shipper(core, log_store, leases.owner),
    )


@dataclass(frozen=True)
class Runners:
    """What runs backup jobs and restores: all a worker process needs (``rdsbackup
    worker``), and the part of :class:`Service` that ``serve`` runs in threads."""

    leases: Leases
    planner: Planner
    runner: JobRunner
    restore_runner: RestoreRunner
    log_store: LogStore


def build_runners(core: Core) -> Runners:
    settings = core.settings
    leases = Leases(core.catalog, settings.node_id, settings.job_lease_seconds)
    planner = Planner(core.catalog, core.storage, timedelta(hours=settings.full_backup_every_hours))
    runner = JobRunner(
        core.catalog,
        core.inventory,
        core.engines,
        core.storage,
        leases,
        planner,
        RunOptions(
            compression=settings.compression,
            compression_level=settings.compression_level,
            compression_threads=settings.resolved_compression_threads,
            parallel=settings.backup_parallel,
            heartbeat_seconds=settings.heartbeat_seconds,
            fingerprint=settings.fingerprint_backups,
            snapshot_reflink=settings.snapshot_reflink,
            encrypt_backups=settings.encrypt_backups,
            keyring=core.keyring,
        ),
    )
    log_store = build_log_store(core)
    restore_runner = RestoreRunner(
        core.catalog,
        core.inventory,
        core.supervisor,
        core.engines,
        SetStore(core.catalog, core.storage, core.keyring),
        leases.for_table(RESTORE_TASKS),
        core.supervisor.instances_dir,
        settings.heartbeat_seconds,
        log_store,
    )
    return Runners(leases, planner, runner, restore_runner, log_store)


def build_log_store(core: Core) -> LogStore:
    s = core.settings
    return LogStore(
        core.catalog,
        core.storage,
        LogOptions(s.compression, s.compression_level, s.encrypt_backups, core.keyring),
    )


def build_shipper(core: Core, store: LogStore, owner: str) -> LogShipper:
    s = core.settings

    def lease(instance_id: str) -> NamedLease:
        name = f"logship:{instance_id}"
        return NamedLease(core.catalog, name, owner, s.log_lease_seconds, SystemClock())

    return LogShipper(
        core.catalog,
        core.inventory,
        core.engines,
        store,
        lease,
        ShipOptions(s.state_dir.resolve() / "spool", switch_seconds=s.log_switch_seconds),
    )


def build_links(core: Core, payloads: Payloads | None = None) -> LinkMaker:
    """Download links; with ``payloads``, also per-database links (DescribeBackups)."""
    s = core.settings
    return LinkMaker(
        LinkSigner(s.resolved_secret_key()),
        s.resolved_public_url,
        s.resolved_intranet_url,
        s.download_link_seconds,
        payloads.db_objects if payloads else None,
    )
