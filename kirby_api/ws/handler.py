"""`/ws`: one WebSocket connection, from accept to close.

The handshake is always accepted; a refusal is a close code the client can read (browsers
cannot see an HTTP 403): 4401 no valid key, 4429 the key's connection cap, 1013 the
process-wide cap. Then three tasks run until the first ends:

- the reader takes client frames one at a time (reading also notices the client leaving),
  applies them and queues the answers; a frame over `api_ws_max_message_bytes` closes 1009;
- the writer sends queued messages in order (answers, history, live rows, heartbeats);
- a watch on the queue's overflow flag closes a client that stopped keeping up (4408).

Refused actions become `error` messages; the connection stays open. Nothing here catches
more than `KirbyError` (mapped to error codes by `protocol.error_code`) and the errors of
writing to a socket that is already gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect

from kirby_api.errors import Unauthorized
from kirby_api.formats import encode_message
from kirby_api.observability import Metrics
from kirby_api.ratelimit import EXCLUDE_FROM_RATE_LIMIT
from kirby_api.series import SeriesCatalog
from kirby_api.ws import protocol
from kirby_api.ws.hub import Client, Hub, subscription_keys
from kirby_core.errors import KirbyError
from kirby_core.settings import Settings

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT_SECONDS = 1.0
_SOCKET_GONE = (WebSocketDisconnect, OSError, RuntimeError, TimeoutError)


class Session:
    def __init__(
        self,
        socket: WebSocket,
        hub: Hub,
        catalog: SeriesCatalog,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self._socket = socket
        self._hub = hub
        self._catalog = catalog
        self._settings = settings
        self._metrics = metrics
        self.client = Client(getattr(socket.user, "id", None), settings.api_ws_send_queue)

    async def run(self) -> tuple[int, str] | None:
        """Serve until the client leaves (None) or the server must close (code, reason)."""
        self._hub.connect(self.client)
        reader = asyncio.create_task(self._read())
        writer = asyncio.create_task(self._write())
        overflow = asyncio.create_task(self.client.overflowed.wait())
        tasks = (reader, writer, overflow)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._hub.disconnect(self.client)
        for task in (reader, writer):
            failure = None if task.cancelled() else task.exception()
            if failure is not None and not isinstance(failure, _SOCKET_GONE):
                log.error("ws connection failed error=%r", failure, exc_info=failure)
                return protocol.CLOSE_INTERNAL_ERROR, "internal error; it has been logged"
        if overflow.done() and not overflow.cancelled():
            return protocol.CLOSE_SLOW_CONSUMER, "send queue full: the client did not keep up"
        if reader.done() and not reader.cancelled() and reader.exception() is None:
            return reader.result()
        return None

    async def _write(self) -> None:
        queue, send, sent = self.client.queue, self._socket.send, self._metrics.ws_sent
        with contextlib.suppress(*_SOCKET_GONE):
            while True:
                text = await queue.get()
                await send({"type": "websocket.send", "text": text})
                sent.inc()

    async def _read(self) -> tuple[int, str] | None:
        limit = self._settings.api_ws_max_message_bytes
        while True:
            event = await self._socket.receive()
            if event["type"] == "websocket.disconnect":
                return None
            raw = event.get("text")
            size = len(raw.encode()) if raw is not None else len(event.get("bytes") or b"")
            if size > limit:
                return protocol.CLOSE_TOO_BIG, f"message of {size} bytes; the limit is {limit}"
            await self._apply(raw if raw is not None else event.get("bytes") or b"")

    def _send(self, message: object) -> None:
        self.client.offer(None, encode_message(message).decode())  # type: ignore[arg-type]

    async def _apply(self, raw: str | bytes) -> None:
        action = None
        try:
            message = protocol.parse(raw)
            action = message.action
            if isinstance(message, protocol.Subscribe):
                await self._subscribe(message)
            elif isinstance(message, protocol.Unsubscribe):
                self._unsubscribe(message)
            else:
                self._send(protocol.Pong(datetime.now(UTC)))
        except KirbyError as exc:
            self._send(protocol.Error(protocol.error_code(exc), str(exc), action))

    async def _subscribe(self, message: protocol.Subscribe) -> None:
        ids = list(dict.fromkeys(message.starlisting_ids))
        found = {i: self._catalog.find_starlisting(i) for i in ids}
        unknown = [str(i) for i, star in found.items() if star is None]
        if unknown:
            raise protocol.ProtocolError(
                "unknown_series",
                f"unknown starlisting ids: {', '.join(unknown)}; GET /starlistings lists them",
            )
        stars = [star for star in found.values() if star is not None]
        inactive = [str(star.key) for star in stars if not star.active]
        if inactive:
            raise protocol.ProtocolError(
                "inactive_series",
                f"inactive (removed from the catalog): {', '.join(inactive)}",
            )
        merged = {i: set(channels) for i, channels in self.client.subscriptions.items()}
        for i in ids:
            merged.setdefault(i, set()).update(message.channels)
        cap = self._settings.api_ws_max_subscriptions
        if len(merged) > cap:
            raise protocol.ProtocolError(
                "too_many_subscriptions",
                f"a connection may subscribe to at most {cap} starlistings; this subscribe "
                f"would make {len(merged)}",
            )
        requested = subscription_keys(stars, message.channels)
        # No await between registering and holding: no live row can slip in between.
        self._hub.update(self.client, merged)
        if message.history:
            self.client.hold(requested)
        self._send(self._success("subscribe", ids, message.channels))
        if message.history:
            await self._hub.send_history(self.client, requested, message.history)

    def _unsubscribe(self, message: protocol.Unsubscribe) -> None:
        ids = list(dict.fromkeys(message.starlisting_ids))
        merged = {i: set(channels) for i, channels in self.client.subscriptions.items()}
        for i in ids:
            left = merged.get(i, set()) - set(message.channels)
            if left:
                merged[i] = left
            else:
                merged.pop(i, None)
        self._hub.update(self.client, merged)
        self._send(self._success("unsubscribe", ids, message.channels))

    def _success(self, action: str, ids: list[int], channels: list[str]) -> protocol.Success:
        subscriptions = self.client.subscriptions
        return protocol.Success(
            action=action,
            message=f"{action}d {len(ids)} starlisting(s); {len(subscriptions)} subscribed",
            starlisting_ids=ids,
            channels=list(channels),
            subscriptions={str(i): sorted(c) for i, c in sorted(subscriptions.items())},
        )


def refusal(
    socket: WebSocket, hub: NamedDependency[Hub], settings: NamedDependency[Settings]
) -> tuple[int, str] | None:
    """Why this connection may not open, as a close code and reason; None if it may."""
    if isinstance(socket.auth, Unauthorized):
        return protocol.CLOSE_UNAUTHORIZED, str(socket.auth)
    if len(hub.clients) >= settings.api_ws_max_connections:
        return protocol.CLOSE_SERVER_FULL, (
            f"server at its limit of {settings.api_ws_max_connections} connections; "
            "retry later or use another replica"
        )
    user = socket.user
    if user.id is not None:
        own = user.max_ws_connections
        cap = own if own is not None else settings.api_ws_max_connections_per_key
        if hub.per_key[user.id] >= cap:
            return protocol.CLOSE_TOO_MANY_CONNECTIONS, (
                f"key {user.prefix}... already holds {cap} WebSocket connection(s), its limit"
            )
    return None


_CLOSE_REASONS = {
    protocol.CLOSE_UNAUTHORIZED: "unauthorized",
    protocol.CLOSE_SERVER_FULL: "server_full",
    protocol.CLOSE_TOO_MANY_CONNECTIONS: "key_connection_cap",
    protocol.CLOSE_SLOW_CONSUMER: "slow_consumer",
    protocol.CLOSE_TOO_BIG: "message_too_big",
    protocol.CLOSE_INTERNAL_ERROR: "internal_error",
}


async def _close(socket: WebSocket, code: int, reason: str) -> None:
    """Close a socket that may already be gone (the reason is capped at 123 bytes)."""
    with contextlib.suppress(*_SOCKET_GONE):
        async with asyncio.timeout(_CLOSE_TIMEOUT_SECONDS):
            await socket.close(code, reason.encode()[:123].decode(errors="ignore"))


@websocket("/ws", opt={EXCLUDE_FROM_RATE_LIMIT: True})
async def stream(
    socket: WebSocket,
    hub: NamedDependency[Hub],
    catalog: NamedDependency[SeriesCatalog],
    settings: NamedDependency[Settings],
    metrics: NamedDependency[Metrics],
) -> None:
    """Live candles, funding and open interest; see kirby_api.ws.protocol."""
    await socket.accept()
    started = time.monotonic()
    closing = refusal(socket, hub, settings)
    key = getattr(socket.user, "id", None)
    if closing is None:
        log.info("ws open key=%s connections=%d", key or "-", len(hub.clients) + 1)
        closing = await Session(socket, hub, catalog, settings, metrics).run()
    if closing is not None:
        code, reason = closing
        metrics.ws_closed.labels(_CLOSE_REASONS.get(code, str(code))).inc()
        await _close(socket, code, reason)
    log.info(
        "ws closed key=%s code=%s seconds=%.1f",
        key or "-",
        closing[0] if closing else "client",
        time.monotonic() - started,
    )
