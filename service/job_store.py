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

from datetime import datetime
from pathlib import Path
from typing import Any, cast

import redis
from redis.client import Pipeline

from service.errors import NotFoundError
from service.files import write_durably
from service.idempotency import Idempotency
from service.job import FIELD_NAMES, JobRecord, acceptance_score, parse_iso
from service.job_files import JOB_ID_PATTERN, JobFiles, held_lock, organization_directory, sequence_path
from service.settings import Settings

OPEN_JOBS = "stockyard:open-jobs"
_RECORD_KEY = "stockyard:job:{}"
_ORGANIZATION_JOBS = "stockyard:org-jobs:{}"
_ALL_JOBS = "stockyard:org-all-jobs:{}"
"""Every job of an organization that is kept (service/retention.py purges), scored by sequence: the listing."""
_LIST_BATCH = 200


def organization_jobs_key(organization_id: str) -> str:
    return _ORGANIZATION_JOBS.format(organization_id)


SCAN_PAGE = 1000
"""Keys a SCAN of the whole database looks at per round trip (Redis's default, 10, is a round trip per ten
keys of every job and every RQ job)."""


def organizations_with_unsettled_jobs(connection: redis.Redis) -> list[str]:
    """Every organization whose index of unsettled jobs exists (one key each)."""
    prefix = organization_jobs_key("")
    keys = connection.scan_iter(organization_jobs_key("*"), count=SCAN_PAGE)
    return [(key.decode() if isinstance(key, bytes) else str(key))[len(prefix) :] for key in keys]


class JobStore:
    def __init__(self, connection: redis.Redis, settings: Settings) -> None:
        self.redis = connection
        self.settings = settings

    def files(self, record: JobRecord) -> JobFiles:
        return JobFiles.of(self.settings.staging_dir, record.organization_id, record.job_id)

    def accept(self, record: JobRecord, idempotency: Idempotency | None = None) -> JobRecord:
        """Give an accepted job its place in its organization's order, and record it (durably, then in
        Redis). Redis being away raises, and the caller removes the record again.

        With an Idempotency-Key that made a job before, that job is returned instead and nothing is
        recorded: the caller removes the files of the new one."""
        organization = record.organization_id
        with held_lock(sequence_path(self.settings.staging_dir, organization).with_suffix(".lock")):
            if idempotency is not None:
                earlier = idempotency.recorded_job(self.settings.staging_dir, organization)
                if earlier is not None:
                    return self.get(earlier, organization)
            record.sequence = self._next_sequence(organization)
            self.write_durable(record)
            if idempotency is not None:
                idempotency.record(self.settings.staging_dir, organization, record.job_id, record.created_at)
            self.cache(record)
        return record

    def list_jobs(
        self,
        organization_id: str,
        *,
        kind: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> tuple[list[JobRecord], int | None]:
        """The organization's jobs newest first (by sequence, below `after` when given), those that match;
        and the sequence to continue after, or None when there are no more. New jobs have higher
        sequences than any page already read, so a page never shifts while jobs keep arriving."""
        key = _ALL_JOBS.format(organization_id)
        found: list[JobRecord] = []
        high = f"({after}" if after is not None else "+inf"
        while len(found) < limit:
            batch = cast(
                list[tuple[bytes, float]],
                self.redis.zrevrangebyscore(key, high, "-inf", start=0, num=_LIST_BATCH, withscores=True),
            )
            if not batch:
                return found, None
            with self.redis.pipeline(transaction=False) as pipe:
                for member, _ in batch:
                    pipe.hgetall(self.cache_key(member.decode() if isinstance(member, bytes) else str(member)))
                cached = pipe.execute()
            for (_, score), data in zip(batch, cached, strict=True):
                high = f"({int(score)}"
                record = JobRecord.from_redis(data) if data else None
                if record is None or not _matches(record, kind, status, since, before):
                    continue
                found.append(record)
                if len(found) == limit:
                    more = self.redis.zrevrangebyscore(key, high, "-inf", start=0, num=1)
                    return found, (record.sequence if more else None)
            if len(batch) < _LIST_BATCH:
                return found, None
        return found, None

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
        pipe.zadd(_ALL_JOBS.format(record.organization_id), {record.job_id: record.sequence})
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

    def cached(self, job_ids: list[str]) -> dict[str, JobRecord]:
        """The copies in Redis of those jobs it has, in one round trip: fast, and possibly behind the durable
        records (see get)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.cache_key(job_id))
            found = pipe.execute()
        records = (JobRecord.from_redis(data) if data else None for data in found)
        return {job_id: record for job_id, record in zip(job_ids, records, strict=True) if record is not None}

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
        unknown = set(changes) - FIELD_NAMES
        if unknown:
            raise AttributeError(f"JobRecord has no field {sorted(unknown)}")
        for record in records:
            for name, value in changes.items():
                setattr(record, name, value)
        self.save(records, durable)

    def save(self, records: list[JobRecord], durable: bool = True) -> None:
        """Write records as they are now: each durable file, then their copies in one round trip to Redis.

        A job that has ended stays ended: a record of it still open (a worker that prepared a job just
        cancelled) is not written; the one that ended it is kept, and the caller's copy takes its state.
        """
        kept: list[JobRecord] = []
        for record in records:
            with self.record_lock(record.organization_id):
                current = self.read_durable(record.organization_id, record.job_id)
                if current is not None and not current.is_open and record.is_open:
                    record.__dict__.update(current.__dict__)
                    continue
                if durable:
                    self.write_durable(record)
            kept.append(record)
        with self.redis.pipeline() as pipe:
            for record in kept:
                self.cache(record, pipeline=pipe)
            pipe.execute()

    def record_lock(self, organization_id: str) -> Any:
        """Held around reading and writing an organization's records, so that none overtakes another."""
        return held_lock(organization_directory(self.settings.staging_dir, organization_id) / "records.lock")

    def write_durable(self, record: JobRecord) -> None:
        """The durable record alone (callers that hold record_lock: save takes it itself)."""
        write_durably(self.files(record).record, record.to_json())

    def organization_jobs(self, organization_id: str, limit: int) -> list[str]:
        """The first `limit` unsettled jobs of the organization, in acceptance order."""
        members = self.redis.zrange(organization_jobs_key(organization_id), 0, limit - 1)
        return [member.decode() if isinstance(member, bytes) else str(member) for member in members]

    def forget_entirely(self, record: JobRecord) -> None:
        """Drop every trace of a purged job from Redis (service/retention.py)."""
        with self.redis.pipeline() as pipe:
            pipe.delete(self.cache_key(record.job_id))
            pipe.zrem(OPEN_JOBS, record.index_member)
            pipe.zrem(organization_jobs_key(record.organization_id), record.job_id)
            pipe.zrem(_ALL_JOBS.format(record.organization_id), record.job_id)
            pipe.execute()

    def forget(self, organization_id: str, job_id: str) -> None:
        """Drop a job from the organization's index (its record says it is settled, or it is gone)."""
        self.redis.zrem(organization_jobs_key(organization_id), job_id)


def _matches(
    record: JobRecord, kind: str | None, status: str | None, since: datetime | None, before: datetime | None
) -> bool:
    created = parse_iso(record.created_at)
    return (
        (kind is None or record.kind == kind)
        and (status is None or record.status == status)
        and (since is None or (created is not None and created >= since))
        and (before is None or (created is not None and created < before))
    )


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
