"""Turns on a table across processes: first come first served, and a killed holder is passed over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import redis

from service.table_locks import TableLocks
from tests.service.processes import REPOSITORY, wait_for

HOLD_FOR_EVER = """
import sys, time, redis
from service.table_locks import TableLocks
locks = TableLocks(redis.Redis.from_url(sys.argv[1]), lease_seconds=2)
with locks.held(["inventory_levels"]):
    print("holding", flush=True)
    time.sleep(3600)
"""


def test_waiters_get_their_turn_in_the_order_they_asked(redis_connection: redis.Redis) -> None:
    locks = TableLocks(redis_connection)
    order: list[int] = []
    first = threading.Event()

    def writer(index: int) -> None:
        with locks.held(["inventory_levels", "products"]):
            order.append(index)
            if index == 0:
                first.wait(10)

    threads = [threading.Thread(target=writer, args=(0,))]
    threads[0].start()
    wait_for(lambda: order == [0], 5, "the first writer's turn")
    for index in range(1, 5):
        threads.append(threading.Thread(target=writer, args=(index,)))
        threads[-1].start()  # each asks once the one before is waiting
        wait_for(lambda n=index + 1: locks.queued("inventory_levels") == n, 5, f"writer {index} to wait")
    assert order == [0]  # all of them wait while the first holds the tables
    first.set()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_a_holder_killed_with_sigkill_is_passed_over_once_its_lease_runs_out(
    redis_connection: redis.Redis, redis_url: str
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FOR_EVER, redis_url], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        taken = threading.Event()

        def wait_turn() -> None:
            with TableLocks(redis_connection).held(["inventory_levels"]):
                taken.set()

        waiter = threading.Thread(target=wait_turn, daemon=True)
        waiter.start()
        assert not taken.wait(2.5)  # the live holder keeps renewing its lease: its turn lasts
        os.kill(holder.pid, signal.SIGKILL)
        assert taken.wait(5)  # two seconds of lease after the kill, and the next one's turn comes
        waiter.join(5)  # its release, before the fixture's Redis goes away
    finally:
        holder.kill()
        holder.wait(10)
