"""Three `kirby api serve` replicas behind nginx (TLS), sharing one Redis and one database,
behave as one API: a key's rate limit, the failed-auth budget of a client address and a
key's WebSocket cap hold across them, a revocation on one closes the key everywhere, and a
replica SIGKILLed under load costs no more than its in-flight requests.

Without Redis each replica would count alone (tests/api/test_shared_state.py has the
numbers). Which replica served what comes from each replica's own log: the access log
(`path=... client=...`) and the WebSocket lines (`ws open key=...`, `ws closed key=... code=...`).
nginx shares its round robin between workers (the template's `zone`), so consecutive
requests visit the replicas in turn; the assertions on spread check that rather than
assume it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable

import asyncpg
import httpx
import pytest
import redis.asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kirby_api.keys import create_key
from kirby_api.shared_state import REDIS_KEY_PREFIX
from tests.api.conftest import bearer
from tests.edge.conftest import Edge, Replica
from tests.redis_server import RedisServer

CLIENT_ADDRESS = "127.0.0.3"
WAIT = 30.0
"""Longest a test waits for something that must happen (then it fails)."""
LATEST = "/candles/hyperliquid/BTC/USD/perps/1m?limit=100"


def _one_api(edge_factory: Callable[..., Edge], redis: RedisServer, **env: str) -> Edge:
    """Three replicas with authentication on, sharing `redis`."""
    shared = {"KIRBY_API_AUTH_ENABLED": "true", "KIRBY_REDIS_URL": redis.url}
    return edge_factory(replicas=3, env={**shared, **env})


def _client(edge: Edge, address: str = CLIENT_ADDRESS, connections: int = 10) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(
        local_address=address,
        verify=edge.ssl_context(),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )
    return httpx.AsyncClient(transport=transport, timeout=WAIT)


async def _ws(edge: Edge, token: str) -> ClientConnection:
    url = edge.https.replace("https://", "wss://") + f"/ws?api_key={token}"
    return await connect(url, ssl=edge.ssl_context(), compression=None, open_timeout=WAIT)


async def _pong(socket: ClientConnection) -> str:
    await socket.send(json.dumps({"action": "ping"}))
    async with asyncio.timeout(WAIT):
        while True:
            message = json.loads(await socket.recv())
            if message["type"] == "pong":
                return "pong"


async def _closed_with(socket: ClientConnection) -> int | None:
    """The close code `socket` ends with (None: no close frame, the connection dropped)."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(WAIT):
            while True:
                await socket.recv()
    return closed.value.rcvd.code if closed.value.rcvd else None


def _ws_lines(replica: Replica, line: str) -> int:
    """How many of `replica`'s log lines contain `line` ("ws open key=7 ", ...)."""
    return sum(line in text for text in replica.log.read_text().splitlines())


async def _logged(edge: Edge, count: Callable[[Replica], int], total: int) -> list[int]:
    """`count` of each replica once they add up to `total` (a replica logs a request just
    after answering it)."""
    deadline = time.monotonic() + WAIT
    while sum(counts := [count(replica) for replica in edge.replicas]) != total:
        assert time.monotonic() < deadline, f"logged {counts}, not {total} in all"
        await asyncio.sleep(0.05)
    return counts


async def test_a_keys_rate_limit_holds_across_replicas(
    redis_server: RedisServer, conn: asyncpg.Connection, edge_factory: Callable[..., Edge]
) -> None:
    _, token = await create_key(conn, "thirty a minute", rate_limit_per_minute=30)
    edge = _one_api(edge_factory, redis_server)
    requests = 60
    async with _client(edge, connections=requests) as http:
        # TLS connections first (/health is not limited), so the burst is not spread over
        # handshakes (the budget refills one request every 2 s). Counted per process, each
        # replica would let its 20 through.
        await asyncio.gather(*(http.get(f"{edge.https}/health") for _ in range(requests)))
        started = time.monotonic()
        responses = await asyncio.gather(
            *(
                http.get(f"{edge.https}/starlistings", headers=bearer(token))
                for _ in range(requests)
            )
        )
        elapsed = time.monotonic() - started
    codes = Counter(response.status_code for response in responses)
    print(f"a 30/min key through nginx: {dict(codes)} of {requests} in {elapsed:.2f} s")
    assert set(codes) == {200, 429}, codes
    assert 30 <= codes[200] <= 30 + int(elapsed // 2), (codes, elapsed)
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.headers["Retry-After"] in {"1", "2"}
        assert refused.headers["RateLimit-Limit"] == "30"
        assert refused.json()["error"] == "rate_limited"
    served = await _logged(edge, lambda r: len(r.clients_of("/starlistings")), requests)
    assert min(served) > 0, served  # every replica spent from the one budget


async def test_the_failed_auth_budget_of_a_client_holds_across_replicas(
    redis_server: RedisServer, edge_factory: Callable[..., Edge]
) -> None:
    edge = _one_api(edge_factory, redis_server, KIRBY_API_AUTH_FAILURES_PER_MINUTE="4")
    url = f"{edge.https}/starlistings"
    async with _client(edge) as first:
        responses = [await first.get(url, headers=bearer("not-a-key")) for _ in range(9)]
    assert [r.status_code for r in responses] == [401] * 4 + [429] * 5
    assert all(r.headers["Retry-After"].isdigit() for r in responses[4:])
    # every replica answered it, none with a budget of its own, all by its own address
    served = await _logged(edge, lambda r: len(r.clients_of("/starlistings")), 9)
    assert min(served) > 0, served
    assert {c for r in edge.replicas for c in r.clients_of("/starlistings")} == {CLIENT_ADDRESS}
    async with _client(edge, address="127.0.0.4") as second:
        assert (await second.get(url, headers=bearer("not-a-key"))).status_code == 401


async def test_a_keys_websocket_cap_holds_across_replicas_over_wss(
    redis_server: RedisServer, conn: asyncpg.Connection, edge_factory: Callable[..., Edge]
) -> None:
    key, token = await create_key(conn, "two sockets", max_ws_connections=2)
    edge = _one_api(edge_factory, redis_server)
    opened, refused = f"ws open key={key.id} ", f"ws closed key={key.id} code=4429 "
    held = [await _ws(edge, token) for _ in range(2)]
    for socket in held:
        assert await _pong(socket) == "pong"
    attempts = 6
    for _ in range(attempts):
        assert await _closed_with(await _ws(edge, token)) == 4429
    refusals = await _logged(edge, lambda r: _ws_lines(r, refused), attempts)
    holding = await _logged(edge, lambda r: _ws_lines(r, opened), 2)
    # every replica refused, also one holding none of the key's sockets itself
    assert min(refusals) > 0, (holding, refusals)
    await held[0].close()
    # its slot comes back (the replica releases it once the socket is gone), for any replica
    deadline = time.monotonic() + WAIT
    while True:
        again = await _ws(edge, token)
        try:
            assert await _pong(again) == "pong"
            break
        except ConnectionClosed:
            assert time.monotonic() < deadline, "the closed socket's slot never came back"
    assert await _closed_with(await _ws(edge, token)) == 4429
    for socket in (again, held[1]):
        await socket.close()


async def test_a_revocation_on_one_replica_closes_the_key_on_every_replica(
    redis_server: RedisServer, conn: asyncpg.Connection, edge_factory: Callable[..., Edge]
) -> None:
    _, admin = await create_key(conn, "admin", admin=True)
    key, token = await create_key(conn, "soon revoked")
    # Verifications are cached for an hour and the periodic re-read is an hour away: only
    # the revocation published through Redis can reach the other replicas in time.
    edge = _one_api(edge_factory, redis_server, KIRBY_API_KEY_CACHE_SECONDS="3600")
    sockets = [await _ws(edge, token) for _ in range(3)]
    for socket in sockets:
        assert await _pong(socket) == "pong"
    # one on each replica
    assert await _logged(edge, lambda r: _ws_lines(r, f"ws open key={key.id} "), 3) == [1, 1, 1]
    direct = [f"http://127.0.0.1:{replica.port}/starlistings" for replica in edge.replicas]
    async with httpx.AsyncClient(timeout=WAIT) as http:
        for url in direct:  # each replica has verified the key (and caches it)
            assert (await http.get(url, headers=bearer(token))).status_code == 200
        async with _client(edge) as through_nginx:
            revoked = await through_nginx.delete(
                f"{edge.https}/admin/api-keys/{key.id}", headers=bearer(admin)
            )
        assert revoked.status_code == 200, revoked.text
        for socket in sockets:
            assert await _closed_with(socket) == 4401
        # a replica forgets the key before closing its sockets: refused at once, everywhere
        for url in direct:
            assert (await http.get(url, headers=bearer(token))).status_code == 401
    await _logged(edge, lambda r: len(r.clients_of(f"/admin/api-keys/{key.id}")), 1)


async def test_a_replica_killed_mid_load_costs_only_its_in_flight_requests(
    redis_server: RedisServer, conn: asyncpg.Connection, edge_factory: Callable[..., Edge]
) -> None:
    """Eight clients loop authenticated GETs (a Redis rate-limit decision each) through nginx
    while three of a key's WebSockets are open, one per replica; one replica is SIGKILLed once
    requests flow. At most the requests in flight on it fail (nginx passes a GET that failed
    there to the next replica); its socket drops, and its lease, never released, frees the
    key's slot once it runs out (KIRBY_API_WS_LEASE_SECONDS=2)."""
    key, token = await create_key(
        conn, "under load", rate_limit_per_minute=100_000, max_ws_connections=3
    )
    edge = _one_api(edge_factory, redis_server, KIRBY_API_WS_LEASE_SECONDS="2")
    doomed, *survivors = edge.replicas
    sockets = [await _ws(edge, token) for _ in range(3)]
    for socket in sockets:
        assert await _pong(socket) == "pong"
    assert await _logged(edge, lambda r: _ws_lines(r, f"ws open key={key.id} "), 3) == [1, 1, 1]

    clients, per_client = 8, 60
    outcomes: Counter[str] = Counter()
    flowing = asyncio.Barrier(clients + 1)

    async def loop() -> None:
        async with _client(edge, connections=1) as http:
            for n in range(per_client):
                if n == 5:
                    await flowing.wait()
                try:
                    status = (
                        await http.get(f"{edge.https}{LATEST}", headers=bearer(token))
                    ).status_code
                    outcomes["ok" if status == 200 else f"status {status}"] += 1
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1

    async with asyncio.TaskGroup() as load:
        for _ in range(clients):
            load.create_task(loop())
        async with asyncio.timeout(WAIT * 2):
            await flowing.wait()
        await asyncio.to_thread(doomed.kill)
    failed = sum(count for outcome, count in outcomes.items() if outcome != "ok")
    print(f"outcomes with a replica killed mid-load (Redis on): {dict(outcomes)}")
    assert outcomes["ok"] + failed == clients * per_client
    assert failed <= clients, outcomes
    assert len(doomed.clients_of("/candles/hyperliquid/BTC/USD/perps/1m")) > 0
    assert all(replica.process.poll() is None for replica in survivors)

    # the killed replica's socket dropped; the others still answer
    alive = []
    for socket in sockets:
        try:
            alive.append(await _pong(socket))
        except ConnectionClosed:
            alive.append("closed")
    assert sorted(alive) == ["closed", "pong", "pong"]
    # its lease stays in Redis (nobody released it) until it runs out
    leases = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        assert await leases.zcard(f"{REDIS_KEY_PREFIX}ws:key:{key.id}") == 3
    finally:
        await leases.aclose()
    deadline = time.monotonic() + WAIT
    while True:
        socket = await _ws(edge, token)
        try:
            assert await _pong(socket) == "pong"
            break
        except ConnectionClosed:
            assert time.monotonic() < deadline, "the killed replica's slot never came back"
            await asyncio.sleep(0.2)
    assert await _closed_with(await _ws(edge, token)) == 4429  # the cap holds: 3 again
    for open_socket in (socket, *(s for s, a in zip(sockets, alive, strict=True) if a == "pong")):
        await open_socket.close()
