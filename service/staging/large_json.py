"""A large JSON body is accepted once it is on disk, checked and counted: the worker that prepares it stages it.

Staging a JSON array with DuckDB's reader takes about as long as the whole import takes a worker, and
the API's 202 waited for it. A body of more than STOCKYARD_GROUP_MAX_ROWS rows (a large job) is instead
checked as a whole here (an object holding the kind's array, valid JSON, valid UTF-8: what would be a
400 is still a 400), its elements counted (the envelope's rowCount) and its first rows' keys read (the
unknown fields), then kept as sent, durably, beside the job's other files (`{jobId}.upload.json`). The
worker that prepares the job stages it (service/staging/__init__.py `stage_kept_body`), with the same
rules as the API would have, and removes it once the staged files are written.
"""

from __future__ import annotations

import codecs
import mmap
from dataclasses import dataclass
from pathlib import Path

import msgspec

from contracts.common import Contract
from service.errors import BadRequestError
from service.files import commit_file
from service.staging.unknown_fields import SAMPLE_ROWS, UnknownField, unknown_keys_of

_CHECK_STEP = 16 << 20
"""UTF-8 is checked this many bytes at a time: the decoded text is never the whole body in memory."""

_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])


class _Keys(msgspec.Struct):
    lines: list[msgspec.Raw] | None = None


@dataclass(frozen=True)
class KeptBody:
    """What the API knows of a large JSON body it keeps for a worker to stage."""

    row_count: int
    unknown_fields: list[UnknownField]


def keep_large_body(contract: Contract, array_path: Path, kept_path: Path, from_rows: int) -> KeptBody | None:
    """Keep the body at `kept_path` when its array holds more than `from_rows` elements; None when it does not
    (it is staged now, as any other). `array_path` holds the array alone (from_json.isolate_array).

    Raises BadRequestError when the body is not UTF-8 (DuckDB's reader would refuse it)."""
    with open(array_path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        try:
            elements = _ELEMENTS.decode(view)
        except (msgspec.DecodeError, RecursionError):
            return None  # the staging that follows says what is wrong
        row_count = len(elements)
        sample = [bytes(element) for element in elements[:SAMPLE_ROWS]] if row_count > from_rows else []
        del elements  # views of the map: gone before it closes
        if row_count <= from_rows:
            return None
        _check_utf8(view)
    unknown = _unknown_fields(contract, sample, row_count)
    commit_file(array_path, kept_path)
    return KeptBody(row_count=row_count, unknown_fields=unknown)


def _check_utf8(view: mmap.mmap) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(view), _CHECK_STEP):
            decoder.decode(view[start : start + _CHECK_STEP])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise BadRequestError("body is not valid UTF-8") from None


def _unknown_fields(contract: Contract, sample: list[bytes], row_count: int) -> list[UnknownField]:
    """The keys of the first rows (and of their lines) that are not fields, as DuckDB's sample finds them:
    elements that are not objects have none."""
    rows: list[list[str]] = []
    lines: list[list[list[str]] | None] = []
    for text in sample:
        try:
            keys = list(msgspec.json.decode(text, type=dict[str, msgspec.Raw]))
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            continue  # not an object: the worker stages it as a row error
        rows.append(keys)
        if contract.has_lines:
            lines.append(_line_keys(text))
    return unknown_keys_of(contract, rows, lines if contract.has_lines else None, min(row_count, SAMPLE_ROWS))


def _line_keys(text: bytes) -> list[list[str]] | None:
    try:
        found = msgspec.json.decode(text, type=_Keys).lines
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None  # `lines` is not an array: a row error, no keys
    keys: list[list[str]] = []
    for line in found or []:
        try:
            keys.append(list(msgspec.json.decode(line, type=dict[str, msgspec.Raw])))
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            continue
    return keys
