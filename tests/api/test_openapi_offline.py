"""/schema works offline: Swagger UI's assets come from the API itself, not a CDN.

The browser test resolves every host but the loopback to nothing (as on a machine without
internet) and reads Chromium's network log: every request the page makes must go to the
API's own origin, and the UI must render the Kirby spec.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from tests.api.test_pages_browser import chromium, severe_console_messages, wait_for

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
ASSETS = {
    "swagger-ui-bundle.js": "javascript",
    "swagger-ui-standalone-preset.js": "javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


async def test_the_schema_page_names_only_local_assets_and_they_answer(api) -> None:
    async with api() as client:  # auth on: the docs and their assets are public
        page = (await client.get("/schema")).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
        assert sorted(urls) == sorted(f"/schema/assets/{name}" for name in ASSETS)
        for name, media_type in ASSETS.items():
            asset = await client.get(f"/schema/assets/{name}")
            assert asset.status_code == 200, name
            assert media_type in asset.headers["content-type"], name
            assert len(asset.content) > 500, name
        assert (await client.get("/schema/assets/nope.js")).status_code == 404
        assert (await client.get("/schema/assets/../core.py")).status_code == 404


def _requested_urls(driver: Any) -> list[str]:
    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    sent = (e for e in events if e["method"] == "Network.requestWillBeSent")
    return [e["params"]["request"]["url"] for e in sent]


@pytest.fixture(scope="module")
def offline_browser():
    with chromium(OFFLINE, log_network=True) as driver:
        yield driver


async def test_swagger_ui_renders_offline_from_the_api_origin(offline_browser, served) -> None:
    driver = offline_browser
    async with served(api_auth_enabled=True) as base:
        await asyncio.to_thread(driver.get, f"http://{base}/schema")
        title = await wait_for(
            driver,
            lambda d: d.execute_script(
                "const e = document.querySelector('.swagger-ui .info .title');"
                "return e ? e.innerText : null;"
            ),
            "Swagger UI's title",
        )
        assert title.startswith("Kirby API")
        operations = driver.execute_script("return document.querySelectorAll('.opblock').length")
        assert operations > 10
        requested = _requested_urls(driver)
        assert requested, "the network log is empty"
        foreign = [u for u in requested if not u.startswith((f"http://{base}/", "data:"))]
        assert foreign == []
        assert severe_console_messages(driver) == []
