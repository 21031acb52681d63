"""Hyperliquid WebSocket `/ws`: connections, subscriptions and their protocol.

On connect the server greets with the text "Websocket connection established." (the SDK
expects it). Client messages, all JSON:

    {"method":"subscribe","subscription":{"type":"candle","coin":"BTC","interval":"1m"}}
      -> {"channel":"subscriptionResponse","data":{"method":"subscribe","subscription":{...}}}
         then a snapshot (the current candle, context, book...)
    {"method":"unsubscribe","subscription":{...}}  -> the same ack with "unsubscribe"
    {"method":"ping"}                              -> {"channel":"pong"}

Subscription types: allMids, l2Book{coin}, trades{coin}, candle{coin,interval},
activeAssetCtx{coin}. Errors come on the "error" channel with the real server's texts:
"Error parsing JSON into valid websocket request: <text>", "Invalid subscription: <sub>"
(unknown coin), "Already subscribed: <sub>", "Already unsubscribed: <sub>". Limits per
client IP: connections (beyond: HTTP 429 on the upgrade), subscriptions and messages per
minute (beyond: an error message, the request ignored). A connection with no client
message for `idle_timeout` real seconds is closed (WebSocket-level pings do not count).

This module only keeps the books of who listens to what; `HyperliquidFeed`
(`hyperliquid_feed.py`) decides what to push and when, and is told about every change
through `SubscriptionListener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from kirby_sim.faults import FaultInjector
from kirby_sim.intervals import HYPERLIQUID_INTERVALS
from kirby_sim.malform import malformed_text
from kirby_sim.market import Market
from kirby_sim.ratelimit import WeightLimiter
from kirby_sim.wire import encode

GREETING = "Websocket connection established."
PONG = encode({"channel": "pong"})
_REQUIRED = {
    "allMids": (),
    "l2Book": ("coin",),
    "trades": ("coin",),
    "candle": ("coin", "interval"),
    "activeAssetCtx": ("coin",),
}
_OPTIONAL = {"allMids": ("dex",), "l2Book": ("nSigFigs", "nLevels", "mantissa")}
_OUTBOX_LIMIT = 100_000
_CLOSE_TIMEOUT = 1.0

ChannelKey = tuple[str, ...]
"""("candle", coin, interval), ("trades" | "l2Book" | "activeAssetCtx", coin), ("allMids",)"""


@dataclass(frozen=True)
class StreamLimits:
    idle_timeout: float = 60.0
    connections_per_ip: int = 100
    subscriptions_per_ip: int = 1000
    messages_per_minute: int | None = 2000


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    client: str
    transport: asyncio.Transport | None
    outbox: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(_OUTBOX_LIMIT))
    subscriptions: dict[ChannelKey, dict[str, Any]] = field(default_factory=dict)

    def send(self, text: str) -> None:
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.abort()

    def abort(self) -> None:
        """Cut the TCP connection without a close frame, as a network failure does."""
        if self.transport is not None:
            self.transport.abort()


class SubscriptionListener(Protocol):
    def subscribed(self, connection: Connection, key: ChannelKey) -> None: ...

    def changed(self) -> None: ...


def subscription_key(subscription: dict[str, Any]) -> ChannelKey:
    kind = subscription["type"]
    return (kind, *(subscription[name] for name in _REQUIRED[kind]))


def _normalize(subscription: Any) -> dict[str, Any] | None:
    """The subscription as the server echoes it, or None if it does not parse."""
    if not isinstance(subscription, dict) or subscription.get("type") not in _REQUIRED:
        return None
    kind = subscription["type"]
    normal: dict[str, Any] = {"type": kind}
    for name in _REQUIRED[kind]:
        if not isinstance(subscription.get(name), str):
            return None
        normal[name] = subscription[name]
    if kind == "candle" and normal["interval"] not in HYPERLIQUID_INTERVALS:
        return None
    for name in _OPTIONAL.get(kind, ()):
        if name in subscription:
            normal[name] = subscription[name]
    return normal


def _error(text: str) -> str:
    return encode({"channel": "error", "data": text})


class HyperliquidStream:
    def __init__(
        self, market: Market, faults: FaultInjector, limits: StreamLimits | None = None
    ) -> None:
        self.market = market
        self.faults = faults
        self.limits = limits or StreamLimits()
        self.listener: SubscriptionListener | None = None
        self.connections: set[Connection] = set()
        self._index: defaultdict[ChannelKey, set[Connection]] = defaultdict(set)
        self._by_coin: defaultdict[str | None, Counter[ChannelKey]] = defaultdict(Counter)
        self._subscriptions_per_ip: Counter[str] = Counter()
        self._connections_per_ip: Counter[str] = Counter()
        self._messages = WeightLimiter(self.limits.messages_per_minute)

    # --- what the feed asks -----------------------------------------------------------

    def keys_of(self, coin: str | None) -> list[ChannelKey]:
        """Subscribed keys of one coin (None: allMids)."""
        counter = self._by_coin.get(coin)
        return list(counter) if counter else []

    def watched(self) -> set[str | None]:
        """Coins with at least one subscription (None stands for allMids)."""
        return {coin for coin, counter in self._by_coin.items() if counter}

    def publish(self, key: ChannelKey, channel: str, data: Any, coin: str | None) -> None:
        """Send a data push to every subscriber of `key`, unless its feed is stalled."""
        subscribers = self._index.get(key)
        if not subscribers or self.faults.is_stalled(coin):
            return
        text = encode({"channel": channel, "data": data})
        for connection in subscribers:
            self._send_data(connection, channel, data, text)

    def publish_to(self, connection: Connection, channel: str, data: Any, coin: str | None) -> None:
        if not self.faults.is_stalled(coin):
            self._send_data(connection, channel, data, encode({"channel": channel, "data": data}))

    def _send_data(self, connection: Connection, channel: str, data: Any, text: str) -> None:
        broken = malformed_text(
            self.faults, "ws", channel, data, lambda d: encode({"channel": channel, "data": d})
        )
        connection.send(broken if broken is not None else text)

    # --- connections ------------------------------------------------------------------

    def drop_all(self) -> None:
        for connection in list(self.connections):
            connection.abort()

    async def close_all(self) -> None:
        """Close every connection with 1001 (going away), as on shutdown."""
        closing = [
            connection.ws.close(code=1001, message=b"server shutdown")
            for connection in list(self.connections)
        ]
        await asyncio.gather(*closing, return_exceptions=True)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        client = request.remote or "unknown"
        if self._connections_per_ip[client] >= self.limits.connections_per_ip:
            return web.Response(status=429, text="Too many connections")
        ws = web.WebSocketResponse(autoping=True, timeout=_CLOSE_TIMEOUT)
        await ws.prepare(request)
        connection = Connection(ws, client, request.transport)
        self.connections.add(connection)
        self._connections_per_ip[client] += 1
        writer = asyncio.create_task(self._write(connection))
        connection.send(GREETING)
        try:
            await self._read(connection)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._forget(connection)
        return ws

    async def _read(self, connection: Connection) -> None:
        while True:
            try:
                message = await connection.ws.receive(timeout=self.limits.idle_timeout)
            except TimeoutError:
                await connection.ws.close(code=1000, message=b"idle timeout")
                return
            if message.type != WSMsgType.TEXT:
                return
            self._on_text(connection, message.data)

    async def _write(self, connection: Connection) -> None:
        while True:
            text = await connection.outbox.get()
            try:
                await connection.ws.send_str(text)
            except ConnectionError:
                return

    def _forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self._connections_per_ip[connection.client] -= 1
        for key in list(connection.subscriptions):
            self._remove(connection, key)
        if self.listener is not None:
            self.listener.changed()

    # --- protocol ---------------------------------------------------------------------

    def _on_text(self, connection: Connection, text: str) -> None:
        if self._messages.acquire(connection.client, 1) is not None:
            connection.send(
                _error(f"Too many messages: limit is {self.limits.messages_per_minute} per minute")
            )
            return
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        method = message.get("method") if isinstance(message, dict) else None
        if method == "ping":
            connection.send(PONG)
            return
        subscription = _normalize(message.get("subscription")) if method else None
        if method not in ("subscribe", "unsubscribe") or subscription is None:
            connection.send(_error(f"Error parsing JSON into valid websocket request: {text}"))
            return
        key = subscription_key(subscription)
        shown = encode(subscription)
        if len(key) > 1 and self.market.derivatives(key[1]) is None:
            connection.send(_error(f"Invalid subscription: {shown}"))
        elif method == "subscribe":
            self._subscribe(connection, key, subscription, shown)
        elif key not in connection.subscriptions:
            connection.send(_error(f"Already unsubscribed: {shown}"))
        else:
            self._remove(connection, key)
            self._acknowledge(connection, method, subscription)
            if self.listener is not None:
                self.listener.changed()

    def _subscribe(
        self, connection: Connection, key: ChannelKey, subscription: dict[str, Any], shown: str
    ) -> None:
        if key in connection.subscriptions:
            connection.send(_error(f"Already subscribed: {shown}"))
            return
        limit = self.limits.subscriptions_per_ip
        if self._subscriptions_per_ip[connection.client] >= limit:
            connection.send(_error(f"Cannot track more than {limit} total subscriptions"))
            return
        connection.subscriptions[key] = subscription
        self._index[key].add(connection)
        self._by_coin[key[1] if len(key) > 1 else None][key] += 1
        self._subscriptions_per_ip[connection.client] += 1
        self._acknowledge(connection, "subscribe", subscription)
        if self.listener is not None:
            self.listener.subscribed(connection, key)
            self.listener.changed()

    def _remove(self, connection: Connection, key: ChannelKey) -> None:
        del connection.subscriptions[key]
        self._index[key].discard(connection)
        if not self._index[key]:
            del self._index[key]
        coin = key[1] if len(key) > 1 else None
        self._by_coin[coin][key] -= 1
        if self._by_coin[coin][key] <= 0:
            del self._by_coin[coin][key]
        self._subscriptions_per_ip[connection.client] -= 1

    @staticmethod
    def _acknowledge(connection: Connection, method: str, subscription: dict[str, Any]) -> None:
        connection.send(
            encode(
                {
                    "channel": "subscriptionResponse",
                    "data": {"method": method, "subscription": subscription},
                }
            )
        )
