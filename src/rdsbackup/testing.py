"""The service built on the in-memory engine and storage, for tests (as httpx ships
``MockTransport``): real catalog, real service, runner and API, fake database servers;
and :func:`moto_server`, the S3 server the tests and benches run against.

``memory_rig`` wires the backup service and the job runner by hand (what service and job
tests drive); ``memory_service`` builds the whole :class:`~rdsbackup.app.Service` through
the composition root, with its ASGI app for protocol tests (Starlette's ``TestClient``,
or uvicorn in a thread for the official SDKs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx
from cryptography.fernet import Fernet

from rdsbackup.app import Service, build_service
from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.secrets import SecretBox
from rdsbackup.clock import Clock
from rdsbackup.config import Settings
from rdsbackup.engines.base import ServerAccess
from rdsbackup.engines.memory import MemoryEngine, MemoryServer
from rdsbackup.engines.registry import EngineRegistry
from rdsbackup.instances.inventory import Inventory, Registration
from rdsbackup.instances.ports import free_port
from rdsbackup.jobs.dispatch import ThreadDispatcher
from rdsbackup.jobs.leases import Leases
from rdsbackup.jobs.planning import Planner
from rdsbackup.jobs.runner import JobRunner, RunOptions
from rdsbackup.service.auth import AccountAdmin, Principal
from rdsbackup.service.backups import BackupRules, BackupService, Dispatcher
from rdsbackup.service.instances import InstanceService
from rdsbackup.storage.base import Storage
from rdsbackup.storage.memory import MemoryStorage


def memory_registry(engine: MemoryEngine) -> EngineRegistry:
    """``engine`` standing in for every family the API knows."""
    return EngineRegistry({"MariaDB": engine, "PostgreSQL": engine})


def register(
    inventory: Inventory, account_id: int, access: ServerAccess, engine: str = "MariaDB", **kw: Any
) -> str:
    """Register a (memory) server as a Running instance; returns its id."""
    return inventory.register(
        Registration(
            account_id=account_id,
            engine=engine,
            host=access.host,
            port=access.port,
            admin_user=access.user,
            admin_password=access.password,
            **kw,
        ),
        status="Running",
    )


class Recorder:
    """A dispatcher that only records: jobs are run by calling ``runner.run``."""

    def __init__(self) -> None:
        self.submitted: list[int] = []

    def submit(self, job_id: int) -> None:
        self.submitted.append(job_id)


@dataclass
class MemoryRig:
    catalog: Catalog
    engine: MemoryEngine
    storage: Storage
    inventory: Inventory
    accounts: AccountAdmin
    runner: JobRunner
    service: BackupService
    dispatcher: Dispatcher
    _threads: list[ThreadDispatcher] = field(default_factory=list)

    def add_instance(
        self,
        server: MemoryServer | None = None,
        *,
        account: str = "a",
        engine: str = "MariaDB",
        **registration: Any,
    ) -> tuple[str, Principal]:
        """Serve ``server`` (default: an empty one), register it, probe it."""
        account_id = self.accounts.ensure_account(account)
        access = self.engine.serve(server or MemoryServer())
        instance_id = register(self.inventory, account_id, access, engine, **registration)
        self.inventory.probe(instance_id)
        return instance_id, Principal(account_id, account, "AK-" + account)

    def close(self) -> None:
        for pool in self._threads:
            pool.shutdown(wait=True)


def memory_rig(
    catalog: Catalog,
    storage: Storage | None = None,
    *,
    threaded: bool = False,
    options: RunOptions | None = None,
    rules: BackupRules | None = None,
) -> MemoryRig:
    """The backup service and job runner on ``catalog`` (migrated here), the memory
    engine and ``storage`` (default: in memory). Jobs are recorded, or with ``threaded``
    run by a one-worker :class:`ThreadDispatcher` as in the service; ``close`` it."""
    catalog.upgrade()
    box = SecretBox(Fernet.generate_key())
    engine = MemoryEngine()
    registry = memory_registry(engine)
    inventory = Inventory(catalog, box, registry)
    storage = storage or MemoryStorage()
    planner = Planner(catalog, storage, timedelta(hours=24))
    leases = Leases(catalog, "test-node", 30)
    runner = JobRunner(
        catalog,
        inventory,
        registry,
        storage,
        leases,
        planner,
        options or RunOptions(heartbeat_seconds=0.2),
    )
    threads = [ThreadDispatcher(runner.run, 1)] if threaded else []
    dispatcher: Dispatcher = threads[0] if threads else Recorder()
    service = BackupService(
        catalog,
        InstanceService(catalog, inventory),
        dispatcher,
        storage,
        planner,
        rules or BackupRules(),
    )
    return MemoryRig(
        catalog,
        engine,
        storage,
        inventory,
        AccountAdmin(catalog, box),
        runner,
        service,
        dispatcher,
        threads,
    )


@dataclass
class MemoryService:
    service: Service
    engine: MemoryEngine
    storage: MemoryStorage

    def serving(self, timeout: float = 10.0) -> AbstractContextManager[str]:
        """The ASGI app over HTTP (uvicorn in a thread) on the settings' host and port,
        for clients that need a socket (the official SDKs); yields ``host:port``."""
        return serving(self.service, timeout)

    def add_instance(
        self, server: MemoryServer | None = None, *, account: str = "a", engine: str = "MariaDB"
    ) -> str:
        core = self.service.core
        access = self.engine.serve(server or MemoryServer())
        account_id = core.accounts.ensure_account(account)
        instance_id = register(core.inventory, account_id, access, engine)
        core.inventory.probe(instance_id)
        return instance_id


def memory_service(
    settings: Settings, *, scheduler: bool = False, clock: Clock | None = None
) -> MemoryService:
    """The whole service through the composition root, on memory servers and storage
    (the catalog is the settings' one: SQLite under ``state_dir`` by default). Call
    ``service.start()`` for the background loops, ``service.stop()`` after. The
    scheduler is off unless ``scheduler`` (then on ``clock``, default the system's): no
    test meets an automated job it did not ask for."""
    engine, storage = MemoryEngine(), MemoryStorage()
    settings = settings.model_copy(update={"scheduler_enabled": scheduler})
    service = build_service(settings, memory_registry(engine), storage, clock)
    return MemoryService(service, engine, storage)


@contextmanager
def serving(service: Service, timeout: float = 10.0) -> Iterator[str]:
    """``service``'s ASGI app over HTTP (uvicorn in a thread) on its settings' host and
    port, for clients that need a socket (the official SDKs); yields ``host:port``."""
    import uvicorn

    settings = service.core.settings
    config = uvicorn.Config(
        service.asgi,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {settings.host}:{settings.port}")
        time.sleep(0.01)
    try:
        yield f"{settings.host}:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


@contextmanager
def moto_server(log: IO[bytes] | None = None, timeout: float = 30.0) -> Iterator[str]:
    """``moto_server`` (PyPI ``moto[server]``, next to this Python) on a free loopback
    port, with S3's 5 MiB smallest part as on the real thing; yields its endpoint URL
    and kills it on exit. It keeps objects in its own memory."""
    port = free_port()
    binary = Path(sys.executable).with_name("moto_server")
    env = {**os.environ, "MOTO_S3_MIN_PART_SIZE": str(5 * 1024 * 1024)}
    out = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out, env=env
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(endpoint + "/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start (exit {proc.poll()})") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.kill()
        proc.wait()
