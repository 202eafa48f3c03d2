"""Test hooks: pauses at chosen points of a job, so that a test can kill a process, or stop the service,
right there. Unset, they cost nothing.

- STOCKYARD_TEST_MERGE_DELAY=<seconds>: the first merge a process runs waits that long just before its
  COMMIT, the transaction open, and logs "merge of job <id> paused".
- STOCKYARD_TEST_PREPARE_DELAY=<seconds>: each chunk a process validates is followed by that pause, the
  first one logged as "prepare of job <id> paused".
- STOCKYARD_TEST_STAGE_DELAY=<seconds>: a worker about to stage a body the API kept for it waits that
  long first, logged as "staging of job <id> paused".
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

logger = logging.getLogger("stockyard.hooks")

MERGE_DELAY = "STOCKYARD_TEST_MERGE_DELAY"
PREPARE_DELAY = "STOCKYARD_TEST_PREPARE_DELAY"
STAGE_DELAY = "STOCKYARD_TEST_STAGE_DELAY"
_merges_delayed: list[str] = []
_prepares_delayed: list[str] = []


def _seconds(variable: str) -> float:
    return float(os.environ.get(variable) or 0)


def merge_pause(job_id: str) -> Callable[[], None] | None:
    """What to run just before the COMMIT of a merge of `job_id` (None: nothing)."""
    delay = _seconds(MERGE_DELAY)
    if delay <= 0 or _merges_delayed:
        return None

    def pause() -> None:
        _merges_delayed.append(job_id)
        logger.warning("test hook: merge of job %s paused %.1f s before commit", job_id, delay)
        time.sleep(delay)

    return pause


def prepare_pause(job_id: str) -> None:
    """Pause after a validated chunk of `job_id`, if asked to."""
    delay = _seconds(PREPARE_DELAY)
    if delay <= 0:
        return
    if job_id not in _prepares_delayed:
        _prepares_delayed.append(job_id)
        logger.warning("test hook: prepare of job %s paused %.1f s after a chunk", job_id, delay)
    time.sleep(delay)


def stage_pause(job_id: str) -> None:
    """Pause before a worker stages the kept body of `job_id`, if asked to."""
    delay = _seconds(STAGE_DELAY)
    if delay <= 0:
        return
    logger.warning("test hook: staging of job %s paused %.1f s", job_id, delay)
    time.sleep(delay)
