"""Staging a small JSON body by decoding it whole with msgspec, instead of with DuckDB's reader.

Most of a small body's staging by DuckDB is the fixed cost of its statements (binding the reader,
writing Parquet, reading the file back to look for rewritten numbers). msgspec decodes the array into
each row's values as the bytes that were sent, which is the staged JSON text (and number identifiers
are already as sent: nothing to restore). The rows are then turned into columns in Python: a loop over
at most DECODED_UP_TO_BYTES of rows, which costs less than DuckDB's fixed cost (benchmarks/README.md).

The staged files are the same as DuckDB's for the worker, but for JSON text left as sent (an object's
spacing, a string's escapes): the worker reads both alike. A body this cannot take as it is goes to
DuckDB like a larger one (from_json.py): an element or a line that is not an object, `lines` that is
not an array of objects, the escape of a surrogate, bytes that are not UTF-8.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import polars as pl

from contracts.common import LINE, LINES_COUNT, ROW, ROW_TYPE, ROW_VALUE, Contract
from service.staging.unknown_fields import UnknownField, unknown_keys_of

DECODED_UP_TO_BYTES = 512 << 10
"""A JSON body up to this size is staged from msgspec's decoding (see the module docstring)."""

_Object = dict[str, msgspec.Raw]


class _Lines(msgspec.Struct):
    lines: list[_Object] | None = None


_ROWS = msgspec.json.Decoder(list[_Object])
_ROW_LINES = msgspec.json.Decoder(list[_Lines])
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""Staged by DuckDB, which marks a lone surrogate as a row error of its row (from_json.mark_lone_surrogates)."""


@dataclass(frozen=True)
class Decoded:
    """A JSON array body, each row (and each line) a dict of its values' raw JSON bytes."""

    rows: list[_Object]
    lines: list[list[_Object] | None] | None
    """Each row's lines (None where `lines` is null or missing); None for a kind without lines."""


def decode(contract: Contract, array: bytes) -> Decoded | None:
    """The rows of a JSON array, or None when it is not plain enough for this path (the module docstring)."""
    if _SURROGATE_ESCAPE.search(array):
        return None
    try:
        rows = _ROWS.decode(array)
        lines = [row.lines for row in _ROW_LINES.decode(array)] if contract.has_lines else None
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None
    return Decoded(rows, lines)


def stage_decoded(
    contract: Contract, decoded: Decoded, rows_tmp: Path, lines_tmp: Path | None
) -> tuple[int, list[UnknownField]] | None:
    """Write the staged file(s) of a decoded body; (rows, unknown fields), or None if a value is not UTF-8."""
    try:
        rows = _frame(range(len(decoded.rows)), decoded.rows, [f.name for f in contract.fields])
        lines = None
        if decoded.lines is not None:
            counts = [None if each is None else len(each) for each in decoded.lines]
            rows = rows.with_columns(
                pl.lit(None, pl.String()).alias("lines"), pl.Series(LINES_COUNT, counts, dtype=pl.UInt64())
            )
            lines = _lines_frame(decoded.lines, [f.name for f in contract.line_fields])
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError):  # bytes not UTF-8 in a string
        return None
    rows.write_parquet(rows_tmp, statistics=False)
    if lines is not None and lines_tmp is not None:
        lines.write_parquet(lines_tmp, statistics=False)
    return rows.height, unknown_keys_of(contract, decoded.rows, decoded.lines, rows.height)


def _frame(numbers: Sequence[int] | pl.Series, objects: list[_Object], names: list[str]) -> pl.DataFrame:
    """`__row`, the row's shape (an object), and each field's JSON text as sent: null where it is missing
    or null, as DuckDB stages it."""
    columns = [
        pl.Series(ROW, numbers, dtype=pl.Int64()),
        pl.Series(ROW_TYPE, ["OBJECT"] * len(objects), dtype=pl.String()),
        pl.Series(ROW_VALUE, [None] * len(objects), dtype=pl.String()),
    ]
    for name in names:
        sent = [
            None if (value := each.get(name)) is None or (text := bytes(value)) == b"null" else text for each in objects
        ]
        columns.append(pl.Series(name, sent, dtype=pl.Binary()).cast(pl.String()))
    return pl.DataFrame(columns)


def _lines_frame(lines: list[list[_Object] | None], names: list[str]) -> pl.DataFrame:
    """One row per line: its order's `__row`, `__line` its index in the order, then as `_frame`."""
    flat = list(itertools.chain.from_iterable(each for each in lines if each))
    orders = [row for row, each in enumerate(lines) if each for _ in each]
    frame = _frame(orders, flat, names)
    numbers = [line for each in lines if each for line in range(len(each))]
    return frame.insert_column(1, pl.Series(LINE, numbers, dtype=pl.Int64()))
