"""The import worker: drains the queue one job at a time, and finishes every job that was accepted.

It is RQ's SimpleWorker, which runs each job in the worker's own process, rather than the forking
Worker: a forked work horse moves to a process group of its own and outlives a `kill -9` of the
worker's group, and forking a process whose Polars and DuckDB thread pools are running is unsafe.
Job timeouts still hold (SIGALRM in the same process).

Recovery (service/recovery.py) runs before the first job, then whenever the worker is idle for a
recovery interval, whenever the Redis it talks to is not the one it last reconciled, and after any
job that failed, so that a job left open goes back to the front of the queue before the next one runs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
import rq

from service import recovery, warehouse
from service.jobs import PUBLISH_PENDING, JobStore, publish_now, publish_pending_if_due
from service.settings import Settings

logger = logging.getLogger("stockyard.worker")


class ImportWorker(rq.SimpleWorker):
    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        queue = rq.Queue(settings.queue_name, connection=connection)
        # RQ blocks on the queue for worker_ttl - 15 s between checks: wake often enough for both the
        # recovery interval and a pending publish of the analysts' copy
        interval = max(1, round(settings.recovery_interval_seconds))
        wake = max(1, min(interval, round(settings.publish_interval_seconds)))
        super().__init__([queue], connection=connection, worker_ttl=wake + 15)
        self.settings = settings
        self.store = JobStore(connection, settings)
        self._recovery_interval = interval
        self._next_recovery = 0.0
        self._full_recovery = True  # the first pass reads every durable record

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's loop; on the way out, publish what is pending and close the warehouse cleanly."""
        try:
            return bool(super().work(*args, **kwargs))
        finally:
            try:
                if self._publish_pending():
                    with warehouse.writer_lock(self.settings.data_dir):
                        publish_now(self.store, self.settings)
            except Exception:
                logger.warning("could not publish the analysts' copy on shutdown", exc_info=True)
            warehouse.close_writers()

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return bool(super().should_run_maintenance_tasks) or self._recovery_due() or self._publish_pending()

    def run_maintenance_tasks(self) -> None:
        if self._recovery_due():
            self.recover()
        if self._publish_pending():
            try:
                publish_pending_if_due(self.store, self.settings)
            except Exception:
                logger.warning("could not publish the analysts' copy; retrying when next idle", exc_info=True)
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]

    def handle_job_failure(self, *args: Any, **kwargs: Any) -> None:
        super().handle_job_failure(*args, **kwargs)
        self._next_recovery = 0.0  # a job left open goes back to the front before the next one runs

    def _publish_pending(self) -> bool:
        try:
            return bool(self.connection.exists(PUBLISH_PENDING))
        except redis.RedisError:
            return False

    def _recovery_due(self) -> bool:
        return time.monotonic() >= self._next_recovery or recovery.needs_full_pass(self.connection)

    def recover(self) -> recovery.RecoveryReport | None:
        """One recovery pass. Redis being away is RQ's to retry; anything else is logged and retried later."""
        self._next_recovery = time.monotonic() + self._recovery_interval
        try:
            report = recovery.recover_jobs(self.store, self.settings, full=self._full_recovery)
        except (redis.ConnectionError, redis.TimeoutError):
            self._next_recovery = 0.0
            raise
        except Exception:
            logger.exception("recovery pass failed; retrying in %s s", self._recovery_interval)
            return None
        self._full_recovery = False
        return report
