"""A large JSON body is accepted once it is on disk, checked and counted: the worker that prepares it stages it.

Staging a JSON array with DuckDB's reader takes about as long as the whole import takes a worker, and
the API's 202 waited for it. A body of more than STOCKYARD_GROUP_MAX_ROWS rows (a large job) is instead
checked as a whole here (an object holding the kind's array, valid JSON, valid UTF-8: what would be a
400 is still a 400), its elements counted (the envelope's rowCount) and its first rows' keys read (the
unknown fields), then kept as sent, durably, beside the job's other files (`{jobId}.upload.json`). The
worker that prepares the job stages it (service/staging/__init__.py `stage_kept_body`), with the same
rules as the API would have. Mostly it streams it instead (`kept_body_chunks`): DuckDB reads the body a
chunk of rows at a time on a thread of its own while the worker validates the chunk before, so reading and
validating overlap on two cores, and no staged file of the whole body is written or read back (the worker
keeps the rows that failed, for the failed-rows download). The kept body stays until the job has ended.
"""

from __future__ import annotations

import codecs
import logging
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb
import msgspec
import polars as pl
import pyarrow as pa

from contracts.common import LINE, LINES_COUNT, ROW, ROW_TYPE, ROW_VALUE, Contract
from service.errors import BadRequestError
from service.files import commit_file
from service.staging.from_json import count_elements, rows_query
from service.staging.numbers import has_rewritten_numbers
from service.staging.sql import staging_database
from service.staging.unknown_fields import SAMPLE_ROWS, UnknownField, unknown_keys_of

logger = logging.getLogger("stockyard.staging")

_CHECK_STEP = 1 << 20
"""UTF-8 is checked this many bytes at a time: the decoded text is never the whole body in memory, and each
piece copied out of the map stays in the CPU's cache."""

_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])
_SAMPLE_TRIES = 64
"""Commas tried, from the end of a prefix of the array back, for one that ends an element (see _sample)."""


class _Keys(msgspec.Struct):
    lines: list[msgspec.Raw] | None = None


@dataclass(frozen=True)
class KeptBody:
    """What the API knows of a large JSON body it keeps for a worker to stage."""

    row_count: int
    unknown_fields: list[UnknownField]


def keep_large_body(contract: Contract, array_path: Path, kept_path: Path, from_rows: int) -> KeptBody | None:
    """Keep the body at `kept_path` when its array holds more than `from_rows` elements, all objects; None when
    it does not (it is staged now, as any other). `array_path` holds the array alone (from_json.isolate_array).

    Raises BadRequestError when the body is not UTF-8 (DuckDB's reader would refuse it)."""
    with open(array_path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        written = _WriteBack(handle.fileno())  # nobody waits for it on the ways out that do not keep the body
        counted = count_elements(view)
        if counted is None or counted[0] <= from_rows or not counted[1]:
            return None  # not JSON after all, or elements that are not objects: staged now, tolerantly
        row_count = counted[0]
        _check_utf8(view)
        sample = _sample(view, row_count, SAMPLE_ROWS)
    unknown = _unknown_fields(contract, sample, row_count)
    written.wait()
    commit_file(array_path, kept_path)
    return KeptBody(row_count=row_count, unknown_fields=unknown)


class _WriteBack:
    """A file's pages written to disk by a thread of its own (with its own descriptor) while the API checks
    the body: the fsync that keeps it (commit_file) then finds them written, where the 202 waited for the
    disk after the checks."""

    def __init__(self, fd: int) -> None:
        self._fd = os.dup(fd)
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="stockyard-write-back", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as error:
            self._error = error
        finally:
            os.close(self._fd)

    def wait(self) -> None:
        """Until the pages are on disk. Raises the fsync's error: Linux reports a failed write once, to the
        first fsync that asks, so the one in commit_file would not see it again."""
        self._thread.join()
        if self._error is not None:
            raise self._error


def _sample(view: mmap.mmap, count: int, wanted: int) -> list[bytes]:
    """The text of the first `wanted` elements of an array of `count`, without a Python object per element
    of the whole array: a prefix of the array, cut at a comma that ends an element. Only such a cut decodes
    as an array (a comma inside an element leaves it, or a string, unclosed); a few commas from the end of
    a prefix of about twice the elements wanted, tried backwards, find one."""
    size = len(view)
    end = min(size, 2 * wanted * size // max(count, 1) + (64 << 10))
    while end < size:
        prefix = view[:end]
        position = len(prefix)
        for _ in range(_SAMPLE_TRIES):
            position = prefix.rfind(b",", 0, position)
            if position < 0:
                break
            try:
                elements = _ELEMENTS.decode(prefix[:position] + b"]")
            except (msgspec.DecodeError, RecursionError):
                continue
            if len(elements) >= wanted:
                return [bytes(element) for element in elements[:wanted]]
            break
        end *= 2
    elements = _ELEMENTS.decode(view)  # elements with many commas each: the whole array, as views of the map
    try:
        return [bytes(element) for element in elements[:wanted]]
    finally:
        del elements


def _check_utf8(view: mmap.mmap) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(view), _CHECK_STEP):
            piece = view[start : start + _CHECK_STEP]
            if not piece.isascii() or decoder.getstate()[0]:  # ASCII is UTF-8: only the rest is decoded
                decoder.decode(piece)
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


class NotStreamable(Exception):
    """The kept body needs what only staging it whole does (from_json.stage_json): the tolerant reader (an
    element or a line that is not an object, a repeated key), lone surrogates marked, or number texts put
    back as sent."""


class BuffersTooSmall(NotStreamable):
    """DuckDB's array reader said "Malformed JSON" of a body that is JSON (the API checked it): with read
    buffers smaller than the body it can fail where an element starts right before a buffer's end (this
    benchmark's 1M purchase orders at 32 MiB with 4-16 MB buffers, its 1M inventory rows at 64 MiB with
    32 MB ones; 24 MB buffers read both). Read it again with the next of STREAMED_BUFFER_BYTES."""


STREAMED_BUFFER_BYTES = (16 << 20, 24 << 20)
"""DuckDB's read buffers (its `maximum_object_size`) when it streams a kept body, tried in turn (see
BuffersTooSmall), then one buffer the size of the body, which costs 900 MB more than 16 MB ones for a
980 MB body (measured)."""


Chunk = tuple[pl.DataFrame, pl.DataFrame | None]
"""Staged rows, and their lines (for a kind with lines), as staging writes them to its files."""

_END = object()
T = TypeVar("T")


def read_kept_body(contract: Contract, kept_path: Path, chunk_rows: int, consume: Callable[[Iterator[Chunk]], T]) -> T:
    """`consume` the chunks of a kept body (kept_body_chunks), and again from the start, with larger read
    buffers, when DuckDB trips on its buffers (BuffersTooSmall). NotStreamable: the body is to be staged whole."""
    size = kept_path.stat().st_size
    for buffer_bytes in [*(b for b in STREAMED_BUFFER_BYTES if b < size), size]:
        try:
            with kept_body_chunks(contract, kept_path, chunk_rows, buffer_bytes=buffer_bytes) as chunks:
                return consume(chunks)
        except BuffersTooSmall as reason:
            logger.info("%s is read again with larger buffers than %d bytes (%s)", kept_path.name, buffer_bytes, reason)
    raise AssertionError("a buffer the size of the body is never too small")


@contextmanager
def kept_body_chunks(
    contract: Contract, kept_path: Path, chunk_rows: int, *, buffer_bytes: int = STREAMED_BUFFER_BYTES[0]
) -> Iterator[Iterator[Chunk]]:
    """The staged rows (and lines) of a kept body, about `chunk_rows` rows at a time, in row order, equal to
    what staging it whole writes. Iterating raises NotStreamable, at whatever chunk, when the body needs
    staging whole (BuffersTooSmall: reading again with larger `buffer_bytes`); the caller then starts over
    (its validated chunks are of no use)."""
    size = kept_path.stat().st_size
    buffer = max(min(size, buffer_bytes), 1 << 20)
    with staging_database(ordered=True) as con:
        try:
            reader = con.sql(rows_query(contract, kept_path, buffer, tolerant=False)).to_arrow_reader(chunk_rows)
        except duckdb.InvalidInputException as error:  # it reads the first chunk already
            raise _refusal(error, buffer < size) from error
        ahead: queue.Queue[object] = queue.Queue(maxsize=1)
        stop = threading.Event()

        def offer(item: object) -> bool:
            while not stop.is_set():
                try:
                    ahead.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read_ahead() -> None:
            try:
                for batch in reader:
                    if not offer(batch):
                        return
                offer(_END)
            except BaseException as error:  # the consumer raises it in its own thread
                offer(error)

        thread = threading.Thread(target=read_ahead, name=f"read {kept_path.name}", daemon=True)
        thread.start()
        try:
            yield _chunks(contract, ahead, buffer < size)
        finally:
            stop.set()
            if thread.is_alive():
                con.interrupt()  # a consumer that stopped early: DuckDB need not read the rest
            thread.join()


def _chunks(contract: Contract, ahead: queue.Queue[object], small_buffers: bool) -> Iterator[Chunk]:
    while (item := ahead.get()) is not _END:
        if isinstance(item, BaseException):
            if _refused_input(item):
                raise _refusal(item, small_buffers) from item
            raise item
        assert isinstance(item, pa.RecordBatch)
        rows, lines = _staged_chunk(contract, pl.DataFrame(item))
        if has_rewritten_numbers(contract, rows, lines):
            raise NotStreamable("an identifier sent as a number is to be staged with its text as sent")
        yield rows, lines


def _refusal(error: BaseException, small_buffers: bool) -> NotStreamable:
    reason = str(error).splitlines()[0]
    return BuffersTooSmall(reason) if small_buffers and "Malformed JSON" in reason else NotStreamable(reason)


def _refused_input(item: BaseException) -> bool:
    """Did DuckDB's fast reader refuse the body? Through the Arrow stream its InvalidInputException arrives
    as Arrow's error, with DuckDB's message."""
    if isinstance(item, duckdb.InvalidInputException):
        return True
    return isinstance(item, OSError | pa.ArrowException) and str(item).startswith("Invalid Input Error")


def _staged_chunk(contract: Contract, frame: pl.DataFrame) -> Chunk:
    """The rows and lines staging writes (rows.select_staged and select_lines), from the fast reader's rows."""
    names = [f.name for f in contract.fields]
    rows = frame.select(ROW, ROW_TYPE, ROW_VALUE, *names)
    if not contract.has_lines:
        return rows, None
    count = pl.col("lines").list.len()
    rows = rows.with_columns(
        pl.lit(None, pl.String()).alias("lines"), frame.select(count.cast(pl.UInt64()).alias(LINES_COUNT)).to_series()
    )
    lines = (
        frame.select(ROW, "lines")
        .filter(count > 0)
        .with_columns(pl.int_ranges(0, count, dtype=pl.Int64()).alias(LINE))
        .explode("lines", LINE)
        .unnest("lines")
        .select(
            ROW,
            LINE,
            pl.lit("OBJECT", pl.String()).alias(ROW_TYPE),
            pl.lit(None, pl.String()).alias(ROW_VALUE),
            *(f.name for f in contract.line_fields),
        )
    )
    return rows, lines
