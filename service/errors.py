"""Stockyard's exceptions, as a small tree, and their HTTP form.

StockyardError
├── ClientError        4xx: the caller can fix it; `message` is for them
│   ├── BadRequestError        400  the body as a whole is unusable
│   ├── UnauthorizedError      401  no key, unknown key, revoked key
│   ├── ForbiddenError         403  valid key without the scope
│   ├── NotFoundError          404  no such job (or another organization's)
│   ├── ConflictError          409  the job is not in a state that allows it (not finished yet)
│   ├── GoneError              410  the job's files were purged after the retention period
│   ├── RequestTimeoutError    408  the body stopped arriving
│   ├── UnprocessableError     422  well formed, but not to be carried out (an Idempotency-Key reused)
│   ├── PayloadTooLargeError   413
│   └── UnsupportedMediaError  415
├── ServiceUnavailableError  503/507: we could not stage the upload; nothing is kept
├── TransientError     the job is retried (Redis went away, the warehouse was busy)
└── TerminalError      the job fails as a whole, nothing of it applied
"""

from __future__ import annotations

import errno
import os

import duckdb

_STORAGE_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class StockyardError(Exception):
    """Base of every error Stockyard raises on purpose."""

    status_code = 500
    retry_after: int | None = None
    """Seconds a client should wait before trying again (the Retry-After header), if it should."""
    code: str | None = None
    """A machine-readable reason, where a status alone is not enough (`idempotency_key_reused`)."""

    def __init__(self, message: str, *, job_id: str | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id
        self.kind = kind


class ClientError(StockyardError):
    status_code = 400


class BadRequestError(ClientError):
    status_code = 400


class UnauthorizedError(ClientError):
    status_code = 401


class ForbiddenError(ClientError):
    status_code = 403


class NotFoundError(ClientError):
    status_code = 404


class ConflictError(ClientError):
    status_code = 409


class GoneError(ClientError):
    """410: the job existed, and its files were purged after the retention period."""

    status_code = 410


class RequestTimeoutError(ClientError):
    status_code = 408


class UnprocessableError(ClientError):
    """422: the request is well formed, but cannot be carried out as it stands (`code` says why)."""

    status_code = 422

    def __init__(self, message: str, *, code: str, **context: str | None) -> None:
        super().__init__(message, **context)
        self.code = code


class PayloadTooLargeError(ClientError):
    status_code = 413


class UnsupportedMediaError(ClientError):
    status_code = 415


class ServiceUnavailableError(StockyardError):
    """The upload could not be staged (disk full, unwritable data directory)."""

    def __init__(
        self, message: str, *, status_code: int = 503, retry_after: int | None = None, **context: str | None
    ) -> None:
        super().__init__(message, **context)
        self.status_code = status_code
        self.retry_after = retry_after


class TransientError(StockyardError):
    """Worth retrying: nothing was applied."""


class TerminalError(StockyardError):
    """The job cannot be applied; it becomes FAILED with this message."""


def storage_error(error: OSError | duckdb.Error) -> ServiceUnavailableError:
    """The client's view of a failed write while staging: 507 when space ran out, 503 otherwise.

    The message names the cause, never a path: nothing of the upload was kept, so retrying is safe.
    """
    if isinstance(error, OSError):
        full = error.errno in _STORAGE_FULL
        cause = os.strerror(error.errno) if error.errno else type(error).__name__
    else:
        text = str(error)
        full = not any(marker in text for marker in ("Permission denied", "Read-only file system"))
        cause = next(
            (m for m in ("No space left on device", "File too large", "Disk quota exceeded") if m in text),
            "the staging area could not be written",
        )
    if full:
        return ServiceUnavailableError(
            f"insufficient storage to stage the upload ({cause}); nothing was kept, retry later", status_code=507
        )
    return ServiceUnavailableError(
        f"the staging area is not writable ({cause}); nothing was kept, retry later", status_code=503
    )
