"""The simulated market of one seed: every instrument of every venue, ready to query.

`Market` is the only object the venue handlers and the live feeds need: it owns one
`CandleBook` per instrument (sharing one cache of closed candles), one `Derivatives` per
Hyperliquid perp, one `PerpStats` per 8-hourly-funded perp of the other venues, and one
`DepthBook` (order book) per instrument of those venues, made on first use.
Everything it returns is a pure function of (seed, instrument, time), so two simulators
with the same seed serve identical data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from kirby_sim.candles import BarCache, CandleBook
from kirby_sim.depth import DEFAULT_UPDATE_MS, DepthBook
from kirby_sim.derivatives import Derivatives
from kirby_sim.perp_stats import PerpStats
from kirby_sim.prices import PriceSeries
from kirby_sim.universe import (
    BINANCE_SPOT_VENUE,
    BINANCE_USDM_VENUE,
    HYPERLIQUID_VENUE,
    LISTED_VENUES,
    PERP_VENUES,
    SYMBOL_FORMATS,
    Instrument,
    binance_spot,
    binance_usdm,
    hyperliquid_perps,
    listings,
    synthetic_listings,
)


class Market:
    def __init__(
        self,
        seed: int,
        *,
        extra_coins: int = 0,
        venue_extra_coins: int = 0,
        quiet_probability: Mapping[str, float] | None = None,
        depth_update_ms: int = DEFAULT_UPDATE_MS,
    ) -> None:
        """`extra_coins`: synthetic Hyperliquid perps; `venue_extra_coins`: synthetic coins
        listed on every other venue (both SYN001, ...: see `universe`); `quiet_probability`
        overrides the share of minutes without trades, by coin; `depth_update_ms`: simulated ms
        between two states of every order book (`DepthBook`)."""
        self.seed = seed
        overrides = dict(quiet_probability or {})
        self._cache = BarCache()
        self._books: dict[tuple[str, str], CandleBook] = {}
        self._derivatives: dict[str, Derivatives] = {}
        listed = {
            HYPERLIQUID_VENUE: hyperliquid_perps(extra_coins),
            BINANCE_SPOT_VENUE: binance_spot(),
            BINANCE_USDM_VENUE: binance_usdm(),
            **{venue: listings(venue) for venue in LISTED_VENUES},
        }
        for venue in SYMBOL_FORMATS:
            listed[venue] = listed[venue] + synthetic_listings(venue, venue_extra_coins)
        self.instruments: dict[str, list[Instrument]] = {}
        for venue, instruments in listed.items():
            adjusted = [_with_quiet(inst, overrides.get(inst.coin)) for inst in instruments]
            self.instruments[venue] = adjusted
            for inst in adjusted:
                self._books[venue, inst.symbol] = CandleBook(PriceSeries(inst, seed), self._cache)
        for inst in self.instruments[HYPERLIQUID_VENUE]:
            self._derivatives[inst.symbol] = Derivatives(
                self._books[HYPERLIQUID_VENUE, inst.symbol], seed
            )
        self._depth_update_ms = depth_update_ms
        self._depths: dict[tuple[str, str], DepthBook] = {}
        self._perps: dict[tuple[str, str], PerpStats] = {
            (venue, inst.symbol): PerpStats(self._books[venue, inst.symbol], seed)
            for venue in PERP_VENUES
            for inst in self.instruments[venue]
        }

    @property
    def perps(self) -> list[Instrument]:
        """Hyperliquid perps in meta order (index = asset id)."""
        return self.instruments[HYPERLIQUID_VENUE]

    def book(self, venue: str, symbol: str) -> CandleBook | None:
        return self._books.get((venue, symbol))

    def depth(self, venue: str, symbol: str) -> DepthBook | None:
        """The order book of an instrument of any venue but Hyperliquid (built on first use)."""
        found = self._depths.get((venue, symbol))
        book = self._books.get((venue, symbol))
        if found is None and book is not None and venue != HYPERLIQUID_VENUE:
            found = DepthBook(book, self.seed, update_ms=self._depth_update_ms)
            self._depths[venue, symbol] = found
        return found

    def derivatives(self, coin: str) -> Derivatives | None:
        return self._derivatives.get(coin)

    def perp(self, venue: str, symbol: str) -> PerpStats | None:
        """Funding, open interest and marks of a Binance USD-M, Bybit linear or OKX swap."""
        return self._perps.get((venue, symbol))

    def all_derivatives(self) -> list[Derivatives]:
        """One per Hyperliquid perp, in meta order."""
        return list(self._derivatives.values())


def _with_quiet(instrument: Instrument, probability: float | None) -> Instrument:
    if probability is None:
        return instrument
    return replace(instrument, tier=replace(instrument.tier, quiet_probability=probability))
