"""Jobs run by Celery workers next to each database host (``dispatcher = "celery"``).

The API process sends a job's id to the queue of its instance (``Instance.host_queue``,
else :data:`DEFAULT_QUEUE`); ``rdsbackup worker --queue NAME`` consumes it and runs
the same JobRunner / RestoreRunner the thread dispatcher runs. The catalog stays the
source of truth:

- a worker claims a job's lease before it runs it (jobs/leases.py), so a redelivered or
  duplicated message never runs a job twice at once;
- messages are acknowledged when a worker takes them (``task_acks_late`` off), so no
  broker timeout redelivers a job that runs for hours (Redis' ``visibility_timeout``
  redelivers unacknowledged messages older than it; RabbitMQ's ``consumer_timeout``
  closes the channel after 30 min);
- a worker killed mid-job stops renewing the lease, and any node's reaper fails the job
  with a reason once the lease expires (``job_lease_seconds``): never stuck, never run
  twice. A message lost with a killed worker before it claimed its job leaves the job
  NoStart; the API re-sends unclaimed jobs when it starts.
"""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute

from rdsbackup.catalog.db import Catalog
from rdsbackup.catalog.models import BackupJob, Instance, RestoreTask

BACKUP_TASK = "rdsbackup.run_backup_job"
RESTORE_TASK = "rdsbackup.run_restore_task"
DEFAULT_QUEUE = "rdsbackup"


def celery_app(broker_url: str) -> Celery:
    app = Celery("rdsbackup", broker=broker_url)
    app.conf.update(
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def queue_of(host_queue: str) -> str:
    return host_queue or DEFAULT_QUEUE


def job_queue(catalog: Catalog) -> Callable[[int], str]:
    """The queue of a backup job: its instance's."""
    return _queue_of_instance(catalog, BackupJob.id, BackupJob.instance_id)


def restore_queue(catalog: Catalog) -> Callable[[int], str]:
    """The queue of a restore task: its source instance's (where the set was taken)."""
    return _queue_of_instance(catalog, RestoreTask.id, RestoreTask.source_instance_id)


def _queue_of_instance(
    catalog: Catalog, work_id: InstrumentedAttribute[int], instance_id: InstrumentedAttribute[str]
) -> Callable[[int], str]:
    def find(work: int) -> str:
        with catalog.read() as s:
            host_queue = s.scalar(
                select(Instance.host_queue)
                .join_from(work_id.class_, Instance, Instance.id == instance_id)
                .where(work_id == work)
            )
        return queue_of(host_queue or "")

    return find


class CeleryDispatcher:
    """Sends each submitted id to its queue; the worker there runs it."""

    def __init__(self, app: Celery, task_name: str, queue: Callable[[int], str]) -> None:
        self.app = app
        self.task_name = task_name
        self.queue = queue

    def submit(self, job_id: int) -> None:
        self.app.send_task(self.task_name, args=[job_id], queue=self.queue(job_id))

    def shutdown(self, wait: bool = True) -> None:
        """Nothing runs here: the workers finish their own jobs."""

    def join(self, timeout: float) -> bool:
        return True


def run_worker(
    app: Celery,
    run_backup: Callable[[int], None],
    run_restore: Callable[[int], None],
    queues: list[str],
    concurrency: int,
    node_id: str,
) -> None:
    """Consume ``queues`` in this process (a thread pool), until a signal stops it."""
    app.task(name=BACKUP_TASK, ignore_result=True)(run_backup)
    app.task(name=RESTORE_TASK, ignore_result=True)(run_restore)
    worker = app.Worker(
        queues=queues,
        concurrency=concurrency,
        pool="threads",
        hostname=f"{node_id}@rdsbackup",
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel="INFO",
    )
    worker.start()
