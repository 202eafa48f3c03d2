"""Staging: turn an uploaded body into Parquet files of raw JSON text, before the 202 is sent.

The body is streamed to disk, its top level is checked with msgspec (an object holding the kind's
array), and DuckDB's JSON reader writes each row's fields as the JSON text that was sent. Nothing is
judged here except the request as a whole: a wrong type is a row error in the worker, never a lost
row. Files are written to a temporary name, fsynced and renamed, so a staged file is whole or absent.

Layout, per organization: staging/{org}/{jobId}.parquet (rows), {jobId}.lines.parquet (lines of
purchase orders and orders), {jobId}.json (the job's durable record, see service/jobs.py), and
{jobId}.lock, held by the process running the job (a dead worker's lock is released by the kernel).

Duplicate keys: in the top-level object they are refused (one of two arrays would be dropped unseen);
inside a row or a line the last occurrence wins, as in JavaScript's JSON.parse and Python's json.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa

from contracts.common import LINE, LINES_COUNT, ROW, ROW_TYPE, ROW_VALUE, Contract
from service.errors import BadRequestError, ServiceUnavailableError

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
_PADDING = b" "
_STORAGE_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# What may stand between two values of the top-level object: a comma (or the brace) and one key.
_JSON_STRING = rb'"(?:[^"\\]|\\.)*"'
_FIRST_GAP = re.compile(rb"\s*\{\s*" + _JSON_STRING + rb"\s*:\s*")
_NEXT_GAP = re.compile(rb"\s*,\s*" + _JSON_STRING + rb"\s*:\s*")
_LAST_GAP = re.compile(rb"\s*\}\s*")
_GAP_KEY = re.compile(rb"\s*[,{]\s*(" + _JSON_STRING + rb")")


@dataclass(frozen=True)
class StagedUpload:
    rows_path: Path
    lines_path: Path | None
    row_count: int


def organization_dir(staging_dir: Path, organization_id: str) -> Path:
    return staging_dir / organization_id


def staged_paths(staging_dir: Path, organization_id: str, job_id: str) -> dict[str, Path]:
    """Every file of a job. Job ids are checked first: no crafted id can name a path elsewhere."""
    if not JOB_ID_PATTERN.match(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    base = organization_dir(staging_dir, organization_id)
    return {
        "body": base / f"{job_id}.body",
        "rows": base / f"{job_id}.parquet",
        "lines": base / f"{job_id}.lines.parquet",
        "record": base / f"{job_id}.json",
        "errors": base / f"{job_id}.errors.parquet",
        "warnings": base / f"{job_id}.warnings.parquet",
        "lock": base / f"{job_id}.lock",
    }


def storage_error(error: OSError | duckdb.Error) -> ServiceUnavailableError:
    """The client's view of a failed write while staging: 507 when space ran out, 503 otherwise.

    The message names the cause, never a path: nothing of the upload was kept, so retrying is safe.
    """
    if isinstance(error, OSError):
        full = error.errno in _STORAGE_FULL
        cause = os.strerror(error.errno) if error.errno else type(error).__name__
    else:
        text = str(error)
        full = not any(marker in text for marker in ("Permission denied", "Read-only file system"))
        cause = next(
            (m for m in ("No space left on device", "File too large", "Disk quota exceeded") if m in text),
            "the staging area could not be written",
        )
    if full:
        return ServiceUnavailableError(
            f"insufficient storage to stage the upload ({cause}); nothing was kept, retry later", status_code=507
        )
    return ServiceUnavailableError(
        f"the staging area is not writable ({cause}); nothing was kept, retry later", status_code=503
    )


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def fsync_and_rename(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + ".tmp").unlink()


def _isolate_array(body_path: Path, array_key: str) -> int:
    """Check the top level and blank out everything around the array, in place; return the body size.

    The body must be a JSON object whose `array_key` holds an array. Overwriting the bytes before and
    after that array with spaces leaves a valid JSON array in the same file, so DuckDB can read it
    without another copy of a body that may be a gigabyte.
    """
    size = body_path.stat().st_size
    if size == 0:
        raise BadRequestError(f'empty body: expected a JSON object with "{array_key}"')
    with open(body_path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as view:
        located = _locate_array(view, array_key)
        if isinstance(located, str):
            problem = located
        else:
            start, end = located
            view[:start] = _PADDING * start
            view[end:] = _PADDING * (size - end)
            problem = ""
    if problem:
        raise BadRequestError(problem)
    return size


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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_columns(contract: Contract) -> str:
    """Column types for the fast reader: JSON text per field; lines as a list of such structs.

    Typing `lines` lets DuckDB parse the lines once, into lists it can unnest, instead of keeping
    their JSON text and walking it again with json_each. Anything else there (not an array, an
    element that is not an object) makes the fast reader refuse, and the tolerant one takes over.
    """
    columns = [f"'{f.name}': 'JSON'" for f in contract.fields]
    if contract.has_lines:
        members = ", ".join(f"{_quote(f.name)} JSON" for f in contract.line_fields)
        columns.append(f"'lines': 'STRUCT({members})[]'")
    return "{" + ", ".join(columns) + "}"


def _last_value(keys: str, values: str, name: str) -> str:
    """The value of the LAST `name` key of an object, given its `json_keys` and `json_extract(.., '$.*')`.

    json_extract returns the first of repeated keys; JSON.parse and most readers keep the last.
    """
    return (
        f"CASE WHEN list_contains({keys}, {_literal(name)}) "
        f"THEN {values}[len({keys}) + 1 - list_position(list_reverse({keys}), {_literal(name)})] END"
    )


def _rows_query(contract: Contract, body: Path, max_object: int, *, tolerant: bool) -> str:
    """One row per array element: `__row`, `__type`, `__value`, each field's JSON text (and lines)."""
    names = [f.name for f in contract.fields] + (["lines"] if contract.has_lines else [])
    if tolerant:
        # read_json_objects takes any element (null, 5, duplicate keys); slower, so only on need.
        source = (
            "(SELECT ordinality, json, json_keys(json) AS __keys, json_extract(json, '$.*') AS __values FROM"
            f" read_json_objects('{body}', format='array', maximum_object_size={max_object}) WITH ORDINALITY)"
        )
        fields = [f"{_last_value('__keys', '__values', name)} AS {_quote(name)}" for name in names]
        shape = "json_type(json)", "CASE WHEN json_type(json) <> 'OBJECT' THEN left(json::VARCHAR, 200) END"
    else:
        # records=true: with one column, DuckDB would otherwise read a non-object element as that column
        source = (
            f"read_json('{body}', format='array', records=true, columns={_json_columns(contract)},"
            f" maximum_object_size={max_object}) WITH ORDINALITY"
        )
        fields = [_quote(name) for name in names]
        shape = "'OBJECT'", "NULL::VARCHAR"
    return (
        f"SELECT ordinality - 1 AS {ROW}, {shape[0]} AS {ROW_TYPE}, {shape[1]} AS {ROW_VALUE}, {', '.join(fields)} "
        f"FROM {source}"
    )


def _select_staged(contract: Contract, *, tolerant: bool) -> str:
    """The staged rows, with `lines` reduced to what the contract checks (its count, or the bad value)."""
    columns = [ROW, ROW_TYPE, ROW_VALUE] + [f"{_quote(f.name)}::VARCHAR AS {_quote(f.name)}" for f in contract.fields]
    if contract.has_lines and tolerant:
        columns += [
            "CASE WHEN json_type(lines) = 'ARRAY' THEN NULL ELSE lines::VARCHAR END AS lines",
            f"CASE WHEN json_type(lines) = 'ARRAY' THEN json_array_length(lines) END AS {LINES_COUNT}",
        ]
    elif contract.has_lines:  # the fast reader only lets arrays of objects (or null) through
        columns += ["NULL::VARCHAR AS lines", f"len(lines)::UBIGINT AS {LINES_COUNT}"]
    return f"SELECT {', '.join(columns)} FROM raw_rows"


def _select_lines(contract: Contract, *, tolerant: bool) -> str:
    if not tolerant:
        fields = [f"line.{_quote(f.name)}::VARCHAR AS {_quote(f.name)}" for f in contract.line_fields]
        lines = (
            f"SELECT {ROW}, unnest(range(len(lines))) AS {LINE}, unnest(lines) AS line"
            " FROM raw_rows WHERE len(lines) > 0"
        )
        return (
            f"SELECT {ROW}, {LINE}, 'OBJECT' AS {ROW_TYPE}, NULL::VARCHAR AS {ROW_VALUE}, {', '.join(fields)}"
            f" FROM ({lines})"
        )
    fields = [f"{_last_value('__keys', '__values', f.name)}::VARCHAR AS {_quote(f.name)}" for f in contract.line_fields]
    lines = (
        f"SELECT r.{ROW}, e.key::BIGINT AS {LINE}, e.type, e.value, json_keys(e.value) AS __keys,"
        " json_extract(e.value, '$.*') AS __values"
        " FROM raw_rows r, json_each(r.lines) e WHERE json_type(r.lines) = 'ARRAY'"
    )
    return (
        f"SELECT {ROW}, {LINE}, type AS {ROW_TYPE}, "
        f"CASE WHEN type <> 'OBJECT' THEN left(value::VARCHAR, 200) END AS {ROW_VALUE}, {', '.join(fields)} "
        f"FROM ({lines}) ORDER BY {ROW}, {LINE}"
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
        + _rows_query(contract, body_path, max_object, tolerant=tolerant)
    )
    (row_count,) = con.execute(
        f"COPY ({_select_staged(contract, tolerant=tolerant)}) TO '{rows_tmp}' (FORMAT parquet)"
    ).fetchone() or (0,)
    if lines_tmp is not None:
        con.execute(f"COPY ({_select_lines(contract, tolerant=tolerant)}) TO '{lines_tmp}' (FORMAT parquet)")
    return int(row_count)


@contextlib.contextmanager
def _duckdb() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(config={"threads": 2, "preserve_insertion_order": True})
    try:
        yield con
    finally:
        con.close()


def stage_body(contract: Contract, body_path: Path, rows_path: Path, lines_path: Path | None) -> StagedUpload:
    """Stage a streamed body as Parquet; BadRequestError when the body as a whole is unusable."""
    size = _isolate_array(body_path, contract.array_key)
    max_object = max(size, 1 << 20)
    rows_tmp = rows_path.with_name(rows_path.name + ".tmp")
    lines_tmp = lines_path.with_name(lines_path.name + ".tmp") if lines_path else None
    try:
        with _duckdb() as con:
            for tolerant in (False, True):
                try:
                    row_count = _copy_staged(con, contract, body_path, max_object, rows_tmp, lines_tmp, tolerant)
                    break
                except duckdb.InvalidInputException as error:
                    # the fast reader refuses elements it cannot map (null, 5, duplicate keys): retry tolerantly
                    if tolerant or "Malformed JSON" in str(error):
                        raise BadRequestError(_describe_json_error(error)) from None
        fsync_and_rename(rows_tmp, rows_path)
        if lines_tmp is not None and lines_path is not None:
            fsync_and_rename(lines_tmp, lines_path)
    except (duckdb.IOException, OSError) as error:
        remove_quietly(rows_path, *([lines_path] if lines_path else []))
        raise storage_error(error) from None
    except BaseException:
        remove_quietly(rows_path, *([lines_path] if lines_path else []))
        raise
    return StagedUpload(rows_path=rows_path, lines_path=lines_path, row_count=row_count)


def write_record(path: Path, record: dict[str, object]) -> None:
    write_atomically(path, json.dumps(record).encode())
