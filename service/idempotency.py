"""Idempotency-Key: a client that sends a POST again (after a timeout, say) gets the first job, not a second.

The key is the client's, per organization. The request's fingerprint (the kind, content type and
encoding, dry run or not, and a SHA-256 of the body as received) is kept with the job it made, durably,
under staging/{org}/idempotency/{sha256 of the key}.json, for as long as the job is kept
(STOCKYARD_RETENTION_DAYS): the same key with the same request answers that job again, even after a
restart; the same key with another request is a 422 `idempotency_key_reused`. The key is looked up and
recorded under the organization's sequence lock (service/job_store.py), so that two requests with one key
racing each other make one job.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from service.errors import BadRequestError, UnprocessableError
from service.files import write_durably
from service.job_files import organization_directory

HEADER = "idempotency-key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
"""1-255 printable ASCII characters, no spaces (a UUID, typically)."""


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key and the fingerprint of the request it came with."""

    key_hash: str
    fingerprint: str

    @classmethod
    def of(cls, key: str | None, *request_parts: str, body_sha256: str) -> Idempotency | None:
        if key is None:
            return None
        if not _KEY.match(key):
            raise BadRequestError("Idempotency-Key must be 1 to 255 printable ASCII characters without spaces")
        fingerprint = hashlib.sha256("\n".join([*request_parts, body_sha256]).encode()).hexdigest()
        return cls(hashlib.sha256(key.encode()).hexdigest(), fingerprint)

    def path(self, staging_dir: Path, organization_id: str) -> Path:
        return organization_directory(staging_dir, organization_id) / "idempotency" / f"{self.key_hash}.json"

    def recorded_job(self, staging_dir: Path, organization_id: str) -> str | None:
        """The job the key made before, if any; UnprocessableError when that was for another request."""
        try:
            kept = json.loads(self.path(staging_dir, organization_id).read_bytes())
        except FileNotFoundError:
            return None
        if kept["fingerprint"] != self.fingerprint:
            raise UnprocessableError(
                "this Idempotency-Key was used for a different request (another body, kind or format);"
                " use a new key for a new import",
                code="idempotency_key_reused",
            )
        job_id: str = kept["job_id"]
        return job_id

    def record(self, staging_dir: Path, organization_id: str, job_id: str, created_at: str) -> None:
        path = self.path(staging_dir, organization_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"fingerprint": self.fingerprint, "job_id": job_id, "created_at": created_at}
        write_durably(path, json.dumps(data).encode())
