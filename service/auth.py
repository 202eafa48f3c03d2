"""API keys: created and revoked with the CLI, stored keyed-hashed in SQLite under the data dir.

A key reads `sy_<key id>_<secret>`. Only HMAC-SHA256(server secret, key) is stored, so the file
leaks nothing usable; lookups go by key id and compare digests in constant time. SQLite is read on
every request, so a key created or revoked by the CLI takes effect at once in a running service.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from service.errors import ForbiddenError, UnauthorizedError

KEY_PATTERN = re.compile(r"^sy_(?P<key_id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{20,100})$")
ORGANIZATION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Scope(StrEnum):
    IMPORT_WRITE = "import:write"
    IMPORT_READ = "import:read"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organization every query and path is scoped by, and what it may do."""

    key_id: str
    organization_id: str
    scopes: frozenset[str]

    def require(self, scope: Scope) -> None:
        if scope.value not in self.scopes:
            raise ForbiddenError(f"this API key lacks the {scope.value} scope")


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    organization_id: str
    scopes: tuple[str, ...]
    created_at: str
    revoked_at: str | None


class KeyStore:
    """The keys of one data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, digest BLOB NOT NULL,"
                " organization_id TEXT NOT NULL, scopes TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS server_secret (id INTEGER PRIMARY KEY CHECK (id = 1), secret BLOB)")
            db.execute("INSERT OR IGNORE INTO server_secret VALUES (1, ?)", (secrets.token_bytes(32),))
            (self._secret,) = db.execute("SELECT secret FROM server_secret").fetchone()
        os.chmod(path, 0o600)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            yield db

    def _digest(self, key: str) -> bytes:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).digest()

    def create(self, organization_id: str, scopes: list[Scope]) -> tuple[str, str]:
        """A new key for the organization: (key id, key). The key is shown once and never stored."""
        if not ORGANIZATION_PATTERN.match(organization_id):
            raise ValueError(
                "organization ids are 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        if not scopes:
            raise ValueError("a key needs at least one scope")
        key_id = secrets.token_hex(8)
        key = f"sy_{key_id}_{secrets.token_urlsafe(32)}"
        with self._connect() as db:
            db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                (key_id, self._digest(key), organization_id, " ".join(sorted({s.value for s in scopes})), _now()),
            )
        return key_id, key

    def revoke(self, key_id: str) -> bool:
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (_now(), key_id)
            )
            return cursor.rowcount == 1

    def list(self) -> list[KeyRecord]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT key_id, organization_id, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at"
            ).fetchall()
        return [KeyRecord(r[0], r[1], tuple(r[2].split()), r[3], r[4]) for r in rows]

    def authenticate(self, key: str | None) -> Principal:
        """The principal behind a key; UnauthorizedError for a missing, unknown or revoked one."""
        if not key:
            raise UnauthorizedError("missing x-api-key header")
        match = KEY_PATTERN.match(key)
        if match is None:
            raise UnauthorizedError("invalid API key")
        with self._connect() as db:
            row = db.execute(
                "SELECT digest, organization_id, scopes, revoked_at FROM api_keys WHERE key_id = ?",
                (match["key_id"],),
            ).fetchone()
        # compare even when the id is unknown, so that timing does not tell ids apart
        digest = row[0] if row else b"\0" * 32
        if not hmac.compare_digest(digest, self._digest(key)) or row is None or row[3] is not None:
            raise UnauthorizedError("invalid or revoked API key")
        return Principal(key_id=match["key_id"], organization_id=row[1], scopes=frozenset(row[2].split()))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
