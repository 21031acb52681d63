"""The three datasets the API serves, declared once: table, series, columns, row shapes.

Candles belong to a starlisting; funding rates and open interest to a trading pair. Each
declaration says which table and series column hold it, which columns it serves (decimals
are read as their exact text, `numeric::text`, and never become Python Decimals), the
msgspec row type of JSON responses (field order = column order, so a database record
builds a row positionally), and what the columns mean. SQL is built from these fixed
identifiers in `kirby_api.market`; nothing from a request ever becomes an identifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, cast

import msgspec
from msgspec import Meta

Kind = Literal["time", "decimal", "int"]

_DECIMAL = "exact decimal as a string, as the exchange sent it"
Decimal = Annotated[str, Meta(description=_DECIMAL, examples=["64213.5"])]
OptionalDecimal = Annotated[str | None, Meta(description=_DECIMAL + "; null when unknown")]
Time = Annotated[datetime, Meta(description="ISO-8601 UTC", examples=["2024-05-01T00:00:00Z"])]


class CandleData(msgspec.Struct):
    """One OHLCV candle; `time` is its open time."""

    time: Time
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Annotated[str, Meta(description="base-asset volume, " + _DECIMAL)]
    num_trades: Annotated[int | None, Meta(description="trades in the candle; null if unknown")]


SETTLED_RATE = (
    "the funding rate paid for the hour, from the exchange's funding history (backfilled); "
    "null until the hour has settled and been backfilled"
)
PREDICTED_RATE = (
    "the current hour's running (predicted) funding rate from the live feed at this minute; "
    "not the rate that was paid"
)


class FundingData(msgspec.Struct):
    """Funding state of a trading pair for one minute."""

    time: Time
    settled_funding_rate: Annotated[str | None, Meta(description=SETTLED_RATE)]
    settled_premium: Annotated[str | None, Meta(description="premium of the settled hour")]
    predicted_funding_rate: Annotated[str | None, Meta(description=PREDICTED_RATE)]
    premium: Annotated[str | None, Meta(description="live premium at this minute")]
    mark_price: OptionalDecimal
    oracle_price: OptionalDecimal
    mid_price: OptionalDecimal
    next_funding_time: Annotated[datetime | None, Meta(description="next settlement, UTC")]


class OpenInterestData(msgspec.Struct):
    """Open interest of a trading pair for one minute."""

    time: Time
    open_interest: Annotated[str | None, Meta(description="open interest in coins")]
    notional: Annotated[str | None, Meta(description="open interest x mark price, in quote")]
    day_base_volume: OptionalDecimal
    day_notional_volume: OptionalDecimal


@dataclass(frozen=True)
class Dataset:
    name: str
    """Table name, and the key of its NOTIFY channel in `kirby_core.db.notify.CHANNELS`."""
    channel: str
    """Its name in URLs and on the WebSocket: candles, funding, open_interest."""
    series_column: str
    columns: tuple[tuple[str, str, Kind], ...]
    """(output name, table column, kind), in the order of `row` fields."""
    row: type[msgspec.Struct]
    notes: dict[str, str]
    """What the less obvious columns mean; sent in metadata and Parquet key-value metadata."""
    required: frozenset[str] = frozenset()
    """Value columns the schema declares NOT NULL (`time` always is)."""

    @property
    def per_starlisting(self) -> bool:
        return self.series_column == "starlisting_id"

    @property
    def select_list(self) -> str:
        return ", ".join(
            f"{column}::text" if kind == "decimal" else column for _, column, kind in self.columns
        )

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.columns)

    @property
    def json_object(self) -> str:
        """SQL text of one row as the very JSON object msgspec encodes from `row`.

        Lets PostgreSQL build a page's JSON, so the API process only joins bytes. The
        values are ISO times, numeric text and integers: nothing that needs escaping. One
        `concat` whose constant text between values is merged into single literals (each
        argument costs the database time on every row).
        """
        pieces: list[str] = []  # alternating: literal text, SQL value, literal text, ...
        text = "{"
        for i, (name, column, kind) in enumerate(self.columns):
            text += f'{"," if i else ""}"{name}":'
            if column in self.required or column == "time":  # `time` is the NOT NULL key
                quote = '"' if kind != "int" else ""
                pieces += [text + quote, _REQUIRED[kind].format(c=column)]
                text = quote
            else:
                pieces += [text, _NULLABLE[kind].format(c=column)]
                text = ""
        pieces.append(text + "}")
        rendered = (
            f"'{piece}'" if i % 2 == 0 else piece for i, piece in enumerate(pieces) if piece
        )
        return f"concat({', '.join(rendered)})"


# msgspec's form of a time: seconds, microseconds only when there are any, then Z.
_TIME = (
    """to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')"""
    """ || CASE WHEN date_trunc('second', {c}) = {c} THEN ''"""
    """ ELSE to_char({c} AT TIME ZONE 'UTC', '.US') END || 'Z'"""
)
_REQUIRED: dict[Kind, str] = {
    # The rows' `time` is whole minutes (the schema's CHECK): no fraction to print.
    "time": """to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')""",
    "decimal": "{c}",
    "int": "{c}",
}
_NULLABLE: dict[Kind, str] = {
    "time": f"""coalesce('"' || {_TIME} || '"', 'null')""",
    "decimal": """coalesce('"' || {c}::text || '"', 'null')""",
    "int": "coalesce({c}::text, 'null')",
}


def _columns(*spec: str) -> tuple[tuple[str, str, Kind], ...]:
    """'name:kind' or 'name=column:kind'."""
    parsed = []
    for item in spec:
        names, kind = item.split(":")
        name, _, column = names.partition("=")
        parsed.append((name, column or name, cast(Kind, kind)))  # the specs below use Kinds only
    return tuple(parsed)


CANDLES = Dataset(
    name="candles",
    channel="candles",
    series_column="starlisting_id",
    columns=_columns(
        "time:time",
        "open:decimal",
        "high:decimal",
        "low:decimal",
        "close:decimal",
        "volume:decimal",
        "num_trades=trade_count:int",
    ),
    row=CandleData,
    notes={"time": "open time of the candle (UTC)"},
    required=frozenset({"open", "high", "low", "close", "volume"}),
)

FUNDING = Dataset(
    name="funding_rates",
    channel="funding",
    series_column="trading_pair_id",
    columns=_columns(
        "time:time",
        "settled_funding_rate:decimal",
        "settled_premium:decimal",
        "predicted_funding_rate:decimal",
        "premium:decimal",
        "mark_price:decimal",
        "oracle_price:decimal",
        "mid_price:decimal",
        "next_funding_time:time",
    ),
    row=FundingData,
    notes={"settled_funding_rate": SETTLED_RATE, "predicted_funding_rate": PREDICTED_RATE},
)

OPEN_INTEREST = Dataset(
    name="open_interest",
    channel="open_interest",
    series_column="trading_pair_id",
    columns=_columns(
        "time:time",
        "open_interest:decimal",
        "notional:decimal",
        "day_base_volume:decimal",
        "day_notional_volume:decimal",
    ),
    row=OpenInterestData,
    notes={
        "open_interest": "in coins (base asset)",
        "notional": "open interest x mark price, in the quote currency",
    },
)

DATASETS = {d.name: d for d in (CANDLES, FUNDING, OPEN_INTEREST)}
BY_CHANNEL = {d.channel: d for d in (CANDLES, FUNDING, OPEN_INTEREST)}
