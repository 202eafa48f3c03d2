"""`stockyard`: the operator's command line (serve, api, worker, keys)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import click

from service.auth import KeyStore, Scope
from service.settings import get_settings

_DEV_KEY_MARKER = ".dev-key-created"


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


@click.group()
def main() -> None:
    """Stockyard: bulk imports of inventory data into a DuckDB warehouse."""


@main.command()
@data_dir_option
@click.option("--host", default=None, help="Address to listen on [env STOCKYARD_HOST; default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [env STOCKYARD_PORT; default 8000].")
@click.option(
    "--workers",
    type=click.IntRange(1, 1),
    default=1,
    show_default=True,
    help="Worker processes. Merges go through one writer, so one worker drains the queue.",
)
def serve(data_dir: Path | None, host: str | None, port: int | None, workers: int) -> None:
    """The API, the worker and (without REDIS_URL) an embedded Redis, in one command; Ctrl-C stops all."""
    _apply(data_dir, host=host, port=port)
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    if settings.redis_url is None:
        from service.embedded_redis import start_redis

        children.append(start_redis(settings.redis_dir, settings.redis_socket))
        os.environ["REDIS_URL"] = settings.effective_redis_url
    command = [sys.executable, "-m", "service.cli"]
    children += [subprocess.Popen([*command, "worker"]) for _ in range(workers)]
    children.append(subprocess.Popen([*command, "api"]))

    url = f"http://{settings.host}:{settings.port}"
    click.echo(f"Stockyard API   {url}")
    click.echo(f"API docs        {url}/schema  (OpenAPI JSON: {url}/schema/openapi.json)")
    click.echo(f"Data directory  {settings.data_dir}")
    click.echo(f"Analysts' copy  {settings.analytics_path}  (open it read-only with DuckDB)")
    _print_dev_key(settings.data_dir)

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    # API and worker first (the worker finishes or hands back its job), Redis last.
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
    click.echo("Stockyard stopped.")


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
    import uvicorn

    _apply(data_dir, host=host, port=port)
    settings = get_settings()
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=30,
    )


@main.command()
@data_dir_option
@click.option("--burst", is_flag=True, help="Drain the queue, then exit.")
def worker(data_dir: Path | None, burst: bool) -> None:
    """The worker: validates, transforms and merges queued imports, one at a time."""
    import redis
    import rq

    from service import warehouse

    _apply(data_dir)
    settings = get_settings()
    with warehouse.writer_lock(settings.data_dir):
        warehouse.publish(settings.warehouse_path, settings.analytics_path)
    connection = redis.Redis.from_url(settings.effective_redis_url)
    queue = rq.Queue(settings.queue_name, connection=connection)
    rq.Worker([queue], connection=connection).work(burst=burst, logging_level="WARNING")


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
    try:
        key_id, key = KeyStore(get_settings().keys_path).create(organization, [Scope(s) for s in scopes])
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"Created key {key_id} for organization {organization} with {', '.join(sorted(set(scopes)))}.")
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


if __name__ == "__main__":
    main()
