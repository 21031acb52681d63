"""GET /status and /chart (HTML pages) and /static/* (their scripts and styles).

The pages are package files in `kirby_api/static/`, hand-written and self-contained: no
CDN, no build step, so they work offline. They are public; the data calls the chart page
makes carry the API key it reads from its own URL (`/chart?api_key=...`). The headers keep
the pages to their own origin (CSP), and keep that key out of Referer headers.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import MediaType, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from kirby_api.routes.health import PUBLIC

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@cache
def _page(name: str) -> bytes:
    return (STATIC_DIR / name).read_bytes()


def _html(name: str) -> Response[bytes]:
    return Response(_page(name), media_type=MediaType.HTML, headers=_HEADERS)


@get("/status", opt=PUBLIC, include_in_schema=False, sync_to_thread=False)
def get_status_page() -> Response[bytes]:
    """Collectors, freshness, coverage and clients, refreshed from /status.json."""
    return _html("status.html")


@get("/chart", opt=PUBLIC, include_in_schema=False, sync_to_thread=False)
def get_chart_page() -> Response[bytes]:
    """Candles of one starlisting: REST history, then live bars over /ws."""
    return _html("chart.html")


static_router = create_static_files_router(
    path="/static",
    directories=[STATIC_DIR],
    opt=PUBLIC,
    include_in_schema=False,
    cache_control=CacheControlHeader(no_cache=True),
)
