"""What the simulated exchanges list: Hyperliquid perps, Binance spot / USD-M perps, Bybit,
OKX and Coinbase.

An `Instrument` holds everything the data generator and the venue formatters need: price
and size precision as the venue publishes them, the liquidity tier (how often it trades,
how often a minute passes without any trade) and the listing time (no candles before it).
Hyperliquid's universe is the 28 coins of the recorded `meta` response, in the same order
(the index is the asset id), plus optional synthetic coins for load tests (SYN001, ...;
off by default, the same coins on every other venue with `synthetic_listings`). Binance lists a
handful of majors against USDT on spot and USD-M perps; COIN-M perps appear in
exchangeInfo only (no klines), enough for ccxt's `load_markets`.

Prices are integers in units of 10**-price_decimals throughout the simulator; Hyperliquid
additionally rounds to 5 significant figures (integers always allowed), Binance to a tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from kirby_core.timeutil import datetime_to_ms

HYPERLIQUID_VENUE = "hyperliquid"
BINANCE_SPOT_VENUE = "binance_spot"
BINANCE_USDM_VENUE = "binance_usdm"


@dataclass(frozen=True)
class Tier:
    """Liquidity profile: notional traded per minute (USD), trades per minute, trade
    events per minute (pushes are 60/events seconds apart) and the share of quiet minutes."""

    notional_per_minute: float
    trades_per_minute: float
    events: tuple[int, int]
    quiet_probability: float


MAJOR = Tier(600_000.0, 120.0, (7, 12), 0.002)
MID = Tier(40_000.0, 25.0, (3, 8), 0.03)
SMALL = Tier(6_000.0, 6.0, (1, 4), 0.15)


@dataclass(frozen=True)
class Instrument:
    venue: str
    symbol: str
    """The venue's id: the bare coin on Hyperliquid, e.g. BTCUSDT on Binance."""
    coin: str
    """Base asset; instruments of one coin share the slow part of their price path."""
    base_price: float
    daily_vol: float
    price_decimals: int
    size_decimals: int
    tier: Tier
    listed_ms: int
    sig_figs: int | None = None
    tick_units: int = 1
    max_leverage: int = 50

    @property
    def volume_per_minute(self) -> float:
        return self.tier.notional_per_minute / self.base_price

    def price_step(self, units: int) -> int:
        """Smallest price increment (in units) at the price `units`."""
        if self.sig_figs is None:
            return self.tick_units
        return 10 ** min(max(len(str(units)) - self.sig_figs, 0), self.price_decimals)


def _ms(year: int, month: int, day: int) -> int:
    return datetime_to_ms(datetime(year, month, day, tzinfo=UTC))


HYPERLIQUID_LISTED_MS = _ms(2023, 3, 1)
SYNTHETIC_LISTED_MS = _ms(2024, 1, 1)

# name, szDecimals, base price, daily volatility, tier; order = the recorded meta response.
_HYPERLIQUID_COINS: tuple[tuple[str, int, float, float, Tier], ...] = (
    ("BTC", 5, 67_000.0, 0.025, MAJOR),
    ("ETH", 4, 3_400.0, 0.03, MAJOR),
    ("ATOM", 2, 7.5, 0.05, SMALL),
    ("MATIC", 1, 0.55, 0.05, SMALL),
    ("DYDX", 1, 1.6, 0.06, SMALL),
    ("SOL", 2, 145.0, 0.045, MAJOR),
    ("AVAX", 2, 28.0, 0.05, MID),
    ("BNB", 3, 580.0, 0.035, MID),
    ("APE", 1, 1.1, 0.06, SMALL),
    ("OP", 1, 2.1, 0.055, MID),
    ("LTC", 2, 80.0, 0.04, MID),
    ("ARB", 1, 0.9, 0.055, MID),
    ("DOGE", 0, 0.14, 0.05, MID),
    ("INJ", 1, 24.0, 0.06, MID),
    ("SUI", 1, 1.2, 0.06, MID),
    ("kPEPE", 0, 0.011, 0.07, MID),
    ("CRV", 1, 0.35, 0.06, SMALL),
    ("LDO", 1, 1.9, 0.06, SMALL),
    ("LINK", 1, 15.0, 0.05, MID),
    ("STX", 1, 1.8, 0.06, SMALL),
    ("RNDR", 1, 7.5, 0.06, SMALL),
    ("CFX", 0, 0.17, 0.065, SMALL),
    ("FTM", 0, 0.6, 0.06, SMALL),
    ("GMX", 2, 28.0, 0.05, SMALL),
    ("SNX", 1, 2.3, 0.06, SMALL),
    ("XRP", 0, 0.55, 0.045, MID),
    ("BCH", 3, 420.0, 0.045, SMALL),
    ("APT", 2, 8.5, 0.055, MID),
)


def _synthetic(number: int) -> tuple[str, float, float, Tier, int]:
    """Synthetic coin `number` (SYN001, ...): coin, base price, daily volatility, tier and
    size decimals, the same on every venue that lists it."""
    return (
        f"SYN{number:03d}",
        round(10.0 ** (number % 7 - 2) * (1.0 + number % 9), 6),
        0.04 + 0.005 * (number % 5),
        MID if number % 3 == 0 else SMALL,
        number % 4,
    )


def hyperliquid_perps(extra_coins: int = 0) -> list[Instrument]:
    """The Hyperliquid perp universe in meta order, then `extra_coins` synthetic coins
    (SYN001, SYN002, ...) with varied prices and liquidity."""
    perps = [
        Instrument(
            venue=HYPERLIQUID_VENUE,
            symbol=name,
            coin=name,
            base_price=price,
            daily_vol=vol,
            price_decimals=6 - sz_decimals,
            size_decimals=sz_decimals,
            tier=tier,
            listed_ms=HYPERLIQUID_LISTED_MS,
            sig_figs=5,
        )
        for name, sz_decimals, price, vol, tier in _HYPERLIQUID_COINS
    ]
    for number in range(1, extra_coins + 1):
        coin, price, vol, tier, sz_decimals = _synthetic(number)
        perps.append(
            Instrument(
                venue=HYPERLIQUID_VENUE,
                symbol=coin,
                coin=coin,
                base_price=price,
                daily_vol=vol,
                price_decimals=6 - sz_decimals,
                size_decimals=sz_decimals,
                tier=tier,
                listed_ms=SYNTHETIC_LISTED_MS,
                sig_figs=5,
            )
        )
    return perps


@dataclass(frozen=True)
class BinanceAsset:
    """One coin on Binance: spot precision (prices and sizes shown with 8 decimals) and
    USD-M precision (pricePrecision/tick and quantityPrecision, as in fapi exchangeInfo)."""

    coin: str
    base_price: float
    daily_vol: float
    tier: Tier
    spot_tick: int
    """Spot tick as a power of ten: 2 means 0.01."""
    spot_step: int
    futures_price_precision: int
    futures_tick_units: int
    futures_quantity_precision: int
    spot_listed_ms: int
    futures_listed_ms: int


BINANCE_ASSETS: tuple[BinanceAsset, ...] = (
    BinanceAsset("BTC", 67_000.0, 0.025, MAJOR, 2, 5, 2, 10, 3, _ms(2017, 8, 17), _ms(2019, 9, 8)),
    BinanceAsset("ETH", 3_400.0, 0.03, MAJOR, 2, 4, 2, 1, 3, _ms(2017, 8, 17), _ms(2019, 11, 27)),
    BinanceAsset("SOL", 145.0, 0.045, MAJOR, 2, 3, 4, 100, 0, _ms(2020, 8, 11), _ms(2020, 9, 14)),
    BinanceAsset("BNB", 580.0, 0.035, MID, 2, 3, 3, 10, 2, _ms(2017, 11, 6), _ms(2020, 2, 10)),
    BinanceAsset("XRP", 0.55, 0.045, MID, 4, 1, 4, 1, 1, _ms(2018, 5, 4), _ms(2020, 1, 6)),
    BinanceAsset("DOGE", 0.14, 0.05, MID, 5, 0, 5, 1, 0, _ms(2019, 7, 5), _ms(2020, 7, 10)),
)

BINANCE_COIN_M: tuple[str, ...] = ("BTC", "ETH")


def binance_spot() -> list[Instrument]:
    return [
        Instrument(
            venue=BINANCE_SPOT_VENUE,
            symbol=f"{asset.coin}USDT",
            coin=asset.coin,
            base_price=asset.base_price,
            daily_vol=asset.daily_vol,
            price_decimals=asset.spot_tick,
            size_decimals=asset.spot_step,
            tier=asset.tier,
            listed_ms=asset.spot_listed_ms,
        )
        for asset in BINANCE_ASSETS
    ]


def binance_usdm() -> list[Instrument]:
    return [
        Instrument(
            venue=BINANCE_USDM_VENUE,
            symbol=f"{asset.coin}USDT",
            coin=asset.coin,
            base_price=asset.base_price,
            daily_vol=asset.daily_vol,
            price_decimals=asset.futures_price_precision,
            size_decimals=asset.futures_quantity_precision,
            tier=asset.tier,
            listed_ms=asset.futures_listed_ms,
            tick_units=asset.futures_tick_units,
            max_leverage=125,
        )
        for asset in BINANCE_ASSETS
    ]


# --- Bybit, OKX and Coinbase -------------------------------------------------------------

BYBIT_SPOT_VENUE = "bybit_spot"
BYBIT_LINEAR_VENUE = "bybit_linear"
OKX_SPOT_VENUE = "okx_spot"
OKX_SWAP_VENUE = "okx_swap"
COINBASE_VENUE = "coinbase"


@dataclass(frozen=True)
class Listing:
    """One instrument of a venue as the venue publishes it: the symbol, the price tick
    (`tick_units` of 10**-price_decimals), the size step (10**-size_decimals of the base
    coin) and the listing time."""

    coin: str
    symbol: str
    price_decimals: int
    tick_units: int
    size_decimals: int
    listed_ms: int


_ASSET_PROFILE = {asset.coin: asset for asset in BINANCE_ASSETS}

# coin, symbol, price decimals, tick units, size decimals, listed
_LISTINGS: dict[str, tuple[Listing, ...]] = {
    BYBIT_SPOT_VENUE: (
        Listing("BTC", "BTCUSDT", 2, 1, 6, _ms(2021, 7, 5)),
        Listing("ETH", "ETHUSDT", 2, 1, 5, _ms(2021, 7, 5)),
        Listing("SOL", "SOLUSDT", 2, 1, 3, _ms(2021, 7, 15)),
    ),
    BYBIT_LINEAR_VENUE: (
        Listing("BTC", "BTCUSDT", 2, 10, 3, _ms(2020, 3, 30)),
        Listing("ETH", "ETHUSDT", 2, 1, 2, _ms(2020, 11, 1)),
        Listing("SOL", "SOLUSDT", 3, 10, 1, _ms(2021, 4, 1)),
    ),
    OKX_SPOT_VENUE: (
        Listing("BTC", "BTC-USDT", 1, 1, 8, _ms(2018, 1, 11)),
        Listing("ETH", "ETH-USDT", 2, 1, 6, _ms(2018, 1, 11)),
        Listing("SOL", "SOL-USDT", 2, 1, 6, _ms(2020, 8, 11)),
    ),
    # Swap sizes are in base coin here; OKX counts contracts (see okx.CONTRACT_VALUE_DECIMALS).
    OKX_SWAP_VENUE: (
        Listing("BTC", "BTC-USDT-SWAP", 1, 1, 4, _ms(2019, 12, 10)),
        Listing("ETH", "ETH-USDT-SWAP", 2, 1, 3, _ms(2019, 12, 10)),
        Listing("SOL", "SOL-USDT-SWAP", 2, 1, 2, _ms(2020, 9, 21)),
    ),
    COINBASE_VENUE: (
        Listing("BTC", "BTC-USD", 2, 1, 8, _ms(2016, 5, 1)),
        Listing("ETH", "ETH-USD", 2, 1, 8, _ms(2016, 5, 18)),
        Listing("SOL", "SOL-USD", 2, 1, 3, _ms(2021, 6, 17)),
    ),
}


def listings(venue: str) -> list[Instrument]:
    """The instruments of a Bybit, OKX or Coinbase venue (same coin profiles as Binance)."""
    instruments = []
    for listing in _LISTINGS[venue]:
        asset = _ASSET_PROFILE[listing.coin]
        instruments.append(
            Instrument(
                venue=venue,
                symbol=listing.symbol,
                coin=listing.coin,
                base_price=asset.base_price,
                daily_vol=asset.daily_vol,
                price_decimals=listing.price_decimals,
                size_decimals=listing.size_decimals,
                tier=asset.tier,
                listed_ms=listing.listed_ms,
                tick_units=listing.tick_units,
                max_leverage=100,
            )
        )
    return instruments


LISTED_VENUES: tuple[str, ...] = tuple(_LISTINGS)
PERP_VENUES: tuple[str, ...] = (BINANCE_USDM_VENUE, BYBIT_LINEAR_VENUE, OKX_SWAP_VENUE)
"""Venues whose instruments are perpetual swaps with 8-hourly funding (`PerpStats`)."""


SYMBOL_FORMATS: dict[str, str] = {
    BINANCE_SPOT_VENUE: "{coin}USDT",
    BINANCE_USDM_VENUE: "{coin}USDT",
    BYBIT_SPOT_VENUE: "{coin}USDT",
    BYBIT_LINEAR_VENUE: "{coin}USDT",
    OKX_SPOT_VENUE: "{coin}-USDT",
    OKX_SWAP_VENUE: "{coin}-USDT-SWAP",
    COINBASE_VENUE: "{coin}-USD",
}
"""How each venue but Hyperliquid names a coin's instrument (against USDT, Coinbase USD)."""


def synthetic_listings(venue: str, extra_coins: int) -> list[Instrument]:
    """`extra_coins` synthetic coins (SYN001, ...) on `venue` (any venue of
    `SYMBOL_FORMATS`), for load tests: the profile of Hyperliquid's synthetic perps, prices
    with five significant figures at the base price."""
    if venue not in SYMBOL_FORMATS:
        raise ValueError(f"no synthetic listings on {venue!r}; venues: {', '.join(SYMBOL_FORMATS)}")
    instruments = []
    for number in range(1, extra_coins + 1):
        coin, price, vol, tier, sz_decimals = _synthetic(number)
        instruments.append(
            Instrument(
                venue=venue,
                symbol=SYMBOL_FORMATS[venue].format(coin=coin),
                coin=coin,
                base_price=price,
                daily_vol=vol,
                price_decimals=max(0, 4 - math.floor(math.log10(price))),
                size_decimals=sz_decimals,
                tier=tier,
                listed_ms=SYNTHETIC_LISTED_MS,
                max_leverage=50,
            )
        )
    return instruments
