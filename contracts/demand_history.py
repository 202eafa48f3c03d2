"""Weekly demand history keyed by (skuId, locationId, ISO week, channel)."""

import datetime

import pandera.polars as pa

from contracts.common import MAX_IDENTIFIER_LENGTH, Contract, WireField, WireType


class DemandHistorySchema(pa.DataFrameModel):
    sku_id: str = pa.Field(alias="skuId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})
    location_id: str = pa.Field(alias="locationId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})
    week_starting: datetime.date = pa.Field(alias="weekStarting")
    channel: str = pa.Field(nullable=True, str_length={"max_value": MAX_IDENTIFIER_LENGTH})
    actual_demand: float = pa.Field(alias="actualDemand", nullable=True, ge=0)
    forecasted_demand: float = pa.Field(alias="forecastedDemand", nullable=True, ge=0)

    class Config:
        strict = False


CONTRACT = Contract(
    kind="demand-history",
    array_key="records",
    fields=(
        WireField("skuId", WireType.IDENTIFIER, "The product (a product stub is created if new).", "SKU-1"),
        WireField(
            "locationId",
            WireType.IDENTIFIER,
            "The location the demand was at (a location stub is created if new).",
            "WH1",
        ),
        WireField(
            "weekStarting",
            WireType.DATE,
            "A date or ISO 8601 timestamp in the week; stored as the Monday of its ISO week"
            " (a timestamp with an offset is taken in UTC).",
            "2026-11-30",
        ),
        WireField("channel", WireType.IDENTIFIER, "The sales channel; missing: ALL.", "online"),
        WireField("actualDemand", WireType.NUMBER, "Units demanded that week, >= 0; missing: 0.", 17),
        WireField(
            "forecastedDemand", WireType.NUMBER, "Units forecast for that week, >= 0; missing: the actualDemand.", 15
        ),
    ),
    schema=DemandHistorySchema,
    key=("skuId", "locationId", "weekStarting", "channel"),
)
