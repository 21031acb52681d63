"""A small lake of several venues, written as the lake exports write it (same layout, same
schemas), for the cross-exchange model's tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pyarrow as pa

from kirby_core import lake
from kirby_core.lake import LAKE_DATASETS
from kirby_core.locations import Location
from kirby_pipelines.lake_export import SERIES_SCHEMA

DAY = date(2025, 1, 5)

QUOTES = {
    "binance": "USDT",
    "bybit": "USDT",
    "okx": "USDT",
    "hyperliquid": "USD",
    "coinbase": "USD",
}


def at(minute: int, day: date = DAY) -> datetime:
    return datetime.combine(day, time(), UTC) + timedelta(minutes=minute)


def write_lake(
    root: Location,
    closes: dict[tuple[str, ...], dict[datetime, str]],
    funding: dict[tuple[str, str], dict[datetime, str]],
    *,
    exact_decimals: bool = False,
) -> None:
    """`closes`: (exchange, coin, market type[, quote]) -> open time -> close (the quote
    defaults to the exchange's usual one); `funding`: (exchange, coin) -> time -> settled rate
    of its perps. Also writes the series file."""
    series = []
    for key, by_time in closes.items():
        exchange, coin, market_type = key[:3]
        quote = key[3] if len(key) > 3 else QUOTES[exchange]
        symbol = f"{coin}-{quote}-{market_type}"
        series.append(_series("candles", exchange, coin, market_type, quote, symbol, "1m"))
        _write(root, "candles", (exchange, symbol, "1m"), by_time, "close", exact_decimals)
    for (exchange, coin), by_time in funding.items():
        symbol = f"{coin}-{QUOTES[exchange]}-perps"
        series.append(
            _series("funding_rates", exchange, coin, "perps", QUOTES[exchange], symbol, None)
        )
        _write(
            root,
            "funding_rates",
            (exchange, symbol),
            by_time,
            "settled_funding_rate",
            exact_decimals,
        )
    table = pa.Table.from_pylist(
        [dict(s, series_id=i) for i, s in enumerate(series)], schema=SERIES_SCHEMA
    )
    lake.write_table(root, table, root.path("series", lake.FILE_NAME))


def _series(dataset, exchange, coin, market_type, quote, symbol, interval) -> dict:
    return {
        "database": "realtime",
        "dataset": dataset,
        "series": f"{coin}@{exchange}/{quote}/{market_type}" + (f"/{interval}" if interval else ""),
        "exchange": exchange,
        "symbol": symbol,
        "coin": coin,
        "quote": quote,
        "market_type": market_type,
        "interval": interval,
        "interval_seconds": 60 if interval else None,
        "active": True,
    }


def _write(root, name, hive_values, by_time, column, exact_decimals) -> None:
    dataset = LAKE_DATASETS[name]
    schema = dataset.schema(exact_decimals)
    days = sorted({moment.date() for moment in by_time})
    for day in days:
        rows = [
            {"time": moment, column: Decimal(value) if exact_decimals else float(value)}
            for moment, value in sorted(by_time.items())
            if moment.date() == day
        ]
        parts = [f"{k}={v}" for k, v in zip(dataset.hive_keys, hive_values, strict=True)]
        path = root.path(name, *parts, f"date={day.isoformat()}", lake.FILE_NAME)
        lake.write_table(root, pa.Table.from_pylist(rows, schema=schema), path)
