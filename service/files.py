"""Durable files: the one rule every file that must survive a crash is written by.

Write to `name.tmp`, fsync it, rename it over `name`, fsync the directory. A reader then finds the old
file or the new one, whole, and after a power loss the rename itself is on disk too (without the
directory's fsync, a renamed file can vanish while a file written after it survives).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def temporary_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place."""
    return path.with_name(path.name + ".tmp")


def write_durably(path: Path, data: bytes) -> None:
    tmp = temporary_path(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def commit_file(tmp: Path, path: Path) -> None:
    """Make a file written at `tmp` (by any writer) durable at `path`."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(*paths: Path) -> None:
    """Remove files and their temporary twins, whichever exist."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            temporary_path(path).unlink()
