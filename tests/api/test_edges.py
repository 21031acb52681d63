"""A hostile client's small holes: NUL paths, long inputs echoed, repeated parameters,
401 challenges and schemes, failed-auth budgets per address, key-cache flooding."""

from __future__ import annotations

import secrets

import pytest

from kirby_api.errors import shorten
from tests.api.conftest import BTC_1M, bearer


@pytest.mark.parametrize(
    ("value", "shown"),
    [("", ""), ("BTC", "BTC"), ("x" * 100, "x" * 100), ("x" * 101, "x" * 100 + "…"), (42, "42")],
)
def test_shorten(value, shown) -> None:
    assert shorten(value) == shown


async def test_a_nul_byte_in_a_path_is_404_not_500(api, user_token) -> None:
    async with api() as client:  # /static and /schema are public: no key needed
        for path in ("/static/%00", "/static/chart%00.js", "/schema/assets/%00"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"] == "not_found"
        answer = await client.get(f"{BTC_1M}%00", headers=bearer(user_token))
        assert answer.status_code == 404


LONG = "q" * 5000


async def test_error_bodies_echo_at_most_100_characters_of_the_input(client) -> None:
    requests = [
        f"{BTC_1M}?start_time={LONG}",
        f"{BTC_1M}?end_time=9{'9' * 4999}",
        f"{BTC_1M}?limit=9{'9' * 4999}",
        f"{BTC_1M}?format={LONG}",
        f"{BTC_1M}?cursor={LONG}",
        f"/candles/hyperliquid/{LONG}/USD/perps/1m",
        f"/funding/hyperliquid/{LONG}/USD/perps",
        f"/{LONG}",
        f"/coverage/candles/hyperliquid/BTC/USD/perps/1m?start_time={LONG}",
    ]
    for path in requests:
        answer = await client.get(path)
        shown = path[:60]
        assert answer.status_code in (400, 404), shown
        message = answer.json()["message"]
        assert "q" * 101 not in message and "9" * 101 not in message, shown
        assert "…" in message, shown  # it still shows the start of what it got
        assert len(answer.content) < 600, shown


async def test_a_repeated_query_parameter_is_refused_naming_it(client) -> None:
    for path, name in (
        (f"{BTC_1M}?limit=5&limit=6", "limit"),
        (f"{BTC_1M}?limit=abc&start_time=2024-05-01&limit=5", "limit"),
        ("/starlistings?coin=BTC&coin=ETH", "coin"),
        ("/starlistings?x=1&x=2", "x"),
    ):
        answer = await client.get(path)
        assert answer.status_code == 400, path
        body = answer.json()
        assert (body["error"], body["parameter"]) == ("invalid_parameter", name)
        assert f"'{name}' is given more than once" in body["message"]
    assert (await client.get(f"{BTC_1M}?limit=5&start_time=2024-05-01")).status_code == 200


async def test_401_carries_a_bearer_challenge_and_names_an_unsupported_scheme(
    api, user_token
) -> None:
    async with api() as client:
        missing = await client.get("/starlistings")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="kirby"'
        unknown = await client.get("/starlistings", headers=bearer("kirby_nope"))
        assert unknown.headers["www-authenticate"] == 'Bearer realm="kirby", error="invalid_token"'
        for header, scheme in (("Basic dXNlcjpwYXNz", "Basic"), (f"Token {user_token}", "Token")):
            refused = await client.get("/starlistings", headers={"Authorization": header})
            assert refused.status_code == 401
            assert refused.json()["message"] == (
                f"unsupported authorization scheme '{scheme}': send 'Authorization: Bearer "
                "<key>' or 'X-API-Key: <key>'"
            )
            assert refused.headers["www-authenticate"].startswith("Bearer ")
        # a proxy's Basic auth beside Kirby's own header key is fine
        both = {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": user_token}
        assert (await client.get("/starlistings", headers=both)).status_code == 200
        assert (await client.get("/starlistings", headers=bearer(user_token))).status_code == 200


async def test_requests_without_a_valid_key_are_budgeted_per_address(api, user_token) -> None:
    async with api(api_auth_failures_per_minute=3) as client:
        for _ in range(5):  # valid keys spend nothing from the failure budget
            valid = await client.get("/starlistings", headers=bearer(user_token))
            assert valid.status_code == 200
        for token in ("kirby_a", "kirby_b", None):
            headers = bearer(token) if token else {}
            assert (await client.get("/starlistings", headers=headers)).status_code == 401
        over = await client.get("/starlistings", headers=bearer("kirby_c"))
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) >= 1
        assert over.json()["message"].startswith(
            "more than 3 requests without a valid API key per minute from testclient; retry in"
        )
        # a key this process verified still passes from the address, a new one waits
        assert (await client.get("/starlistings", headers=bearer(user_token))).status_code == 200
        assert (await client.get("/starlistings", headers=bearer("kirby_d"))).status_code == 429
        # public routes stay open
        assert (await client.get("/health")).status_code == 200


async def test_a_random_key_flood_cannot_evict_a_valid_key(
    api, conn, user_token, monkeypatch
) -> None:
    monkeypatch.setattr("kirby_api.auth._MAX_CACHED", 10)
    async with api(api_key_cache_seconds=3600, api_auth_failures_per_minute=1000) as client:
        assert (await client.get("/starlistings", headers=bearer(user_token))).status_code == 200
        # Revoked behind this process's back: only a fresh lookup would notice, so a 200
        # below means the valid key was still cached after the flood.
        await conn.execute("UPDATE api_keys SET revoked_at = now()")
        for _ in range(50):
            flood = await client.get("/starlistings", headers=bearer(secrets.token_urlsafe(32)))
            assert flood.status_code == 401
        assert (await client.get("/starlistings", headers=bearer(user_token))).status_code == 200
