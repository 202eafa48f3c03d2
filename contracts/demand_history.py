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
        WireField("skuId", WireType.IDENTIFIER),
        WireField("locationId", WireType.IDENTIFIER),
        WireField("weekStarting", WireType.DATE),
        WireField("channel", WireType.IDENTIFIER),
        WireField("actualDemand", WireType.NUMBER),
        WireField("forecastedDemand", WireType.NUMBER),
    ),
    schema=DemandHistorySchema,
    key=("skuId", "locationId", "weekStarting", "channel"),
)
