"""The latest-N page cache: dropped by the series' NOTIFY, guarded against races, bounded."""

from __future__ import annotations

import asyncio

from kirby_api.latest_cache import LatestCache, Page
from tests.api.conftest import BTC_1M, candle_json, runtime, write_candles


async def test_a_notify_drops_the_cached_page_at_once(api, conn, catalog) -> None:
    sid = catalog["BTC/1m"]
    await write_candles(conn, sid, range(3))
    async with api(api_auth_enabled=False, api_latest_cache_seconds=3600) as client:
        # the cache is on only while the LISTEN connection is up
        client.blocking_portal.call(runtime(client).listener.wait_for_connection, 1)
        first = (await client.get(BTC_1M, params={"limit": 2})).json()
        assert first["data"] == [candle_json(1), candle_json(2)]
        await write_candles(conn, sid, range(3, 4))  # a backfill: no NOTIFY
        stale = (await client.get(BTC_1M, params={"limit": 2})).json()
        assert stale["data"] == first["data"]  # within the TTL, as documented
        other_limit = (await client.get(BTC_1M, params={"limit": 1})).json()
        assert other_limit["data"] == [candle_json(3)]  # another key: read fresh

        with await client.websocket_connect("/ws") as ws:
            ws.send_json({"action": "subscribe", "starlisting_ids": [sid]})
            assert ws.receive_json(timeout=10)["type"] == "success"
            await write_candles(conn, sid, range(4, 5), announce=True)
            # the fan-out runs after the invalidation, so once the row is on the socket ...
            assert ws.receive_json(timeout=10)["data"] == candle_json(4)
        fresh = (await client.get(BTC_1M, params={"limit": 2})).json()
        assert fresh["data"] == [candle_json(3), candle_json(4)]  # ... the cache is clean
        bounded = (await client.get(BTC_1M, params={"limit": 2, "end_time": "2030-01-01"})).json()
        assert bounded["data"] == fresh["data"]  # any other window is never cached


def _page(text: str) -> Page:
    return Page(text.encode(), {})


async def test_a_read_racing_an_invalidation_is_not_stored() -> None:
    cache = LatestCache(ttl_seconds=60)
    cache.enabled = True
    release = asyncio.Event()

    async def slow_read() -> Page:
        await release.wait()
        return _page("old")

    pending = asyncio.ensure_future(cache.get(("candles", 1, 10), slow_read))
    await asyncio.sleep(0)  # let the read start
    cache.invalidate("candles", [1])
    release.set()
    assert (await pending).body == b"old"  # the reader that asked gets what was read ...

    async def fresh_read() -> Page:
        return _page("new")

    assert (await cache.get(("candles", 1, 10), fresh_read)).body == b"new"  # ... nobody else


async def test_concurrent_misses_share_one_read() -> None:
    cache = LatestCache(ttl_seconds=60)
    cache.enabled = True
    reads = 0
    release = asyncio.Event()

    async def read() -> Page:
        nonlocal reads
        reads += 1
        await release.wait()
        return _page("p")

    waiters = [asyncio.ensure_future(cache.get(("candles", 1, 5), read)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert [w.body for w in await asyncio.gather(*waiters)] == [b"p"] * 5
    assert reads == 1
    assert (cache.misses, cache.hits) == (1, 4)


async def test_disabled_or_over_budget_keeps_nothing() -> None:
    reads = 0

    async def read() -> Page:
        nonlocal reads
        reads += 1
        return _page("x" * 600)

    off = LatestCache(ttl_seconds=60)  # not enabled: the LISTEN connection is not up
    await off.get(("candles", 1, 1), read)
    await off.get(("candles", 1, 1), read)
    assert reads == 2

    small = LatestCache(ttl_seconds=60, max_bytes=1000)
    small.enabled = True
    await small.get(("candles", 1, 1), read)
    await small.get(("candles", 2, 1), read)  # evicts the least recently used page
    await small.get(("candles", 2, 1), read)
    await small.get(("candles", 1, 1), read)
    assert reads == 5
