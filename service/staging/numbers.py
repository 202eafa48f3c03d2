"""Identifiers sent as JSON numbers keep their text exactly as sent (`1.50` stays `1.50`, CONTRACT.md).

DuckDB's JSON reader parses a number and prints it again: `1.50` becomes `1.5`, `1e2` becomes `100.0`,
`-0` becomes `0`, while a CSV cell keeps its text; so the same identifier sent as JSON and as CSV would be
two keys. Integers come through as sent (every digit, however many), so only rows whose staged
identifier or text field holds a number with a point or an exponent, or a bare `0`, are looked at again:
their elements' raw text is decoded with msgspec, which gives each value's bytes as sent, and those
replace the staged text. Such rows are rare, and when there are none this costs one scan of a column.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import msgspec
import polars as pl

from contracts.common import LINE, ROW, Contract, WireField, WireType
from service.staging.sql import literal

_KEPT_AS_SENT = (WireType.IDENTIFIER, WireType.TEXT)
_REWRITTEN = r"^-?[0-9]+[.eE]"
"""A staged number text that may not be what was sent: one with a point or an exponent (or `0`, from `-0`)."""

_Object = dict[str, msgspec.Raw]


def _fields(fields: tuple[WireField, ...]) -> list[str]:
    return [f.name for f in fields if f.type in _KEPT_AS_SENT]


def _suspect(names: list[str]) -> pl.Expr:
    return pl.any_horizontal(pl.col(name).str.contains(_REWRITTEN) | (pl.col(name) == "0") for name in names)


def has_rewritten_numbers(contract: Contract, rows: pl.DataFrame, lines: pl.DataFrame | None) -> bool:
    """Do staged rows (or lines) hold a number text that restore_number_texts would look at again?"""
    names, line_names = _fields(contract.fields), _fields(contract.line_fields) if contract.has_lines else []
    suspect = bool(names) and rows.select(_suspect(names).any()).item()
    if not suspect and line_names and lines is not None and lines.height:
        suspect = lines.select(_suspect(line_names).any()).item()
    return bool(suspect)


def restore_number_texts(
    con: duckdb.DuckDBPyConnection, contract: Contract, raw_source: str, rows_tmp: Path, lines_tmp: Path | None
) -> int:
    """Put back the text as sent of number identifiers in the staged files; return how many rows changed.

    `raw_source` is SQL giving (`__row`, `__text`): each row's object as sent.
    """
    names, line_names = _fields(contract.fields), _fields(contract.line_fields) if contract.has_lines else []
    rows = pl.scan_parquet(rows_tmp)
    suspects = set(rows.filter(_suspect(names)).select(ROW).collect().to_series().to_list()) if names else set()
    if line_names and lines_tmp is not None:
        lines = pl.scan_parquet(lines_tmp)
        suspects |= set(lines.filter(_suspect(line_names)).select(ROW).collect().to_series().to_list())
    if not suspects:
        return 0
    found = con.execute(
        f"SELECT __row, __text FROM ({raw_source}) WHERE __row IN (SELECT unnest($rows))", {"rows": sorted(suspects)}
    ).fetchall()
    fixes: dict[tuple[object, ...], str | None] = {}
    line_fixes: dict[tuple[object, ...], str | None] = {}
    for row, text in found:
        try:
            element = msgspec.json.decode(text, type=_Object)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            continue  # not an object: staged as a row error already
        fixes.update(((row, name), _number(element[name])) for name in names if name in element)
        if line_names and "lines" in element:
            try:
                lines_sent = msgspec.json.decode(element["lines"], type=list[msgspec.Raw])
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            for index, raw_line in enumerate(lines_sent):
                try:
                    line = msgspec.json.decode(raw_line, type=_Object)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
                line_fixes.update(((row, index, name), _number(line[name])) for name in line_names if name in line)
    changed = _rewrite(rows_tmp, [ROW], {k: v for k, v in fixes.items() if v is not None}, names)
    if lines_tmp is not None and line_names:
        _rewrite(lines_tmp, [ROW, LINE], {k: v for k, v in line_fixes.items() if v is not None}, line_names)
    return changed


def _number(raw: msgspec.Raw) -> str | None:
    """The text of a value as sent, if it is a number (strings and the rest are staged right already)."""
    text = bytes(raw).decode()
    return text if text[:1] == "-" or text[:1].isdigit() else None


def _rewrite(path: Path, keys: list[str], fixes: dict[tuple[object, ...], str], names: list[str]) -> int:
    """Replace the staged text of (keys..., field) in the file at `path` with the text as sent."""
    if not fixes:
        return 0
    frame = pl.read_parquet(path)
    patch = pl.DataFrame(
        [(*key[:-1], key[-1], text) for key, text in fixes.items()],
        schema={**{k: frame.schema[k] for k in keys}, "__field": pl.String(), "__sent": pl.String()},
        orient="row",
    )
    for name in names:
        mine = patch.filter(pl.col("__field") == name).select(*keys, pl.col("__sent").alias(f"__sent:{name}"))
        if mine.height:
            frame = frame.join(mine, on=keys, how="left", maintain_order="left")
            frame = frame.with_columns(pl.coalesce(f"__sent:{name}", name).alias(name)).drop(f"__sent:{name}")
    frame.write_parquet(path)
    return len({key[: len(keys)] for key in fixes})


def json_elements(body_path: Path, max_object: int) -> str:
    """(`__row`, `__text`) of each element of a JSON array body, its text as sent."""
    return (
        f"SELECT ordinality - 1 AS __row, json::VARCHAR AS __text FROM read_json_objects({literal(str(body_path))},"
        f" format='array', maximum_object_size={max_object}) WITH ORDINALITY"
    )
