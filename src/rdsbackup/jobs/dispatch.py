"""Dispatchers: who runs a submitted job. In-process threads by default."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Protocol

log = logging.getLogger(__name__)


class JobDispatcher(Protocol):
    """Runs submitted job (or restore task) ids: ThreadDispatcher here, CeleryDispatcher
    on workers (jobs/celery_dispatch.py)."""

    def submit(self, job_id: int) -> None: ...

    def shutdown(self, wait: bool = True) -> None: ...

    def join(self, timeout: float) -> bool: ...


class ThreadDispatcher:
    """A bounded pool of threads in the service process (``max_parallel_jobs``)."""

    def __init__(self, run: Callable[[int], None], max_workers: int) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="backup-job")
        self._futures: set[Future[None]] = set()

    def submit(self, job_id: int) -> None:
        future = self._pool.submit(self._guarded, job_id)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def _guarded(self, job_id: int) -> None:
        try:
            self._run(job_id)
        except Exception:
            log.exception("job %s: runner crashed", job_id)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the work submitted; False if some still runs."""
        return not wait(list(self._futures), timeout).not_done
