"""Histograms as Prometheus reads them, from what the processes record in a real Redis."""

from __future__ import annotations

import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service import metrics

STAGE = "stockyard_stage_duration_seconds"


def _buckets(connection: redis.Redis) -> dict[str, float]:
    """The stage histogram's samples for inventory's prepare stage, by bucket bound (and `count`, `sum`)."""
    text = generate_latest(metrics.registry(connection, [], "stockyard:open")).decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.name == STAGE and sample.labels.get("kind") == "inventory":
                found[sample.labels.get("le", sample.name.rsplit("_", 1)[-1])] = sample.value
    return found


def test_a_histogram_counts_each_observation_in_every_bucket_at_or_above_it(redis_connection: redis.Redis) -> None:
    for seconds in (0.03, 0.3, 0.3, 7.0, 4000.0):
        metrics.observe(redis_connection, STAGE, seconds, "inventory", "prepare")
    with metrics.batched(redis_connection) as pipe:  # on a pipeline, as the workers record them
        metrics.observe(pipe, STAGE, 0.05, "inventory", "prepare")
    # each observation wrote the one bucket it falls in (four of them here) and the sum, not every bucket above
    assert redis_connection.hlen("stockyard:metrics:" + STAGE) == 4 + 1
    buckets = _buckets(redis_connection)
    assert buckets["0.05"] == 2
    assert buckets["0.1"] == 2
    assert buckets["0.5"] == 4
    assert buckets["5.0"] == 4
    assert buckets["10.0"] == 5
    assert buckets["1800.0"] == 5
    assert buckets["+Inf"] == buckets["count"] == 6
    assert buckets["sum"] == pytest.approx(4007.68)


def test_buckets_an_earlier_version_recorded_are_kept_across_the_upgrade(redis_connection: redis.Redis) -> None:
    """Earlier versions wrote every bucket at or above the value (`le=`); they are added in, not reset."""
    key, base = "stockyard:metrics:" + STAGE, "kind=inventory,stage=prepare"
    for bound in ("0.5", "1.0", "2.5", "5.0", "10.0", "30.0", "60.0", "300.0", "1800.0", "+Inf"):
        redis_connection.hincrbyfloat(key, f"{base}|le={bound}", 1)  # one observation of 0.4 s, the old way
    redis_connection.hincrbyfloat(key, f"{base}|sum", 0.4)
    metrics.observe(redis_connection, STAGE, 2.0, "inventory", "prepare")
    buckets = _buckets(redis_connection)
    assert (buckets["0.25"], buckets["0.5"], buckets["1.0"], buckets["2.5"], buckets["+Inf"]) == (0, 1, 1, 2, 2)
    assert buckets["sum"] == pytest.approx(2.4)


def test_a_bucket_whose_bound_is_gone_still_counts_in_inf(redis_connection: redis.Redis) -> None:
    key, base = "stockyard:metrics:" + STAGE, "kind=inventory,stage=prepare"
    redis_connection.hincrby(key, f"{base}|in=0.07", 3)  # a bound DURATION_BUCKETS no longer has
    metrics.observe(redis_connection, STAGE, 0.2, "inventory", "prepare")
    buckets = _buckets(redis_connection)
    assert (buckets["0.05"], buckets["0.25"], buckets["+Inf"], buckets["count"]) == (0, 1, 4, 4)
