"""Staging a JSON body: `{"<array key>": [...]}`, checked at the top level with msgspec, the array read by DuckDB.

Duplicate keys: in the top-level object they are refused (one of two arrays would be dropped unseen);
inside a row or a line the last occurrence wins, as in JavaScript's JSON.parse and Python's json."""

from __future__ import annotations

import logging
import mmap
import re
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa

from contracts.common import NOT_UNICODE, ROW, ROW_TYPE, ROW_VALUE, Contract
from service.errors import BadRequestError
from service.staging.numbers import json_elements, restore_number_texts
from service.staging.rows import copy_raw_rows
from service.staging.sql import last_value, quote

logger = logging.getLogger("stockyard.staging")

_PADDING = b" "

# What may stand between two values of the top-level object: a comma (or the brace) and one key.
_JSON_STRING = rb'"(?:[^"\\]|\\.)*"'

_FIRST_GAP = re.compile(rb"\s*\{\s*" + _JSON_STRING + rb"\s*:\s*")

_NEXT_GAP = re.compile(rb"\s*,\s*" + _JSON_STRING + rb"\s*:\s*")

_LAST_GAP = re.compile(rb"\s*\}\s*")

_GAP_KEY = re.compile(rb"\s*[,{]\s*(" + _JSON_STRING + rb")")


class _Element(msgspec.Struct, gc=False):
    """An element of an array, decoded to nothing: a million of them hold 16 bytes each."""


_OBJECTS = msgspec.json.Decoder(list[_Element])
_ANY = msgspec.json.Decoder(list[_Element | None | bool | int | float | str | list[msgspec.Raw]])


def count_elements(array: bytes | mmap.mmap) -> tuple[int, bool] | None:
    """(how many elements a JSON array holds, whether every one is an object), with no Python object kept
    per element but the smallest; None if it is not a JSON array."""
    try:
        try:
            return len(_OBJECTS.decode(array)), True
        except msgspec.ValidationError:
            return len(_ANY.decode(array)), False
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def _holds_non_objects(body_path: Path) -> bool:
    """Does the array hold an element that is not an object? DuckDB's fast reader takes a `null` element
    for an empty object (a row of missing fields), where it is a row that is not an object."""
    with open(body_path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        counted = count_elements(view)
    return counted is not None and not counted[1]


def isolate_array(body_path: Path, array_key: str) -> int:
    """Check the top level and blank out everything around the array, in place; return the body size.

    The body must be a JSON object whose `array_key` holds an array. Overwriting the bytes before and
    after that array with spaces leaves a valid JSON array in the same file, so DuckDB can read it
    without another copy of a body that may be a gigabyte.
    """
    size = body_path.stat().st_size
    if size == 0:
        raise BadRequestError(f'empty body: expected a JSON object with "{array_key}"')
    for attempt in range(2):
        with open(body_path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as view:
            located = _locate_array(view, array_key)
            if isinstance(located, str):
                problem = located
            else:
                start, end = located
                view[:start] = _PADDING * start
                view[end:] = _PADDING * (size - end)
                return size
        # a lone surrogate is valid JSON that is not Unicode: a row error of its row, not a 400
        if attempt or "escape" not in problem or not mark_lone_surrogates(body_path):
            break
    raise BadRequestError(problem)


def _locate_array(view: mmap.mmap, array_key: str) -> tuple[int, int] | str:
    """(start, end) of the array under `array_key`, or what is wrong with the body.

    It returns rather than raises: a traceback would keep msgspec's views of the map alive.
    """
    try:
        top = msgspec.json.decode(view, type=dict[str, msgspec.Raw])
    except msgspec.ValidationError:
        return f'expected a JSON object with "{array_key}"'
    except msgspec.DecodeError as error:
        return f"body is not valid JSON: {error}"
    except UnicodeDecodeError:  # a top-level key that is not UTF-8
        return "body is not valid UTF-8"
    except RecursionError:
        return "body is nested too deeply to be read (more than about 1,000 levels of arrays or objects)"
    base = pa.py_buffer(view).address
    spans = {key: (pa.py_buffer(raw).address - base, len(raw)) for key, raw in top.items()}
    top.clear()
    repeated = _repeated_key(view, sorted(spans.values()))
    if repeated is not None:
        return f"the top-level object repeats the key {repeated}: send each key once"
    if array_key not in spans:
        return f'expected "{array_key}" to be an array, but it is missing'
    start, length = spans[array_key]
    if view[start : start + 1] != b"[":
        return f'expected "{array_key}" to be an array'
    return start, start + length


def _repeated_key(view: mmap.mmap, spans: list[tuple[int, int]]) -> str | None:
    """A key the top-level object holds twice, or None.

    A decoded dict keeps only the last value of a repeated key, so the earlier value is left in a gap
    between the values that were kept; every gap must hold no more than a comma and one key.
    """
    position = 0
    for index, (start, length) in enumerate(spans):
        gap = _FIRST_GAP if index == 0 else _NEXT_GAP
        if gap.fullmatch(view, position, start) is None:
            found = _GAP_KEY.match(view, position, start)
            return found.group(1).decode(errors="replace") if found else "(unknown)"
        position = start + length
    if spans and _LAST_GAP.fullmatch(view, position, len(view)) is None:
        found = _GAP_KEY.match(view, position, len(view))
        return found.group(1).decode(errors="replace") if found else "(unknown)"
    return None


def _json_columns(contract: Contract) -> str:
    """Column types for the fast reader: JSON text per field; lines as a list of such structs.

    Typing `lines` lets DuckDB parse the lines once, into lists it can unnest, instead of keeping
    their JSON text and walking it again with json_each. Anything else there (not an array, an
    element that is not an object) makes the fast reader refuse, and the tolerant one takes over.
    """
    columns = [f"'{f.name}': 'JSON'" for f in contract.fields]
    if contract.has_lines:
        members = ", ".join(f"{quote(f.name)} JSON" for f in contract.line_fields)
        columns.append(f"'lines': 'STRUCT({members})[]'")
    return "{" + ", ".join(columns) + "}"


def rows_query(contract: Contract, body: Path, max_object: int, *, tolerant: bool) -> str:
    """One row per array element: `__row`, `__type`, `__value`, each field's JSON text (and lines)."""
    names = [f.name for f in contract.fields] + (["lines"] if contract.has_lines else [])
    if tolerant:
        # read_json_objects takes any element (null, 5, duplicate keys); slower, so only on need.
        source = (
            "(SELECT ordinality, json, json_keys(json) AS __keys, json_extract(json, '$.*') AS __values FROM"
            f" read_json_objects('{body}', format='array', maximum_object_size={max_object}) WITH ORDINALITY)"
        )
        fields = [f"{last_value('__keys', '__values', name)} AS {quote(name)}" for name in names]
        shape = "json_type(json)", "CASE WHEN json_type(json) <> 'OBJECT' THEN left(json::VARCHAR, 200) END"
    else:
        # records=true: with one column, DuckDB would otherwise read a non-object element as that column
        source = (
            f"read_json('{body}', format='array', records=true, columns={_json_columns(contract)},"
            f" maximum_object_size={max_object}) WITH ORDINALITY"
        )
        fields = [quote(name) for name in names]
        shape = "'OBJECT'", "NULL::VARCHAR"
    return (
        f"SELECT ordinality - 1 AS {ROW}, {shape[0]} AS {ROW_TYPE}, {shape[1]} AS {ROW_VALUE}, {', '.join(fields)} "
        f"FROM {source}"
    )


def _describe_json_error(error: duckdb.Error) -> str:
    text = str(error)
    if "UTF-8" in text or "utf-8" in text:
        return "body is not valid UTF-8"
    detail = text.split("\n", 1)[0]
    detail = re.sub(r' in file "[^"]*"', "", detail)
    return f"body is not valid JSON: {detail}"


def _copy_staged(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    body_path: Path,
    max_object: int,
    rows_tmp: Path,
    lines_tmp: Path | None,
    tolerant: bool,
) -> int:
    """Write the staged Parquet file(s); return the number of rows. Lines need the rows twice: a table."""
    relation = "TABLE" if contract.has_lines else "VIEW"
    con.execute(
        f"CREATE OR REPLACE TEMP {relation} raw_rows AS "
        + rows_query(contract, body_path, max_object, tolerant=tolerant)
    )
    return copy_raw_rows(con, contract, rows_tmp, lines_tmp, tolerant=tolerant)


def stage_json(
    con: duckdb.DuckDBPyConnection, contract: Contract, body_path: Path, rows_tmp: Path, lines_tmp: Path | None
) -> int:
    max_object = max(body_path.stat().st_size, 1 << 20)
    marked = False
    tolerant = _holds_non_objects(body_path)
    while True:
        try:
            row_count = _copy_staged(con, contract, body_path, max_object, rows_tmp, lines_tmp, tolerant)
            restore_number_texts(con, contract, json_elements(body_path, max_object), rows_tmp, lines_tmp)
            return row_count
        except duckdb.InvalidInputException as error:
            if "surrogate" in str(error) and not marked:
                # valid JSON that is not Unicode: each lone surrogate becomes a row error of its own row
                marked = mark_lone_surrogates(body_path) > 0
                if marked:
                    continue
            # the fast reader refuses elements it cannot map (null, 5, duplicate keys): retry tolerantly
            if tolerant or "Malformed JSON" in str(error):
                raise BadRequestError(_describe_json_error(error)) from None
            tolerant = True


_SURROGATE = re.compile(rb"\\+u[dD][89a-fA-F][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?")
_NOT_UNICODE_ESCAPE = b"\\u" + f"{ord(NOT_UNICODE):04x}".encode()


def mark_lone_surrogates(body_path: Path) -> int:
    """Overwrite, in place, each escape of a lone surrogate (`\\ud800` with no low surrogate after it, or a
    low one alone) with the escape of NOT_UNICODE, the same six bytes; return how many there were.

    A run of backslashes before the `u` is an escape only when it is odd (`\\\\ud800` is a backslash and
    text); a high surrogate followed by a low one is a character (an emoji) and is left alone.
    """
    marked = 0
    with open(body_path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as view:
        for found in _SURROGATE.finditer(view):
            text = found.group()
            slashes = len(text) - len(text.lstrip(b"\\"))
            if slashes % 2 == 0:
                continue  # escaped backslashes, then plain text
            escape = found.start() + slashes - 1
            first = int(text[slashes + 1 : slashes + 5], 16)
            if 0xD800 <= first <= 0xDBFF and len(text) == slashes + 11:
                continue  # a surrogate pair
            view[escape : escape + 6] = _NOT_UNICODE_ESCAPE
            marked += 1
    return marked
