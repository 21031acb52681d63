"""GET /status.json: what the /status page shows, as one typed document (public)."""

from __future__ import annotations

from typing import Annotated

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from kirby_api.errors import error_responses
from kirby_api.formats import encode_message
from kirby_api.routes.health import PUBLIC
from kirby_api.status import DEFAULT_STATUS_DAYS, MAX_STATUS_DAYS, Status, StatusBoard

Days = Annotated[
    int,
    QueryParameter(
        ge=1,
        le=MAX_STATUS_DAYS,
        description=f"Days of coverage, today included (1 to {MAX_STATUS_DAYS}).",
    ),
]


@get(
    "/status.json",
    summary="Collectors, freshness, coverage and WebSocket clients",
    description="What the /status page shows: the stream's collectors with their counters, "
    "per-series freshness and lag, per-day coverage of every active series over the last "
    "`days` days (as /coverage reports it) and WebSocket client counts. Shared by all "
    "callers for about a second. 503 when the database does not answer. No API key needed.",
    opt=PUBLIC,
    security=[{}],
    responses={
        **error_responses(400),
        503: ResponseSpec(Status, description="The database does not answer."),
    },
)
async def get_status(
    status_board: NamedDependency[StatusBoard], days: Days = DEFAULT_STATUS_DAYS
) -> Status:
    status = await status_board.snapshot(days)
    return Response(  # type: ignore[return-value]  # the annotation is the OpenAPI body
        encode_message(status),
        media_type=MediaType.JSON,
        status_code=503 if status.status == "down" else 200,
    )
