"""`/ws`: one WebSocket connection, from accept to close.

The handshake is always accepted; a refusal is a close code the client can read (browsers
cannot see an HTTP 403): 4401 no valid key, 4429 the key's connection cap, 1013 the
total cap (or Redis unreachable when the caps are shared; `kirby_api.ws.caps`). Then these
tasks run until the first ends:

- the reader takes client frames one at a time (reading also notices the client leaving),
  charges subscribe/unsubscribe and history rows to the key's rate-limit budget, applies
  them and queues the answers; a frame over `api_ws_max_message_bytes` closes 1009, an
  action over budget an `error` then 4429;
- the writer sends queued messages in order (answers, history, live rows, heartbeats);
- a watch on the queue's overflow flag closes a client that stopped keeping up (4408);
- a watch on the key ends the session at its expiry or when `KeyWatch` (one query per
  process every `api_key_cache_seconds`, at least 1 s) finds it revoked or deleted by any
  process: 4401.

Ending a connection is bounded: the client gets `_CLOSE_TIMEOUT_SECONDS` to take the close
frame and answer, then the transport is aborted (`kirby_api.ws.transport`), so a client that
stopped reading cannot keep the socket and its send buffer. The caps count the connection
until then.

Refused actions become `error` messages; the connection stays open. Nothing here catches
more than `KirbyError` (mapped to error codes by `protocol.error_code`) and the errors of
writing to a socket that is already gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple, cast

import msgspec
from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.types import WebSocketDisconnectEvent, WebSocketReceiveEvent

from kirby_api.errors import RateLimited, Unauthorized
from kirby_api.formats import encode_message
from kirby_api.keys import ApiKey
from kirby_api.observability import Metrics
from kirby_api.ratelimit import EXCLUDE_FROM_RATE_LIMIT, Limiter, caller_of
from kirby_api.series import SeriesCatalog
from kirby_api.shared_state import SharedStateUnavailable
from kirby_api.ws import protocol
from kirby_api.ws.caps import Caps, new_connection_id
from kirby_api.ws.hub import Client, Hub, subscription_keys
from kirby_api.ws.key_watch import KeyWatch
from kirby_api.ws.transport import transport_of
from kirby_core.errors import KirbyError
from kirby_core.settings import Settings

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT_SECONDS = 1.0
_GONE_POLL_SECONDS = 0.01
_HISTORY_ROWS_PER_REQUEST = 1000
_SOCKET_GONE = (WebSocketDisconnect, OSError, RuntimeError, TimeoutError)


class Close(NamedTuple):
    """Why the server ends a connection."""

    code: int
    reason: str
    label: str
    """`kirby_api_ws_closed_total{reason}`."""
    farewell: str | None = None
    """A message sent just before the close frame."""


class Session:
    def __init__(
        self,
        socket: WebSocket,
        hub: Hub,
        catalog: SeriesCatalog,
        settings: Settings,
        metrics: Metrics,
        key_watch: KeyWatch,
        limiter: Limiter,
    ) -> None:
        self._socket = socket
        self._hub = hub
        self._catalog = catalog
        self._settings = settings
        self._metrics = metrics
        self._key_watch = key_watch
        self._limiter = limiter
        self._caller = caller_of(socket.user, socket.scope.get("client"))
        self.client = Client(getattr(socket.user, "id", None), settings.api_ws_send_queue)

    async def run(self) -> Close | None:
        """Serve until the client leaves (None) or the server must close."""
        # the tasks that end the session with their result
        deciding = [asyncio.create_task(self._read())]
        if isinstance(self._socket.user, ApiKey):
            deciding.append(asyncio.create_task(self._watch_key(self._socket.user)))
        writer = asyncio.create_task(self._write())
        overflow = asyncio.create_task(self.client.overflowed.wait())
        tasks = [*deciding, writer, overflow]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._hub.update(self.client, {})  # no more live rows; still counted until gone
        for task in tasks:
            failure = None if task.cancelled() else task.exception()
            if failure is not None and not isinstance(failure, _SOCKET_GONE):
                log.error("ws connection failed error=%r", failure, exc_info=failure)
                return Close(
                    protocol.CLOSE_INTERNAL_ERROR,
                    "internal error; it has been logged",
                    "internal_error",
                )
        if overflow.done() and not overflow.cancelled():
            return Close(
                protocol.CLOSE_SLOW_CONSUMER,
                "send queue full: the client did not keep up",
                "slow_consumer",
            )
        for task in deciding:
            if task.done() and not task.cancelled() and task.exception() is None:
                return task.result()
        return None

    async def _watch_key(self, key: ApiKey) -> Close:
        with self._key_watch.watching(key) as dead:
            if key.expires_at is None:
                return Close(protocol.CLOSE_UNAUTHORIZED, await dead, "key_refused")
            until_expiry = (key.expires_at - datetime.now(UTC)).total_seconds()
            try:
                refusal = await asyncio.wait_for(dead, max(0.0, until_expiry))
            except TimeoutError:
                refusal = key.refusal(key.expires_at) or "API key expired"
            return Close(protocol.CLOSE_UNAUTHORIZED, refusal, "key_refused")

    async def _write(self) -> None:
        queue, send, sent = self.client.queue, self._socket.send, self._metrics.ws_sent
        with contextlib.suppress(*_SOCKET_GONE):
            while True:
                text = await queue.get()
                # ASGI's "bytes" is optional; litestar's TypedDict requires it
                await send({"type": "websocket.send", "text": text})  # type: ignore[arg-type]
                sent.inc()

    async def _read(self) -> Close | None:
        limit = self._settings.api_ws_max_message_bytes
        while True:
            # after the accept, ASGI sends only these two (as litestar's own receive_data says)
            event = cast(
                "WebSocketReceiveEvent | WebSocketDisconnectEvent", await self._socket.receive()
            )
            if event["type"] == "websocket.disconnect":
                return None
            raw = event.get("text")
            size = len(raw.encode()) if raw is not None else len(event.get("bytes") or b"")
            if size > limit:
                return Close(
                    protocol.CLOSE_TOO_BIG,
                    f"message of {size} bytes; the limit is {limit}",
                    "message_too_big",
                )
            closing = await self._apply(raw if raw is not None else event.get("bytes") or b"")
            if closing is not None:
                return closing

    def _send(self, message: msgspec.Struct) -> None:
        self.client.offer(None, encode_message(message).decode())

    async def _apply(self, raw: str | bytes) -> Close | None:
        """Apply one frame; a `Close` when it spent more than the key's budget."""
        action = None
        try:
            message = protocol.parse(raw)
            action = message.action
            if isinstance(message, protocol.Subscribe):
                await self._charge(1)
                await self._subscribe(message)
            elif isinstance(message, protocol.Unsubscribe):
                await self._charge(1)
                self._unsubscribe(message)
            else:
                self._send(protocol.ServerPong(datetime.now(UTC)))
        except RateLimited as exc:
            self._metrics.rate_limited.inc()
            error = protocol.Error("rate_limited", str(exc), action)
            farewell = encode_message(error).decode()
            return Close(protocol.CLOSE_RATE_LIMITED, str(exc), "rate_limited", farewell)
        except KirbyError as exc:
            code, text = protocol.error_code(exc), str(exc)
            if code == "internal_error":  # the server's own words stay in its log
                error_id = secrets.token_hex(6)
                log.error("ws action failed error_id=%s error=%r", error_id, exc, exc_info=exc)
                text = f"internal error; it has been logged with error id {error_id}"
            self._send(protocol.Error(code, text, action))
        return None

    async def _charge(self, cost: int) -> None:
        """Spend the key's rate-limit budget (shared with its REST requests)."""
        per_minute = getattr(self._socket.user, "rate_limit_per_minute", None)
        await self._limiter.check(self._caller, per_minute, cost)

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
        if message.history:
            rows = message.history * len(requested)
            await self._charge(math.ceil(rows / _HISTORY_ROWS_PER_REQUEST))
        catch_up = bool(message.history) or message.resume_from is not None
        # No await between registering and holding: no live row can slip in between.
        self._hub.update(self.client, merged)
        if catch_up:
            self.client.hold(requested)
        self._send(self._success("subscribe", ids, message.channels))
        if message.resume_from is not None:
            await self._hub.send_resume(self.client, requested, message.resume_from)
        elif message.history:
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

    def _success(self, action: str, ids: list[int], channels: Sequence[str]) -> protocol.Success:
        subscriptions = self.client.subscriptions
        return protocol.Success(
            action=action,
            message=f"{action}d {len(ids)} starlisting(s); {len(subscriptions)} subscribed",
            starlisting_ids=ids,
            channels=list(channels),
            subscriptions={str(i): sorted(c) for i, c in sorted(subscriptions.items())},
        )


async def refusal(
    socket: WebSocket, caps: Caps, connection: str, settings: Settings
) -> Close | None:
    """Why this connection may not open; None if it may (and then it is counted)."""
    if isinstance(socket.auth, Unauthorized):
        return Close(protocol.CLOSE_UNAUTHORIZED, str(socket.auth), "unauthorized")
    user = socket.user
    own = getattr(user, "max_ws_connections", None)
    key_cap = own if own is not None else settings.api_ws_max_connections_per_key
    try:
        refused = await caps.admit(connection, user.id, key_cap)
    except SharedStateUnavailable as exc:
        return Close(protocol.CLOSE_SERVER_FULL, str(exc), "shared_state_unavailable")
    if refused == "server_full":
        return Close(
            protocol.CLOSE_SERVER_FULL,
            f"server at its limit of {settings.api_ws_max_connections} connections; "
            "retry later or use another replica",
            "server_full",
        )
    if refused == "key_cap":
        return Close(
            protocol.CLOSE_TOO_MANY_CONNECTIONS,
            f"key {user.prefix}... already holds {key_cap} WebSocket connection(s), its limit",
            "key_connection_cap",
        )
    return None


async def _end(socket: WebSocket, closing: Close | None) -> None:
    """Close (when the server ends it) and make sure the socket is gone: the client has
    `_CLOSE_TIMEOUT_SECONDS` to take the close frame and answer, then it is aborted."""
    transport = transport_of(socket.scope)
    with contextlib.suppress(*_SOCKET_GONE):
        async with asyncio.timeout(_CLOSE_TIMEOUT_SECONDS):
            if closing is not None:
                if closing.farewell is not None:
                    await socket.send_text(closing.farewell)
                reason = closing.reason.encode()[:123].decode(errors="ignore")
                await socket.close(closing.code, reason)
            # the server closes the transport on the client's answer; no event tells us
            while transport is not None and not _gone(transport):  # noqa: ASYNC110
                await asyncio.sleep(_GONE_POLL_SECONDS)
    if transport is not None and not _gone(transport):
        transport.abort()
        await asyncio.sleep(0)  # the socket closes in the loop's next callbacks


def _gone(transport: asyncio.Transport) -> bool:
    return transport.is_closing() and transport.get_write_buffer_size() == 0


@websocket("/ws", opt={EXCLUDE_FROM_RATE_LIMIT: True})
async def websocket_session(
    socket: WebSocket,
    hub: NamedDependency[Hub],
    catalog: NamedDependency[SeriesCatalog],
    settings: NamedDependency[Settings],
    metrics: NamedDependency[Metrics],
    key_watch: NamedDependency[KeyWatch],
    limiter: NamedDependency[Limiter],
    caps: NamedDependency[Caps],
) -> None:
    """Live candles, funding and open interest; see kirby_api.ws.protocol."""
    await socket.accept()
    started = time.monotonic()
    connection = new_connection_id()
    # counted from here on (the local caps do not suspend before hub.connect)
    closing = await refusal(socket, caps, connection, settings)
    admitted = closing is None
    key = getattr(socket.user, "id", None)
    client = None
    try:
        if closing is None:
            log.info("ws open key=%s connections=%d", key or "-", len(hub.clients) + 1)
            session = Session(socket, hub, catalog, settings, metrics, key_watch, limiter)
            client = session.client
            hub.connect(client)
            closing = await session.run()
        if closing is not None:
            metrics.ws_closed.labels(closing.label).inc()
        await _end(socket, closing)
    finally:
        if client is not None:
            hub.disconnect(client)
        if admitted:
            await caps.release(connection, key)
    log.info(
        "ws closed key=%s code=%s seconds=%.1f",
        key or "-",
        closing.code if closing else "client",
        time.monotonic() - started,
    )
