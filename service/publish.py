"""When the analysts' copy of the warehouse is published: after commits, but never so often that copying
a large warehouse eats the applier's time.

The copy costs O(warehouse size) (a checkpoint, then the whole file is copied), so while jobs keep
coming it is made at most once per STOCKYARD_PUBLISH_INTERVAL, and no sooner than PUBLISH_COST_FACTOR
times what the last one took after it: copying then takes at most 1 / (1 + factor) of the time. Once
the commits stop, what is pending is published when that wait is over. An interval of 0 is the operator
asking for a copy after every commit, whatever it costs. A copy that fails stays pending, and is tried
again after the wait: the jobs it would show are committed already, and stay COMPLETED.
"""

from __future__ import annotations

import logging
import threading
import time

from service.settings import Settings
from service.warehouse import Warehouse

PUBLISH_COST_FACTOR = 4
MAX_BACKOFF_SECONDS = 60.0

logger = logging.getLogger("stockyard.publish")


class Publisher:
    def __init__(self, warehouse: Warehouse, settings: Settings) -> None:
        self.warehouse = warehouse
        self.settings = settings
        self.pending = False
        self.last_published = 0.0  # time.monotonic() of the last copy
        self.last_cost = 0.0  # seconds the last copy took
        self.failures = 0  # copies in a row that failed: the next try waits 1, 2, 4 ... 60 s
        self._wake = threading.Event()
        self._lock = threading.Lock()

    def committed(self) -> None:
        """A commit happened: the copy is out of date (a lake has no copy: its readers see commits at once)."""
        if self.warehouse.publishes:
            self.pending = True
            self._wake.set()

    def wait_seconds(self) -> float:
        """How long until a pending copy is due (0: now)."""
        backoff = min(2.0 ** (self.failures - 1), MAX_BACKOFF_SECONDS) if self.failures else 0.0
        if self.settings.publish_interval_seconds <= 0 and not backoff:
            return 0.0
        wait = max(self.settings.publish_interval_seconds, PUBLISH_COST_FACTOR * self.last_cost, backoff)
        return max(0.0, self.last_published + wait - time.monotonic())

    def publish_if_due(self) -> bool:
        """Publish a pending copy whose wait is over; True if a copy was made."""
        with self._lock:
            if not self.pending or self.wait_seconds() > 0:
                return False
            return self.publish_now()

    def publish_now(self) -> bool:
        """Publish whatever is committed; a failure is logged and leaves the copy pending."""
        self.pending = False
        if not self.warehouse.publishes:
            return False
        started = time.monotonic()
        try:
            self.warehouse.publish(self.settings.analytics_path)
        except Exception as error:
            self.pending = True
            self.failures += 1
            wait = min(2.0 ** (self.failures - 1), MAX_BACKOFF_SECONDS)
            logger.warning("could not publish the analysts' copy (%s); trying again in %.0f s", error, wait)
            return False
        finally:
            self.last_published = time.monotonic()
            self.last_cost = self.last_published - started
        self.failures = 0
        return True

    def run(self, stopping: threading.Event) -> None:
        """The publisher thread of the applier: publish what is pending as soon as it is due."""
        while not stopping.is_set():
            self._wake.wait(timeout=min(1.0, max(0.05, self.wait_seconds())) if self.pending else 1.0)
            self._wake.clear()
            self.publish_if_due()
