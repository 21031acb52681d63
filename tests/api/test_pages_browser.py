"""/status and /chart in a real headless Chromium, against the real app under uvicorn.

The app runs on this test's event loop (as in test_ws_socket.py); Selenium's blocking calls
run in a thread, so the server keeps serving while the test waits for the DOM. Rows are
written through the collector's heartbeat writer and the bulk writer (+ NOTIFY), as the
stream writes them, and the pages must show them without a reload.

Without Chromium, chromedriver or selenium these tests skip, unless KIRBY_REQUIRE_BROWSER=1
(read at import: the test harness clears KIRBY_* variables before each test).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kirby_api.keys import create_key
from kirby_core.db import notify
from kirby_core.db.writer import upsert_candles
from kirby_core.models import CandleRow
from tests.api.conftest import T0, write_candles
from tests.api.test_pages import BTC_1M, seed_heartbeat, seed_outage_yesterday

REQUIRE_BROWSER = os.environ.get("KIRBY_REQUIRE_BROWSER") == "1"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--window-size=1400,1100",
)
WAIT_SECONDS = 30
UP_RGB = (22, 163, 74)  # chart.js's UP colour


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"KIRBY_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(f"{reason} (apt-get install chromium chromium-driver; pip install selenium)")


@contextmanager
def chromium(*extra_flags: str, log_network: bool = False) -> Iterator[Any]:
    """A headless Chromium driver; `log_network`: its performance log records every request."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        _unavailable("chromium or chromedriver is not on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, *extra_flags):
        options.add_argument(flag)
    logs = {"browser": "ALL"} | ({"performance": "ALL"} if log_network else {})
    options.set_capability("goog:loggingPrefs", logs)
    # An explicit driver path: Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


async def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Poll `condition(driver)` (in a thread) until it is truthy; fail naming `what`."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2)
    try:
        return await asyncio.to_thread(wait.until, condition)
    except TimeoutException:
        pytest.fail(f"the page never showed {what}; body: {_text(driver, 'body')[:2000]}")


def _text(driver: Any, selector: str) -> str | None:
    """The element's rendered text, read in one script: the pages replace their rows on every
    refresh, so a found element handle can go stale before its text is read."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
        selector,
    )


def shows(selector: str, expected: str) -> Callable[[Any], bool]:
    return lambda driver: _text(driver, selector) == expected


def contains(selector: str, part: str) -> Callable[[Any], bool]:
    return lambda driver: part in (_text(driver, selector) or "")


def severe_console_messages(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


async def screenshot(driver: Any, directory: Path, name: str) -> Path:
    path = directory / f"{name}.png"
    assert await asyncio.to_thread(driver.save_screenshot, str(path))
    return path


async def test_status_page_shows_collectors_and_series_and_updates_live(
    browser, served, conn, catalog, tmp_path
) -> None:
    btc, sol = catalog["BTC/1m"], catalog["SOL/1m"]
    await seed_heartbeat(conn, messages=1234)
    await write_candles(conn, btc, range(10))
    await seed_outage_yesterday(conn, btc)
    collector = 'tr[data-collector="collector-a"]'
    btc_row = f'#freshness tr[data-series="candles {BTC_1M}"]'
    sol_row = '#freshness tr[data-series="candles hyperliquid/SOL/USD/perps/1m"]'
    async with served(api_auth_enabled=True) as base:
        await asyncio.to_thread(browser.get, f"http://{base}/status")
        await wait_for(browser, shows(f"{collector} td.messages", "1,234"), "the collector")
        assert _text(browser, f"{collector} td:nth-child(2)") == socket.gethostname()
        assert _text(browser, f"{btc_row} .latest") == "2024-05-01 00:09:00"
        assert _text(browser, f"{sol_row} .latest") == "—"
        coverage = f'#coverage tr[data-series="candles {BTC_1M}"]'
        assert "outage 45 min" in (_text(browser, coverage) or "")
        assert _text(browser, "#ws-connections") == "0"
        assert severe_console_messages(browser) == []
        await screenshot(browser, tmp_path, "status")

        await seed_heartbeat(conn, messages=98765)
        await write_candles(conn, sol, range(3), start=T0 + timedelta(hours=1))
        await wait_for(browser, shows(f"{collector} td.messages", "98,765"), "the new heartbeat")
        await wait_for(browser, shows(f"{sol_row} .latest", "2024-05-01 01:02:00"), "SOL's rows")
        browser.execute_script("document.getElementById('coverage').scrollIntoView()")
        await screenshot(browser, tmp_path, "status-updated")


def _up_pixels(driver: Any) -> int:
    """Pixels of the chart canvas painted exactly in the up-candle colour."""
    return driver.execute_script(
        """
        const c = document.getElementById("chart");
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i] === arguments[0] && d[i + 1] === arguments[1] && d[i + 2] === arguments[2])
            n++;
        }
        return n;
        """,
        *UP_RGB,
    )


async def test_chart_draws_history_then_live_candles(
    browser, served, conn, catalog, tmp_path
) -> None:
    sid = catalog["BTC/1m"]
    token = (await create_key(conn, "chart viewer"))[1]
    await write_candles(conn, sid, range(30))
    async with served(api_auth_enabled=True) as base:
        await asyncio.to_thread(browser.get, f"http://{base}/chart")
        await wait_for(browser, contains("#error", "missing API key"), "the missing key")
        browser.get_log("browser")  # reading empties it: that 401 was expected

        await asyncio.to_thread(browser.get, f"http://{base}/chart?api_key={token}")
        await wait_for(browser, shows("#live", "live"), "the live subscription")
        await wait_for(browser, shows("#bar-count", "30"), "30 bars of history")
        assert _text(browser, "#legend-series") == BTC_1M
        assert _text(browser, "#last-close") == "129.25"
        assert _text(browser, "#last-time") == "2024-05-01 00:29:00"
        assert await asyncio.to_thread(_up_pixels, browser) > 100
        assert severe_console_messages(browser) == []
        await screenshot(browser, tmp_path, "chart")

        await write_candles(conn, sid, range(30, 31), announce=True)  # a new bar
        await wait_for(browser, shows("#bar-count", "31"), "the appended live bar")
        assert _text(browser, "#last-close") == "130.25"

        moved = CandleRow(
            sid,
            T0 + timedelta(minutes=30),
            Decimal(130),
            Decimal("132.50"),
            Decimal(99),
            Decimal("132.00"),
            Decimal(1),
            40,
        )
        async with conn.transaction():  # the open bar changes, as the stream updates it
            await upsert_candles(conn, [moved])
            await notify.notify(conn, "candles", {sid: [moved.time]})
        await wait_for(browser, shows("#last-close", "132.00"), "the updated last bar")
        assert _text(browser, "#bar-count") == "31"
        assert _text(browser, "#last-high") == "132.50"
        await screenshot(browser, tmp_path, "chart-live")
