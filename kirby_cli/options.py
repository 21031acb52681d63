"""Options shared by several commands, and the catalog options checked while parsing.

`--coin`, `--exchange` and `--intervals` name things of a catalog: a value the catalog of the
chosen `--database` does not list is a usage error naming it and the allowed values, before
any work starts (`--database` is eager, so its value is known whatever the order).
"""

from __future__ import annotations

import click

from kirby_core.catalog import Catalog, load_catalog
from kirby_core.settings import Database, Settings

database_option = click.option(
    "--database",
    type=click.Choice(["realtime", "training"]),
    default="realtime",
    show_default=True,
    is_eager=True,
    help="realtime: live Hyperliquid (kirby); training: historical Binance (kirby_training).",
)


def _database(ctx: click.Context) -> Database:
    return ctx.params.get("database", "realtime")  # eager: parsed before the others


def _catalog(ctx: click.Context) -> Catalog:
    settings = ctx.find_object(Settings)
    assert settings is not None  # the `kirby` group stores it before any command runs
    return load_catalog(settings.catalog_path(_database(ctx)))


def _check(ctx: click.Context, values: set[str], what: str, allowed: dict[str, None]) -> set[str]:
    """`allowed` in catalog order (dict keys: 1m, 15m, 4h, … rather than sorted as text)."""
    unknown = sorted(values - allowed.keys())
    if unknown and not ctx.resilient_parsing:
        database = _database(ctx)
        raise click.BadParameter(
            f"unknown {what} {', '.join(unknown)} (the {database} catalog has: "
            f"{', '.join(allowed)})"
        )
    return values


def _split(values: tuple[str, ...] | str) -> set[str]:
    values = (values,) if isinstance(values, str) else values
    return {v.strip() for value in values for v in value.split(",") if v.strip()}


def _coins(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> set[str]:
    coins = {c.upper() for c in _split(value)}
    if not coins:
        return coins
    catalog = _catalog(ctx)
    return _check(ctx, coins, "coin", dict.fromkeys(s.coin for s in catalog.starlistings))


def _exchange(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    catalog = _catalog(ctx)
    _check(ctx, {value}, "exchange", dict.fromkeys(s.exchange for s in catalog.starlistings))
    return value


def _intervals(ctx: click.Context, param: click.Parameter, value: str) -> set[str] | None:
    """None means every interval (`all`)."""
    if value.strip() == "all":
        return None
    catalog = _catalog(ctx)
    allowed = dict.fromkeys(s.interval for s in catalog.starlistings)
    return _check(ctx, _split(value), "interval", allowed)


coin_option = click.option(
    "--coin",
    "coins",
    multiple=True,
    callback=_coins,
    help="Only these coins (repeat, or BTC,SOL).",
)
exchange_option = click.option(
    "--exchange", default=None, callback=_exchange, help="Only this exchange."
)
intervals_option = click.option(
    "--intervals",
    default="1m",
    show_default=True,
    callback=_intervals,
    help="Candle intervals: 1m, a list such as 1m,15m,4h, or all.",
)
