"""The OpenAPI document and its pages, offline: Swagger UI is served from the packaged copy
(swagger-ui-py), never a CDN. The import bodies are streamed rather than parsed by Litestar, so their
schemas are declared here from the contracts: each field's description and example from its WireField,
its enum and bounds from the pandera checks that enforce them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import pandera.polars as pa
from litestar import Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.static_files import create_static_files_router

from contracts.common import Contract, WireField, WireType

ASSETS = "/schema/assets"
"""Where Swagger UI's scripts, styles and icons are served from."""
SWAGGER_UI = Path(str(files("swagger_ui") / "static"))
"""Swagger UI 5 (it reads OpenAPI 3.1), as the swagger-ui-py package ships it."""


def openapi_config() -> OpenAPIConfig:
    """The document at /schema/openapi.json, and Swagger UI at /schema (and /schema/swagger)."""
    swagger = SwaggerRenderPlugin(
        path=["/", "/swagger"],
        js_url=f"{ASSETS}/swagger-ui-bundle.js",
        css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
    )
    return OpenAPIConfig(
        title="Stockyard import API",
        version="1.0.0",
        description="Bulk imports of inventory data. Every import answers 202 with a job; follow it at its"
        " statusUrl. Send your API key as the x-api-key header (the Authorize button).",
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(type="apiKey", name="x-api-key", security_scheme_in="header"),
            }
        ),
        security=[{"apiKey": []}],
        render_plugins=[swagger],
    )


def assets_router() -> Router:
    """Swagger UI's files, from the installed package."""
    return create_static_files_router(path=ASSETS, directories=[SWAGGER_UI], include_in_schema=False)


def _constraints(column: pa.Column) -> dict[str, Any]:
    """The schema keywords of the checks pandera enforces on a field."""
    found: dict[str, Any] = {}
    for check in column.checks:
        stats = check.statistics or {}
        if check.name == "isin":
            found["enum"] = list(stats["allowed_values"])
        elif check.name == "greater_than":
            found["exclusive_minimum"] = stats["min_value"]
        elif check.name == "greater_than_or_equal_to":
            found["minimum"] = stats["min_value"]
        elif check.name == "less_than_or_equal_to":
            found["maximum"] = stats["max_value"]
        elif check.name == "str_length" and stats.get("max_value") is not None:
            found["max_length"] = stats["max_value"]
    return found


def _field_schema(field: WireField, column: pa.Column) -> Schema:
    """A field as it may be sent: identifiers and numbers come as strings or numbers (CSV-born data)."""
    checks = _constraints(column)
    numeric = {k: checks[k] for k in ("minimum", "exclusive_minimum", "maximum") if k in checks}
    text: dict[str, Any] = {k: checks[k] for k in ("max_length", "enum") if k in checks}
    string, number = OpenAPIType.STRING, OpenAPIType.NUMBER
    shape: dict[str, Any]
    if field.type is WireType.IDENTIFIER:
        shape = {"one_of": [Schema(type=string, **text), Schema(type=number)]}
    elif field.type is WireType.NUMBER:
        shape = {"one_of": [Schema(type=number, **numeric), Schema(type=string, description="a numeric string")]}
    elif field.type is WireType.DATE:
        shape = {"type": string, "format": OpenAPIFormat.DATE}
    else:
        shape = {"type": string, **text}
    needed = "Optional: null or left out is missing." if column.nullable else "Required."
    example = None if field.example is None else [field.example]
    return Schema(**shape, description=f"{field.description} {needed}", examples=example)


def row_schema(contract: Contract, *, lines: bool = False) -> Schema:
    """A row of the contract's array (or one of its lines), every field documented."""
    fields = contract.line_fields if lines else contract.fields
    model = contract.line_schema if lines else contract.schema
    assert model is not None
    columns = model.to_schema().columns
    properties: dict[str, Any] = {f.name: _field_schema(f, columns[f.name]) for f in fields}
    required = [f.name for f in fields if not columns[f.name].nullable]
    if contract.has_lines and not lines:
        properties["lines"] = Schema(
            type=OpenAPIType.ARRAY,
            items=row_schema(contract, lines=True),
            min_items=1,
            description="The order's lines, at least one; an order with any invalid line is rejected whole.",
        )
        required.append("lines")
    return Schema(type=OpenAPIType.OBJECT, properties=properties, required=required)


def example_row(contract: Contract) -> dict[str, Any]:
    row: dict[str, Any] = {f.name: f.example for f in contract.fields}
    if contract.has_lines:
        row["lines"] = [{f.name: f.example for f in contract.line_fields}]
    return row


def _csv_description(contract: Contract) -> str:
    names = ", ".join(f.name for f in (*contract.fields, *contract.line_fields))
    text = f"A header line naming the fields ({names}), then one record per row; an empty cell is a missing value."
    if contract.has_lines:
        key = contract.key[0]
        text += f" One record per line, the header fields repeated: records with the same {key} make one row."
    return text


def request_body(contract: Contract) -> RequestBody:
    """An import's body, in each format it may come in."""
    body = Schema(
        type=OpenAPIType.OBJECT,
        properties={contract.array_key: Schema(type=OpenAPIType.ARRAY, items=row_schema(contract))},
        required=[contract.array_key],
    )
    lines = " (`lines` a list of structs, or flat: one file row per line, as in CSV)" if contract.has_lines else ""
    content = {
        "application/json": OpenAPIMediaType(schema=body, example={contract.array_key: [example_row(contract)]}),
        "application/x-ndjson": OpenAPIMediaType(
            schema=Schema(type=OpenAPIType.STRING, description="One row per line: a JSON object as in the array.")
        ),
        "text/csv": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, description=_csv_description(contract))),
        "application/vnd.apache.parquet": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.STRING,
                format="binary",  # type: ignore[arg-type]
                description=f"A Parquet file with a column per field{lines}.",
            )
        ),
    }
    return RequestBody(
        content=content,
        required=True,
        description=(
            f'A JSON object whose "{contract.array_key}" array holds the rows; or the rows as NDJSON, CSV'
            " or Parquet. Any of them may be gzip-compressed (Content-Encoding: gzip). Fields the contract"
            " does not name are ignored, with one `unknown_field` warning each."
        ),
    )
