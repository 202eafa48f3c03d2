"""`stockyard`: the operator's command line (serve, api, worker, keys) and the client (upload, status)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from service import logs
from service.auth import KeyStore, Scope
from service.errors import StockyardError
from service.settings import Settings, get_settings

_DEV_KEY_MARKER = ".dev-key-created"
_PR_SET_PDEATHSIG = 1
_STABLE_SECONDS = 60.0
_MAX_RESTART_BACKOFF = 60.0
"""A worker that dies is restarted at once; one that dies again within a minute, after 1, 2, 4 ... 60 s."""


def _apply(data_dir: Path | None, **environment: object) -> None:
    """Flags win over STOCKYARD_* variables: set them in the environment children inherit too."""
    if data_dir is not None:
        os.environ["STOCKYARD_DATA_DIR"] = str(data_dir.resolve())
    for name, value in environment.items():
        if value is not None:
            os.environ[f"STOCKYARD_{name.upper()}"] = str(value)
    get_settings.cache_clear()


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where keys, staging, the warehouse and the embedded Redis live [env STOCKYARD_DATA_DIR; default ./data].",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stockyard")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


@click.group()
@click.version_option(_version(), prog_name="stockyard")
def main() -> None:
    """Stockyard: bulk imports of inventory data into a DuckDB warehouse."""


@main.command()
@data_dir_option
@click.option("--host", default=None, help="Address to listen on [env STOCKYARD_HOST; default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [env STOCKYARD_PORT; default 8000].")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes: each prepares jobs, one of them applies them [env STOCKYARD_WORKERS; default 2].",
)
def serve(data_dir: Path | None, host: str | None, port: int | None, workers: int | None) -> None:
    """The API, the workers and (without REDIS_URL) an embedded Redis, in one command; Ctrl-C stops all."""
    _apply(data_dir, host=host, port=port, workers=workers)
    settings = get_settings()
    _require_free_port(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    options = _child_options()
    redis_server: subprocess.Popen[bytes] | None = None
    if settings.redis_url is None:
        from service.embedded_redis import start_redis

        redis_server = start_redis(settings.redis_dir, settings.redis_socket, **options)
        os.environ["REDIS_URL"] = settings.effective_redis_url
    postgres_server = _start_postgres(settings, options)
    command = [sys.executable, "-m", "service.cli"]
    workers_running = [_Restarting("worker", [*command, "worker"], options) for _ in range(settings.workers)]
    api_server = subprocess.Popen([*command, "api"], **options)

    url = f"http://{settings.host}:{settings.port}"
    click.echo(f"Stockyard API   {url}")
    click.echo(f"API docs        {url}/schema  (OpenAPI JSON: {url}/schema/openapi.json)")
    click.echo(f"Jobs page       {url}/ui")
    click.echo(f"Data directory  {settings.data_dir}")
    click.echo(f"Workers         {settings.workers} (each prepares jobs; one applies them)")
    if settings.is_lake:
        from service.lake import attach_sql, is_object_store

        where = "embedded PostgreSQL" if postgres_server is not None else logs.redacted(settings.effective_lake_catalog)
        click.echo(f"Warehouse       DuckLake: catalog on {where}, data in {settings.lake_data_location}")
        attach = attach_sql(logs.redacted(settings.effective_lake_catalog), read_only=True)
        click.echo(f"Analysts        {attach}  (each job visible at once; docs/analysts.md)")
        if is_object_store(settings.lake_data_location):
            click.echo("                after loading httpfs and creating an S3 secret (docs/analysts.md)")
    else:
        click.echo(f"Analysts' copy  {settings.analytics_path}  (open it read-only with DuckDB)")
    _print_dev_key(settings.data_dir)

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    failed = False
    while not stopping:
        for each in workers_running:
            each.keep_running()
        for name, child in (("API", api_server), ("Redis", redis_server)):
            if child is not None and child.poll() is not None:
                click.echo(f"The {name} exited with {child.returncode}; stopping.", err=True)
                failed = stopping = True
        if postgres_server is not None and postgres_server.poll() is not None and not stopping:
            # the catalog's own WAL keeps every commit; the workers retry what failed meanwhile
            click.echo(f"The PostgreSQL exited with {postgres_server.returncode}; restarting it.", err=True)
            postgres_server = _start_postgres(settings, options)
        time.sleep(0.2)
    # API and workers together: in-flight requests finish, running jobs complete (or, past the
    # timeout, are rolled back and resume at the next start). Redis last: they all still need it.
    _stop_children([api_server, *(each.process for each in workers_running)], settings.shutdown_timeout_seconds)
    _stop_children([server for server in (redis_server, postgres_server) if server is not None], 30)
    click.echo("Stockyard stopped.")
    if failed:
        sys.exit(1)


def _start_postgres(settings: Settings, options: dict[str, Any]) -> subprocess.Popen[bytes] | None:
    """The lake's catalog, when the lake is chosen with no catalog of the operator's: an embedded PostgreSQL."""
    if not settings.is_lake or settings.lake_catalog is not None:
        return None
    from service.embedded_postgres import start_postgres

    _require_lake()
    try:
        server = start_postgres(settings.postgres_dir, **options)
    except StockyardError as error:
        raise click.ClickException(str(error)) from None
    os.environ["STOCKYARD_LAKE_CATALOG"] = settings.effective_lake_catalog
    return server


def _require_lake() -> None:
    """Refuse to start with the lake chosen where its extensions are not installed, saying how to get them."""
    from service.lake import extension_path

    try:
        for name in ("ducklake", "postgres_scanner"):
            extension_path(name)
    except StockyardError as error:
        raise click.ClickException(str(error)) from None


class _Restarting:
    """A child that `serve` restarts whenever it exits, waiting longer each time it exits again soon after
    (1 s, doubling up to a minute): a worker that keeps dying never takes the API down with it."""

    def __init__(self, name: str, command: list[str], options: dict[str, Any]) -> None:
        self.name = name
        self.command = command
        self.options = options
        self.process = subprocess.Popen(command, **options)
        self.started = time.monotonic()
        self.backoff = 0.0
        self.restart_at: float | None = None

    def keep_running(self) -> None:
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.process = subprocess.Popen(self.command, **self.options)
                self.started, self.restart_at = now, None
            return
        if self.process.poll() is None:
            return
        stable = now - self.started > _STABLE_SECONDS
        self.backoff = 0.0 if stable else min(max(1.0, 2 * self.backoff), _MAX_RESTART_BACKOFF)
        when = "now" if not self.backoff else f"in {self.backoff:.0f} s"
        click.echo(
            f"The {self.name} exited with {self.process.returncode}; restarting it {when} (its job resumes).", err=True
        )
        self.restart_at = now + self.backoff


def _child_options() -> dict[str, Any]:
    """How `serve` starts its children. On Linux each gets a process group of its own, so that Ctrl-C
    at the terminal reaches `serve` alone and it stops them in order, and each is killed by the kernel
    when `serve` dies, even by `kill -9`, so that nothing outlives it (then the next start recovers)."""
    if not sys.platform.startswith("linux"):
        return {}
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return {"process_group": 0, "preexec_fn": die_with_parent}


def _stop_children(children: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM; after `timeout`, SIGTERM again (RQ's cold shutdown rolls the job back); then SIGKILL."""
    for attempt, wait in ((signal.SIGTERM, timeout), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        alive = [child for child in children if child.poll() is None]
        if not alive:
            return
        for child in alive:
            child.send_signal(attempt)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(child.poll() is None for child in alive):
            time.sleep(0.1)


def _print_dev_key(data_dir: Path) -> None:
    """On the first run, create a development key for `dev` and show it once."""
    marker = data_dir / _DEV_KEY_MARKER
    if marker.exists():
        click.echo(
            "API key         create one with: stockyard keys create --org dev --scope import:write --scope import:read"
        )
        return
    key_id, key = KeyStore(get_settings().keys_path).create("dev", [Scope.IMPORT_WRITE, Scope.IMPORT_READ])
    marker.write_text(key_id)
    click.echo(f"Dev API key     {key}  (organization 'dev', shown once; send it as x-api-key)")


@main.command()
@data_dir_option
@click.option("--host", default=None, help="Address to listen on [env STOCKYARD_HOST].")
@click.option("--port", type=int, default=None, help="Port to listen on [env STOCKYARD_PORT].")
def api(data_dir: Path | None, host: str | None, port: int | None) -> None:
    """The HTTP API alone (stateless: run as many as you like against one Redis)."""
    from service.server import run_api

    _apply(data_dir, host=host, port=port)
    settings = get_settings()
    _require_redis(settings)
    _require_free_port(settings)
    run_api(settings)


REDIS_WAIT_SECONDS = 10.0
"""How long `api` and `worker` wait for Redis to answer at start before they give up."""


def _require_redis(settings: Settings) -> None:
    """Refuse to start a process that would only answer 503: Redis must answer (within a few seconds, for
    a Redis that is starting beside it)."""
    import redis

    from service import logs

    connection = redis.Redis.from_url(settings.effective_redis_url, socket_connect_timeout=2)
    deadline = time.monotonic() + REDIS_WAIT_SECONDS
    while True:
        try:
            connection.ping()
            return
        except redis.RedisError as error:
            if time.monotonic() >= deadline:
                where = logs.redacted(settings.effective_redis_url)
                fix = (
                    "check REDIS_URL"
                    if settings.redis_url
                    else "set REDIS_URL to your Redis, or run `stockyard serve`, which starts an embedded one"
                )
                raise click.ClickException(f"Redis at {where} does not answer ({error}): {fix}") from None
            time.sleep(0.5)
        finally:
            connection.close()


def _require_free_port(settings: Settings) -> None:
    """Fail before anything is printed or created when the API's address is taken."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as error:
            raise click.ClickException(
                f"cannot listen on {settings.host}:{settings.port} ({error.strerror}): is another Stockyard"
                " running? Stop it, or choose another port with --port or STOCKYARD_PORT"
            ) from None


@main.command()
@data_dir_option
@click.option("--burst", is_flag=True, help="Prepare and apply everything queued, then exit.")
def worker(data_dir: Path | None, burst: bool) -> None:
    """A worker: prepares queued imports and, when no other process does, applies them to the warehouse.

    Run as many as you like, on this machine or others that share Redis and the data directory; on a
    machine that must not open the warehouse file, set STOCKYARD_APPLY=never.
    """
    import redis

    from service import logs
    from service.worker import drain, run_worker

    _apply(data_dir)
    settings = get_settings()
    _require_redis(settings)
    if settings.is_lake:
        _require_lake()
    logs.configure(settings)
    connection = redis.Redis.from_url(settings.effective_redis_url)
    if burst:
        drain(settings, connection)
        return
    run_worker(settings, connection)


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@data_dir_option
@click.option("--org", "organization", required=True, help="The organization the key acts for.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice([s.value for s in Scope]),
    help="import:write (POST imports) and/or import:read (status); repeat for both.",
)
def keys_create(data_dir: Path | None, organization: str, scopes: tuple[str, ...]) -> None:
    """Create a key; it is printed once, on the last line, and never stored in clear."""
    _apply(data_dir)
    settings = get_settings()
    new_store = not settings.keys_path.exists()
    try:
        key_id, key = KeyStore(settings.keys_path).create(organization, [Scope(s) for s in scopes])
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if new_store:
        click.echo(
            f"Note: there was no key store in {settings.data_dir}; one was made. A service running with another"
            " data directory answers 401 to this key: pass the service's --data-dir (or STOCKYARD_DATA_DIR).",
            err=True,
        )
    click.echo(f"Created key {key_id} for organization {organization} with {', '.join(sorted(set(scopes)))}.")
    click.echo(f"Stored in {settings.keys_path}: a service whose data directory is {settings.data_dir} accepts it.")
    click.echo("Store it now: it cannot be shown again.")
    click.echo(key)


@keys.command("list")
@data_dir_option
def keys_list(data_dir: Path | None) -> None:
    """Every key: id, organization, scopes, created, revoked (never the key itself)."""
    _apply(data_dir)
    for record in KeyStore(get_settings().keys_path).list():
        state = f"revoked {record.revoked_at}" if record.revoked_at else "active"
        scopes = " ".join(record.scopes)
        click.echo(f"{record.key_id}  {record.organization_id}  {scopes}  {record.created_at}  {state}")


@keys.command("revoke")
@data_dir_option
@click.argument("key_id")
def keys_revoke(data_dir: Path | None, key_id: str) -> None:
    """Revoke a key at once: its next request gets 401."""
    _apply(data_dir)
    if not KeyStore(get_settings().keys_path).revoke(key_id):
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"Revoked key {key_id}.")


@main.group()
def webhooks() -> None:
    """Register, list and remove the URLs notified when an organization's jobs end."""


@webhooks.command("add")
@data_dir_option
@click.option("--org", "organization", required=True, help="The organization whose jobs are notified.")
@click.option("--url", required=True, help="An http(s) URL with a public address (or one the operator allowed).")
def webhooks_add(data_dir: Path | None, organization: str, url: str) -> None:
    """Register an endpoint; its signing secret is printed once, on the last line."""
    from service.errors import ClientError
    from service.webhooks import WebhookStore

    _apply(data_dir)
    try:
        endpoint = WebhookStore(get_settings()).add(organization, url)
    except ClientError as error:
        raise click.UsageError(error.message) from None
    click.echo(f"Registered webhook endpoint {endpoint.endpoint_id} for organization {organization}: {url}")
    click.echo("Its signing secret (Standard Webhooks), shown once: verify webhook-signature with it.")
    click.echo(endpoint.secret)


@webhooks.command("list")
@data_dir_option
@click.option("--org", "organization", default=None, help="Only this organization's endpoints.")
def webhooks_list(data_dir: Path | None, organization: str | None) -> None:
    """Every active endpoint: id, organization, URL, created (never the secret)."""
    from service.webhooks import WebhookStore

    _apply(data_dir)
    for owner, endpoint in WebhookStore(get_settings()).endpoints(organization):
        click.echo(f"{endpoint.endpoint_id}  {owner}  {endpoint.url}  {endpoint.created_at}")


@webhooks.command("remove")
@data_dir_option
@click.argument("endpoint_id")
def webhooks_remove(data_dir: Path | None, endpoint_id: str) -> None:
    """Remove an endpoint; deliveries not yet made to it are dropped."""
    from service.errors import ClientError
    from service.webhooks import WebhookStore

    _apply(data_dir)
    try:
        WebhookStore(get_settings()).remove(endpoint_id)
    except ClientError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"Removed webhook endpoint {endpoint_id}.")


# --- the client: upload a file, follow its job ------------------------------------------------------

IMPORT_KINDS = ("catalog", "inventory", "suppliers", "purchase-orders", "orders", "demand-history")
"""The six kinds (service.kinds.KINDS), spelled out: the client starts without loading the contracts."""

url_option = click.option(
    "--url",
    envvar="STOCKYARD_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The Stockyard API [env STOCKYARD_URL].",
)
key_option = click.option(
    "--key", envvar="STOCKYARD_API_KEY", default=None, help="Your API key (x-api-key) [env STOCKYARD_API_KEY]."
)


def _require_key(key: str | None) -> str:
    if not key:
        raise click.UsageError(
            "no API key: pass --key or set STOCKYARD_API_KEY (an operator makes one with:"
            " stockyard keys create --org ORG --scope import:write --scope import:read)"
        )
    return key


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON, and no progress bars.")


@main.command()
@click.argument("kind", type=click.Choice(IMPORT_KINDS), metavar="KIND")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@url_option
@key_option
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the job until it has finished.")
@json_option
def upload(kind: str, file: Path, url: str, key: str | None, wait: bool, as_json: bool) -> None:
    """Import FILE (.json, .ndjson, .csv or .parquet, optionally .gz) as KIND, then follow the job.

    KIND is catalog, inventory, suppliers, purchase-orders, orders or demand-history.
    Ends with rows, accepted, failed and warnings, and saves the failed rows beside FILE,
    in its format, ready to fix and upload again. Exit code: 0 every row accepted, 1 some
    rows failed, 3 the job failed as a whole, 4 the upload was refused or the service
    could not be reached.
    """
    try:
        from service import client
    except ImportError as error:  # the HTTP client is not installed: serving needs none
        raise click.ClickException(f"the client needs {error.name}: pip install {error.name}") from None
    with client.Client(url, _require_key(key)) as api:
        accepted = api.upload(kind, file, show_progress=not as_json)
        if not wait:
            _print_result(
                client.summarize(accepted, 0, None),
                as_json,
                f"Accepted: job {accepted['jobId']} ({accepted['rowCount']:,} rows)"
                f" is {accepted['status']}. Follow it with: stockyard status {accepted['jobId']}",
            )
            return
        try:
            status = api.wait(accepted["jobId"], int(accepted["rowCount"]), show_progress=not as_json)
        except KeyboardInterrupt:
            click.echo(
                f"\nStopped waiting; the job goes on. Follow it with: stockyard status {accepted['jobId']}", err=True
            )
            sys.exit(client.EXIT_INTERRUPTED)
        failed_rows = None
        if status["status"] == "COMPLETED" and int(status["failedCount"]):
            upload_format = client.detect_format(file).name
            target = client.failed_rows_path(file, status["jobId"], upload_format)
            try:
                failed_rows = api.save_failed_rows(status["jobId"], target, upload_format)
            except OSError:  # FILE's directory is not ours to write: the current one is
                failed_rows = api.save_failed_rows(status["jobId"], Path(target.name).resolve(), upload_format)
        summary = client.summarize(status, api.warning_total(status["jobId"]), failed_rows)
    _print_result(summary, as_json, client.describe(summary))
    sys.exit(client.exit_code(status))


@main.command()
@click.argument("job_id")
@url_option
@key_option
@json_option
def status(job_id: str, url: str, key: str | None, as_json: bool) -> None:
    """The state of a job: its counts and first errors. Exit code as for upload (0 while it runs)."""
    try:
        from service import client
    except ImportError as error:  # the HTTP client is not installed: serving needs none
        raise click.ClickException(f"the client needs {error.name}: pip install {error.name}") from None
    with client.Client(url, _require_key(key)) as api:
        current = api.status(job_id)
        warnings = api.warning_total(job_id)
    if as_json:
        click.echo(json.dumps(client.summarize(current, warnings, None), indent=2))
    else:
        click.echo(
            f"Job {current['jobId']} ({current['type']}): {current['status']}\n"
            f"  rows {current['rowCount']:,}, processed {current['processedCount']:,},"
            f" failed {current['failedCount']:,}, warnings {warnings:,}"
        )
        for issue in current["errors"][:10]:
            where = "job" if issue["row"] is None else f"row {issue['row']}"
            click.echo(f"  {where}: {issue['message']}" + (f" (sent: {issue['value']})" if issue["value"] else ""))
        if len(current["errors"]) > 10:
            click.echo(f"  ... and more: GET /api/import/status/{job_id}/errors, or /failed-rows for the rows")
    sys.exit(client.exit_code(current) if current["status"] in ("COMPLETED", "FAILED") else 0)


def _print_result(result: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(result, indent=2) if as_json else text)


if __name__ == "__main__":
    main()
