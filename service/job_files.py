"""A job's files in the staging area, and the file locks that tell who is working on what.

Layout, per organization, under staging/{org}/:

- `{jobId}.body`: the request body while it streams in (the API; removed once staged);
- `{jobId}.upload.json`: a large JSON body kept as sent, checked and counted, for the worker that prepares
  the job to stage or stream (the API, before the 202; removed once staged whole, or once the job has
  ended: service/staging/large_json.py);
- `{jobId}.failed.parquet`, `{jobId}.failed-lines.parquet`: of a streamed body, the staged text of the rows
  that failed, for the failed-rows download (prepare);
- `{jobId}.parquet`, `{jobId}.lines.parquet`: the staged rows and lines, every field as the JSON text
  sent (the API, before the 202);
- `{jobId}.json`: the job's durable record, the authority on its state (service/job.py);
- `{jobId}.errors.parquet`, `{jobId}.warnings.parquet`: every error and warning, in row order (prepare);
- `{jobId}.prepared-all.arrow`: what apply merges of a small job, rows, lines and stub references in
  warehouse columns, in one file (prepare); a large job's in a file each: `{jobId}.prepared.parquet`,
  `.prepared-lines.parquet`, `.prepared-{table}.parquet`;
- `{jobId}.lock`: an flock held by whoever prepares the job;
- `sequence`, `sequence.lock`: the organization's last acceptance sequence number (the API);
- `apply.lock`: an flock held while the organization's jobs are applied (the applier).

Every durable file follows service/files.py. A lock is an flock: the kernel drops it when its holder
dies (kill -9 included), which is how recovery tells a running job from one whose worker died.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from service.files import remove_quietly

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
REFERENCE_TABLES = ("products", "suppliers", "locations")
"""The tables a job may add stub records to (CONTRACT.md: references never reject a row)."""


@dataclass(frozen=True)
class JobFiles:
    """Every file of one job. Built only from a checked job id: no crafted id names a path elsewhere."""

    directory: Path
    job_id: str

    @classmethod
    def of(cls, staging_dir: Path, organization_id: str, job_id: str) -> JobFiles:
        if not JOB_ID_PATTERN.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return cls(organization_directory(staging_dir, organization_id), job_id)

    def _file(self, suffix: str) -> Path:
        return self.directory / f"{self.job_id}{suffix}"

    @property
    def body(self) -> Path:
        return self._file(".body")

    @property
    def upload(self) -> Path:
        return self._file(".upload.json")

    @property
    def rows(self) -> Path:
        return self._file(".parquet")

    @property
    def lines(self) -> Path:
        return self._file(".lines.parquet")

    @property
    def failed_rows(self) -> Path:
        return self._file(".failed.parquet")

    @property
    def failed_lines(self) -> Path:
        return self._file(".failed-lines.parquet")

    def rows_as_sent(self) -> tuple[Path, Path]:
        """Where the rows (and lines) as sent are read from for the failed-rows download: the staged files, or
        the rows that failed, when the body was streamed rather than staged whole."""
        return (self.failed_rows, self.failed_lines) if self.failed_rows.exists() else (self.rows, self.lines)

    @property
    def record(self) -> Path:
        return self._file(".json")

    @property
    def errors(self) -> Path:
        return self._file(".errors.parquet")

    @property
    def warnings(self) -> Path:
        return self._file(".warnings.parquet")

    @property
    def lock(self) -> Path:
        return self._file(".lock")

    @property
    def prepared_rows(self) -> Path:
        return self._file(".prepared.parquet")

    @property
    def prepared_lines(self) -> Path:
        return self._file(".prepared-lines.parquet")

    def prepared_references(self, table: str) -> Path:
        if table not in REFERENCE_TABLES:
            raise ValueError(f"not a reference table: {table!r}")
        return self._file(f".prepared-{table}.parquet")

    @property
    def prepared_all(self) -> Path:
        return self._file(".prepared-all.arrow")

    @property
    def prepared(self) -> list[Path]:
        return [
            self.prepared_all,
            self.prepared_rows,
            self.prepared_lines,
            *(self.prepared_references(t) for t in REFERENCE_TABLES),
        ]

    @property
    def staged(self) -> list[Path]:
        return [self.upload, self.rows, self.lines, self.failed_rows, self.failed_lines]

    def all(self) -> list[Path]:
        """Every file the job may have, lock included (for removing them)."""
        return [self.body, *self.staged, self.record, self.errors, self.warnings, *self.prepared, self.lock]


def organization_directory(staging_dir: Path, organization_id: str) -> Path:
    return staging_dir / organization_id


def sequence_path(staging_dir: Path, organization_id: str) -> Path:
    return organization_directory(staging_dir, organization_id) / "sequence"


def apply_lock_path(staging_dir: Path, organization_id: str) -> Path:
    return organization_directory(staging_dir, organization_id) / "apply.lock"


@contextmanager
def held_lock(path: Path) -> Iterator[None]:
    """Hold the flock at `path` (waiting for it) for the block's duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def try_lock(path: Path, held: ExitStack) -> bool:
    """Take the flock at `path` if nobody holds it; `held` releases it. Locks are per open file, so two
    threads of one process exclude each other as two processes do."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")  # noqa: SIM115 - closed by `held`, which releases the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    held.callback(handle.close)
    return True


def is_locked(path: Path) -> bool:
    """Does a live process (or another thread of this one) hold the flock at `path`?"""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken just now
    return False


def remove_lock(path: Path) -> None:
    """Remove a finished job's lock file: whoever waits for it will find the job finished."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def release_ended(files: JobFiles) -> None:
    """What a job that has ended no longer needs: its lock, and a body kept for a worker to stage."""
    remove_lock(files.lock)
    remove_quietly(files.upload)
