"""Checks every HTTP request passes before its handler runs (the app's `before_request`).

- A path with a NUL byte names nothing: 404 (static files once answered it with 500,
  because the file system refuses such a name).
- A query parameter given twice is refused with 400 naming it: Kirby's parameters take
  one value each, and which of two a framework keeps is a guess the client should not make.
"""

from __future__ import annotations

from litestar import Request

from kirby_api.errors import InvalidParameter, shorten
from kirby_core.errors import NotFound


def check_request(request: Request) -> None:
    if "\x00" in request.scope["path"]:
        raise NotFound("no route or file has a NUL byte in its path")
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            shown = shorten(name)
            raise InvalidParameter(
                shown, f"query parameter {shown!r} is given more than once", "one value"
            )
        seen.add(name)
