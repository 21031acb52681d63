"""The OpenAPI UI at /schema, every asset from the API's own origin (works offline).

Litestar's Swagger plugin loads Swagger UI's scripts, stylesheet and favicon from CDNs, so
/schema was a blank page without internet. The `swagger-ui-py` package ships Swagger UI's
dist files; they are served at /schema/assets/ (public, like all of /schema) and the page
points there. The package is only read for its files, never imported.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

ASSETS_PATH = "/schema/assets"


def _swagger_ui_dist() -> Path:
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed; it ships the /schema page's assets")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def swagger_plugin() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        path="/",
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )


def swagger_assets_router() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[_swagger_ui_dist()],
        include_in_schema=False,
        # the files change only with the package version
        cache_control=CacheControlHeader(max_age=86400),
    )
