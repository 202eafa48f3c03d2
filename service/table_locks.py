"""Locks on warehouse tables across every machine, first come first served, held in Redis.

DuckLake lets two transactions insert into one table at once, but fails the second to commit when
either deletes from it (every merge does), even on disjoint rows. So writers of one table take turns:
each takes a ticket and waits until it is the oldest waiter of every table it writes, which also means
a large merge is never overtaken for ever by a stream of small ones. A waiter proves it is alive with a
key it renews; one whose process died is passed over once that key expires, so a kill -9 never leaves
a table locked for longer than LEASE_SECONDS. The lock only spares the work of a failed commit:
DuckLake's own conflict check still guards every commit, and a conflicting one is retried.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator

import redis

LEASE_SECONDS = 5
"""A holder or waiter that stops renewing its key (its process died) is passed over after this long; the
key is renewed every fifth of it. A live holder that misses its renewals only risks a DuckLake conflict,
which is retried."""
POLL_SECONDS = 0.005
"""How often a waiter looks whether its turn has come."""
_PREFIX = "stockyard:lake:table"
_TAKE_TICKET = """
local ticket = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], ticket, ARGV[1])
redis.call('SET', KEYS[3], 1, 'EX', ARGV[2])
return ticket
"""
"""A ticket and a place in the queue in one step: a later ticket can never be queued before an earlier one."""


class TableLocks:
    """This process's tickets for tables, and the thread that keeps them alive."""

    def __init__(self, connection: redis.Redis, lease_seconds: int = LEASE_SECONDS) -> None:
        self.redis = connection
        self.lease_seconds = lease_seconds
        self._members: set[tuple[str, str]] = set()
        self._guard = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._take_ticket = connection.register_script(_TAKE_TICKET)

    @contextlib.contextmanager
    def held(self, tables: Iterable[str]) -> Iterator[None]:
        """Wait for the turn of every table in `tables` (taken in name order, so no two holders deadlock)."""
        taken: list[tuple[str, str]] = []
        try:
            for table in sorted(set(tables)):
                taken.append(self._acquire(table))
            yield
        finally:
            for table, member in reversed(taken):
                self._release(table, member)

    def queued(self, table: str) -> int:
        """How many turns of the table are taken: its holder's and those waiting."""
        return int(self.redis.zcard(f"{_PREFIX}:{table}:queue"))

    def _acquire(self, table: str) -> tuple[str, str]:
        member = f"{os.getpid()}-{secrets.token_hex(6)}"
        with self._guard:
            self._members.add((table, member))
        self._ensure_renewer()
        try:
            keys = [f"{_PREFIX}:{table}:ticket", f"{_PREFIX}:{table}:queue", f"{_PREFIX}:{table}:alive:{member}"]
            ticket = int(self._take_ticket(keys=keys, args=[member, self.lease_seconds]))
            while True:
                head = self.redis.zrange(f"{_PREFIX}:{table}:queue", 0, 0)
                if not head:  # Redis lost the queue (a restart): take the turn again
                    self.redis.zadd(f"{_PREFIX}:{table}:queue", {member: ticket})
                    continue
                first = head[0].decode() if isinstance(head[0], bytes) else str(head[0])
                if first == member:
                    return table, member
                if not self.redis.exists(f"{_PREFIX}:{table}:alive:{first}"):
                    self.redis.zrem(f"{_PREFIX}:{table}:queue", first)  # its process died: pass it over
                    continue
                time.sleep(POLL_SECONDS)
        except BaseException:
            self._release(table, member)
            raise

    def _release(self, table: str, member: str) -> None:
        with self._guard:
            self._members.discard((table, member))
        with contextlib.suppress(redis.RedisError):
            pipe = self.redis.pipeline()
            pipe.zrem(f"{_PREFIX}:{table}:queue", member)
            pipe.delete(f"{_PREFIX}:{table}:alive:{member}")
            pipe.execute()

    def _ensure_renewer(self) -> None:
        with self._guard:
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew, name="table-locks", daemon=True)
                self._renewer.start()

    def _renew(self) -> None:
        while True:
            time.sleep(self.lease_seconds / 5)
            with self._guard:
                members = list(self._members)
            with contextlib.suppress(redis.RedisError):
                pipe = self.redis.pipeline()
                for table, member in members:
                    pipe.set(f"{_PREFIX}:{table}:alive:{member}", 1, ex=self.lease_seconds)
                pipe.execute()
