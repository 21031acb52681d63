"""The socket under a WebSocket connection, for the one thing ASGI cannot do: abort it.

A WebSocket close is a handshake: the server queues its close frame and waits for the
client's answer. A client that stopped reading never answers and never takes the close
frame, so the ASGI server keeps its socket, and every byte queued behind the frame, until
the client leaves; the TCP connection outlives the handler. ASGI has no message for
"drop this connection now", so this middleware finds the server's transport and puts it in
the scope as the `kirby.transport` extension (an `asyncio.Transport`: `abort()`,
`is_closing()`, `get_write_buffer_size()`). The WebSocket handler uses it to end a
connection within a bounded time (`kirby_api.ws.handler`).

The transport is an attribute of the protocol object whose bound methods uvicorn passes as
`receive` and `send` (all three of its WebSocket implementations); servers that do it
otherwise, and Litestar's test client, get no extension and keep their own close behaviour.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

TRANSPORT = "kirby.transport"


def transport_of(scope: Any) -> asyncio.Transport | None:
    """The connection's transport, if the server exposed it."""
    return (scope.get("extensions") or {}).get(TRANSPORT)


def _server_transport(*callables: Any) -> asyncio.Transport | None:
    for bound in callables:
        transport = getattr(getattr(bound, "__self__", None), "transport", None)
        if callable(getattr(transport, "abort", None)):
            return transport
    return None


class TransportMiddleware(ASGIMiddleware):
    """Outermost middleware: it must see the server's own `receive` and `send`."""

    scopes = (ScopeType.WEBSOCKET,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        transport = _server_transport(receive, send)
        if transport is not None:
            scope["extensions"] = {
                **(scope.get("extensions") or {}),
                TRANSPORT: transport,  # type: ignore[dict-item]  # ASGI types extensions as dicts
            }
        await next_app(scope, receive, send)
