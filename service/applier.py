"""The applier: the one process of a data directory that holds the warehouse, runs the apply lanes, and
publishes the copy (the file) or keeps the lake's files few (the lake: appliers of several machines).

Any worker may become it (STOCKYARD_APPLY=auto): the first to take the warehouse's flock does, and the
others stand by, trying again every second, so that when the applier dies another worker takes over
within about a second, and a new `serve` worker at once. The lanes are RQ workers in threads of that
process, on the apply queue (service/queue.py): each runs one organization's apply job at a time
(service/apply.py), so that as many organizations are merged at once as there are lanes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from typing import Any

import redis
import rq
from rq.exceptions import StopRequested
from rq.timeouts import TimerDeathPenalty

from service import recovery
from service.job_store import JobStore, organizations_with_unsettled_jobs
from service.lake import Lake, open_warehouse, run_maintenance
from service.publish import Publisher
from service.queue import Queues
from service.settings import Settings
from service.table_locks import TableLocks

APPLIER_HEARTBEAT = "stockyard:applier"
"""Set by the applier every few seconds, with a TTL: no key, no applier (GET /ready says so)."""
HEARTBEAT_SECONDS = 5.0

logger = logging.getLogger("stockyard.applier")

_current: Applier | None = None


def current_applier() -> Applier:
    """This process's applier; apply jobs only ever run in it."""
    if _current is None or not _current.warehouse.is_held:
        raise RuntimeError("this process is not the applier: it does not hold the warehouse")
    return _current


class ApplyLane(rq.SimpleWorker):
    """An RQ worker in a thread of the applier. Signals are the main thread's; job timeouts by timer."""

    death_penalty_class = TimerDeathPenalty

    def __init__(self, applier: Applier) -> None:
        # RQ blocks on the queue for worker_ttl - 15 s at a time: a lane notices a stop within a second
        super().__init__([applier.queues.apply], connection=applier.store.redis, worker_ttl=16)
        self.applier = applier

    def _install_signal_handlers(self) -> None:
        pass

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return self.applier.stopping.is_set() or bool(super().should_run_maintenance_tasks)

    def run_maintenance_tasks(self) -> None:
        if self.applier.stopping.is_set():
            raise StopRequested()
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]


class Applier:
    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self.settings = settings
        self.store = JobStore(connection, settings)
        self.queues = Queues(connection, settings)
        self.warehouse = open_warehouse(settings, TableLocks(connection))
        self.publisher = Publisher(self.warehouse, settings)
        self.last_apply = time.monotonic()  # when a lane last finished a transaction: maintenance waits for quiet
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def try_hold(self) -> bool:
        """Become this data directory's applier if no other process is; True if this one is now."""
        global _current
        if self.warehouse.is_held:
            return True
        if not self.warehouse.try_hold():
            return False
        try:  # a new warehouse is made now, not at the first job, so that readers can attach at once
            with self.warehouse.cursor():
                pass
        except Exception as error:  # busy or not writable yet: the jobs wait, saying why, and are retried
            logger.warning("could not open the warehouse yet (%s); jobs wait for it", error)
        _current = self
        logger.info("this worker applies jobs to the warehouse now (%s)", self.warehouse.where)
        self.publisher.publish_now()  # whatever the last applier committed; a failure is logged, not fatal
        self._ask_for_every_organization()
        return True

    def _ask_for_every_organization(self) -> None:
        """Queue an apply job for every organization with unsettled jobs: a dead applier may have taken
        one off the queue and never run it."""
        try:
            self.queues.clear_all_kicks()
            for organization_id in organizations_with_unsettled_jobs(self.store.redis):
                self.queues.kick_apply(organization_id)
        except redis.RedisError:
            logger.warning("could not queue apply jobs on taking over; recovery will", exc_info=True)

    def start_lanes(self) -> None:
        """Run the lanes and the publisher in threads of this process."""
        for index in range(self.settings.apply_lanes):
            self._start(f"apply-lane-{index}", self._run_lane)
        self._start("publisher", self.publisher.run, self.stopping)
        if isinstance(self.warehouse, Lake):
            self._start("lake-maintenance", run_maintenance, self, self.warehouse)
        self._start("heartbeat", self._beat)

    def _beat(self) -> None:
        while not self.stopping.is_set():
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "warehouse": self.warehouse.where}
            with contextlib.suppress(redis.RedisError):
                self.store.redis.set(APPLIER_HEARTBEAT, json.dumps(holder), ex=int(4 * HEARTBEAT_SECONDS))
            self.stopping.wait(HEARTBEAT_SECONDS)
        with contextlib.suppress(redis.RedisError):
            self.store.redis.delete(APPLIER_HEARTBEAT)

    def _run_lane(self) -> None:
        """One lane, for as long as the applier runs: RQ's loop quits on errors it does not expect (Redis
        going away at the wrong moment, say), so a new one starts after a pause."""
        while not self.stopping.is_set():
            try:
                ApplyLane(self).work(logging_level="WARNING")
            except Exception:
                logger.warning("an apply lane stopped on an error; starting it again", exc_info=True)
            self.stopping.wait(1.0)

    def _start(self, name: str, target: Any, *args: Any, **kwargs: Any) -> None:
        thread = threading.Thread(target=target, args=args, kwargs=kwargs, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def redis_is_reconciled(self) -> bool:
        """Has recovery put back what this Redis may have lost (it restarted, or was flushed)?"""
        try:
            return not recovery.needs_full_pass(self.store.redis)
        except redis.RedisError:
            return False

    def stop(self, timeout: float = 60.0) -> None:
        """Let the lanes finish the transaction they are in, publish what is pending, let the file go.

        A lane still in its transaction after `timeout` keeps the database open: the process's exit ends
        it, and an uncommitted transaction never reaches the WAL (the job is applied by the next applier).
        """
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            logger.warning("apply lanes still running after %.0f s; they end with the process", timeout)
            return
        if self.warehouse.is_held:
            if self.publisher.pending:
                self.publisher.publish_now()
            self.warehouse.release()


def run_standby(settings: Settings, connection: redis.Redis, stopping: threading.Event) -> Applier | None:
    """The worker's standby thread: try to become the applier every second until stopped; then run it."""
    applier = Applier(settings, connection)
    while not stopping.is_set():
        try:
            if applier.try_hold():
                applier.start_lanes()
                stopping.wait()
                applier.stop(settings.shutdown_timeout_seconds)
                return applier
        except Exception:
            logger.warning("could not take over applying jobs; trying again", exc_info=True)
            applier.warehouse.release()
        stopping.wait(1.0)
    return None
