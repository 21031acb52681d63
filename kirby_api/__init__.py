"""Kirby's API: REST and WebSocket access to the realtime database (Litestar).

    create_app(settings)    the ASGI application (`kirby api serve` runs it with uvicorn)

See `kirby_api.app` for how it is assembled and docs/ARCHITECTURE.md for the design.
"""

from kirby_api.app import create_app

__all__ = ["create_app"]
