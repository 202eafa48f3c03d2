"""Job records: the durable file first on every state change, then its copy in Redis.

Redis holds, besides the copy (fast status reads, live progress), two indexes that recovery rebuilds
from the durable records:
- `stockyard:open-jobs`: every PENDING or PROCESSING job, as "{org}/{jobId}", scored by acceptance;
- `stockyard:org-jobs:{org}`: every job of the organization not yet settled (open, or FAILED without its
  import_jobs row), scored by its acceptance sequence: the applier applies them in that order.

A job's sequence is taken from the organization's counter file under its lock, and the job is indexed
before the lock is released: a job never shows up in the index before one accepted earlier.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import redis
from redis.client import Pipeline

from service.errors import NotFoundError
from service.files import write_durably
from service.job import JobRecord, acceptance_score
from service.job_files import JOB_ID_PATTERN, JobFiles, held_lock, organization_directory, sequence_path
from service.settings import Settings

OPEN_JOBS = "stockyard:open-jobs"
_FIELD_NAMES = {f.name for f in fields(JobRecord)}
_RECORD_KEY = "stockyard:job:{}"
_ORGANIZATION_JOBS = "stockyard:org-jobs:{}"


def organization_jobs_key(organization_id: str) -> str:
    return _ORGANIZATION_JOBS.format(organization_id)


class JobStore:
    def __init__(self, connection: redis.Redis, settings: Settings) -> None:
        self.redis = connection
        self.settings = settings

    def files(self, record: JobRecord) -> JobFiles:
        return JobFiles.of(self.settings.staging_dir, record.organization_id, record.job_id)

    def accept(self, record: JobRecord) -> JobRecord:
        """Give an accepted job its place in its organization's order, and record it (durably, then in
        Redis). Redis being away raises, and the caller removes the record again."""
        with held_lock(sequence_path(self.settings.staging_dir, record.organization_id).with_suffix(".lock")):
            record.sequence = self._next_sequence(record.organization_id)
            self._write_durable(record)
            self.cache(record)
        return record

    def _next_sequence(self, organization_id: str) -> int:
        path = sequence_path(self.settings.staging_dir, organization_id)
        try:
            last = int(path.read_text())
        except (FileNotFoundError, ValueError):
            # no counter yet, or one a crash left unreadable: continue after every job recorded
            last = max((r.sequence for r in durable_records(self.settings.staging_dir, organization_id)), default=0)
        write_durably(path, str(last + 1).encode())
        return last + 1

    @staticmethod
    def cache_key(job_id: str) -> str:
        return _RECORD_KEY.format(job_id)

    def cache(self, record: JobRecord, pipeline: Pipeline | None = None) -> None:
        """Copy the record to Redis and keep both indexes in step with it."""
        pipe = pipeline if pipeline is not None else self.redis.pipeline()
        pipe.hset(self.cache_key(record.job_id), mapping=record.to_redis())  # type: ignore[arg-type]
        if record.is_open:
            pipe.zadd(OPEN_JOBS, {record.index_member: acceptance_score(record)})
        else:
            pipe.zrem(OPEN_JOBS, record.index_member)
        if record.is_settled:
            pipe.zrem(organization_jobs_key(record.organization_id), record.job_id)
        else:
            pipe.zadd(organization_jobs_key(record.organization_id), {record.job_id: record.sequence})
        if pipeline is None:
            pipe.execute()

    def get(self, job_id: str, organization_id: str | None = None) -> JobRecord:
        """The job; NotFoundError when missing or of another organization (the two look the same).

        The durable record is read whenever Redis cannot say for sure: it lost the job, cannot be
        reached, or holds an open state that the durable record may already have moved past.
        """
        try:
            data = self.redis.hgetall(self.cache_key(job_id))
        except redis.RedisError:
            if organization_id is None:
                raise
            data = {}
        cached = JobRecord.from_redis(data) if data else None  # type: ignore[arg-type]
        if cached is not None and organization_id is not None and cached.organization_id != organization_id:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        owner = organization_id or (cached.organization_id if cached is not None else None)
        if owner is not None and (cached is None or cached.is_open or not cached.recorded):
            durable = self.read_durable(owner, job_id)
            if durable is not None:
                # both open in the same phase: the copy is as current, and carries the live progress
                live = cached is not None and cached.is_open and durable.is_open and cached.prepared == durable.prepared
                return cached if live and cached is not None else durable
        if cached is None:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        return cached

    def read_durable(self, organization_id: str, job_id: str) -> JobRecord | None:
        try:
            path = JobFiles.of(self.settings.staging_dir, organization_id, job_id).record
        except ValueError:
            return None
        return JobRecord.from_durable(path)

    def update(self, record: JobRecord, durable: bool = True, **changes: Any) -> JobRecord:
        self.update_all([record], durable, **changes)
        return record

    def update_all(self, records: list[JobRecord], durable: bool = True, **changes: Any) -> None:
        """The same change to several jobs: each durable record written, then one round trip to Redis.
        `durable=False` changes only the copy in Redis (progress, or a state recovery can do without)."""
        unknown = set(changes) - _FIELD_NAMES
        if unknown:
            raise AttributeError(f"JobRecord has no field {sorted(unknown)}")
        for record in records:
            for name, value in changes.items():
                setattr(record, name, value)
        self.save(records, durable)

    def save(self, records: list[JobRecord], durable: bool = True) -> None:
        """Write records as they are now: each durable file, then their copies in one round trip to Redis."""
        if durable:
            for record in records:
                self._write_durable(record)
        with self.redis.pipeline() as pipe:
            for record in records:
                self.cache(record, pipeline=pipe)
            pipe.execute()

    def _write_durable(self, record: JobRecord) -> None:
        write_durably(self.files(record).record, record.to_json())

    def organization_jobs(self, organization_id: str, limit: int) -> list[str]:
        """The first `limit` unsettled jobs of the organization, in acceptance order."""
        members = self.redis.zrange(organization_jobs_key(organization_id), 0, limit - 1)
        return [member.decode() if isinstance(member, bytes) else str(member) for member in members]

    def forget(self, organization_id: str, job_id: str) -> None:
        """Drop a job from the organization's index (its record says it is settled, or it is gone)."""
        self.redis.zrem(organization_jobs_key(organization_id), job_id)


def durable_records(staging_dir: Path, organization_id: str | None = None) -> list[JobRecord]:
    """Every durable record (of one organization, or of all), trusted only where its own path puts it."""
    pattern = f"{organization_id}/*.json" if organization_id is not None else "*/*.json"
    records = []
    for path in staging_dir.glob(pattern):
        if not JOB_ID_PATTERN.match(path.stem):
            continue
        record = JobRecord.from_durable(path)
        if record is not None and record.job_id == path.stem and record.organization_id == path.parent.name:
            records.append(record)
    return records


def organization_ids(staging_dir: Path) -> list[str]:
    return sorted(path.name for path in staging_dir.iterdir() if path.is_dir()) if staging_dir.exists() else []


__all__ = ["OPEN_JOBS", "JobStore", "durable_records", "organization_directory", "organization_ids"]
