"""Per-key rate limits: budget, headers, 429 with Retry-After, per-key overrides; the same
answers from the in-process limiter and from the Redis script (`KIRBY_REDIS_URL`)."""

from __future__ import annotations

import pytest

from kirby_api.errors import RateLimited
from kirby_api.keys import create_key
from kirby_api.ratelimit import RateLimiter
from tests.api.conftest import bearer


async def test_budget_headers_and_429(api, conn, shared) -> None:
    _, first = await create_key(conn, "first")
    _, second = await create_key(conn, "second")
    async with api(api_rate_limit_per_minute=3, **shared) as client:
        remaining = []
        for _ in range(3):
            response = await client.get("/starlistings", headers=bearer(first))
            assert response.status_code == 200
            assert response.headers["RateLimit-Limit"] == "3"
            assert response.headers["RateLimit-Policy"] == "3;w=60"
            remaining.append(response.headers["RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        refused = await client.get("/starlistings", headers=bearer(first))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "20"  # one request refills every 60/3 s
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert refused.json() == {
            "status": 429,
            "error": "rate_limited",
            "message": "rate limit of 3 requests per minute exceeded; retry in 20 s",
        }
        # another key has its own budget; health and metrics are never limited
        assert (await client.get("/starlistings", headers=bearer(second))).status_code == 200
        assert (await client.get("/health")).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert "kirby_api_rate_limited_total 1.0" in metrics


async def test_a_keys_own_limit_overrides_the_default(api, conn, shared) -> None:
    _, generous = await create_key(conn, "generous", rate_limit_per_minute=10)
    async with api(api_rate_limit_per_minute=1, **shared) as client:
        codes = [
            (await client.get("/starlistings", headers=bearer(generous))).status_code
            for _ in range(11)
        ]
    assert codes == [200] * 10 + [429]


async def test_without_auth_the_client_address_is_limited(api, shared) -> None:
    async with api(api_auth_enabled=False, api_rate_limit_per_minute=2, **shared) as client:
        codes = [(await client.get("/starlistings")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


async def test_bucket_refills_continuously(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("kirby_api.ratelimit.time.monotonic", lambda: clock[0])
    limiter = RateLimiter(default_per_minute=6)  # one request per 10 s, burst of 6
    for expected in range(5, -1, -1):
        assert (await limiter.check("k", None))["RateLimit-Remaining"] == str(expected)
    with pytest.raises(RateLimited) as refused:
        await limiter.check("k", None)
    assert refused.value.headers["Retry-After"] == "10"
    clock[0] += 10
    assert (await limiter.check("k", None))["RateLimit-Remaining"] == "0"
    clock[0] += 60
    assert (await limiter.check("k", None))["RateLimit-Remaining"] == "5"


async def test_a_cost_spends_several_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kirby_api.ratelimit.time.monotonic", lambda: 1000.0)
    limiter = RateLimiter(default_per_minute=6)
    assert (await limiter.check("k", None, cost=4))["RateLimit-Remaining"] == "2"
    with pytest.raises(RateLimited) as refused:
        await limiter.check("k", None, cost=3)
    assert refused.value.headers["Retry-After"] == "10"
    assert (await limiter.check("k", None, cost=2))["RateLimit-Remaining"] == "0"
    with pytest.raises(RateLimited, match="costs 7 requests, more than the whole budget of 6"):
        await limiter.check("other", None, cost=7)
