"""What API replicas share through Redis (`KIRBY_REDIS_URL`): rate limits, WebSocket caps,
key revocations.

- `SharedLimiter`: the GCRA budget of `kirby_api.ratelimit`, as one Lua script (EVALSHA)
  per decision. The caller's "theoretical arrival time" lives in one Redis key that expires
  once the bucket is full again; the script reads the Redis server's clock (`TIME`), so the
  replicas' clocks never matter and two replicas cannot both spend the last request. The
  decisions a process needs at the same moment travel in one pipeline (each script still
  atomic): the client library's per-call CPU, not Redis, is what limits a replica.
- `SharedCaps`: WebSocket connection caps, in total and per key, across replicas. Each open
  connection holds a lease: its id in two sorted sets (all connections, the key's
  connections) scored by the lease's expiry. Acquiring drops expired leases, counts, and
  adds, in one script; each replica renews its leases every third of
  `api_ws_lease_seconds`, so a replica that died (SIGKILL, power) frees its slots within
  that time. Renewal never re-adds a lease that expired meanwhile (it may have been
  released): after a Redis outage longer than the lease, connections still open stay
  uncounted until they close.
- revocations: revoking a key publishes its id on `REVOKED_CHANNEL`; every replica
  subscribes (`listen_revocations`) and ends the key's sockets and cached verifications at
  once. The periodic key re-check of `kirby_api.ws.key_watch` stays as the backstop for
  messages missed while a replica was disconnected (a re-subscribe re-checks every key).

While Redis is unreachable the API fails closed: a decision that needs Redis raises
`SharedStateUnavailable` (503 with Retry-After on REST, close 1013 for a new WebSocket),
logged once per outage (and once when Redis is back), never with the URL. Failing open
would hand every replica a fresh budget, which is what the limits exist to prevent.

The latest-N cache stays per process: it is a dictionary read in microseconds, kept exact
by the NOTIFY each replica receives; a Redis round trip costs more than the database read
it would save (figures in bench/README.md). Without a Redis URL none of this module runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from kirby_api.ratelimit import verdict
from kirby_core.errors import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")
_Decision = tuple[str, tuple[int, int, int], "asyncio.Future[Any]"]
"""A rate-limit decision waiting for Redis: (key, script arguments, its answer)."""

REDIS_KEY_PREFIX = "kirby:"
REVOKED_CHANNEL = REDIS_KEY_PREFIX + "keys:revoked"
ALL_CONNECTIONS = REDIS_KEY_PREFIX + "ws:all"
_TIMEOUT_SECONDS = 2.0
"""Longest a Redis call may take before the decision counts as unavailable."""
_RESUBSCRIBE_SECONDS = 1.0

# GCRA in microseconds on the server's clock. KEYS[1] the caller's arrival time;
# ARGV: limit per minute, cost, spend (1/0). Returns {allowed, microseconds ahead}.
# Arguments to redis.call are formatted with '%.0f' (a bare Lua number would be cut to 14
# significant digits, losing the microseconds).
GCRA_SCRIPT = """
local limit, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = 60000000
local interval = period / limit
local arrival = tonumber(redis.call('GET', KEYS[1]) or now)
if arrival < now then arrival = now end
local ahead = arrival - now
local allowed = cost <= limit and ahead + cost * interval <= period + 1e-3
if allowed and ARGV[3] == '1' then
  local after = arrival + cost * interval
  redis.call('SET', KEYS[1], string.format('%.0f', after),
             'PX', string.format('%.0f', math.ceil((after - now) / 1000) + 1))
end
return {allowed and 1 or 0, string.format('%.0f', ahead)}
"""

# KEYS[1] all connections, KEYS[2] (optional) the key's connections; ARGV: connection id,
# lease ms, total cap, key cap. Returns 0 (acquired), 1 (total cap), 2 (key cap).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local caps = {tonumber(ARGV[3]), tonumber(ARGV[4])}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now))
  if redis.call('ZCARD', key) >= caps[i] then return i end
end
local expiry = string.format('%.0f', now + tonumber(ARGV[2]))
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, expiry, ARGV[1])
  redis.call('PEXPIRE', key, ARGV[2])
end
return 0
"""

# KEYS[1] all connections, KEYS[1 + i] the sorted set of connection ARGV[1 + i] besides it
# (KEYS[1] again without a key); ARGV[1] lease ms. Renews leases still held (XX: a lease
# released meanwhile is not brought back).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = string.format('%.0f', now + tonumber(ARGV[1]))
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
  redis.call('ZADD', KEYS[i], 'XX', expiry, ARGV[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""


class SharedStateUnavailable(StorageError):
    """Redis, where the replicas share limits and caps, is unreachable or too slow."""


class SharedState:
    """One Redis client per API process, and the outage bookkeeping around every call."""

    def __init__(self, url: str, lease_seconds: float = 15.0) -> None:
        self.lease_seconds = lease_seconds
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=_TIMEOUT_SECONDS, socket_connect_timeout=_TIMEOUT_SECONDS
        )
        self._gcra = self.client.register_script(GCRA_SCRIPT)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._renew = self.client.register_script(_RENEW)
        self._down = False
        self._decisions: list[_Decision] = []
        self._flusher: asyncio.Task[None] | None = None

    async def call(self, what: str, work: Awaitable[T]) -> T:
        """`work`, with Redis errors turned into `SharedStateUnavailable`."""
        try:
            async with asyncio.timeout(_TIMEOUT_SECONDS):
                result = await work
        except (RedisError, OSError, TimeoutError) as exc:
            self._outage(exc)
            raise SharedStateUnavailable(
                f"{what} is shared through Redis, which is unreachable; retry later"
            ) from exc
        if self._down:
            self._down = False
            log.warning("redis reachable again")
        return result

    def _outage(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "redis unreachable; what is shared through it fails until it returns "
                "(API: 503 on limited routes, 1013 for new WebSockets) error=%s",
                str(exc) or type(exc).__name__,
            )

    async def close(self) -> None:
        await self.client.aclose()

    # --- rate limits ---------------------------------------------------------------------

    async def gcra(self, name: str, caller: Any, limit: int, cost: int, spend: bool) -> Any:
        """[allowed, microseconds ahead] of one decision. Decisions asked for in the same
        loop iteration go to Redis together, in one pipeline (one round trip)."""
        key = f"{REDIS_KEY_PREFIX}ratelimit:{name}:{_flat(caller)}"
        decision: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._decisions.append((key, (limit, cost, int(spend)), decision))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_decisions())
        return await decision

    async def _flush_decisions(self) -> None:
        batch: list[_Decision] = []
        try:
            await asyncio.sleep(0)  # let this loop iteration's other requests join
            while self._decisions:
                batch, self._decisions = self._decisions, []
                try:
                    results = await self.call("the rate limit", self._evaluate(batch))
                except SharedStateUnavailable as exc:
                    for *_, decision in batch:
                        if not decision.done():
                            decision.set_exception(SharedStateUnavailable(str(exc)))
                    continue
                for (*_, decision), result in zip(batch, results, strict=True):
                    if not decision.done():
                        decision.set_result(result)
        finally:
            self._flusher = None
            for *_, decision in batch + self._decisions:  # cancelled (shutdown)
                decision.cancel()

    async def _evaluate(self, batch: list[_Decision]) -> list[Any]:
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for key, args, _ in batch:
                pipe.evalsha(self._gcra.sha, 1, key, *args)
            results = await pipe.execute(raise_on_error=False)
            if attempt or not any(isinstance(r, NoScriptError) for r in results):
                break
            await self.client.script_load(GCRA_SCRIPT)  # Redis restarted: its cache is empty
        for result in results:
            if isinstance(result, Exception):
                raise result
        return list(results)

    # --- WebSocket leases ----------------------------------------------------------------

    async def acquire(self, connection: str, key_id: int | None, total: int, own: int) -> int:
        keys = [ALL_CONNECTIONS] + ([] if key_id is None else [_key_connections(key_id)])
        args: list[str | int] = [connection, _ms(self.lease_seconds), total, own]
        return int(await self.call("the WebSocket cap", self._acquire(keys=keys, args=args)))

    async def release(self, connection: str, key_id: int | None) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(ALL_CONNECTIONS, connection)
        if key_id is not None:
            pipe.zrem(_key_connections(key_id), connection)
        await self.call("the WebSocket cap", pipe.execute())

    async def renew(self, held: dict[str, int | None]) -> None:
        if not held:
            return
        keys = [ALL_CONNECTIONS] + [
            ALL_CONNECTIONS if key_id is None else _key_connections(key_id)
            for key_id in held.values()
        ]
        args: list[str | int] = [_ms(self.lease_seconds), *held]
        await self.call("the WebSocket cap", self._renew(keys=keys, args=args))

    # --- revocations ---------------------------------------------------------------------

    async def publish_revoked(self, key_id: int) -> None:
        await self.call("key revocation", self.client.publish(REVOKED_CHANNEL, str(key_id)))

    async def listen_revocations(
        self, revoked: Callable[[int], Awaitable[None]], resubscribed: Callable[[], Awaitable[None]]
    ) -> None:
        """Call `revoked(key_id)` for each revocation any process publishes; after each
        (re)subscription, `resubscribed()` (to catch what was published meanwhile)."""
        first = True
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(REVOKED_CHANNEL)
                    if not first:
                        log.warning("redis revocations subscribed again")
                        await resubscribed()
                    first = False
                    async for message in pubsub.listen():
                        if message["type"] != "message":
                            continue
                        try:
                            key_id = int(message["data"])
                        except ValueError:
                            log.warning("revocation ignored payload=%r", message["data"][:40])
                            continue
                        await revoked(key_id)
            except (RedisError, OSError) as exc:
                self._outage(exc)
                first = False
                await asyncio.sleep(_RESUBSCRIBE_SECONDS)


class SharedLimiter:
    """`kirby_api.ratelimit.Limiter` across replicas: the budget `name` in Redis."""

    def __init__(self, shared: SharedState, name: str, default_per_minute: int) -> None:
        self._shared = shared
        self._name = name
        self.default_per_minute = default_per_minute

    async def check(
        self, caller: Any, per_minute: int | None, cost: int = 1, *, spend: bool = True
    ) -> dict[str, str]:
        limit = per_minute or self.default_per_minute
        allowed, ahead = await self._shared.gcra(self._name, caller, limit, cost, spend)
        return verdict(limit, cost, int(ahead) / 1e6, bool(allowed))


async def publish_revoked(url: str, key_id: int) -> None:
    """Tell every API replica that `key_id` is revoked (for `kirby apikey revoke`)."""
    shared = SharedState(url)
    try:
        await shared.publish_revoked(key_id)
    finally:
        await shared.close()


def _flat(caller: Any) -> str:
    return ":".join(map(str, caller)) if isinstance(caller, tuple) else str(caller)


def _key_connections(key_id: int) -> str:
    return f"{REDIS_KEY_PREFIX}ws:key:{key_id}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
