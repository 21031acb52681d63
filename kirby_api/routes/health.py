"""GET /health (for people and load balancers) and GET /metrics (Prometheus)."""

from __future__ import annotations

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kirby_api.auth import EXCLUDE_FROM_AUTH
from kirby_api.database import ConnectionPool
from kirby_api.errors import RETRY_AFTER
from kirby_api.formats import encode_message
from kirby_api.health import Health, probe
from kirby_api.market_data import MarketData
from kirby_api.observability import OUTAGES_BY_EXCHANGE, Metrics
from kirby_api.ratelimit import EXCLUDE_FROM_RATE_LIMIT
from kirby_api.series import SeriesCatalog
from kirby_api.ws.listener import ChangeListener
from kirby_core.errors import StorageError
from kirby_core.settings import Settings

PUBLIC = {EXCLUDE_FROM_AUTH: True, EXCLUDE_FROM_RATE_LIMIT: True}


@get(
    "/health",
    summary="Database, stream heartbeat and data freshness",
    description="200 while the database answers (status ok or degraded), 503 when it does "
    "not. No API key needed.",
    opt=PUBLIC,
    security=[{}],
    responses={503: ResponseSpec(Health, description="The database does not answer.")},
)
async def get_health(
    database: NamedDependency[ConnectionPool],
    market: NamedDependency[MarketData],
    catalog: NamedDependency[SeriesCatalog],
    metrics: NamedDependency[Metrics],
    listener: NamedDependency[ChangeListener],
    settings: NamedDependency[Settings],
) -> Health:
    health, _ = await probe(
        database,
        market,
        catalog,
        metrics.freshness,
        listener.connected.is_set(),
        settings.api_stream_stale_seconds,
    )
    return Response(  # type: ignore[return-value]  # the annotation is the OpenAPI body
        encode_message(health),
        media_type=MediaType.JSON,
        status_code=503 if health.status == "down" else 200,
        headers={"Retry-After": RETRY_AFTER} if health.status == "down" else None,
    )


@get(
    "/metrics",
    summary="Prometheus metrics",
    description="The API's own metrics, and the collector's and the data's as the database "
    "says at this scrape (the same probe as /health). No API key needed.",
    opt=PUBLIC,
    security=[{}],
    media_type=CONTENT_TYPE_LATEST,
)
async def get_metrics(
    database: NamedDependency[ConnectionPool],
    market: NamedDependency[MarketData],
    catalog: NamedDependency[SeriesCatalog],
    metrics: NamedDependency[Metrics],
    listener: NamedDependency[ChangeListener],
    settings: NamedDependency[Settings],
) -> bytes:
    health, heartbeats = await probe(
        database,
        market,
        catalog,
        metrics.freshness,
        listener.connected.is_set(),
        settings.api_stream_stale_seconds,
    )
    up = health.status != "down"
    try:
        outages = await database.fetch(OUTAGES_BY_EXCHANGE) if up else []
    except StorageError:  # the database went away after the probe: report it as down
        up, heartbeats, outages = False, [], []
    metrics.operations.update(
        up, heartbeats, outages, health.checked_at, health.stream.stale_after_seconds
    )
    return generate_latest(metrics.registry)
