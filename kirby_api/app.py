"""`create_app()`: the Litestar application, assembled from its parts.

Routes (REST under /, admin under /admin, the WebSocket at /ws, the /status and /chart
pages with their /static files), the one error mapping, typed dependencies (each handler
names the services it needs), metrics + access log around everything, then middleware:
API-key authentication, per-key rate limits. OpenAPI is served at /schema (Swagger UI) and
/schema/openapi.json. Settings are built once here (or passed in by the CLI and tests);
nothing happens at import time.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from kirby_api.auth import ApiKeyMiddleware
from kirby_api.database import RequestDeadline
from kirby_api.errors import EXCEPTION_HANDLERS
from kirby_api.formats import MEDIA_TYPES
from kirby_api.observability import observe
from kirby_api.ratelimit import RateLimitMiddleware
from kirby_api.request_checks import check_request
from kirby_api.routes.admin import admin_router
from kirby_api.routes.coverage import (
    get_candle_coverage,
    get_pair_coverage,
)
from kirby_api.routes.health import get_health, get_metrics
from kirby_api.routes.html import get_chart_page, get_status_page, static_router
from kirby_api.routes.market_data import (
    get_books,
    get_candles,
    get_funding,
    get_open_interest,
    get_trades,
)
from kirby_api.routes.schema import swagger_assets_router, swagger_plugin
from kirby_api.routes.starlistings import get_starlisting, list_starlistings
from kirby_api.routes.status import get_status
from kirby_api.runtime import Runtime
from kirby_api.status import StatusBoard
from kirby_api.ws.handler import websocket_session
from kirby_api.ws.transport import TransportMiddleware
from kirby_core.db.urls import resolve
from kirby_core.settings import Settings

PUBLIC_PREFIXES = ("/schema",)
"""Open without a key and never rate-limited (besides the routes marked so)."""

DESCRIPTION = """
Candles, funding rates and open interest from Kirby's realtime database.

**Authentication**: `Authorization: Bearer <key>` or `X-API-Key: <key>` (WebSocket: also
`?api_key=<key>`). /health, /metrics, /status, /status.json and /schema need no key.

**Pages**: /status (collectors, freshness, coverage, clients; refreshed live) and
/chart?api_key=<key> (a starlisting's candles, live over /ws).

**Errors** share one body: `{"status", "error", "message", "parameter"?, "allowed"?}`.

**Rate limits**: per key, with `RateLimit-*` headers; requests without a valid key, per
client address; 429 comes with `Retry-After`. Replicas sharing Redis share the limits and
WebSocket caps; while Redis is unreachable, limited routes answer 503 with `Retry-After`.
A 401 carries `WWW-Authenticate: Bearer`.

**WebSocket** `/ws`: send `{"action": "subscribe", "starlisting_ids": [1], "history": 100,
"channels": ["candles", "funding", "open_interest"]}`, `{"action": "unsubscribe", ...}` or
`{"action": "ping"}`. The server sends `success`, `error`, `historical`, `candle`,
`funding`, `open_interest`, `resume_unavailable`, `ping` and `pong` messages. Live rows
(and heartbeat pings) carry an `event_id`; after a reconnect (to any replica) subscribe
with `"resume_from": <the newest event_id received>` to get every update missed since,
then live, with no gap and no duplicate, within `KIRBY_API_WS_RESUME_SECONDS` (older:
`resume_unavailable`, re-read the gap over REST). Actions spend the key's rate limit
(subscribe/unsubscribe 1, history 1 per started 1000 rows). Close codes: 4401 no valid (or a
revoked, expired) key, 4429 the key's connection cap or rate limit, 1013 server full, 4408 too
slow a reader, 1009 message too big.
"""


def _provider(value: Any) -> Provide:
    return Provide(lambda: value, use_cache=True, sync_to_thread=False)


def _openapi(settings: Settings) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Kirby API",
        version=version("kirby"),
        description=DESCRIPTION.strip(),
        path="/schema",
        render_plugins=[swagger_plugin(), JsonRenderPlugin()],
        components=Components(
            security_schemes={
                "BearerKey": SecurityScheme(type="http", scheme="bearer"),
                "HeaderKey": SecurityScheme(
                    type="apiKey", name="X-API-Key", security_scheme_in="header"
                ),
            }
        ),
        security=[{"BearerKey": []}, {"HeaderKey": []}] if settings.api_auth_enabled else None,
    )


def _document_bulk_formats(app: Litestar) -> None:
    """The data routes also answer format=csv|parquet: say so in their 200 response."""
    schema = app.openapi_schema
    for path, item in (schema.paths or {}).items():
        if item.get is None or not path.startswith(
            ("/candles/", "/funding/", "/open-interest/", "/trades/", "/books/")
        ):
            continue
        ok = (item.get.responses or {})["200"]
        assert isinstance(ok, OpenAPIResponse) and ok.content is not None  # a data route's 200
        ok.content[MEDIA_TYPES["csv"]] = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
        ok.content[MEDIA_TYPES["parquet"]] = OpenAPIMediaType(
            schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    runtime = Runtime(settings, resolve(settings).realtime)
    services = {
        "settings": settings,
        "database": runtime.database,
        "catalog": runtime.catalog,
        "market": runtime.market,
        "pages": runtime.pages,
        "hub": runtime.hub,
        "listener": runtime.listener,
        "metrics": runtime.metrics,
        "verifier": runtime.verifier,
        "limiter": runtime.limiter,
        "key_watch": runtime.key_watch,
        "caps": runtime.caps,
        "status_board": StatusBoard(
            runtime.database,
            runtime.market,
            runtime.catalog,
            runtime.hub,
            runtime.listener,
            runtime.metrics,
            settings.api_stream_stale_seconds,
        ),
    }
    app = Litestar(
        route_handlers=[
            get_health,
            get_metrics,
            get_status,
            get_status_page,
            get_chart_page,
            static_router,
            swagger_assets_router(),
            list_starlistings,
            get_starlisting,
            get_candles,
            get_funding,
            get_open_interest,
            get_trades,
            get_books,
            get_candle_coverage,
            get_pair_coverage,
            admin_router,
            websocket_session,
        ],
        dependencies={name: _provider(value) for name, value in services.items()},
        middleware=[
            TransportMiddleware(),
            RequestDeadline(),
            DefineMiddleware(
                ApiKeyMiddleware,
                verifier=runtime.verifier,
                usage=runtime.usage,
                failures=runtime.auth_failures,
                enabled=settings.api_auth_enabled,
                exclude=[f"^{prefix}" for prefix in PUBLIC_PREFIXES],
            ),
            RateLimitMiddleware(runtime.limiter, PUBLIC_PREFIXES),
        ],
        before_request=check_request,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[runtime.lifespan],
        openapi_config=_openapi(settings),
        logging_config=None,
    )
    app.asgi_handler = observe(app.asgi_handler, runtime.metrics)  # 404/405 measured too
    app.state.runtime = runtime
    _document_bulk_formats(app)
    return app
