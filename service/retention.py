"""Retention: what a finished job leaves on disk is kept STOCKYARD_RETENTION_DAYS (30), then purged.

A job's staged upload, prepared files, errors, warnings and record, and the Idempotency-Keys that
named it, are removed once the job has ended that long ago; never while it is open. What stays is a
tombstone (`{jobId}.expired`, a few bytes) so that its status answers 410 with when it expired rather
than 404, kept another retention period; and the warehouse's import_jobs row (lineage) stays for good.
A worker runs the purge in its idle time, one worker at a time (a Redis lock), every
STOCKYARD_RETENTION_INTERVAL seconds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from service.files import remove_quietly, write_durably
from service.job import JobRecord, parse_iso
from service.job_files import JobFiles
from service.job_store import JobStore, durable_records, organization_ids
from service.settings import Settings

_PURGE_LOCK = "stockyard:retention-purge"
TOMBSTONE_SUFFIX = ".expired"

logger = logging.getLogger("stockyard.retention")


@dataclass
class PurgeReport:
    jobs: int = 0
    keys: int = 0
    tombstones: int = 0
    bytes_freed: int = 0


def tombstone_path(files: JobFiles) -> Path:
    return files.directory / f"{files.job_id}{TOMBSTONE_SUFFIX}"


def expired_at(staging_dir: Path, organization_id: str, job_id: str) -> str | None:
    """When the job's files were purged, if they were (its status is then a 410)."""
    try:
        files = JobFiles.of(staging_dir, organization_id, job_id)
        return str(json.loads(tombstone_path(files).read_bytes())["expired_at"])
    except (ValueError, FileNotFoundError, KeyError, OSError):
        return None


def purge_if_due(store: JobStore, settings: Settings) -> PurgeReport | None:
    """Purge now if no other worker did within the interval; None when it was not this worker's turn."""
    try:
        if not store.redis.set(_PURGE_LOCK, 1, nx=True, ex=max(1, int(settings.retention_interval_seconds))):
            return None
    except redis.RedisError:
        return None
    return purge_expired(store, settings)


def purge_expired(store: JobStore, settings: Settings, now: datetime | None = None) -> PurgeReport:
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=settings.retention_days)).replace(tzinfo=None)
    report = PurgeReport()
    for organization_id in organization_ids(settings.staging_dir):
        for record in durable_records(settings.staging_dir, organization_id):
            ended = parse_iso(record.completed_at)
            if record.is_settled and ended is not None and ended < cutoff:
                report.bytes_freed += _purge_job(store, settings, record, now)
                report.jobs += 1
        report.keys += _purge_keys(settings.staging_dir / organization_id / "idempotency", cutoff)
        report.tombstones += _purge_tombstones(settings.staging_dir / organization_id, now, settings.retention_days)
    if report.jobs or report.keys:
        logger.info(
            "retention: purged %d job(s) and %d idempotency key(s) ended before %s, %.1f MB freed",
            report.jobs,
            report.keys,
            cutoff.date(),
            report.bytes_freed / 1e6,
        )
    return report


def _purge_job(store: JobStore, settings: Settings, record: JobRecord, now: datetime) -> int:
    files = store.files(record)
    freed = sum(path.stat().st_size for path in files.all() if path.exists())
    stone = {
        "expired_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "completed_at": record.completed_at,
    }
    write_durably(tombstone_path(files), json.dumps(stone).encode())
    remove_quietly(*files.all())
    try:
        store.forget_entirely(record)
    except redis.RedisError:  # the next full recovery pass finds no record, and drops nothing
        logger.warning("could not remove purged job %s from Redis", record.job_id)
    return freed


def _purge_keys(directory: Path, cutoff: datetime) -> int:
    removed = 0
    for path in directory.glob("*.json") if directory.exists() else []:
        try:
            created = parse_iso(json.loads(path.read_bytes())["created_at"])
        except (OSError, ValueError, KeyError):
            continue
        if created is not None and created < cutoff:
            remove_quietly(path)
            removed += 1
    return removed


def _purge_tombstones(directory: Path, now: datetime, retention_days: float) -> int:
    """Tombstones are kept one more retention period, then go too."""
    removed = 0
    cutoff = now.timestamp() - 2 * retention_days * 86400
    for path in directory.glob(f"*{TOMBSTONE_SUFFIX}"):
        try:
            if path.stat().st_mtime < cutoff:
                remove_quietly(path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def directory_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
