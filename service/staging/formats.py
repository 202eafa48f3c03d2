"""What an upload's body may be: its formats, by Content-Type, and the row types of unreadable lines."""

from __future__ import annotations

from enum import StrEnum


class UploadFormat(StrEnum):
    """What an upload's body holds, chosen by its Content-Type."""

    JSON = "json"
    NDJSON = "ndjson"
    CSV = "csv"
    PARQUET = "parquet"

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self]


MEDIA_TYPES = {
    UploadFormat.JSON: "application/json",
    UploadFormat.NDJSON: "application/x-ndjson",
    UploadFormat.CSV: "text/csv",
    UploadFormat.PARQUET: "application/vnd.apache.parquet",
}
"""The media type of each format: what the API documents, and what failed rows are sent back as."""

ACCEPTED_MEDIA_TYPES = {
    "application/json": UploadFormat.JSON,
    "text/json": UploadFormat.JSON,
    "application/x-ndjson": UploadFormat.NDJSON,
    "application/jsonl": UploadFormat.NDJSON,
    "text/csv": UploadFormat.CSV,
    "application/vnd.apache.parquet": UploadFormat.PARQUET,
    "application/x-parquet": UploadFormat.PARQUET,
}
"""Every media type an import accepts (and any `+json` type, as JSON)."""

INVALID_JSON = "INVALID_JSON"

INVALID_CSV = "INVALID_CSV"
"""The `__type` of an NDJSON line or CSV record that could not be read: a row-level error of its own."""

MAX_COLUMNS = 10_000
"""A CSV header or Parquet file with more columns than this is refused with a 400: DuckDB's planning time
and memory grow with the columns (150,000 of them ran it out of memory)."""

QUOTE_MARK = "'"
FORMULA_PREFIX = "^'*[-=+@\t\r]"
"""A CSV cell that a spreadsheet would run as a formula (OWASP's list: = + - @, tab, carriage return),
after any number of quote marks. Failed rows sent back as CSV carry one more quote mark before such a
cell (shown as text, never run); when that file comes back (its header has ERRORS_COLUMN), one is taken
off such a cell, so the file round-trips. Any other CSV is staged exactly as sent."""
ERRORS_COLUMN = "_errors"
"""The column of a failed-rows file that holds a row's error messages (service/failed_rows.py)."""
ROW_COLUMN = "_row"
LINE_COLUMN = "_line"
VALUE_COLUMN = "_value"
"""The other columns a failed-rows file adds: the row's index, the line's, the text of an unreadable row."""
FAILED_ROWS_COLUMNS = frozenset({ERRORS_COLUMN, ROW_COLUMN, LINE_COLUMN, VALUE_COLUMN})
"""What a failed-rows file sent back holds beside the fields: ignored without a warning."""
