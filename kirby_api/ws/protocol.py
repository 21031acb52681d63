"""The `/ws` message protocol: what clients send, what the server answers, error and close codes.

Client -> server (JSON text frames; the `subscribe`/`unsubscribe`/`ping` actions of the
earlier Kirby, plus `channels` for funding, open interest and trades):

    {"action": "subscribe", "starlisting_ids": [1, 2], "history": 100,
     "channels": ["candles", "funding", "open_interest", "trades", "books"]}
                                                                channels default ["candles"]
    {"action": "subscribe", "starlisting_ids": [1], "resume_from": 41}
                                       after a reconnect (to any replica): every update
                                       after event 41, then live; not with `history`
    {"action": "unsubscribe", "starlisting_ids": [2]}            channels default: all
    {"action": "ping"}

Server -> client:

    {"type": "success", "action": "subscribe", ...}       an action was applied
    {"type": "error", "code": "...", "message": "..."}    an action was refused (the
                                                          connection stays open)
    {"type": "historical", "channel": "candles", ...}     the latest `history` rows per series
    {"type": "candle" | "funding" | "open_interest" | "trade" | "book", ...,
     "event_id": 41}
                                                          one live row (sent on every update);
                                                          `event_id` numbers the updates
    {"type": "resume_unavailable", "resume_from": 3, "oldest_event_id": 90, "message": ...}
                                                          the events after `resume_from` are
                                                          no longer kept: re-fetch over REST
    {"type": "ping", "timestamp": ..., "event_id": 57}    the server's heartbeat (`event_id`:
                                                          everything up to it was sent)
    {"type": "pong", "timestamp": ...}                    answer to a ping action

`history` (0-1000) sends the latest rows of every series the subscribe names (again for
ones already subscribed) before any live row of them. Actions spend the key's rate-limit
budget, the one its REST requests spend: a subscribe or unsubscribe costs 1, history 1 per
started 1000 rows (`history` x series). Over budget the server sends an `error`
(`rate_limited`) and closes with 4429. Funding and open interest belong to
a trading pair: subscribing a starlisting to them delivers its pair's rows once per
connection, however many intervals of it are subscribed. So do trades: one `trade` message
per new trade, in (time, trade_id) order per pair, each trade once per connection (the
connection keeps the (time, trade_id) of the last trade it sent per pair, history
included, and never sends one at or before it; a trade the exchange reports late, older
than one already sent, is therefore only on REST `/trades/...`). Book samples the same way:
one `book` message per sampled second, each once, in time order.

Resume: remember the newest `event_id` of the live rows and heartbeat pings received (a
ping's id keeps the position fresh on a quiet series). After a reconnect, subscribe
again with `resume_from` set to it: the server first sends, for the series that subscribe
names, the live rows of every event after it (with their ids, in order, each once, current
values), then continues live with nothing missed in between. Events are kept for
`KIRBY_API_WS_RESUME_SECONDS` (default an hour); older ids get `resume_unavailable`, and
the client should re-read the gap over REST. Rows re-sent after the server's own database
connection dropped carry no `event_id`. Ids grow by update but not by one: skipped numbers
are normal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

from kirby_api.datasets import BookData, CandleData, FundingData, OpenInterestData, TradeData
from kirby_api.errors import InactiveSeries
from kirby_core.errors import InvalidRequest, KirbyError, NotFound, StorageUnavailable

Channel = Literal["candles", "funding", "open_interest", "trades", "books"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
"""The datasets' `api_name`s (`kirby_core.datasets`), then the trade tape's; a test holds
them together with `kirby_api.datasets`."""
MAX_IDS_PER_MESSAGE = 100
MAX_HISTORY = 1000

# Close codes (4000 + the HTTP status they resemble, or the RFC 6455 code that fits).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVER_FULL = 1013  # "try again later": the process-wide connection cap
CLOSE_UNAUTHORIZED = 4401
CLOSE_SLOW_CONSUMER = 4408  # the send queue overflowed: the client did not keep up
CLOSE_TOO_MANY_CONNECTIONS = 4429  # the key's connection cap
CLOSE_RATE_LIMITED = 4429  # the key's request budget (after an `error` message saying so)

StarlistingIds = Annotated[
    list[Annotated[int, Meta(ge=1, le=2**31 - 1)]],
    Meta(min_length=1, max_length=MAX_IDS_PER_MESSAGE),
]


class Subscribe(msgspec.Struct, forbid_unknown_fields=True):
    action: str
    starlisting_ids: StarlistingIds
    history: Annotated[int, Meta(ge=0, le=MAX_HISTORY)] = 0
    channels: Annotated[list[Channel], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["candles"]
    )
    resume_from: Annotated[int, Meta(ge=0, le=2**63 - 1)] | None = None
    """The `event_id` of the last live row received before a reconnect."""

    def __post_init__(self) -> None:
        if self.history and self.resume_from is not None:
            raise ValueError("`history` and `resume_from` exclude each other; send one")


class Unsubscribe(msgspec.Struct, forbid_unknown_fields=True):
    action: str
    starlisting_ids: StarlistingIds
    channels: Annotated[list[Channel], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: list(CHANNELS)
    )


class Ping(msgspec.Struct, forbid_unknown_fields=True):
    action: str


ACTIONS: dict[str, type[Subscribe | Unsubscribe | Ping]] = {
    "subscribe": Subscribe,
    "unsubscribe": Unsubscribe,
    "ping": Ping,
}


class ProtocolError(KirbyError):
    """A client message the server refuses; `code` is sent in the error message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# The WebSocket counterpart of kirby_api.errors: most specific first.
_ERROR_CODES: tuple[tuple[type[KirbyError], str], ...] = (
    (NotFound, "unknown_series"),
    (InactiveSeries, "inactive_series"),
    (InvalidRequest, "validation_error"),
    (StorageUnavailable, "unavailable"),
)


def error_code(exc: KirbyError) -> str:
    if isinstance(exc, ProtocolError):
        return exc.code
    return next((code for cls, code in _ERROR_CODES if isinstance(exc, cls)), "internal_error")


def parse(raw: str | bytes) -> Subscribe | Unsubscribe | Ping:
    """One client frame -> an action; `ProtocolError` naming what is wrong."""
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ProtocolError("invalid_json", f"message is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("invalid_json", "message is nested too deeply") from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("action"), str):
        raise ProtocolError(
            "validation_error",
            'message must be a JSON object with an "action": subscribe, unsubscribe or ping',
        )
    kind = ACTIONS.get(decoded["action"])
    if kind is None:
        raise ProtocolError(
            "unknown_action",
            f"unknown action {decoded['action'][:40]!r}; allowed: subscribe, unsubscribe, ping",
        )
    try:
        return msgspec.convert(decoded, kind)
    except msgspec.ValidationError as exc:
        raise ProtocolError("validation_error", f"invalid {decoded['action']}: {exc}") from None


# --- server messages ------------------------------------------------------------------------


class Success(msgspec.Struct, tag_field="type", tag="success"):
    action: str
    message: str
    starlisting_ids: list[int]
    channels: list[str]
    subscriptions: dict[str, list[str]]
    """Every starlisting this connection is now subscribed to, with its channels."""


class Error(msgspec.Struct, tag_field="type", tag="error"):
    code: str
    message: str
    action: str | None = None


class Historical(
    msgspec.Struct, tag_field="type", tag="historical", omit_defaults=True, kw_only=True
):
    channel: str
    series: str
    count: int
    starlisting_id: int | None = None
    trading_pair_id: int | None = None
    data: (
        list[CandleData]
        | list[FundingData]
        | list[OpenInterestData]
        | list[TradeData]
        | list[BookData]
    )
    """Last, so the hub can splice in rows the database encoded (`Hub.historical_message`)."""


class CandleMessage(msgspec.Struct, tag_field="type", tag="candle", omit_defaults=True):
    starlisting_id: int
    series: str
    data: CandleData
    event_id: int | None = None
    """The change event this row comes from (`resume_from`); none on a resync."""


class FundingMessage(msgspec.Struct, tag_field="type", tag="funding", omit_defaults=True):
    trading_pair_id: int
    series: str
    data: FundingData
    event_id: int | None = None


class OpenInterestMessage(
    msgspec.Struct, tag_field="type", tag="open_interest", omit_defaults=True
):
    trading_pair_id: int
    series: str
    data: OpenInterestData
    event_id: int | None = None


class TradeMessage(msgspec.Struct, tag_field="type", tag="trade", omit_defaults=True):
    trading_pair_id: int
    series: str
    data: TradeData
    event_id: int | None = None


class BookMessage(msgspec.Struct, tag_field="type", tag="book", omit_defaults=True):
    trading_pair_id: int
    series: str
    data: BookData
    event_id: int | None = None


class ResumeUnavailable(msgspec.Struct, tag_field="type", tag="resume_unavailable"):
    resume_from: int
    oldest_event_id: int | None
    """The oldest event still kept (None: none is)."""
    message: str


class ServerPing(msgspec.Struct, tag_field="type", tag="ping", omit_defaults=True):
    timestamp: datetime
    event_id: int | None = None
    """Every update up to this event has been sent before this ping: resume from it."""


class ServerPong(msgspec.Struct, tag_field="type", tag="pong"):
    timestamp: datetime
