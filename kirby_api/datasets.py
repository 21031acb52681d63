"""The datasets as the API serves them, derived from `kirby_core.datasets` and, for the
trade tape, from `kirby_core.db.trades`.

Candles belong to a starlisting; funding rates, open interest and trades to a trading pair. Each
one says which table and series column hold it, which columns it serves (decimals
are read as their exact text, `numeric::text`, and never become Python Decimals), the
msgspec row type of JSON responses (field order = column order, so a database record
builds a row positionally), and what the columns mean. SQL is built from these fixed
identifiers in `kirby_api.market_data` and `kirby_api.bulk`; nothing from a request ever becomes
an identifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from kirby_core import datasets as core
from kirby_core.db import books as book_table
from kirby_core.db import trades as trade_table

Kind = Literal["time", "instant", "decimal", "int", "text", "bigint", "decimals"]
"""`time`: a key in whole seconds (minutes, a book sample's second); `instant`: a time with
microseconds (a trade's); `decimals`: a numeric[] (a book side's prices or sizes), served
as a list of exact decimal strings (CSV: that list as JSON text)."""

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


class TradeData(msgspec.Struct):
    """One exchange trade."""

    time: Annotated[
        datetime,
        Meta(description="the exchange's trade time, ISO-8601 UTC (microseconds when any)"),
    ]
    trade_id: Annotated[str, Meta(description="the exchange's trade id (unique per pair)")]
    price: Decimal
    size: Annotated[str, Meta(description="base-asset quantity, " + _DECIMAL)]
    side: Annotated[str, Meta(description="the taker's side: buy or sell")]


_Levels = Annotated[
    list[str], Meta(description="best first; each an exact decimal string", examples=[["64213.5"]])
]


class BookData(msgspec.Struct):
    """One sampled top-N order book: each side best first."""

    time: Annotated[datetime, Meta(description="the sample's second, ISO-8601 UTC")]
    sequence: Annotated[
        int | None,
        Meta(description="the exchange's update id the book had reached; null on Hyperliquid"),
    ]
    bid_prices: _Levels
    bid_sizes: _Levels
    ask_prices: _Levels
    ask_sizes: _Levels


@dataclass(frozen=True)
class ServedDataset:
    name: str
    """Table name, and the key of its NOTIFY channel in `kirby_core.db.notify.NOTIFY_CHANNELS`."""
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
    tiebreak: str | None = None
    """The column that orders rows of one time (trades: `trade_id`); None when the key is
    (series, time), one row per time. Pages and cursors then walk (time, tiebreak)."""
    ranged: bool = False
    """Its change events name each series' [first, last] time of a flush (trades, books), not
    each changed time: the hub reads every row between, and each WebSocket client gets each
    row once, in order (it keeps the position of the last one it was sent)."""
    step_seconds: int | None = None
    """Seconds between a series' rows that a bounded read assumes (`market_data.narrowed`);
    None: a starlisting's interval."""

    @property
    def per_starlisting(self) -> bool:
        return self.series_column == "starlisting_id"

    @property
    def select_list(self) -> str:
        casts = {"decimal": "::text", "decimals": "::text[]"}
        return ", ".join(f"{column}{casts.get(kind, '')}" for _, column, kind in self.columns)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.columns)

    @property
    def csv_select_list(self) -> str:
        """SQL select list of one CSV row as `COPY ... (FORMAT csv)` writes it: times in the
        JSON form (`...Z`), decimals as their exact text, NULL as an empty field, each column
        named as in the header."""
        return ", ".join(
            f'{(_REQUIRED if column == "time" else _CSV)[kind].format(c=column)} AS "{name}"'
            for name, column, kind in self.columns
        )

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
                quote = '"' if kind in ("time", "instant", "decimal") else ""
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
    "instant": _TIME,
    "text": "to_json({c})::text",  # free text (a trade id): escaped as JSON does
    "bigint": "{c}",
    "decimals": "array_to_json({c}::text[])::text",
}
_CSV: dict[Kind, str] = {
    "time": _TIME,  # NULL in, NULL out: COPY writes an empty field
    "decimal": "{c}",  # numeric's text output, exactly as stored
    "int": "{c}",
    "instant": _TIME,
    "text": "{c}",  # COPY's CSV quoting escapes it
    "bigint": "{c}",
    "decimals": "array_to_json({c}::text[])::text",  # ["1.5","2"], quoted by COPY
}
_NULLABLE: dict[Kind, str] = {
    "time": f"""coalesce('"' || {_TIME} || '"', 'null')""",
    "decimal": """coalesce('"' || {c}::text || '"', 'null')""",
    "int": "coalesce({c}::text, 'null')",
    "instant": f"""coalesce('"' || {_TIME} || '"', 'null')""",
    "text": "coalesce(to_json({c})::text, 'null')",
    "bigint": "coalesce({c}::text, 'null')",
    "decimals": "coalesce(array_to_json({c}::text[])::text, 'null')",
}


_MINUTE_SECONDS = 60
"""Funding and open interest: at most one row a minute (the minute-aligned key)."""

_KINDS: dict[str, Kind] = {"numeric": "decimal", "integer": "int", "timestamptz": "time"}


def _serving(
    dataset: core.Dataset, row: type[msgspec.Struct], notes: dict[str, str]
) -> ServedDataset:
    """The API's form of a declared dataset (`kirby_core.datasets`): `time`, then its value
    columns under their API names; `row`'s fields must be exactly those names, in order."""
    columns = tuple((c.api, c.name, _KINDS[c.pg_type]) for c in (core.TIME, *dataset.columns))
    if row.__struct_fields__ != tuple(name for name, _, _ in columns):
        raise TypeError(f"{row.__name__} fields differ from the {dataset.name} declaration")
    return ServedDataset(
        name=dataset.name,
        channel=dataset.api_name,
        series_column=dataset.series_column,
        columns=columns,
        row=row,
        notes=notes,
        required=frozenset(column.name for column in dataset.required),
        step_seconds=None if dataset.per_starlisting else _MINUTE_SECONDS,
    )


SERVED_CANDLES = _serving(core.CANDLES, CandleData, {"time": "open time of the candle (UTC)"})
SERVED_FUNDING = _serving(
    core.FUNDING_RATES,
    FundingData,
    {"settled_funding_rate": SETTLED_RATE, "predicted_funding_rate": PREDICTED_RATE},
)
SERVED_OPEN_INTEREST = _serving(
    core.OPEN_INTEREST,
    OpenInterestData,
    {
        "open_interest": "in coins (base asset)",
        "notional": "open interest x mark price, in the quote currency",
    },
)


def _trades() -> ServedDataset:
    """The trade tape (`kirby_core.db.trades`, migration 0008): not a minute-keyed
    `kirby_core.datasets.Dataset`; its columns are the table's (`trades.TRADE_COLUMNS`), every
    one NOT NULL, ordered by (time, trade_id)."""
    kinds: dict[str, Kind] = {"time": "instant", "price": "decimal", "size": "decimal"}
    columns = tuple((c, c, kinds.get(c, "text")) for c in trade_table.TRADE_COLUMNS[1:])
    if TradeData.__struct_fields__ != tuple(name for name, _, _ in columns):
        raise TypeError("TradeData fields differ from kirby_core.db.trades.TRADE_COLUMNS")
    return ServedDataset(
        name=trade_table.TRADES_TABLE,
        channel=trade_table.TRADES_TABLE,
        series_column=trade_table.TRADE_COLUMNS[0],
        columns=columns,
        row=TradeData,
        notes={
            "time": "the exchange's trade time (UTC)",
            "side": "the taker's side (buy: the taker bought)",
        },
        required=frozenset(c for _, c, _ in columns[1:]),
        tiebreak="trade_id",
        ranged=True,
        # bursts put many trades in a second: a page of 1000 first looks back 2000 s
        step_seconds=1,
    )


SERVED_TRADES = _trades()


def _books() -> ServedDataset:
    """The order-book samples (`kirby_core.db.books`, migration 0010): one per pair and
    second, keyed (pair, time) but not minute-keyed, so not a `kirby_core.datasets.Dataset`;
    its columns are the table's (`books.BOOK_COLUMNS`)."""
    kinds: dict[str, Kind] = {"time": "time", "sequence": "bigint"}
    columns = tuple((c, c, kinds.get(c, "decimals")) for c in book_table.BOOK_COLUMNS[1:])
    if BookData.__struct_fields__ != tuple(name for name, _, _ in columns):
        raise TypeError("BookData fields differ from kirby_core.db.books.BOOK_COLUMNS")
    return ServedDataset(
        name=book_table.BOOKS_TABLE,
        channel=book_table.BOOKS_TABLE,
        series_column=book_table.BOOK_COLUMNS[0],
        columns=columns,
        row=BookData,
        notes={
            "time": "the sample's second (UTC): the book as it stood then",
            "sequence": "the exchange's update id the book had reached (null: none, Hyperliquid)",
            "bid_prices": "top-N levels, best first; sizes at the same positions",
        },
        required=frozenset(c for _, c, kind in columns if kind == "decimals"),
        ranged=True,
        step_seconds=1,  # one sample a second
    )


SERVED_BOOKS = _books()

MINUTE_DATASETS = (SERVED_CANDLES, SERVED_FUNDING, SERVED_OPEN_INTEREST)
"""The datasets of `kirby_core.datasets`: one row per series and minute."""
SERVED_DATASETS = {d.name: d for d in (*MINUTE_DATASETS, SERVED_TRADES, SERVED_BOOKS)}
BY_CHANNEL = {d.channel: d for d in SERVED_DATASETS.values()}
