"""What every contract shares: reading each wire type from its JSON text, the error frame, validate()."""

from __future__ import annotations

import datetime
from typing import Any

import polars as pl
import pytest

from contracts.common import (
    ERROR_SCHEMA,
    LINE,
    LINES_COUNT,
    MAX_VALUE_LENGTH,
    ROW,
    ROW_TYPE,
    ROW_VALUE,
    ErrorCode,
    WireField,
    WireType,
    _describe_check,
    cast_fields,
    empty_lines_frame,
    field_label,
    lines_errors,
    row_shape_errors,
    validate,
)
from service.kinds import KINDS
from tests.frames import (
    IMPURE_STANDARD_MODULES,
    Raw,
    issues,
    json_text,
    staged_lines,
    staged_rows,
    top_level_imports,
    validate_elements,
)

# (id, raw JSON text as staged, typed value, error code, value shown in the error)
CastCase = tuple[str, str | None, Any, str | None, str | None]

IDENTIFIER_CASES: list[CastCase] = [
    ("string", '"abc"', "abc", None, None),
    ("trimmed", '"  abc  "', "abc", None, None),
    ("trimmed-tabs-newlines", '"\\tabc\\n"', "abc", None, None),
    ("inner-space-kept", '"a b"', "a b", None, None),
    ("integer", "12", "12", None, None),
    ("negative-decimal", "-1.5", "-1.5", None, None),
    ("unicode", '"Café"', "Café", None, None),
    ("emoji", '"📦"', "📦", None, None),
    ("escaped-quote", '"a\\"b"', 'a"b', None, None),
    ("escaped-unicode", '"\\u00e9t\\u00e9"', "été", None, None),
    ("empty-is-missing", '""', None, None, None),
    ("blank-is-missing", '"   "', None, None, None),
    ("missing", None, None, None, None),
    ("json-null", "null", None, None, None),
    ("boolean", "true", None, "invalid_type", "true"),
    ("object", '{"a":1}', None, "invalid_type", '{"a":1}'),
    ("array", '["a"]', None, "invalid_type", '["a"]'),
]

TEXT_CASES: list[CastCase] = [
    ("kept-as-sent", '"  Big  box "', "  Big  box ", None, None),
    ("empty-kept", '""', "", None, None),
    ("number", "12", "12", None, None),
    ("unicode", '"Crème brûlée"', "Crème brûlée", None, None),
    ("missing", None, None, None, None),
    ("json-null", "null", None, None, None),
    ("boolean", "false", None, "invalid_type", "false"),
    ("object", '{"a":"b"}', None, "invalid_type", '{"a":"b"}'),
    ("array", "[1,2]", None, "invalid_type", "[1,2]"),
]

LABEL_CASES: list[CastCase] = [
    ("upper-cased", '"confirmed"', "CONFIRMED", None, None),
    ("trimmed-and-upper-cased", '" Partially_Received "', "PARTIALLY_RECEIVED", None, None),
    ("empty-is-missing", '""', None, None, None),
    ("missing", None, None, None, None),
    ("json-null", "null", None, None, None),
    ("number", "12", None, "invalid_type", "12"),
    ("boolean", "true", None, "invalid_type", "true"),
    ("object", '{"s":"PENDING"}', None, "invalid_type", '{"s":"PENDING"}'),
    ("array", '["PENDING"]', None, "invalid_type", '["PENDING"]'),
]

NUMBER_CASES: list[CastCase] = [
    ("integer", "12", 12.0, None, None),
    ("decimal", "-3.25", -3.25, None, None),
    ("exponent", "1e3", 1000.0, None, None),
    ("zero", "0", 0.0, None, None),
    ("numeric-string", '"12"', 12.0, None, None),
    ("numeric-string-padded", '" 3.5 "', 3.5, None, None),
    ("numeric-string-exponent", '"2.5E2"', 250.0, None, None),
    ("numeric-string-plus", '"+5"', 5.0, None, None),
    ("underflow-is-zero", "1e-400", 0.0, None, None),
    ("missing", None, None, None, None),
    ("json-null", "null", None, None, None),
    ("overflow", "1e400", None, "invalid_value", "1e400"),
    ("negative-overflow", "-1e400", None, "invalid_value", "-1e400"),
    ("overflow-string", '"1e400"', None, "invalid_value", "1e400"),
    ("nan-string", '"NaN"', None, "invalid_value", "NaN"),
    ("inf-string", '"inf"', None, "invalid_value", "inf"),
    ("negative-infinity-string", '"-Infinity"', None, "invalid_value", "-Infinity"),
    ("text", '"abc"', None, "invalid_type", "abc"),
    ("empty-string", '""', None, "invalid_type", ""),
    ("blank-string", '"  "', None, "invalid_type", "  "),
    ("thousands-separator", '"1,000"', None, "invalid_type", "1,000"),
    ("hexadecimal", '"0x10"', None, "invalid_type", "0x10"),
    ("boolean", "true", None, "invalid_type", "true"),
    ("object", '{"n":1}', None, "invalid_type", '{"n":1}'),
    ("array", "[1]", None, "invalid_type", "[1]"),
    ("negative-zero", "-0", -0.0, None, None),
    ("bare-nan", "NaN", None, "invalid_type", "NaN"),  # not JSON; what some writers emit for a float
    ("bare-infinity", "-Infinity", None, "invalid_type", "-Infinity"),
]

DATE_CASES: list[CastCase] = [
    ("date", '"2026-11-26"', datetime.date(2026, 11, 26), None, None),
    ("date-padded", '" 2026-11-26 "', datetime.date(2026, 11, 26), None, None),
    ("leap-day", '"2024-02-29"', datetime.date(2024, 2, 29), None, None),
    ("timestamp-utc", '"2026-11-29T23:00:00Z"', datetime.date(2026, 11, 29), None, None),
    ("timestamp-space-minutes", '"2026-11-26 10:00"', datetime.date(2026, 11, 26), None, None),
    ("timestamp-fraction-offset", '"2026-11-26T10:00:00.123456+05:30"', datetime.date(2026, 11, 26), None, None),
    ("timestamp-compact-offset", '"2026-11-26T10:00:00-0800"', datetime.date(2026, 11, 26), None, None),
    ("timestamp-hour-offset", '"2026-11-26T10:00:00+05"', datetime.date(2026, 11, 26), None, None),
    ("timestamp-no-zone", '"2026-11-26T00:00:00"', datetime.date(2026, 11, 26), None, None),
    ("leap-second", '"2016-12-31T23:59:60Z"', datetime.date(2016, 12, 31), None, None),
    ("offset-to-next-day", '"2026-11-26T23:00:00-05:00"', datetime.date(2026, 11, 27), None, None),
    ("offset-to-previous-day", '"2026-11-26T01:00:00+05:30"', datetime.date(2026, 11, 25), None, None),
    ("offset-into-leap-day", '"2024-02-28T23:30-0100"', datetime.date(2024, 2, 29), None, None),
    ("offset-into-next-year", '"2026-12-31 23:59:59.9-00:01"', datetime.date(2027, 1, 1), None, None),
    ("offset-hour-only-back", '"2027-01-01T00:10+01"', datetime.date(2026, 12, 31), None, None),
    ("missing", None, None, None, None),
    ("json-null", "null", None, None, None),
    ("february-30", '"2026-02-30"', None, "invalid_date", "2026-02-30"),
    ("february-29-not-leap", '"2025-02-29"', None, "invalid_date", "2025-02-29"),
    ("month-13", '"2026-13-01"', None, "invalid_date", "2026-13-01"),
    ("month-0", '"2026-00-10"', None, "invalid_date", "2026-00-10"),
    ("day-32", '"2026-01-32"', None, "invalid_date", "2026-01-32"),
    ("hour-24", '"2026-11-26T24:00:00"', None, "invalid_date", "2026-11-26T24:00:00"),
    ("minute-60", '"2026-11-26T23:60:00Z"', None, "invalid_date", "2026-11-26T23:60:00Z"),
    ("second-61", '"2026-11-26T23:59:61Z"', None, "invalid_date", "2026-11-26T23:59:61Z"),
    ("hour-25-minute-61", '"2026-11-26T25:61:00"', None, "invalid_date", "2026-11-26T25:61:00"),
    ("offset-hour-24", '"2026-11-26T10:00:00+24:00"', None, "invalid_date", "2026-11-26T10:00:00+24:00"),
    ("day-first", '"26-11-2026"', None, "invalid_date", "26-11-2026"),
    ("slashes", '"2026/11/26"', None, "invalid_date", "2026/11/26"),
    ("single-digit-month", '"2026-1-05"', None, "invalid_date", "2026-1-05"),
    ("dangling-t", '"2026-11-26T"', None, "invalid_date", "2026-11-26T"),
    ("iso-week", '"2026-W48"', None, "invalid_date", "2026-W48"),
    ("trailing-text", '"2026-11-26 next"', None, "invalid_date", "2026-11-26 next"),
    ("empty", '""', None, "invalid_date", ""),
    ("number", "20261126", None, "invalid_type", "20261126"),
    ("boolean", "true", None, "invalid_type", "true"),
    ("object", '{"d":"2026-11-26"}', None, "invalid_type", '{"d":"2026-11-26"}'),
]

WIRE_TYPE_CASES = {
    WireType.IDENTIFIER: IDENTIFIER_CASES,
    WireType.TEXT: TEXT_CASES,
    WireType.LABEL: LABEL_CASES,
    WireType.NUMBER: NUMBER_CASES,
    WireType.DATE: DATE_CASES,
}

MESSAGES = {
    (WireType.IDENTIFIER, "invalid_type"): "x must be a string",
    (WireType.TEXT, "invalid_type"): "x must be a string",
    (WireType.LABEL, "invalid_type"): "x must be a string",
    (WireType.NUMBER, "invalid_type"): "x must be a number",
    (WireType.NUMBER, "invalid_value"): "x must be a finite number",
    (WireType.DATE, "invalid_type"): "x must be an ISO date (YYYY-MM-DD) or timestamp",
    (WireType.DATE, "invalid_date"): "x is not a valid calendar date (YYYY-MM-DD)",
}


def _cast_all(wire_type: WireType) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One cast over the whole table of a wire type: row i is case i."""
    texts = [text for _, text, _, _, _ in WIRE_TYPE_CASES[wire_type]]
    raw = pl.DataFrame({ROW: list(range(len(texts))), "x": texts}, schema={ROW: pl.Int64(), "x": pl.String()})
    return cast_fields(raw, [WireField("x", wire_type)])


_CASTS = {wire_type: _cast_all(wire_type) for wire_type in WIRE_TYPE_CASES}


@pytest.mark.parametrize(
    ("wire_type", "index", "value", "code", "shown"),
    [
        pytest.param(wire_type, index, value, code, shown, id=f"{wire_type}-{name}")
        for wire_type, cases in WIRE_TYPE_CASES.items()
        for index, (name, _, value, code, shown) in enumerate(cases)
    ],
)
def test_cast_reads_each_wire_type(
    wire_type: WireType, index: int, value: Any, code: str | None, shown: str | None
) -> None:
    typed, errors = _CASTS[wire_type]
    assert typed.row(index, named=True) == {ROW: index, "x": value}
    row_errors = errors.filter(pl.col("row") == index)
    if code is None:
        assert row_errors.is_empty()
    else:
        assert row_errors.select("row", "field", "code", "message", "value", "position").rows() == [
            (index, "x", code, MESSAGES[(wire_type, code)], shown, 0)
        ]


def test_cast_types_and_error_schema() -> None:
    typed = {wire_type: frame for wire_type, (frame, _) in _CASTS.items()}
    assert [typed[t].schema["x"] for t in WireType] == [pl.String, pl.String, pl.String, pl.Float64, pl.Date]
    assert all(errors.schema == pl.Schema(ERROR_SCHEMA) for _, errors in _CASTS.values())


def test_cast_adds_fields_that_were_never_sent() -> None:
    raw = pl.DataFrame({ROW: [0]}, schema={ROW: pl.Int64()})
    typed, errors = cast_fields(raw, [WireField("a", WireType.IDENTIFIER), WireField("n", WireType.NUMBER)])
    assert typed.to_dicts() == [{ROW: 0, "a": None, "n": None}]
    assert errors.is_empty()


def test_cast_errors_are_in_field_order_with_line_labels() -> None:
    raw = pl.DataFrame(
        {ROW: [4, 4], LINE: [0, 2], "sku": ["true", '"ok"'], "qty": ['"x"', "[1]"]},
        schema={ROW: pl.Int64(), LINE: pl.Int64(), "sku": pl.String(), "qty": pl.String()},
    )
    fields = [WireField("sku", WireType.IDENTIFIER), WireField("qty", WireType.NUMBER)]
    typed, errors = cast_fields(raw, fields, line=True)
    assert typed.columns == [ROW, LINE, "sku", "qty"]
    assert errors.sort("position").select("row", "field", "code", "value", "position").rows() == [
        (4, "lines[0].sku", "invalid_type", "true", 1000),
        (4, "lines[0].qty", "invalid_type", "x", 1001),
        (4, "lines[2].qty", "invalid_type", "[1]", 3001),
    ]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('"' + "a" * 300 + '"', "a" * 200),
        ('"' + "é" * 300 + '"', "é" * 200),
        ('{"k":"' + "b" * 300 + '"}', ('{"k":"' + "b" * 300)[:200]),
    ],
    ids=["string", "multibyte-string", "object"],
)
def test_shown_value_is_cut_to_200_characters(text: str, shown: str) -> None:
    raw = pl.DataFrame({ROW: [0], "n": [text]}, schema={ROW: pl.Int64(), "n": pl.String()})
    _, errors = cast_fields(raw, [WireField("n", WireType.NUMBER)])
    assert errors.get_column("value").to_list() == [shown]
    assert MAX_VALUE_LENGTH == 200


@pytest.mark.parametrize(
    ("check", "code", "message"),
    [
        ("not_nullable", "required", "is required"),
        ("str_length(None, 255)", "too_long", "must be at most 255 characters"),
        ("greater_than_or_equal_to(0)", "invalid_value", "must be >= 0"),
        ("greater_than(0)", "invalid_value", "must be > 0"),
        ("less_than_or_equal_to(99999999999999.0)", "invalid_value", "must be <= 99999999999999.0"),
        ("less_than(10)", "invalid_value", "must be < 10"),
        ("isin(['PENDING', 'CLOSED'])", "invalid_value", "must be one of PENDING, CLOSED"),
        ("in_range(0, 1)", "invalid_value", "fails in_range(0, 1)"),
        ("must be even", "invalid_value", "must be even"),
    ],
    ids=["not-nullable", "str-length", "ge", "gt", "le", "lt", "isin", "other-builtin", "custom"],
)
def test_describe_pandera_check(check: str, code: str, message: str) -> None:
    assert _describe_check(check) == (code, message)


@pytest.mark.parametrize(
    ("line", "label"),
    [(None, "unitCost"), (0, "lines[0].unitCost"), (12, "lines[12].unitCost")],
    ids=["header", "first-line", "line-12"],
)
def test_field_label(line: int | None, label: str) -> None:
    frame = pl.DataFrame({LINE: [line]}, schema={LINE: pl.Int64()})
    expression = field_label("unitCost", None if line is None else pl.col(LINE))
    assert frame.select(expression.alias("label")).item() == label


NON_OBJECTS = [
    pytest.param("abc", '"abc"', id="string"),
    pytest.param(7, "7", id="number"),
    pytest.param(2.5, "2.5", id="decimal"),
    pytest.param(True, "true", id="boolean"),
    pytest.param(None, None, id="null"),
    pytest.param([1, {"a": 2}], '[1,{"a":2}]', id="array"),
    pytest.param("z" * 300, '"' + "z" * 199, id="long-string-cut"),
]


@pytest.mark.parametrize(("element", "shown"), NON_OBJECTS)
def test_non_object_row_is_one_invalid_type_error(element: Any, shown: str | None) -> None:
    raw = staged_rows(KINDS["inventory"].contract, [{"skuId": "A", "locationId": "L"}, element])
    assert row_shape_errors(raw).select("row", "field", "code", "message", "value", "position").rows() == [
        (1, None, "invalid_type", "each row must be a JSON object", shown, -1)
    ]


@pytest.mark.parametrize(("element", "shown"), NON_OBJECTS)
def test_non_object_line_is_one_invalid_type_error(element: Any, shown: str | None) -> None:
    contract = KINDS["orders"].contract
    line = {"skuId": "A", "quantity": 1, "locationId": "L"}
    raw_lines = staged_lines(contract, [{"externalOrderId": "O", "lines": [line, line, element]}])
    assert row_shape_errors(raw_lines, line=True).select(
        "row", "field", "code", "message", "value", "position"
    ).rows() == [(0, "lines[2]", "invalid_type", "lines[2] must be a JSON object", shown, 2999)]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"lines": [{}]}, []),
        ({}, [("lines", "required", "lines is required", None)]),
        ({"lines": None}, [("lines", "required", "lines is required", None)]),
        ({"lines": []}, [("lines", "empty_lines", "lines must not be empty", None)]),
        ({"lines": "abc"}, [("lines", "invalid_type", "lines must be an array", "abc")]),
        ({"lines": {"skuId": "A"}}, [("lines", "invalid_type", "lines must be an array", '{"skuId":"A"}')]),
        ({"lines": 5}, [("lines", "invalid_type", "lines must be an array", "5")]),
        ({"lines": False}, [("lines", "invalid_type", "lines must be an array", "false")]),
        ({"lines": "x" * 300}, [("lines", "invalid_type", "lines must be an array", "x" * 200)]),
    ],
    ids=["array", "missing", "null", "empty", "string", "object", "number", "boolean", "long-string-cut"],
)
def test_lines_errors(header: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    raw = staged_rows(KINDS["orders"].contract, [{"externalOrderId": "O", **header}])
    errors = lines_errors(raw)
    assert errors.select("field", "code", "message", "value").rows() == expected
    assert errors.get_column("position").to_list() == [999] * len(expected)


def test_lines_errors_skip_non_objects() -> None:
    raw = staged_rows(KINDS["orders"].contract, ["not an order", None])
    assert lines_errors(raw).is_empty()


def test_validate_orders_errors_by_row_then_position_and_drops_rejected_rows() -> None:
    contract = KINDS["purchase-orders"].contract
    good_line = {"skuId": "A", "quantity": 1, "unitCost": 2}
    elements: list[Any] = [
        {"externalPoNumber": "P0", "supplierId": "S", "destinationLocationId": "D", "lines": [good_line]},
        {
            "supplierId": True,
            "destinationLocationId": "D",
            "status": "nope",
            "lines": [{"skuId": "A", "quantity": 0, "unitCost": "x"}, "line", good_line, {"unitCost": -1}],
        },
        5,
        {"externalPoNumber": "P3", "supplierId": "S", "destinationLocationId": "D", "lines": []},
    ]
    # Stage rows out of order: validate() must order the errors, not rely on the input order.
    raw = staged_rows(contract, elements).reverse()
    raw_lines = staged_lines(contract, elements).reverse()
    validated = validate(contract, raw, raw_lines)
    assert issues(validated.errors) == [
        (1, "externalPoNumber", "required", None),
        (1, "supplierId", "invalid_type", "true"),
        (1, "status", "invalid_value", "nope"),
        (1, "lines[0].quantity", "invalid_value", "0"),
        (1, "lines[0].unitCost", "invalid_type", "x"),
        (1, "lines[1]", "invalid_type", '"line"'),
        (1, "lines[3].skuId", "required", None),
        (1, "lines[3].quantity", "required", None),
        (1, "lines[3].unitCost", "invalid_value", "-1"),
        (2, None, "invalid_type", "5"),
        (3, "lines", "empty_lines", None),
    ]
    assert validated.errors.schema == pl.Schema(ERROR_SCHEMA)
    assert validated.rows.get_column(ROW).to_list() == [0]
    assert validated.lines is not None
    assert validated.lines.select(ROW, LINE).rows() == [(0, 0)]


def test_validate_without_a_lines_frame_treats_every_line_as_absent() -> None:
    contract = KINDS["orders"].contract
    raw = staged_rows(contract, [{"externalOrderId": "O", "lines": []}, {"externalOrderId": "P"}])
    validated = validate(contract, raw)
    assert issues(validated.errors) == [(0, "lines", "empty_lines", None), (1, "lines", "required", None)]
    assert validated.lines is not None and validated.lines.is_empty()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_validate_nothing(kind: str) -> None:
    validated = validate_elements(kind, [])
    assert validated.rows.height == 0 and validated.errors.height == 0
    assert validated.rows.columns == [ROW, *(f.name for f in KINDS[kind].contract.fields)]
    assert (validated.lines is not None) == KINDS[kind].contract.has_lines


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_validate_only_non_objects(kind: str) -> None:
    validated = validate_elements(kind, [1, "x", None])
    assert issues(validated.errors) == [
        (0, None, "invalid_type", "1"),
        (1, None, "invalid_type", '"x"'),
        (2, None, "invalid_type", None),
    ]
    assert validated.rows.is_empty()


@pytest.mark.parametrize(
    ("kind", "array_key", "key", "line_fields"),
    [
        ("catalog", "products", ("externalId",), ()),
        ("inventory", "levels", ("skuId", "locationId"), ()),
        ("suppliers", "suppliers", ("externalId",), ()),
        ("purchase-orders", "purchaseOrders", ("externalPoNumber",), ("skuId", "quantity", "unitCost")),
        ("orders", "orders", ("externalOrderId",), ("skuId", "quantity", "locationId")),
        ("demand-history", "records", ("skuId", "locationId", "weekStarting", "channel"), ()),
    ],
    ids=["catalog", "inventory", "suppliers", "purchase-orders", "orders", "demand-history"],
)
def test_contract_registry(kind: str, array_key: str, key: tuple[str, ...], line_fields: tuple[str, ...]) -> None:
    contract = KINDS[kind].contract
    assert (contract.kind, contract.array_key, contract.key) == (kind, array_key, key)
    assert tuple(f.name for f in contract.line_fields) == line_fields
    assert contract.has_lines == bool(line_fields)
    assert (contract.line_schema is not None) == contract.has_lines


def test_registry_holds_the_six_kinds() -> None:
    assert sorted(KINDS) == ["catalog", "demand-history", "inventory", "orders", "purchase-orders", "suppliers"]


def test_empty_lines_frame() -> None:
    frame = empty_lines_frame(KINDS["purchase-orders"].contract)
    assert frame.is_empty()
    assert frame.schema == pl.Schema(
        {ROW: pl.Int64(), LINE: pl.Int64(), ROW_TYPE: pl.String(), ROW_VALUE: pl.String()}
        | {name: pl.String() for name in ("skuId", "quantity", "unitCost")}
    )


def test_error_codes_are_the_contract_codes() -> None:
    assert [code.value for code in ErrorCode] == [
        "required",
        "invalid_type",
        "invalid_value",
        "invalid_date",
        "too_long",
        "empty_lines",
        "duplicate_key",
        "unknown_field",
    ]


def test_helper_stages_the_shapes_the_api_stages() -> None:
    """The tests' staging helper writes what service/staging.py writes (compared by hand with DuckDB's output)."""
    contract = KINDS["orders"].contract
    elements: list[Any] = [
        {"externalOrderId": "Café", "lines": [{"skuId": 1.5, "quantity": None}, 3, None]},
        {"externalOrderId": {"a": [1]}, "lines": {}},
        {"lines": None},
        None,
    ]
    rows = staged_rows(contract, elements)
    assert rows.schema == pl.Schema(
        {
            ROW: pl.Int64(),
            ROW_TYPE: pl.String(),
            ROW_VALUE: pl.String(),
            "externalOrderId": pl.String(),
            "lines": pl.String(),
            LINES_COUNT: pl.UInt64(),
        }
    )
    assert rows.rows() == [
        (0, "OBJECT", None, '"Café"', None, 3),
        (1, "OBJECT", None, '{"a":[1]}', "{}", None),
        (2, "OBJECT", None, None, "null", None),
        (3, "NULL", "null", None, None, None),
    ]
    assert staged_lines(contract, elements).rows() == [
        (0, 0, "OBJECT", None, "1.5", "null", None),
        (0, 1, "UBIGINT", "3", None, None, None),
        (0, 2, "NULL", "null", None, None, None),
    ]
    assert json_text(Raw("1e400")) == "1e400"


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, None), ("null", None), ('"null"', '"null"'), ("7", "7"), ("[" + "1," * 200 + "1]", "[" + "1," * 99 + "1")],
    ids=["sql-null", "json-null", "string-null", "number", "long-cut-to-200"],
)
def test_non_object_value_as_staged(value: str | None, shown: str | None) -> None:
    raw = pl.DataFrame(
        {ROW: [0], ROW_TYPE: ["NULL"], ROW_VALUE: [value]},
        schema={ROW: pl.Int64(), ROW_TYPE: pl.String(), ROW_VALUE: pl.String()},
    )
    assert row_shape_errors(raw).get_column("value").to_list() == [shown]


@pytest.mark.parametrize("null", [None, "null"], ids=["sql-null", "json-null"])
def test_field_null_is_missing_however_it_was_staged(null: str | None) -> None:
    contract = KINDS["orders"].contract
    raw = pl.DataFrame(
        {
            ROW: [0],
            ROW_TYPE: ["OBJECT"],
            ROW_VALUE: [None],
            "externalOrderId": [null],
            "lines": [null],
            LINES_COUNT: [None],
        },
        schema={
            ROW: pl.Int64(),
            ROW_TYPE: pl.String(),
            ROW_VALUE: pl.String(),
            "externalOrderId": pl.String(),
            "lines": pl.String(),
            LINES_COUNT: pl.UInt64(),
        },
    )
    assert issues(validate(contract, raw).errors) == [
        (0, "externalOrderId", "required", None),
        (0, "lines", "required", None),
    ]


def test_contracts_are_pure() -> None:
    standard, other = top_level_imports("contracts")
    assert other == {"contracts", "pandera", "polars"}
    assert not standard & IMPURE_STANDARD_MODULES


@pytest.mark.parametrize(
    ("shape", "line", "message"),
    [
        ("INVALID_JSON", False, "this row is not valid JSON"),
        ("INVALID_CSV", False, "this row is not valid CSV (wrong number of fields or an unclosed quote)"),
        ("INVALID_CSV", True, "lines[0] is not valid CSV (wrong number of fields or an unclosed quote)"),
    ],
    ids=["ndjson-line", "csv-record", "csv-order-line"],
)
def test_unreadable_lines_say_why(shape: str, line: bool, message: str) -> None:
    raw = pl.DataFrame(
        {"__row": [3], "__line": [0], "__type": [shape], "__value": ['{"skuId": oops']},
        schema={"__row": pl.Int64, "__line": pl.Int64, "__type": pl.String, "__value": pl.String},
    )
    errors = row_shape_errors(raw if line else raw.drop("__line"), line=line)
    assert errors.select("row", "field", "code", "message", "value").rows() == [
        (3, "lines[0]" if line else None, "invalid_type", message, '{"skuId": oops')
    ]
