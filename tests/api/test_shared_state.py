"""API replicas sharing limits, caps and revocations through a real Redis.

Replicas are real uvicorn servers on their own ports sharing one Redis and one database
(two in this process; for the crash test one more as a `kirby api serve` subprocess that
gets SIGKILL). Without Redis each one would count alone (a 30/min key got 58 of 80 through
two workers; a WebSocket cap of 2 let 4 in).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import redis.asyncio
from click.testing import CliRunner
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kirby_api.keys import create_key
from kirby_cli.api import apikey
from kirby_core.settings import Settings
from tests.api.conftest import bearer
from tests.redis_server import RedisServer, free_port

WAIT = 20.0
"""Longest a test waits for something that must happen (then it fails)."""


def replicas(served, redis: RedisServer, count: int = 2, **overrides):
    """`count` replicas with authentication on, sharing `redis`."""

    @asynccontextmanager
    async def start() -> AsyncIterator[list[str]]:
        options = {"api_auth_enabled": True, "redis_url": redis.url, **overrides}
        async with served(**options) as a, served(**options) as b:
            bases = [a, b]
            if count == 3:
                async with served(**options) as c:
                    yield [*bases, c]
            else:
                yield bases

    return start()


async def _ws(base: str, token: str) -> ClientConnection:
    return await connect(f"ws://{base}/ws?api_key={token}", compression=None, open_timeout=WAIT)


async def _closed_with(socket: ClientConnection) -> int | None:
    """The close code the server ends `socket` with."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(WAIT):
            while True:
                await socket.recv()
    return closed.value.rcvd.code if closed.value.rcvd else None


async def _pong(socket: ClientConnection) -> str:
    await socket.send(json.dumps({"action": "ping"}))
    async with asyncio.timeout(WAIT):
        while True:
            message = json.loads(await socket.recv())
            if message["type"] == "pong":
                return "pong"


async def test_a_keys_budget_holds_across_replicas(served, conn, redis_server) -> None:
    _, token = await create_key(conn, "thirty a minute", rate_limit_per_minute=30)
    async with replicas(served, redis_server) as bases, httpx.AsyncClient() as http:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(
                http.get(f"http://{bases[i % 2]}/starlistings", headers=bearer(token))
                for i in range(80)
            )
        )
        elapsed = time.monotonic() - started
    codes = Counter(response.status_code for response in responses)
    odd = [r.text for r in responses if r.status_code not in (200, 429)][:3]
    assert set(codes) == {200, 429}, (codes, elapsed, odd)
    # the budget refills one request every 2 s: a slow run may earn one more per 2 s
    assert 30 <= codes[200] <= 30 + int(elapsed // 2)
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["RateLimit-Limit"] == "30"
    assert refused.headers["Retry-After"] in {"1", "2"}
    assert refused.json()["error"] == "rate_limited"
    # both replicas answered (which one spent the budget depends on who got there first)
    assert len({r.url.netloc for r in responses}) == 2


async def test_failed_auth_budget_holds_across_replicas(served, redis_server) -> None:
    async with (
        replicas(served, redis_server, api_auth_failures_per_minute=4) as bases,
        httpx.AsyncClient() as http,
    ):
        codes = [
            (
                await http.get(f"http://{bases[i % 2]}/starlistings", headers=bearer("nope"))
            ).status_code
            for i in range(8)
        ]
    assert codes == [401] * 4 + [429] * 4


async def test_a_websocket_cap_holds_across_replicas(served, conn, redis_server) -> None:
    _, token = await create_key(conn, "two sockets", max_ws_connections=2)
    async with replicas(served, redis_server) as (a, b):
        first, second = await _ws(a, token), await _ws(b, token)
        assert await _pong(first) == await _pong(second) == "pong"
        for base in (a, b):
            refused = await _ws(base, token)
            assert await _closed_with(refused) == 4429
        await first.close()
        # released on a: a third may now open, on b
        deadline = time.monotonic() + WAIT
        while True:
            again = await _ws(b, token)
            try:
                assert await _pong(again) == "pong"
                break
            except ConnectionClosed:
                assert time.monotonic() < deadline, "the closed socket's slot never came back"
        await again.close()
        await second.close()


async def test_a_revocation_on_one_replica_closes_the_keys_sockets_on_the_others(
    served,
    conn,
    redis_server,
) -> None:
    _, admin = await create_key(conn, "admin", admin=True)
    key, token = await create_key(conn, "soon revoked")
    # the periodic re-read is an hour away: only the announcement can close it in time
    async with (
        replicas(served, redis_server, count=3, api_key_cache_seconds=3600) as (a, b, c),
        httpx.AsyncClient() as http,
    ):
        on_b, on_c = await _ws(b, token), await _ws(c, token)
        assert await _pong(on_b) == await _pong(on_c) == "pong"
        # b has verified the key: cached for an hour, unless the revocation drops it
        assert (
            await http.get(f"http://{b}/starlistings", headers=bearer(token))
        ).status_code == 200
        revoked = await http.delete(f"http://{a}/admin/api-keys/{key.id}", headers=bearer(admin))
        assert revoked.status_code == 200
        assert await _closed_with(on_b) == 4401
        assert await _closed_with(on_c) == 4401
        deadline = time.monotonic() + WAIT
        while (
            await http.get(f"http://{b}/starlistings", headers=bearer(token))
        ).status_code != 401:
            assert time.monotonic() < deadline, "replica b kept trusting the revoked key"
            await asyncio.sleep(0.05)


async def test_kirby_apikey_revoke_reaches_every_replica(
    served, conn, redis_server, settings: Settings
) -> None:
    key, token = await create_key(conn, "revoked from the shell")
    async with replicas(served, redis_server, api_key_cache_seconds=3600) as (a, b):
        sockets = [await _ws(a, token), await _ws(b, token)]
        for socket in sockets:
            assert await _pong(socket) == "pong"
        shell = settings.model_copy(update={"redis_url": redis_server.url})
        result = await asyncio.to_thread(
            CliRunner().invoke, apikey, ["revoke", str(key.id)], obj=shell
        )
        assert result.exit_code == 0, result.output
        for socket in sockets:
            assert await _closed_with(socket) == 4401
        # Redis gone: the revocation is still stored, and the shell says who will notice
        redis_server.stop()
        other, _ = await create_key(conn, "revoked while Redis is down")
        result = await asyncio.to_thread(
            CliRunner().invoke, apikey, ["revoke", str(other.id)], obj=shell
        )
        assert result.exit_code == 0
        assert "revoked" in result.stdout
        assert "Redis (KIRBY_REDIS_URL) is unreachable" in result.stderr
        assert "Traceback" not in result.output


async def test_a_killed_replica_frees_its_websocket_slots(
    served,
    conn,
    redis_server,
    settings: Settings,
) -> None:
    key, token = await create_key(conn, "two sockets", max_ws_connections=2)
    port = free_port()
    env = {
        **os.environ,
        "KIRBY_DATABASE_URL": settings.database_url or "",
        "KIRBY_TRAINING_DATABASE_URL": settings.training_database_url or "",
        "KIRBY_HOME": str(settings.home),
        "KIRBY_REDIS_URL": redis_server.url,
        "KIRBY_API_WS_LEASE_SECONDS": "1",
        "KIRBY_API_CATALOG_REFRESH_SECONDS": "3600",
    }
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from kirby_cli.main import cli; cli()",
        *("api", "serve", "--port", str(port)),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with (
            replicas(served, redis_server, api_ws_lease_seconds=1) as (a, _),
            httpx.AsyncClient() as http,
        ):
            deadline = time.monotonic() + 60
            while True:  # until the subprocess answers
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/health")).status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                assert doomed.returncode is None, "kirby api serve exited"
                assert time.monotonic() < deadline, "kirby api serve never answered"
                await asyncio.sleep(0.1)
            held = [await _ws(f"127.0.0.1:{port}", token) for _ in range(2)]
            for socket in held:
                assert await _pong(socket) == "pong"
            # while alive, the replica renews its leases (each third of the lease time)
            leases = redis.asyncio.Redis.from_url(redis_server.url)
            first = dict(await leases.zrange(f"kirby:ws:key:{key.id}", 0, -1, withscores=True))
            assert len(first) == 2
            deadline = time.monotonic() + WAIT
            while True:
                renewed = await leases.zrange(f"kirby:ws:key:{key.id}", 0, -1, withscores=True)
                if all(score > first[member] for member, score in renewed):
                    break
                assert time.monotonic() < deadline, "the leases were never renewed"
                await asyncio.sleep(0.05)
            await leases.aclose()
            assert await _closed_with(await _ws(a, token)) == 4429
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
            # no replica released them: their leases run out (1 s) and a gets the slots
            deadline = time.monotonic() + WAIT
            admitted = []
            while len(admitted) < 2:
                socket = await _ws(a, token)
                try:
                    await _pong(socket)
                    admitted.append(socket)
                except ConnectionClosed:
                    assert time.monotonic() < deadline, "the killed replica's slots stayed"
                    await asyncio.sleep(0.2)
            assert await _closed_with(await _ws(a, token)) == 4429
            for socket in admitted:
                await socket.close()
    finally:
        if doomed.returncode is None:
            doomed.kill()
        await doomed.wait()


async def test_without_redis_limited_routes_answer_503_and_recover(
    served,
    conn,
    redis_server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    _, token = await create_key(conn, "user")
    async with replicas(served, redis_server) as (a, _), httpx.AsyncClient() as http:
        assert (
            await http.get(f"http://{a}/starlistings", headers=bearer(token))
        ).status_code == 200
        redis_server.stop()
        for _ in range(3):
            down = await http.get(f"http://{a}/starlistings", headers=bearer(token))
            assert down.status_code == 503
            assert down.headers["Retry-After"] == "5"
            assert down.json() == {
                "status": 503,
                "error": "unavailable",
                "message": "the rate limit is shared through Redis, which is unreachable; "
                "retry later",
            }
        # no key at all: the failed-auth budget is in Redis too
        assert (await http.get(f"http://{a}/starlistings")).status_code == 503
        socket = await _ws(a, token)
        assert await _closed_with(socket) == 1013
        # health stays up (not rate-limited)
        assert (await http.get(f"http://{a}/health")).status_code < 500
        redis_server.start()
        deadline = time.monotonic() + WAIT
        while (
            await http.get(f"http://{a}/starlistings", headers=bearer(token))
        ).status_code != 200:
            assert time.monotonic() < deadline, "the API never used Redis again"
            await asyncio.sleep(0.05)
    warnings = [r.getMessage() for r in caplog.records if r.name == "kirby_api.shared_state"]
    down_lines = [m for m in warnings if m.startswith("redis unreachable")]
    # once per replica and outage (two replicas in this process), never a traceback
    assert 1 <= len(down_lines) <= 2
    assert any(m == "redis reachable again" for m in warnings)
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("kirby_api"))
    assert redis_server.url not in caplog.text
