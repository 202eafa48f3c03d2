"""The worker process: prepares jobs from the prepare queues and, when it holds the warehouse, applies them.

Its main thread is RQ's SimpleWorker on the prepare queues (small jobs first), which runs each job in
the worker's own process rather than a forked work horse: a forked horse moves to a process group of
its own and outlives a `kill -9` of the worker's group, and forking a process whose Polars and DuckDB
thread pools are running is unsafe. Job timeouts still hold (SIGALRM in the same process). A standby
thread makes it the applier (service/applier.py) when no other process is.

Recovery (service/recovery.py) runs before the first job, then whenever the worker is idle for a
recovery interval, whenever the Redis it talks to is not the one it last reconciled, and after any
job that failed, so that a job left open is queued again before long.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
import rq

from service import recovery, retention
from service.applier import Applier, ApplyLane, run_standby
from service.job_store import JobStore
from service.prepare import warm_up
from service.queue import Queues
from service.settings import Settings
from service.webhooks import Sender

logger = logging.getLogger("stockyard.worker")


class ImportWorker(rq.SimpleWorker):
    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        queues = Queues(connection, settings)
        # RQ blocks on the queue for worker_ttl - 15 s between checks: wake often enough for recovery
        interval = max(1, round(settings.recovery_interval_seconds))
        super().__init__([queues.prepare, queues.prepare_large], connection=connection, worker_ttl=interval + 15)
        self.settings = settings
        self.store = JobStore(connection, settings)
        self._recovery_interval = interval
        self._next_recovery = 0.0
        self._full_recovery = True  # the first pass reads every durable record
        self._next_purge = time.monotonic() + 60.0  # not in the start-up rush

    @property
    def stop_requested(self) -> bool:
        """Was the loop asked to stop (SIGTERM, Ctrl-C), rather than ended by an error?"""
        return bool(self._stop_requested or self._shutdown_requested_date is not None)

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return (
            bool(super().should_run_maintenance_tasks) or self._recovery_due() or time.monotonic() >= self._next_purge
        )

    def run_maintenance_tasks(self) -> None:
        if self._recovery_due():
            self.recover()
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + self.settings.retention_interval_seconds
            try:
                retention.purge_if_due(self.store, self.settings)
            except Exception:
                logger.exception("retention purge failed; trying again in an interval")
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]

    def handle_job_failure(self, *args: Any, **kwargs: Any) -> None:
        super().handle_job_failure(*args, **kwargs)
        self._next_recovery = 0.0  # a job left open is queued again before the next one runs

    def _recovery_due(self) -> bool:
        try:
            return time.monotonic() >= self._next_recovery or recovery.needs_full_pass(self.connection)
        except redis.RedisError:
            return False

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


def run_worker(settings: Settings, connection: redis.Redis) -> None:
    """`stockyard worker`: the prepare loop until asked to stop, and the standby applier beside it.

    RQ's loop quits on errors it does not expect (Redis going away at the wrong moment, say): a new one
    starts after a pause, so that a worker outlives any outage of Redis.
    """
    stopping = threading.Event()
    threading.Thread(target=Sender(settings, connection).run, args=(stopping,), name="webhooks", daemon=True).start()
    threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
    standby = None
    if settings.apply:
        standby = threading.Thread(
            target=run_standby, args=(settings, connection, stopping), name="applier", daemon=True
        )
        standby.start()
    try:
        while True:
            worker = ImportWorker(settings, connection)
            worker.work(logging_level="WARNING")
            if worker.stop_requested:
                break
            logger.warning("the worker's loop ended on an error; starting it again in 1 s")
            time.sleep(1.0)
    except SystemExit:  # a second signal: stop now, lanes in a transaction end with the process
        stopping.set()
        raise
    stopping.set()
    if standby is not None:
        standby.join(settings.shutdown_timeout_seconds + 5)


def _warm_up() -> None:
    try:
        warm_up()
    except Exception:  # only ever a loss of time: the first job warms up instead
        logger.warning("warming up failed", exc_info=True)


def drain(settings: Settings, connection: redis.Redis, *, max_rounds: int = 50) -> None:
    """Prepare and apply everything queued, in this process and thread, then return (`worker --burst`,
    and tests). This process must be able to hold the warehouse."""
    applier = Applier(settings, connection)
    if not applier.try_hold():
        raise RuntimeError("another process holds the warehouse: stop it before draining")
    try:
        for _ in range(max_rounds):
            prepared = ImportWorker(settings, connection).work(burst=True, logging_level="WARNING")
            applied = ApplyLane(applier).work(burst=True, logging_level="WARNING")
            applier.publisher.publish_if_due()
            if not prepared and not applied:
                break
    finally:
        applier.stop()
