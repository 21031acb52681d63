"""The catalog in PostgreSQL: sync a validated `Catalog` into a database, and look it up.

Sync runs in one transaction: reference rows are upserted, trading pairs and starlistings
created or reactivated, and whatever the file no longer lists is deactivated, never deleted
(its data stays). Running it twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from kirby_core.catalog import Catalog, StarlistingKey, TradingPairKey
from kirby_core.errors import NotFound
from kirby_core.timeutil import INTERVAL_SECONDS


@dataclass(frozen=True)
class Starlisting:
    id: int
    key: StarlistingKey
    trading_pair_id: int
    interval_seconds: int
    active: bool


@dataclass(frozen=True)
class TradingPair:
    id: int
    key: TradingPairKey
    active: bool


@dataclass(frozen=True)
class SyncReport:
    """What a sync changed; all zeros but `unchanged_*` on a re-run."""

    trading_pairs_created: int = 0
    trading_pairs_reactivated: int = 0
    trading_pairs_deactivated: int = 0
    starlistings_created: int = 0
    starlistings_reactivated: int = 0
    starlistings_deactivated: int = 0
    active_trading_pairs: int = 0
    active_starlistings: int = 0

    @property
    def changed(self) -> bool:
        return any(
            (
                self.trading_pairs_created,
                self.trading_pairs_reactivated,
                self.trading_pairs_deactivated,
                self.starlistings_created,
                self.starlistings_reactivated,
                self.starlistings_deactivated,
            )
        )


_STARLISTINGS_QUERY = """
SELECT s.id, e.name AS exchange, c.symbol AS coin, q.symbol AS quote, m.name AS market_type,
       i.name AS interval, i.seconds, s.trading_pair_id, s.active
FROM starlistings s
JOIN exchanges e ON e.id = s.exchange_id
JOIN coins c ON c.id = s.coin_id
JOIN quote_currencies q ON q.id = s.quote_currency_id
JOIN market_types m ON m.id = s.market_type_id
JOIN intervals i ON i.id = s.interval_id
"""

_TRADING_PAIRS_QUERY = """
SELECT t.id, e.name AS exchange, c.symbol AS coin, q.symbol AS quote, m.name AS market_type,
       t.active
FROM trading_pairs t
JOIN exchanges e ON e.id = t.exchange_id
JOIN coins c ON c.id = t.coin_id
JOIN quote_currencies q ON q.id = t.quote_currency_id
JOIN market_types m ON m.id = t.market_type_id
"""


async def sync_catalog(conn: asyncpg.Connection, catalog: Catalog) -> SyncReport:
    async with conn.transaction():
        ids = await _upsert_reference(conn, catalog)
        before_pairs = {p.key: p for p in await list_trading_pairs(conn, active_only=False)}
        before_stars = {s.key: s for s in await list_starlistings(conn, active_only=False)}

        wanted_pairs = set(catalog.trading_pairs)
        pair_ids: dict[TradingPairKey, int] = {}
        for key in catalog.trading_pairs:
            pair_ids[key] = (
                await conn.fetchval(
                    """INSERT INTO trading_pairs
                       (exchange_id, coin_id, quote_currency_id, market_type_id, active)
                   VALUES ($1, $2, $3, $4, true)
                   ON CONFLICT (exchange_id, coin_id, quote_currency_id, market_type_id)
                   DO UPDATE SET active = true, updated_at = now()
                       WHERE NOT trading_pairs.active
                   RETURNING id""",
                    *_pair_ids(ids, key),
                )
                or before_pairs[key].id
            )
        for star in catalog.starlistings:
            await conn.execute(
                """INSERT INTO starlistings (exchange_id, coin_id, quote_currency_id,
                       market_type_id, interval_id, trading_pair_id, active)
                   VALUES ($1, $2, $3, $4, $5, $6, true)
                   ON CONFLICT (trading_pair_id, interval_id)
                   DO UPDATE SET active = true, updated_at = now()
                       WHERE NOT starlistings.active""",
                *_pair_ids(ids, star.trading_pair),
                ids["interval"][star.interval],
                pair_ids[star.trading_pair],
            )
        stale_stars = [
            s.id for k, s in before_stars.items() if s.active and k not in set(catalog.starlistings)
        ]
        stale_pairs = [p.id for k, p in before_pairs.items() if p.active and k not in wanted_pairs]
        await conn.execute(
            "UPDATE starlistings SET active = false, updated_at = now() WHERE id = ANY($1)",
            stale_stars,
        )
        await conn.execute(
            "UPDATE trading_pairs SET active = false, updated_at = now() WHERE id = ANY($1)",
            stale_pairs,
        )

    def counted(before: Mapping[Any, Starlisting | TradingPair], keys: set[Any]) -> tuple[int, int]:
        created = sum(1 for k in keys if k not in before)
        reactivated = sum(1 for k in keys if k in before and not before[k].active)
        return created, reactivated

    pairs_created, pairs_reactivated = counted(before_pairs, wanted_pairs)
    stars_created, stars_reactivated = counted(before_stars, set(catalog.starlistings))
    return SyncReport(
        trading_pairs_created=pairs_created,
        trading_pairs_reactivated=pairs_reactivated,
        trading_pairs_deactivated=len(stale_pairs),
        starlistings_created=stars_created,
        starlistings_reactivated=stars_reactivated,
        starlistings_deactivated=len(stale_stars),
        active_trading_pairs=len(wanted_pairs),
        active_starlistings=len(catalog.starlistings),
    )


async def _upsert_reference(
    conn: asyncpg.Connection, catalog: Catalog
) -> dict[str, dict[str, int]]:
    """Upsert exchanges, coins, quotes, market types and intervals; return name -> id maps."""
    ids: dict[str, dict[str, int]] = {}
    tables = {
        "exchange": (
            "exchanges",
            "name",
            "display_name",
            [(e.name, e.display_name, e.active) for e in catalog.exchanges],
        ),
        "coin": ("coins", "symbol", "name", [(c.symbol, c.name, c.active) for c in catalog.coins]),
        "quote": (
            "quote_currencies",
            "symbol",
            "name",
            [(q.symbol, q.name, q.active) for q in catalog.quote_currencies],
        ),
        "market_type": (
            "market_types",
            "name",
            "display_name",
            [(m.name, m.display_name, m.active) for m in catalog.market_types],
        ),
    }
    for kind, (table, key_col, label_col, rows) in tables.items():
        # identifiers come from the fixed mapping above, never from input
        await conn.executemany(
            f"""INSERT INTO {table} ({key_col}, {label_col}, active) VALUES ($1, $2, $3)
                ON CONFLICT ({key_col}) DO UPDATE
                SET {label_col} = EXCLUDED.{label_col}, active = EXCLUDED.active
                WHERE ({table}.{label_col}, {table}.active)
                      IS DISTINCT FROM (EXCLUDED.{label_col}, EXCLUDED.active)""",  # noqa: S608
            rows,
        )
        found = await conn.fetch(f"SELECT {key_col}, id FROM {table}")  # noqa: S608
        ids[kind] = {name: id_ for name, id_ in found}
    await conn.executemany(
        """INSERT INTO intervals (name, seconds) VALUES ($1, $2)
           ON CONFLICT (name) DO NOTHING""",
        sorted({(s.interval, INTERVAL_SECONDS[s.interval]) for s in catalog.starlistings}),
    )
    ids["interval"] = {
        name: id_ for name, id_ in await conn.fetch("SELECT name, id FROM intervals")
    }
    return ids


def _pair_ids(ids: dict[str, dict[str, int]], key: TradingPairKey) -> tuple[int, int, int, int]:
    return (
        ids["exchange"][key.exchange],
        ids["coin"][key.coin],
        ids["quote"][key.quote],
        ids["market_type"][key.market_type],
    )


async def list_starlistings(
    conn: asyncpg.Connection, *, active_only: bool = True
) -> list[Starlisting]:
    query = _STARLISTINGS_QUERY + (" WHERE s.active" if active_only else "") + " ORDER BY s.id"
    return [_starlisting(r) for r in await conn.fetch(query)]


async def list_trading_pairs(
    conn: asyncpg.Connection, *, active_only: bool = True
) -> list[TradingPair]:
    query = _TRADING_PAIRS_QUERY + (" WHERE t.active" if active_only else "") + " ORDER BY t.id"
    return [
        TradingPair(
            r["id"],
            TradingPairKey(r["exchange"], r["coin"], r["quote"], r["market_type"]),
            r["active"],
        )
        for r in await conn.fetch(query)
    ]


async def get_starlisting(conn: asyncpg.Connection, key: StarlistingKey) -> Starlisting:
    """The starlisting for `key` (active or not); `NotFound` naming it otherwise."""
    row = await conn.fetchrow(
        _STARLISTINGS_QUERY
        + " WHERE e.name = $1 AND c.symbol = $2 AND q.symbol = $3 AND m.name = $4"
        " AND i.name = $5",
        key.exchange,
        key.coin,
        key.quote,
        key.market_type,
        key.interval,
    )
    if row is None:
        raise NotFound(f"unknown starlisting {key}")
    return _starlisting(row)


async def get_trading_pair(conn: asyncpg.Connection, key: TradingPairKey) -> TradingPair:
    row = await conn.fetchrow(
        _TRADING_PAIRS_QUERY
        + " WHERE e.name = $1 AND c.symbol = $2 AND q.symbol = $3 AND m.name = $4",
        key.exchange,
        key.coin,
        key.quote,
        key.market_type,
    )
    if row is None:
        raise NotFound(f"unknown trading pair {key}")
    return TradingPair(row["id"], key, row["active"])


def _starlisting(r: asyncpg.Record) -> Starlisting:
    key = StarlistingKey(r["exchange"], r["coin"], r["quote"], r["market_type"], r["interval"])
    return Starlisting(r["id"], key, r["trading_pair_id"], r["seconds"], r["active"])
