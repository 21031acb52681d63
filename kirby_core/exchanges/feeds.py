"""What every exchange's WebSocket wire module shares: the typed messages frames parse
into, the rules a connection must keep, and the guard that counts malformed frames.

    CandleUpdate, AssetContextUpdate     (kirby_core.models) a candle push; funding and OI
    FundingUpdate, OpenInterestUpdate    funding alone (Binance markPrice, OKX funding-rate),
                                         open interest alone (OKX open-interest)
    TradesUpdate                         the trades of one push
    Pong, SubscriptionAck, ChannelError  liveness, acks and the exchange's own errors
    KeepAlive, ConnectionLimits          how a connection stays open, what it may carry
    FrameGuard                           a parser whose malformed frames are counted, never
                                         raised

Every message names its series by the exchange's own symbol as it appears on the wire
(`BTCUSDT`, `BTC-USDT-SWAP`, `BTC-USD`; Hyperliquid's coin): the caller knows which market
type a connection carries and maps symbols back to its catalog. Values are exact `Decimal`s
from the exchange's strings; times are UTC. Rows of funding and open interest are stamped
with the minute of the exchange's own event time (Hyperliquid sends none: its parser uses
the receive time).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from kirby_core.errors import ExchangeProtocolError
from kirby_core.models import AssetContextUpdate, CandleUpdate, FundingRate, OpenInterest

if TYPE_CHECKING:
    from kirby_core.books import BookUpdate
    from kirby_core.exchanges.weights import Clock, WeightBudget
    from kirby_core.settings import Settings

log = logging.getLogger(__name__)

DAY_SECONDS = 24 * 3600


# --- messages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pong:
    """Proof the connection is alive: the answer to a ping, or a heartbeat (Coinbase)."""


@dataclass(frozen=True)
class SubscriptionAck:
    """The exchange accepted a subscribe or unsubscribe (`subscription`: what it echoes:
    Hyperliquid's subscription, OKX's arg, Binance's and Bybit's request id...)."""

    method: str
    subscription: Any


@dataclass(frozen=True)
class ChannelError:
    """The exchange refused a request or announced a problem (its text, code included)."""

    message: str


class FundingUpdate(NamedTuple):
    """A live funding push without open interest (Binance markPrice, OKX funding-rate)."""

    symbol: str
    funding: FundingRate


class OpenInterestUpdate(NamedTuple):
    """A live open-interest push without funding (OKX open-interest)."""

    symbol: str
    open_interest: OpenInterest


class Trade(NamedTuple):
    time: datetime
    trade_id: str
    price: Decimal
    size: Decimal
    """In the base coin (in contracts where the update says `contracts`)."""
    side: str
    """The taker's side: "buy" or "sell"."""


class TradesUpdate(NamedTuple):
    symbol: str
    trades: tuple[Trade, ...]
    contracts: bool = False
    """Sizes count contracts (OKX swaps): the caller multiplies them by the contract's value
    in the base coin, which the wire does not carry."""


@dataclass(frozen=True)
class ContractValueSource:
    """Where a wire module whose trade sizes count contracts (`TradesUpdate.contracts`)
    declares their value: `<name>_wire.CONTRACT_VALUES`."""

    market_types: tuple[str, ...]
    """The market types whose trade sizes count contracts."""
    url_setting: str
    """The `Settings` field holding the exchange's REST host."""
    path: str
    """The REST request listing every contract."""
    parse: Callable[[object], dict[str, Decimal]]
    """Its JSON answer (decimals exact) -> wire symbol -> base coin per contract."""


WsMessage = (
    CandleUpdate
    | AssetContextUpdate
    | FundingUpdate
    | OpenInterestUpdate
    | TradesUpdate
    | Pong
    | SubscriptionAck
    | ChannelError
)

FrameParser = Callable[[str | bytes, datetime], tuple[WsMessage, ...]]
"""(raw text frame, received_at UTC) -> its messages, in order; `ExchangeProtocolError`
for a frame without the documented shape. Stateful for Bybit (tickers deltas): one parser
per connection."""

TAKER_SIDES = ("buy", "sell")


# --- connection rules ---------------------------------------------------------------------


@dataclass(frozen=True)
class KeepAlive:
    """How a connection stays open."""

    ping_frame: str | None
    """The text a client sends to prove it is alive; None: the exchange needs none."""
    ping_seconds: float | None
    """How often the client sends `ping_frame`."""
    idle_close_seconds: float | None
    """The exchange closes a connection this long without a client message (None: never)."""
    server_pings: bool = False
    """The exchange sends WebSocket pings the client must answer (the `websockets` library
    answers them by itself)."""
    greeting: str | None = None
    """A frame to send once on every new connection to keep it open (Coinbase: the
    `heartbeats` subscription)."""


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may carry, and for how long (None: no documented limit)."""

    streams_per_connection: int | None
    args_per_subscribe: int | None
    """Subscriptions one subscribe request may carry."""
    subscribe_chars: int | None
    """Characters the subscriptions of one request may total."""
    messages_per_second: int | None
    """Client messages per second a connection may send."""
    subscribes_per_hour: int | None
    """Subscribe and unsubscribe requests per hour a connection may send."""
    max_connection_seconds: int | None
    """The exchange ends every connection after this long (Binance: 24 h): open the next
    one before."""
    new_connections: tuple[int, float] | None
    """(count, seconds): new connections per IP and window."""


def chunks(items: Iterable[Any], limits: ConnectionLimits) -> Iterator[list[Any]]:
    """`items` split into subscribe requests within `args_per_subscribe` and
    `subscribe_chars` (each item's length counted as its JSON)."""
    batch: list[Any] = []
    chars = 0
    for item in items:
        size = len(compact(item)) + 1
        full = limits.args_per_subscribe is not None and len(batch) >= limits.args_per_subscribe
        long = limits.subscribe_chars is not None and chars + size > limits.subscribe_chars
        if batch and (full or long):
            yield batch
            batch, chars = [], 0
        batch.append(item)
        chars += size
    if batch:
        yield batch


# --- parsing helpers ----------------------------------------------------------------------


def compact(frame: Any) -> str:
    return json.dumps(frame, separators=(",", ":"))


_DECODER = msgspec.json.Decoder(float_hook=Decimal)
"""JSON to Python objects as `json.loads` makes them, a few times faster; a non-integer
number reaches `Decimal` as its literal text."""


def load_frame(raw: str | bytes, where: str) -> Any:
    """A JSON frame; non-integer numbers become exact Decimals, never floats."""
    try:
        return _DECODER.decode(raw)
    except ValueError as exc:  # msgspec.DecodeError, bad UTF-8 included
        raise ExchangeProtocolError(f"{where}: frame is not JSON ({exc}): {raw!r:.200}") from exc


def items(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ExchangeProtocolError(f"{where}: expected a list, got {value!r:.200}")
    return value


def text(value: object, name: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ExchangeProtocolError(f"{where}: field {name!r} must be a string, got {value!r:.80}")
    return value


class FrameGuard:
    """A connection's parser whose failures are counted: a malformed frame yields no
    message, adds one to `errors` and keeps its reason in `last_error`; nothing raises."""

    def __init__(self, parser: FrameParser, exchange: str) -> None:
        self._parser = parser
        self.exchange = exchange
        self.errors = 0
        self.last_error: str | None = None

    def __call__(self, raw: str | bytes, received_at: datetime) -> tuple[WsMessage, ...]:
        try:
            return self._parser(raw, received_at)
        except ExchangeProtocolError as exc:
            reason = str(exc)
        except Exception as exc:  # a frame the parser did not foresee must not end a feed
            log.exception("event=parser_failed exchange=%s frame=%r", self.exchange, raw[:300])
            reason = f"{self.exchange}: the parser failed on this frame ({type(exc).__name__})"
        self.errors += 1
        self.last_error = reason[:300]
        return ()


@dataclass(frozen=True)
class DepthChannel:
    """An exchange's order-book channel, as the book collector (`kirby_stream.books`) needs
    it. Depth rides the public endpoint its trades use, so its URL is the one the stream
    gives for `trades`. Resync: where `snapshot_url` is set the book fetches a REST snapshot
    (Binance: the diffs carry none); otherwise a new subscription brings one (Bybit, OKX,
    Coinbase) or every push is one (Hyperliquid)."""

    subscription: Callable[[str, str], Any]
    """(market type, wire symbol) -> the exchange's subscription of that book."""
    parse: Callable[[str | bytes, datetime], tuple[BookUpdate, ...]]
    snapshot_url: Callable[[Settings, str, str], str] | None = None
    """(settings, market type, wire symbol) -> the REST depth snapshot to fetch on a
    (re)sync; None: a new subscription brings the snapshot."""
    parse_snapshot: Callable[[object, str, datetime], BookUpdate] | None = None
    snapshot_spend: Callable[[Settings, str, Clock], tuple[WeightBudget, int]] | None = None
    """(settings, market type, clock) -> the REST weight budget a snapshot spends before it
    is sent (the process's, shared with backfills and polls: the exchange counts per IP)
    and its weight; None: the exchange weighs none."""
    sequenced: bool = True
    """False: the exchange numbers no updates (Hyperliquid); samples store no sequence."""
    connection_sequence: str | None = None
    """The field every frame of the connection numbers (Coinbase `sequence_num`): frames
    that are not depth are counted too, or they would read as gaps."""
