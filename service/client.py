"""The `stockyard upload` / `stockyard status` client: stream a file, follow the job, save failures.

httpx does the HTTP and click draws the progress bars; this module only decides what to send and
how to summarize what came back. It imports nothing of the service's own machinery (no DuckDB, no
Polars), so that it starts fast on a machine that only uploads.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

CHUNK_BYTES = 1 << 20
POLL_SECONDS = 0.5

FORMATS = {
    ".json": ("json", "application/json"),
    ".ndjson": ("ndjson", "application/x-ndjson"),
    ".jsonl": ("ndjson", "application/x-ndjson"),
    ".csv": ("csv", "text/csv"),
    ".parquet": ("parquet", "application/vnd.apache.parquet"),
}
EXTENSIONS = {"json": ".json", "ndjson": ".ndjson", "csv": ".csv", "parquet": ".parquet"}

EXIT_ROWS_FAILED = 1
"""The job completed, and some rows were rejected (their file is saved)."""
EXIT_JOB_FAILED = 3
"""The job failed as a whole: nothing of it was applied."""
EXIT_REFUSED = 4
"""The request was refused (4xx, 5xx) or the service could not be reached: no job was made."""
EXIT_INTERRUPTED = 130
"""Ctrl-C while waiting: the job goes on, on the server."""


class UploadError(click.ClickException):
    """A request that was refused or could not be sent, with the server's own words when there are any."""

    exit_code = EXIT_REFUSED


@dataclass(frozen=True)
class FileFormat:
    """How a file is sent: its format (as `?format=` names it), Content-Type, and whether it is gzip."""

    name: str
    content_type: str
    gzip: bool


def detect_format(path: Path) -> FileFormat:
    """The format from the file name: .json, .ndjson (or .jsonl), .csv, .parquet, each optionally .gz."""
    suffixes = [s.lower() for s in path.suffixes]
    gzip = bool(suffixes) and suffixes[-1] == ".gz"
    if gzip:
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in FORMATS:
        known = ", ".join(FORMATS)
        raise click.UsageError(f"cannot tell the format of {path.name}: name it with one of {known} (optionally .gz)")
    name, content_type = FORMATS[suffixes[-1]]
    return FileFormat(name=name, content_type=content_type, gzip=gzip)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return json.dumps(body)[:500]


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise UploadError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {_detail(response)}"
        )


class Client:
    """The import API over HTTP, as one API key sees it."""

    def __init__(self, url: str, key: str, *, timeout: float = 600.0) -> None:
        # the upload's 202 comes after staging, which takes a while for a large file: a long read timeout
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers={"x-api-key": key}, timeout=httpx.Timeout(timeout, connect=10.0)
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise UploadError(f"could not reach {self.http.base_url}: {error}") from None
        _check(response)
        return response

    def upload(self, kind: str, path: Path, *, show_progress: bool) -> dict[str, Any]:
        """POST the file as it is (gzip stays gzip), streamed with a progress bar; return the job envelope."""
        upload_format = detect_format(path)
        size = path.stat().st_size
        headers = {"content-type": upload_format.content_type, "content-length": str(size)}
        if upload_format.gzip:
            headers["content-encoding"] = "gzip"
        label = f"Uploading {path.name}"
        # progress on stderr, so that stdout holds only the summary; none at all for --json
        with click.progressbar(length=size, label=label, hidden=not show_progress, file=sys.stderr) as bar:

            def chunks() -> Iterator[bytes]:
                with open(path, "rb") as handle:
                    while chunk := handle.read(CHUNK_BYTES):
                        bar.update(len(chunk))
                        yield chunk

            response = self._send("POST", f"/api/import/{kind}", content=chunks(), headers=headers)
        accepted: dict[str, Any] = response.json()
        return accepted

    def status(self, job_id: str) -> dict[str, Any]:
        status: dict[str, Any] = self._send("GET", f"/api/import/status/{job_id}").json()
        return status

    def wait(self, job_id: str, row_count: int, *, show_progress: bool) -> dict[str, Any]:
        """Poll the job until it is COMPLETED or FAILED, with a bar of its processedCount."""
        with click.progressbar(
            length=max(row_count, 1), label="Processing", hidden=not show_progress, file=sys.stderr
        ) as bar:
            done = 0
            while True:
                status = self.status(job_id)
                processed = int(status["processedCount"])
                bar.update(max(processed - done, 0))
                done = max(done, processed)
                if status["status"] in ("COMPLETED", "FAILED"):
                    bar.update(max(max(row_count, 1) - done, 0))
                    return status
                time.sleep(POLL_SECONDS)

    def warning_total(self, job_id: str) -> int:
        page = self._send("GET", f"/api/import/status/{job_id}/warnings", params={"limit": 1}).json()
        return int(page["total"])

    def save_failed_rows(self, job_id: str, target: Path, format_name: str) -> Path:
        """Stream the job's failed rows, in `format_name`, to `target`."""
        path = f"/api/import/status/{job_id}/failed-rows"
        try:
            with self.http.stream("GET", path, params={"format": format_name}) as response:
                if response.status_code >= 400:
                    response.read()
                    _check(response)
                with open(target, "wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
        except httpx.HTTPError as error:
            raise UploadError(f"could not download the failed rows from {self.http.base_url}: {error}") from None
        return target


def failed_rows_path(path: Path, job_id: str, format_name: str) -> Path:
    """Beside the uploaded file, uncompressed: `levels.csv.gz` -> `levels.failed-1a2b3c4d.csv`."""
    base = path.name
    for suffix in reversed(path.suffixes):
        base = base.removesuffix(suffix)
    return path.with_name(f"{base}.failed-{job_id[:8]}{EXTENSIONS[format_name]}")


def summarize(status: dict[str, Any], warnings: int, failed_rows: Path | None) -> dict[str, Any]:
    """What a script needs of a finished job, and what the human summary shows."""
    processed = int(status["processedCount"])
    failed = int(status["failedCount"])
    completed = status["status"] == "COMPLETED"
    return {
        "jobId": status["jobId"],
        "type": status["type"],
        "status": status["status"],
        "rows": int(status["rowCount"]),
        "accepted": processed - failed if completed else 0,
        "failed": failed,
        "warnings": warnings,
        "failedRows": str(failed_rows) if failed_rows else None,
        "error": None if status["status"] != "FAILED" else (status["errors"] or [{}])[0].get("message"),
    }


def exit_code(status: dict[str, Any]) -> int:
    if status["status"] == "FAILED":
        return EXIT_JOB_FAILED
    return EXIT_ROWS_FAILED if int(status["failedCount"]) else 0


def describe(summary: dict[str, Any]) -> str:
    """The human summary of a finished (or running) job."""
    lines = [f"Job {summary['jobId']} ({summary['type']}): {summary['status']}"]
    if summary["status"] == "FAILED":
        lines.append(f"  {summary['error'] or 'the job failed'}; nothing of it was applied.")
        return "\n".join(lines)
    for label in ("rows", "accepted", "failed", "warnings"):
        lines.append(f"  {label:<9}{summary[label]:>12,}")
    if summary["failedRows"]:
        lines.append(f"Failed rows saved to {summary['failedRows']}: fix them and upload that file again.")
    return "\n".join(lines)
