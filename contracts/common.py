"""What every import kind shares: wire types, casting staged JSON text, and the error frame.

Staged rows hold every field as the raw JSON text that was sent (`"abc"`, `12`, `{"a": 1}`), so a
wrong type is a row error here and never a lost row at the API. Casting happens here with
`strict=False`; pandera then checks values on the typed frame, and both kinds of failure become rows
of one error frame: `row, field, code, message, value` (CONTRACT.md), plus a `position` used only to
keep a row's errors in field order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pandera.polars as pa
import polars as pl

from contracts import screen

ROW = "__row"
LINE = "__line"
ROW_TYPE = "__type"
ROW_VALUE = "__value"
LINES_COUNT = "__lines_count"

MAX_IDENTIFIER_LENGTH = 255
MAX_VALUE_LENGTH = 200
NOT_UNICODE = "\uffff"
"""What staging writes where a JSON string held a lone surrogate (`"A\\ud800"`: valid JSON, not Unicode):
the field is `invalid_value`. U+FFFF is a noncharacter, never interchanged as text."""

ERROR_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "field": pl.String(),
    "code": pl.String(),
    "message": pl.String(),
    "value": pl.String(),
    "position": pl.Int64(),
}


class ErrorCode(StrEnum):
    REQUIRED = "required"
    INVALID_TYPE = "invalid_type"
    INVALID_VALUE = "invalid_value"
    INVALID_DATE = "invalid_date"
    TOO_LONG = "too_long"
    EMPTY_LINES = "empty_lines"
    DUPLICATE_KEY = "duplicate_key"
    UNKNOWN_FIELD = "unknown_field"


class WireType(StrEnum):
    """How a field is read from its JSON text."""

    IDENTIFIER = "identifier"  # string or number, trimmed, empty means missing
    TEXT = "text"  # string or number, kept as sent
    LABEL = "label"  # string, trimmed and upper-cased (statuses)
    NUMBER = "number"  # JSON number or numeric string, finite
    DATE = "date"  # ISO date or timestamp, as a calendar date


@dataclass(frozen=True)
class WireField:
    """One field of a row as the source API names it, with what it means (for the OpenAPI document and the
    warehouse's comments) and an example value."""

    name: str
    type: WireType
    description: str = ""
    example: str | float | None = None


@dataclass(frozen=True)
class Contract:
    """Everything that defines an import kind on the wire; see contracts/<kind>.py."""

    kind: str
    array_key: str
    fields: tuple[WireField, ...]
    schema: type[pa.DataFrameModel]
    key: tuple[str, ...]
    line_fields: tuple[WireField, ...] = ()
    line_schema: type[pa.DataFrameModel] | None = None

    @property
    def has_lines(self) -> bool:
        return bool(self.line_fields)


@dataclass(frozen=True)
class Validated:
    """The outcome of validating staged rows: typed good rows (and lines), and every error."""

    rows: pl.DataFrame
    lines: pl.DataFrame | None
    errors: pl.DataFrame


_NUMBER_START = re.compile(r"^-?[0-9]")
# Only the date of a timestamp is used, but its time must still be a real time of day (leap second allowed).
_ISO_DATE = (
    r"^\d{4}-\d{2}-\d{2}"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d+)?)?(Z|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)?)?$"
)

_OFFSET = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$"
"""A timestamp that ends so is an instant: converted to UTC before its date is taken (CONTRACT.md)."""

_MINUTES_PER_DAY = 24 * 60


def _utc_date(iso: pl.Expr) -> pl.Expr:
    """The UTC date of an ISO timestamp with an offset (`Z`, `+05`, `+0530`, `+05:30`; seconds optional).

    `iso` has matched _ISO_DATE, so its parts stand at known places: arithmetic on slices of it, with no
    regex and no datetime parser. The offset moves the time of day by less than a day, so the date by at
    most one; seconds (a leap second too) cannot move it."""

    def number(text: pl.Expr) -> pl.Expr:
        return text.cast(pl.Int32(), strict=False).fill_null(0)

    zone = iso.str.slice(16).str.strip_chars_start("0123456789:.")  # past `YYYY-MM-DDTHH:MM`, and seconds
    digits = zone.str.replace(":", "", literal=True)  # `Z`, `+05` or `+0530`
    offset = number(digits.str.slice(1, 2)) * 60 + number(digits.str.slice(3, 2))
    signed = pl.when(zone.str.starts_with("-")).then(-offset).otherwise(offset)
    minutes = number(iso.str.slice(11, 2)) * 60 + number(iso.str.slice(14, 2)) - signed
    local_date = iso.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    return (local_date.cast(pl.Int32()) + minutes // _MINUTES_PER_DAY).cast(pl.Date())


_TYPE_MESSAGES = {
    WireType.IDENTIFIER: "must be a string",
    WireType.TEXT: "must be a string",
    WireType.LABEL: "must be a string",
    WireType.NUMBER: "must be a number",
    WireType.DATE: "must be an ISO date (YYYY-MM-DD) or timestamp",
}


def empty_errors() -> pl.DataFrame:
    return pl.DataFrame(schema=ERROR_SCHEMA)


def _json_scalar_text(raw: pl.Expr) -> pl.Expr:
    """The text of a JSON string (unescaped) or number; null for null, booleans, objects, arrays."""
    is_string = raw.str.starts_with('"')
    # A when/then computes every branch on every row: each costly step reads a masked input (nulls are
    # cheap), so that strings are only sliced, escaped strings only decoded, and numbers only matched.
    string = pl.when(is_string).then(raw)
    escaped = string.str.contains("\\", literal=True)
    is_number = pl.when(~is_string).then(raw).str.contains(_NUMBER_START.pattern)
    return (
        pl.when(escaped)
        .then(pl.when(escaped).then(raw).str.json_decode(pl.String()))
        .when(is_string)
        .then(string.str.slice(1).str.head(-1))  # without the quotes (counted in characters, not bytes)
        .when(is_number)
        .then(raw)
        .otherwise(None)
    )


def _is_present(raw: pl.Expr) -> pl.Expr:
    return raw.is_not_null() & (raw != "null")


def _parse(raw: pl.Expr, text: pl.Expr, wire_type: WireType) -> pl.Expr:
    """A field's scalar text read as its wire type; null where it does not read."""
    if wire_type is WireType.IDENTIFIER:
        return text.str.strip_chars()
    if wire_type is WireType.TEXT:
        return text
    if wire_type is WireType.LABEL:
        return pl.when(raw.str.starts_with('"')).then(text.str.strip_chars().str.to_uppercase())
    if wire_type is WireType.NUMBER:
        # A cast refuses surrounding whitespace: what casts as it is would strip to itself, so strip the rest only.
        number = text.cast(pl.Float64(), strict=False)
        stripped = pl.when(number.is_null()).then(text).str.strip_chars()
        return pl.coalesce(number, stripped.cast(pl.Float64(), strict=False))
    if wire_type is WireType.DATE:
        # Polars evaluates a shared sub-expression once per use: each regex is used once, on the text.
        stripped = pl.when(raw.str.starts_with('"')).then(text.str.strip_chars())
        is_iso = stripped.str.contains(_ISO_DATE)
        as_written = stripped.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        return pl.when(is_iso & stripped.str.contains(_OFFSET)).then(_utc_date(stripped)).when(is_iso).then(as_written)
    raise AssertionError(f"unknown wire type {wire_type}")


def _cast(raw: pl.Expr, text: pl.Expr, parsed: pl.Expr, wire_type: WireType) -> tuple[pl.Expr, pl.Expr]:
    """(typed value, error code or null) for one field from its `_parse`; a bad value casts to null."""
    present = _is_present(raw)
    is_string = raw.str.starts_with('"')
    not_empty = pl.when(parsed.str.len_bytes() > 0).then(parsed)  # for text types: empty means missing
    invalid_type = pl.lit(ErrorCode.INVALID_TYPE.value)
    not_unicode = text.str.contains(NOT_UNICODE, literal=True)
    invalid_value = pl.lit(ErrorCode.INVALID_VALUE.value)
    if wire_type is WireType.IDENTIFIER:
        code = pl.when(present & text.is_null()).then(invalid_type).when(not_unicode).then(invalid_value)
        return pl.when(~not_unicode).then(not_empty), code
    if wire_type is WireType.TEXT:
        code = pl.when(present & text.is_null()).then(invalid_type).when(not_unicode).then(invalid_value)
        return pl.when(~not_unicode).then(parsed), code
    if wire_type is WireType.LABEL:
        code = pl.when(present & ~is_string).then(invalid_type).when(not_unicode).then(invalid_value)
        return pl.when(~not_unicode).then(not_empty), code
    if wire_type is WireType.NUMBER:
        code = (
            pl.when(present & parsed.is_null())
            .then(invalid_type)
            .when(present & ~parsed.is_finite())
            .then(pl.lit(ErrorCode.INVALID_VALUE.value))
        )
        return pl.when(parsed.is_finite()).then(parsed), code
    if wire_type is WireType.DATE:
        code = (
            pl.when(present & ~is_string)
            .then(invalid_type)
            .when(present & parsed.is_null())
            .then(pl.lit(ErrorCode.INVALID_DATE.value))
        )
        return parsed, code
    raise AssertionError(f"unknown wire type {wire_type}")


def _shown_value(raw: pl.Expr, text: pl.Expr | None = None) -> pl.Expr:
    """The offending value as sent: a string without its quotes, anything else as JSON text.

    A JSON null shows as null, like a missing value: staging may write it either way. Pass `text`
    when the value's `_json_scalar_text` is already at hand.
    """
    text = _json_scalar_text(raw) if text is None else text
    shown = pl.coalesce(text, raw).str.slice(0, MAX_VALUE_LENGTH).str.replace_all(NOT_UNICODE, "\ufffd", literal=True)
    return pl.when(_is_present(raw)).then(shown)


def _cast_message(code: pl.Expr, wire_type: WireType) -> pl.Expr:
    if wire_type in (WireType.IDENTIFIER, WireType.TEXT, WireType.LABEL):
        not_unicode = pl.lit("is not valid Unicode (it holds a lone surrogate)")
        return (
            pl.when(code == ErrorCode.INVALID_VALUE.value)
            .then(not_unicode)
            .otherwise(pl.lit(_TYPE_MESSAGES[wire_type]))
        )
    return (
        pl.when(code == ErrorCode.INVALID_VALUE.value)
        .then(pl.lit("must be a finite number"))
        .when(code == ErrorCode.INVALID_DATE.value)
        .then(pl.lit("is not a valid calendar date (YYYY-MM-DD)"))
        .otherwise(pl.lit(_TYPE_MESSAGES[wire_type]))
    )


def field_label(field: str, line: pl.Expr | None) -> pl.Expr:
    """The wire name of a field in an error: `unitCost`, or `lines[2].unitCost` for a line."""
    if line is None:
        return pl.lit(field)
    return pl.format("lines[{}]." + field, line)


def _scratch(step: str, field: str) -> str:
    """A working column of `cast_fields`: `__text:unitCost`."""
    return f"__{step}:{field}"


def cast_fields(
    raw: pl.DataFrame, fields: Sequence[WireField], *, line: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast the raw JSON text of `fields` to typed columns; return (typed frame, cast errors).

    The typed frame keeps the staging columns (`__row`, and `__line` for lines) and one typed column
    per field under its wire name, null where the value was missing or did not cast.
    """
    keys = [ROW, LINE] if line else [ROW]
    missing = [pl.lit(None, dtype=pl.String()).alias(f.name) for f in fields if f.name not in raw.columns]
    raw = raw.with_columns(missing) if missing else raw
    # Each step is one `with_columns` over every field (Polars runs its expressions in parallel) and
    # computes what the next steps read once, as a column, rather than once per use. The frame is in
    # memory already: the in-memory engine runs these steps faster than the streaming one.
    text, parsed, value, code = (
        {f.name: _scratch(step, f.name) for f in fields} for step in ("text", "parsed", "value", "code")
    )
    casts: list[pl.Expr] = []
    for f in fields:
        typed_value, error_code = _cast(pl.col(f.name), pl.col(text[f.name]), pl.col(parsed[f.name]), f.type)
        casts += [typed_value.alias(value[f.name]), error_code.alias(code[f.name])]
    frame = (
        raw.lazy()
        .with_columns(pl.col(f.name).cast(pl.String()) for f in fields)
        .with_columns(_json_scalar_text(pl.col(f.name)).alias(text[f.name]) for f in fields)
        .with_columns(_parse(pl.col(f.name), pl.col(text[f.name]), f.type).alias(parsed[f.name]) for f in fields)
        .with_columns(casts)
        .collect(engine="in-memory")
    )
    typed = frame.select(*keys, *(pl.col(value[f.name]).alias(f.name) for f in fields))
    if not fields:
        return typed, empty_errors()
    # Few rows fail: find them first, then describe their errors.
    failed = frame.select(*keys, *(name for f in fields for name in (f.name, text[f.name], code[f.name]))).filter(
        pl.any_horizontal(pl.col(code[f.name]).is_not_null() for f in fields)
    )
    if failed.is_empty():  # the usual case: no frame to build per field (a fixed cost on every small job)
        return typed, empty_errors()
    line_expr = pl.col(LINE) if line else None
    error_parts = [
        failed.filter(pl.col(code[field.name]).is_not_null()).select(
            pl.col(ROW).cast(pl.Int64()).alias("row"),
            field_label(field.name, line_expr).alias("field"),
            pl.col(code[field.name]).alias("code"),
            pl.format(
                "{} {}", field_label(field.name, line_expr), _cast_message(pl.col(code[field.name]), field.type)
            ).alias("message"),
            _shown_value(pl.col(field.name), pl.col(text[field.name])).alias("value"),
            _position(position, line_expr).alias("position"),
        )
        for position, field in enumerate(fields)
    ]
    return typed, pl.concat(error_parts).cast(ERROR_SCHEMA)  # type: ignore[arg-type]


def _position(field_position: int, line: pl.Expr | None) -> pl.Expr:
    """Order of an error within its row: header fields first, then lines in order."""
    if line is None:
        return pl.lit(field_position, dtype=pl.Int64())
    return (line.cast(pl.Int64()) + 1) * 1000 + field_position


_CHECK_PATTERN = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)$")


def _describe_check(check: str) -> tuple[str, str]:
    """(code, message) for a pandera check as it appears in `failure_cases.check`."""
    if check == "not_nullable":
        return ErrorCode.REQUIRED.value, "is required"
    match = _CHECK_PATTERN.match(check)
    if match is None:  # a custom check: its `error` text is the message
        return ErrorCode.INVALID_VALUE.value, check
    name, args = match["name"], match["args"]
    if name == "str_length":
        maximum = args.split(",")[-1].strip()
        return ErrorCode.TOO_LONG.value, f"must be at most {maximum} characters"
    comparisons = {
        "greater_than_or_equal_to": ">=",
        "greater_than": ">",
        "less_than_or_equal_to": "<=",
        "less_than": "<",
    }
    if name in comparisons:
        return ErrorCode.INVALID_VALUE.value, f"must be {comparisons[name]} {args}"
    if name == "isin":
        allowed = args.strip("[]").replace("'", "")
        return ErrorCode.INVALID_VALUE.value, f"must be one of {allowed}"
    return ErrorCode.INVALID_VALUE.value, f"fails {check}"


def check_values(
    typed: pl.DataFrame,
    raw: pl.DataFrame,
    schema: type[pa.DataFrameModel],
    fields: Sequence[WireField],
    *,
    line: bool = False,
) -> pl.DataFrame:
    """Run the pandera contract (lazy: every failure) and return its failures as error rows."""
    if screen.passes(schema, typed):  # the usual case, in one query instead of one per check
        return empty_errors()
    try:
        schema.validate(typed, lazy=True)
    except pa.errors.SchemaErrors as failure:
        all_cases: pl.DataFrame = failure.failure_cases
    else:
        return empty_errors()
    positions = {f.name: i for i, f in enumerate(fields)}
    cases = all_cases.filter(pl.col("index").is_not_null() & pl.col("column").is_in(list(positions)))
    if cases.is_empty():
        unexpected = all_cases.select("column", "check").unique().rows()
        raise ValueError(f"schema failures without a row: {unexpected}")
    checks = cases.get_column("check").unique().to_list()
    described = pl.DataFrame(
        [(check, *_describe_check(check)) for check in checks],
        schema=["check", "code", "message"],
        orient="row",
    )
    cases = cases.join(described, on="check", how="left")
    line_expr = pl.col(LINE) if line else None
    parts = []
    for column in cases.get_column("column").unique(maintain_order=True).to_list():
        at = cases.filter(pl.col("column") == column)
        index = at.get_column("index").cast(pl.Int64())
        keys = [ROW, LINE] if line else [ROW]
        cells = raw.select(*keys, column)[index]  # the failed rows only, before anything is computed
        parts.append(
            cells.select(
                pl.col(ROW).cast(pl.Int64()).alias("row"),
                field_label(column, line_expr).alias("field"),
                at.get_column("code").alias("code"),
                pl.format("{} {}", field_label(column, line_expr), at.get_column("message")).alias("message"),
                _shown_value(pl.col(column)).alias("value"),
                _position(positions[column], line_expr).alias("position"),
            )
        )
    return pl.concat(parts).cast(ERROR_SCHEMA)  # type: ignore[arg-type]


# What a row that cannot be read at all is, by its staged `__type` (NDJSON and CSV stage unreadable
# lines as INVALID_JSON / INVALID_CSV; JSON arrays stage the element's JSON type).
_SHAPE_MESSAGES = {
    "INVALID_JSON": "{} is not valid JSON",
    "INVALID_CSV": "{} is not valid CSV (wrong number of fields or an unclosed quote)",
}


def row_shape_errors(raw: pl.DataFrame, *, line: bool = False) -> pl.DataFrame:
    """An element that is not a JSON object cannot be read at all: one error, nothing more.

    Its value is its text as sent, except that a null element shows as null (as a null field does).
    """
    bad = raw.filter(pl.col(ROW_TYPE) != "OBJECT")
    if bad.is_empty():
        return empty_errors()
    line_expr = pl.col(LINE) if line else None
    value = pl.col(ROW_VALUE).cast(pl.String())
    subject = pl.format("lines[{}]", pl.col(LINE)) if line else pl.lit("this row")
    message = pl.format("{} must be a JSON object", subject) if line else pl.lit("each row must be a JSON object")
    for shape, template in _SHAPE_MESSAGES.items():
        message = pl.when(pl.col(ROW_TYPE) == shape).then(pl.format(template, subject)).otherwise(message)
    return bad.select(
        pl.col(ROW).cast(pl.Int64()).alias("row"),
        (pl.format("lines[{}]", pl.col(LINE)) if line else pl.lit(None, dtype=pl.String())).alias("field"),
        pl.lit(ErrorCode.INVALID_TYPE.value).alias("code"),
        message.alias("message"),
        pl.when(_is_present(value)).then(value.str.slice(0, MAX_VALUE_LENGTH)).alias("value"),
        (_position(0, line_expr) - 1).alias("position"),
    )


def validate_part(
    raw: pl.DataFrame,
    fields: Sequence[WireField],
    schema: type[pa.DataFrameModel],
    *,
    line: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast and check one frame (headers or lines): (typed frame of its objects, every error)."""
    objects = raw.filter(pl.col(ROW_TYPE) == "OBJECT")
    typed, cast_errors = cast_fields(objects, fields, line=line)
    value_errors = check_values(typed, objects, schema, fields, line=line)
    # A value that did not cast is null for pandera: report the cast, not also a `required`.
    value_errors = value_errors.join(cast_errors.select("row", "field"), on=["row", "field"], how="anti")
    errors = pl.concat([row_shape_errors(raw, line=line), cast_errors, value_errors])
    return typed, errors


def lines_errors(raw: pl.DataFrame) -> pl.DataFrame:
    """`lines` itself: required, an array, and not empty."""
    lines_raw = pl.col("lines") if "lines" in raw.columns else pl.lit(None, dtype=pl.String())
    count = pl.col(LINES_COUNT)
    code = (
        pl.when(count.is_null() & ~_is_present(lines_raw))
        .then(pl.lit(ErrorCode.REQUIRED.value))
        .when(count.is_null())
        .then(pl.lit(ErrorCode.INVALID_TYPE.value))
        .when(count == 0)
        .then(pl.lit(ErrorCode.EMPTY_LINES.value))
    )
    failed = (
        raw.filter(pl.col(ROW_TYPE) == "OBJECT")
        .select(ROW, lines_raw.alias("lines"), code.alias("code"))
        .filter(pl.col("code").is_not_null())
    )
    message = (
        pl.when(pl.col("code") == ErrorCode.REQUIRED.value)
        .then(pl.lit("lines is required"))
        .when(pl.col("code") == ErrorCode.INVALID_TYPE.value)
        .then(pl.lit("lines must be an array"))
        .otherwise(pl.lit("lines must not be empty"))
    )
    return failed.select(
        pl.col(ROW).cast(pl.Int64()).alias("row"),
        pl.lit("lines").alias("field"),
        pl.col("code"),
        message.alias("message"),
        _shown_value(pl.col("lines")).alias("value"),
        pl.lit(999, dtype=pl.Int64()).alias("position"),
    ).cast(ERROR_SCHEMA)  # type: ignore[arg-type]


def validate(contract: Contract, raw: pl.DataFrame, raw_lines: pl.DataFrame | None = None) -> Validated:
    """Validate staged rows (and their lines) of one kind; a row with any error is left out."""
    typed, errors = validate_part(raw, contract.fields, contract.schema)
    lines: pl.DataFrame | None = None
    if contract.has_lines:
        assert contract.line_schema is not None
        raw_lines = raw_lines if raw_lines is not None else empty_lines_frame(contract)
        lines, line_errors = validate_part(raw_lines, contract.line_fields, contract.line_schema, line=True)
        errors = pl.concat([errors, lines_errors(raw), line_errors])
    errors = errors.sort("row", "position", maintain_order=True)
    rejected = errors.get_column("row").unique().implode()
    rows = typed.filter(~pl.col(ROW).is_in(rejected))
    if lines is not None:
        lines = _in_line_order(lines.filter(~pl.col(ROW).is_in(rejected)))
    return Validated(rows=rows, lines=lines, errors=errors)


def _in_line_order(lines: pl.DataFrame) -> pl.DataFrame:
    """Lines sorted by row, then line. Staging writes them in that order: checking is cheaper than sorting."""
    row, line = pl.col(ROW), pl.col(LINE)
    after_previous = (row.diff() > 0) | ((row.diff() == 0) & (line.diff() > 0))
    if lines.select(after_previous.slice(1).all(ignore_nulls=False)).item():
        return lines
    return lines.sort(ROW, LINE)


def empty_lines_frame(contract: Contract) -> pl.DataFrame:
    columns: dict[str, Any] = {ROW: pl.Int64(), LINE: pl.Int64(), ROW_TYPE: pl.String(), ROW_VALUE: pl.String()}
    columns.update({f.name: pl.String() for f in contract.line_fields})
    return pl.DataFrame(schema=columns)
