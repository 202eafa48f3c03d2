"""Metrics, counted across every API and worker process, and `GET /metrics` in Prometheus' text format.

Processes add to counters and histograms kept in Redis (one hash per metric, a field per label set), so
that one scrape of any API process sees the whole service, on one machine or many. The gauges (queue
depth, the oldest pending job's age, workers seen) are read from Redis when scraped. A metric that cannot
be recorded (Redis away) is dropped with a debug log line: metrics never fail a job.

A histogram keeps one count per bucket (`in=`), added up when scraped. Earlier versions kept cumulative
counts (`le=`, added in when scraped) and read only those: while both run, scrape the upgraded API processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from redis.client import Pipeline

_PREFIX = "stockyard:metrics:"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "stockyard_jobs_accepted": ("Jobs accepted (202), by kind", ("kind",)),
    "stockyard_jobs_completed": ("Jobs COMPLETED, by kind", ("kind",)),
    "stockyard_jobs_failed": ("Jobs FAILED as a whole (cancelled ones included), by kind", ("kind",)),
    "stockyard_rows_processed": ("Rows of COMPLETED jobs, by kind", ("kind",)),
    "stockyard_rows_failed": ("Rows rejected with row errors, by kind", ("kind",)),
    "stockyard_bytes_received": ("Bytes of accepted request bodies (as sent), by kind", ("kind",)),
    "stockyard_webhook_deliveries": ("Webhook delivery attempts, by outcome", ("outcome",)),
}
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "stockyard_job_duration_seconds": ("From accepted to COMPLETED or FAILED, by kind", ("kind",)),
    "stockyard_stage_duration_seconds": ("Time in one stage (prepare, apply), by kind and stage", ("kind", "stage")),
}

logger = logging.getLogger("stockyard.metrics")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f"{name}={value}" for name, value in zip(names, values, strict=True))


def count(connection: redis.Redis, name: str, *labels: str, by: float = 1.0) -> None:
    """Add `by` to a counter."""
    _names = COUNTERS[name][1]
    try:
        connection.hincrbyfloat(_PREFIX + name, _labels(_names, labels), by)
    except redis.RedisError:
        logger.debug("metric %s not recorded: Redis is away", name)


def observe(connection: redis.Redis, name: str, seconds: float, *labels: str) -> None:
    """Record one observation of a histogram (on a pipeline of `batched`, with the pipeline's commands)."""
    names = HISTOGRAMS[name][1]
    key = _PREFIX + name
    base = _labels(names, labels)
    if isinstance(connection, Pipeline):
        _observe(connection, key, base, seconds)
        return
    try:
        with connection.pipeline(transaction=False) as pipe:
            _observe(pipe, key, base, seconds)
            pipe.execute()
    except redis.RedisError:
        logger.debug("metric %s not recorded: Redis is away", name)


def _observe(pipe: Pipeline, key: str, base: str, seconds: float) -> None:
    """Two commands: the one bucket the value falls in (`in=`), and the sum; the scrape adds the buckets up."""
    bound = next((str(bound) for bound in DURATION_BUCKETS if seconds <= bound), "+Inf")
    pipe.hincrby(key, f"{base}|in={bound}", 1)
    pipe.hincrbyfloat(key, f"{base}|sum", seconds)


def _cumulative(parts: dict[str, float]) -> list[tuple[str, float]]:
    """Prometheus' buckets (observations up to each bound) from one series' fields: the `in=` counts, plus
    the `le=` fields an earlier version wrote already added up, so that an upgrade does not reset them.
    A bound no longer in DURATION_BUCKETS still counts, in +Inf."""
    bounds = [*map(str, DURATION_BUCKETS), "+Inf"]
    found, running = [], 0.0
    for bound in bounds:
        running += parts.get(f"in={bound}", 0.0)
        found.append((bound, running + parts.get(f"le={bound}", 0.0)))
    dropped = sum(value for part, value in parts.items() if part.startswith("in=") and part[3:] not in bounds)
    found[-1] = ("+Inf", found[-1][1] + dropped)
    return found


@contextmanager
def batched(connection: redis.Redis) -> Iterator[Pipeline]:
    """A pipeline to record metrics on: all of them go to Redis in one round trip at the end."""
    pipe = connection.pipeline(transaction=False)
    try:
        yield pipe
        pipe.execute()
    except redis.RedisError:
        logger.debug("metrics not recorded: Redis is away")
    finally:
        pipe.reset()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_labels(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(",") if part)


class RedisCollector(Collector):
    """The service's metrics as Redis holds them, and the gauges read at scrape time."""

    def __init__(self, connection: redis.Redis, queues: Iterable[Any], open_jobs_key: str) -> None:
        self.connection = connection
        self.queues = list(queues)
        self.open_jobs_key = open_jobs_key

    def collect(self) -> Iterator[Any]:
        for name, (description, names) in COUNTERS.items():
            family = CounterMetricFamily(name, description, labels=list(names))
            for labels, value in self.connection.hgetall(_PREFIX + name).items():
                found = _parse_labels(_text(labels))
                family.add_metric([found.get(n, "") for n in names], float(value))
            yield family
        for name, (description, names) in HISTOGRAMS.items():
            histogram = HistogramMetricFamily(name, description, labels=list(names))
            series: dict[str, dict[str, float]] = {}
            for field, value in self.connection.hgetall(_PREFIX + name).items():
                base, _, part = _text(field).partition("|")
                series.setdefault(base, {})[part] = float(value)
            for base, parts in sorted(series.items()):
                found = _parse_labels(base)
                histogram.add_metric([found.get(n, "") for n in names], _cumulative(parts), parts.get("sum", 0.0))
            yield histogram
        depth = GaugeMetricFamily("stockyard_queue_depth", "RQ jobs waiting, by queue", labels=["queue"])
        for queue in self.queues:
            depth.add_metric([queue.name], float(self.connection.llen(queue.key)))
        yield depth
        oldest = self.connection.zrange(self.open_jobs_key, 0, 0, withscores=True)
        age = GaugeMetricFamily(
            "stockyard_oldest_open_job_age_seconds", "Age of the oldest job not yet COMPLETED or FAILED (0: none)"
        )
        age.add_metric([], max(0.0, time.time() - float(oldest[0][1])) if oldest else 0.0)
        yield age
        open_jobs = GaugeMetricFamily("stockyard_open_jobs", "Jobs PENDING or PROCESSING")
        open_jobs.add_metric([], float(self.connection.zcard(self.open_jobs_key)))
        yield open_jobs


def registry(connection: redis.Redis, queues: Iterable[Any], open_jobs_key: str) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=False)
    found.register(RedisCollector(connection, queues, open_jobs_key))
    return found
