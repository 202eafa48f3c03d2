"""Seeded request bodies for the six import kinds, at any size, built as Polars string columns.

Every value of row i is a function of (seed, i) alone, so a smaller batch is a prefix of a larger one:
the peers' samples are the very rows the service gets. A share of rows re-uses the key that row i had
in the previous batch (batch 0): stage `previous_body(spec)` first and those rows update instead of
insert. Another share is bad in one of a few ways per kind (wrong type, bad value, missing field,
empty lines), so that validation and error reporting do real work.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import BinaryIO

import polars as pl

from service.kinds import KINDS as REGISTRY

KINDS: tuple[str, ...] = tuple(REGISTRY)
ARRAY_KEYS: dict[str, str] = {name: kind.contract.array_key for name, kind in REGISTRY.items()}
CHUNK_ROWS = 250_000
LOCATIONS = 8
FIRST_MONDAY = date(2024, 1, 1)
_PO_STATUSES = ("PENDING", "SUBMITTED", "confirmed", "PARTIALLY_RECEIVED", "RECEIVED", "CANCELLED", "CLOSED")


@dataclass(frozen=True)
class BatchSpec:
    """One generated request: which kind, how many rows, and how they are drawn."""

    kind: str
    rows: int
    seed: int = 7
    bad_share: float = 0.01
    """Share of rows with one defect each (reported as row errors, never merged)."""
    existing_share: float = 0.5
    """Share of rows whose key the previous batch already wrote (they update instead of insert)."""

    def sample(self, rows: int) -> BatchSpec:
        """The first `rows` rows of this batch (the same rows, not a different draw)."""
        return replace(self, rows=min(rows, self.rows))


class _Draw:
    """Pseudo-random expressions over the row index `i`: a hash of (seed, salt, i), vectorized."""

    def __init__(self, spec: BatchSpec, previous: bool) -> None:
        self.spec = spec
        self.previous = previous
        self.batch = 0 if previous else 1
        self.existing = self.chance(spec.existing_share, 1)
        self.key_batch = pl.lit(0) if previous else pl.when(self.existing).then(0).otherwise(1)
        self.bad = pl.lit(False) if previous else self.chance(spec.bad_share, 2)

    def draw(self, salt: int, index: pl.Expr | None = None) -> pl.Expr:
        """The same for row i in every batch: keys and shapes."""
        return (pl.col("i") if index is None else index).hash(self.spec.seed * 1_000 + salt)

    def vary(self, salt: int, index: pl.Expr | None = None) -> pl.Expr:
        """Different for row i in each batch: the values an update changes."""
        return self.draw(salt + 500 * self.batch, index)

    def chance(self, share: float, salt: int) -> pl.Expr:
        return (self.draw(salt) % 1_000_000) < round(share * 1_000_000)

    def defect(self, kinds: int) -> pl.Expr:
        """Which defect a bad row has (0..kinds-1); null for a good row."""
        return pl.when(self.bad).then(self.draw(3) % kinds)


def _field(name: str, template: str, *values: pl.Expr) -> pl.Expr:
    return pl.format(f'"{name}":{template}', *values)


def _literal(name: str, json_text: str) -> pl.Expr:
    return pl.lit(f'"{name}":{json_text}')


def _decimal(cents: pl.Expr) -> pl.Expr:
    return (cents.cast(pl.Float64()) / 100).cast(pl.String())


def _catalog(frame: pl.DataFrame, d: _Draw) -> list[pl.Expr]:
    i, defect = pl.col("i"), d.defect(3)
    external_id = (
        pl.when(defect == 0)
        .then(None)
        .when(defect == 1)
        .then(_literal("externalId", '"' + "X" * 300 + '"'))
        .otherwise(_field("externalId", '"P-{}-{}"', d.key_batch, i))
    )
    name = (
        pl.when(defect == 2)
        .then(_literal("name", '{"en":"lamp"}'))
        .when(d.chance(0.9, 20))
        .then(_field("name", '"Product {} v{}"', i, d.vary(21) % 10))
    )
    return [external_id, name]


def _inventory(frame: pl.DataFrame, d: _Draw) -> list[pl.Expr]:
    i, defect = pl.col("i"), d.defect(3)
    on_hand = d.vary(10) % 1_000
    return [
        pl.when(defect == 2).then(None).otherwise(_field("skuId", '"SKU-{}-{}"', d.key_batch, i // LOCATIONS)),
        _field("locationId", '"LOC-{}"', i % LOCATIONS),
        pl.when(defect == 0)
        .then(_literal("quantityOnHand", '"abc"'))
        .when(defect == 1)
        .then(_field("quantityOnHand", "-{}", on_hand + 1))
        .when(d.draw(11) % 20 == 0)
        .then(_field("quantityOnHand", '"{}"', on_hand))  # a numeric string, as CSV-born data sends
        .otherwise(_field("quantityOnHand", "{}", on_hand)),
        pl.when(d.chance(0.8, 12)).then(_field("quantityReserved", "{}", d.vary(13) % 50)),
        pl.when(d.chance(0.7, 14)).then(_field("reorderPoint", "{}", d.vary(15) % 100)),
    ]


def _suppliers(frame: pl.DataFrame, d: _Draw) -> list[pl.Expr]:
    defect = d.defect(2)
    return [
        pl.when(defect == 0)
        .then(_literal("externalId", '"   "'))
        .when(defect == 1)
        .then(_literal("externalId", "true"))
        .otherwise(_field("externalId", '"S-{}-{}"', d.key_batch, pl.col("i")))
    ]


def _demand_history(frame: pl.DataFrame, d: _Draw) -> list[pl.Expr]:
    i, defect = pl.col("i"), d.defect(3)
    # One row per (sku, week): the offset inside the week changes between batches, the bucket does not.
    day = pl.lit(FIRST_MONDAY) + pl.duration(days=(i % 52) * 7 + (d.vary(40) % 7).cast(pl.Int64()))
    week = pl.when(d.draw(41) % 5 == 0).then(day.dt.strftime("%Y-%m-%dT10:30:00Z")).otherwise(day.dt.strftime("%F"))
    actual = d.vary(42) % 500
    return [
        _field("skuId", '"SKU-{}-{}"', d.key_batch, i // 52),
        _field("locationId", '"LOC-{}"', (i // 52) % LOCATIONS),
        pl.when(defect == 0)
        .then(_literal("weekStarting", '"2024-13-45"'))
        .when(defect == 2)
        .then(None)
        .otherwise(_field("weekStarting", '"{}"', week)),
        pl.when(d.chance(0.5, 43)).then(_literal("channel", '"ONLINE"')),
        pl.when(defect == 1).then(_literal("actualDemand", "-3")).otherwise(_field("actualDemand", "{}", actual)),
        pl.when(d.chance(0.6, 44)).then(_field("forecastedDemand", "{}", d.vary(45) % 500)),
    ]


def _lines(
    frame: pl.DataFrame, d: _Draw, fields: Callable[[_Draw, pl.Expr], list[pl.Expr]], empty: pl.Expr
) -> pl.Series:
    """`"lines":[...]` per row: 1-5 lines (a re-import may have fewer), exploded, built, joined back."""
    counts = frame.select("i", pl.when(empty).then(0).otherwise(1 + d.vary(30) % 5).alias("count"))
    lines = (
        counts.with_columns(pl.int_ranges(0, "count").alias("line"))
        .explode("line")
        .drop_nulls("line")
        .with_columns(d.defect(3).alias("defect"))
    )
    line_index = pl.col("i") * 8 + pl.col("line")
    text = pl.concat_str(
        [pl.lit("{"), pl.concat_str(fields(d, line_index), separator=",", ignore_nulls=True), pl.lit("}")]
    )
    joined = (
        lines.select("i", text.alias("text"))
        .group_by("i", maintain_order=True)
        .agg("text")
        .with_columns(pl.col("text").list.join(","))
    )
    return (
        counts.join(joined, on="i", how="left", maintain_order="left")
        .select(pl.format('"lines":[{}]', pl.col("text").fill_null("")))
        .to_series()
    )


def _purchase_order_line(d: _Draw, line: pl.Expr) -> list[pl.Expr]:
    bad_quantity = (pl.col("defect") == 2) & (pl.col("line") == 0)
    return [
        _field("skuId", '"SKU-{}"', d.vary(50, line) % 20_000),
        pl.when(bad_quantity)
        .then(_literal("quantity", "0"))
        .otherwise(_field("quantity", "{}", 1 + d.vary(51, line) % 100)),
        _field("unitCost", "{}", _decimal(d.vary(52, line) % 100_000)),
    ]


def _purchase_orders(frame: pl.DataFrame, d: _Draw) -> list[pl.Expr]:
    defect = d.defect(3)
    status = (d.vary(33) % len(_PO_STATUSES)).replace_strict(dict(enumerate(_PO_STATUSES)), return_dtype=pl.String())
    lines = _lines(frame, d, _purchase_order_line, empty=defect.fill_null(-1) == 1)
    return [
        _field("externalPoNumber", '"PO-{}-{}"', d.key_batch, pl.col("i")),
        _field("supplierId", '"S-{}"', d.vary(31) % 1_000),
        _field("destinationLocationId", '"LOC-{}"', d.vary(32) % LOCATIONS),
        pl.when(defect == 0)
        .then(_literal("status", '"BOGUS"'))
        .when(d.chance(0.7, 34))
        .then(_field("status", '"{}"', status)),
        pl.lit(lines),
    ]


def _order_line(d: _Draw, line: pl.Expr) -> list[pl.Expr]:
    first = pl.col("line") == 0
    return [
        pl.when((pl.col("defect") == 2) & first)
        .then(None)
        .otherwise(_field("skuId", '"SKU-{}"', d.vary(60, line) % 20_000)),
        pl.when((pl.col("defect") == 1) & first)
        .then(_literal("quantity", "-1"))
        .otherwise(_field("quantity", "{}", 1 + d.vary(61, line) % 20)),
        _field("locationId", '"LOC-{}"', d.vary(62, line) % LOCATIONS),
    ]


def _orders(frame: pl.DataFrame, d: _Draw) -> list[pl.Expr]:
    defect = d.defect(3)
    lines = _lines(frame, d, _order_line, empty=pl.lit(False))
    return [
        _field("externalOrderId", '"O-{}-{}"', d.key_batch, pl.col("i")),
        pl.when(defect == 0).then(None).otherwise(pl.lit(lines)),
    ]


_BUILDERS: dict[str, Callable[[pl.DataFrame, _Draw], list[pl.Expr]]] = {
    "catalog": _catalog,
    "inventory": _inventory,
    "suppliers": _suppliers,
    "purchase-orders": _purchase_orders,
    "orders": _orders,
    "demand-history": _demand_history,
}


def _indices(spec: BatchSpec, start: int, stop: int, previous: bool) -> tuple[pl.DataFrame, _Draw]:
    draw = _Draw(spec, previous)
    frame = pl.DataFrame({"i": pl.int_range(start, stop, dtype=pl.Int64(), eager=True)})
    if previous:
        frame = frame.filter(draw.existing)
    return frame, draw


def row_texts(spec: BatchSpec, start: int, stop: int, *, previous: bool = False) -> pl.Series:
    """The JSON text of rows [start, stop) of the batch (of the previous batch: only its re-used keys)."""
    frame, draw = _indices(spec, start, stop, previous)
    fields = _BUILDERS[spec.kind](frame, draw)
    row = pl.concat_str([pl.lit("{"), pl.concat_str(fields, separator=",", ignore_nulls=True), pl.lit("}")])
    return frame.select(row.alias("row")).to_series()


def write_body(spec: BatchSpec, sink: BinaryIO, *, previous: bool = False) -> int:
    """Write the request body (`{"levels": [...]}` etc.) to `sink` chunk by chunk; return its row count."""
    sink.write(f'{{"{ARRAY_KEYS[spec.kind]}":[\n'.encode())
    written = 0
    for start in range(0, spec.rows, CHUNK_ROWS):
        texts = row_texts(spec, start, min(start + CHUNK_ROWS, spec.rows), previous=previous)
        if texts.is_empty():
            continue
        # A separator before every row but the first; each chunk is one CSV write, no Python strings.
        first = (pl.int_range(pl.len()) == 0) & pl.lit(written == 0)
        rows = texts.to_frame("row").select(pl.when(first).then(pl.col("row")).otherwise(pl.lit(",") + pl.col("row")))
        rows.write_csv(sink, include_header=False, quote_style="never")
        written += texts.len()
    sink.write(b"]}\n")
    return written


def generate_body(spec: BatchSpec) -> bytes:
    """The whole request body in memory."""
    buffer = io.BytesIO()
    write_body(spec, buffer)
    return buffer.getvalue()


def previous_body(spec: BatchSpec) -> bytes:
    """The earlier batch that holds every key `spec` re-uses (all of its rows good)."""
    buffer = io.BytesIO()
    write_body(spec, buffer, previous=True)
    return buffer.getvalue()


def bad_rows(spec: BatchSpec) -> list[int]:
    """Indices of the rows generated with a defect (the peers that do not validate skip them)."""
    frame, draw = _indices(spec, 0, spec.rows, previous=False)
    return frame.filter(draw.bad).get_column("i").to_list()
