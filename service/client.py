"""The `stockyard upload` / `stockyard status` client: stream a file, follow the job, save failures.

httpx does the HTTP and click draws the progress bars; this module only decides what to send and
how to summarize what came back. It imports nothing of the service's own machinery (no DuckDB, no
Polars), so that it starts fast on a machine that only uploads.
"""

from __future__ import annotations

import json
import sys
import threading
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


_NEXT_STEP = {
    401: "check the key: pass --key or set STOCKYARD_API_KEY (keys are made with `stockyard keys create`)",
    403: "the key lacks the scope: uploads need import:write, status needs import:read",
    404: "check the job id: the jobId of the upload's answer, with a key of the same organization",
    413: "the file is larger than the service accepts (STOCKYARD_MAX_BODY_BYTES): split it, or gzip it",
    503: "the service is busy or missing a part: try again shortly (GET /ready says which part)",
}


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        hint = _NEXT_STEP.get(response.status_code)
        raise UploadError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {_detail(response)}"
            + (f"\n  {hint}" if hint else "")
        )


class _Ticker:
    """A line on stderr counting the seconds while the server stages an upload it has received whole (a
    large file takes seconds, and nothing else moves meanwhile)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.started = time.monotonic()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.tty: bool | None = None  # known once started

    def start(self) -> None:
        if not self.enabled:
            return
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        if self.tty:  # below the finished upload bar, rewritten in place
            click.echo("", err=True)
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        else:
            click.echo(f"{self.label}…", err=True)

    def _run(self) -> None:
        while not self.done.wait(0.5):
            click.echo(f"\r{self.label}… {time.monotonic() - self.started:.0f} s", err=True, nl=False)

    def stop(self) -> None:
        if not self.enabled:
            return
        self.done.set()
        if self.tty is None:
            return  # the upload never got as far as being sent whole
        if self.thread is not None:
            self.thread.join()
        # on a terminal the upload bar's own end adds the newline
        text = f"\r{self.label}: done in {time.monotonic() - self.started:.1f} s   "
        click.echo(text, err=True, nl=not self.tty)


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
        except httpx.ConnectError as error:
            raise UploadError(
                f"could not reach {self.http.base_url}: {error}\n  is the service running? Start it with"
                " `stockyard serve` (or `make run`), or point --url / STOCKYARD_URL at it"
            ) from None
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
        staging = _Ticker("The service stages the rows", show_progress)
        # progress on stderr, so that stdout holds only the summary; none at all for --json
        with click.progressbar(length=size, label=label, hidden=not show_progress, file=sys.stderr) as bar:

            def chunks() -> Iterator[bytes]:
                with open(path, "rb") as handle:
                    while chunk := handle.read(CHUNK_BYTES):
                        bar.update(len(chunk))
                        yield chunk
                staging.start()  # sent whole: the 202 comes once the service has staged it

            try:
                response = self._send("POST", f"/api/import/{kind}", content=chunks(), headers=headers)
            finally:
                staging.stop()
        accepted: dict[str, Any] = response.json()
        return accepted

    def status(self, job_id: str) -> dict[str, Any]:
        status: dict[str, Any] = self._send("GET", f"/api/import/status/{job_id}").json()
        return status

    def wait(self, job_id: str, row_count: int, *, show_progress: bool) -> dict[str, Any]:
        """Poll the job until it is COMPLETED or FAILED, with a bar of its processedCount, what it is
        doing (queued, validating at so many rows/s, applying) after it."""
        rate = _Rate()
        with click.progressbar(
            length=max(row_count, 1),
            label="Processing",
            hidden=not show_progress,
            file=sys.stderr,
            show_eta=False,
            item_show_func=lambda text: text,
        ) as bar:
            done = 0
            while True:
                status = self.status(job_id)
                processed = int(status["processedCount"])
                ended = status["status"] in ("COMPLETED", "FAILED")
                step = max(max(row_count, 1) - done, 0) if ended else max(processed - done, 0)
                bar.update(step, current_item=_phase(status, rate.of(processed)))
                done = max(done, processed)
                if ended:
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


class _Rate:
    """Rows per second of a job's validation, as this client sees processedCount grow."""

    def __init__(self) -> None:
        self.first: tuple[float, int] | None = None

    def of(self, processed: int) -> float | None:
        now = time.monotonic()
        if self.first is None or processed < self.first[1]:
            self.first = (now, processed)
            return None
        seconds, rows = now - self.first[0], processed - self.first[1]
        return rows / seconds if seconds > 0.2 and rows > 0 else None


def _phase(status: dict[str, Any], rate: float | None) -> str:
    """What the job is doing, after its bar."""
    processed, rows = int(status["processedCount"]), int(status["rowCount"])
    if status["status"] == "PENDING":
        return "queued"
    if status["status"] == "PROCESSING" and processed >= rows:
        return f"{rows:,} rows validated; applying to the warehouse"
    if status["status"] == "PROCESSING":
        speed = f", {rate:,.0f} rows/s" if rate else ""
        return f"{processed:,}/{rows:,} rows validated{speed}"
    return str(status["status"]).lower()


def failed_rows_path(path: Path, job_id: str, format_name: str) -> Path:
    """Beside the uploaded file, uncompressed: `levels.csv.gz` -> `levels.failed-1a2b3c4d.csv`."""
    base = path.name
    for suffix in reversed(path.suffixes):
        base = base.removesuffix(suffix)
    return path.with_name(f"{base}.failed-{job_id[:8]}{EXTENSIONS[format_name]}")


def summarize(status: dict[str, Any], warnings: int, failed_rows: Path | None) -> dict[str, Any]:
    """What a script needs of a job (`--json` prints it, for a running job too), and what the human
    summary shows. `accepted` is null until the job has COMPLETED."""
    processed = int(status.get("processedCount", 0))
    failed = int(status.get("failedCount", 0))
    completed = status["status"] == "COMPLETED"
    return {
        "jobId": status["jobId"],
        "type": status["type"],
        "status": status["status"],
        "rows": int(status["rowCount"]),
        "processed": processed,
        "accepted": processed - failed if completed else (0 if status["status"] == "FAILED" else None),
        "failed": failed,
        "warnings": warnings,
        "failedRows": str(failed_rows) if failed_rows else None,
        "error": None if status["status"] != "FAILED" else (status.get("errors") or [{}])[0].get("message"),
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
        if summary[label] is not None:
            lines.append(f"  {label:<9}{summary[label]:>12,}")
    if summary["failedRows"]:
        lines.append(f"Failed rows saved to {summary['failedRows']}: fix them and upload that file again.")
    return "\n".join(lines)
