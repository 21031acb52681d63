"""API keys: hashed storage, the ways to present one, expiry, revocation, admin routes, usage."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from kirby_api.keys import create_key, revoke_key
from tests.api.conftest import BTC_1M, bearer, runtime


async def test_no_key_is_401_but_health_metrics_and_schema_are_open(api) -> None:
    async with api() as client:
        refused = await client.get(BTC_1M)
        assert refused.status_code == 401
        assert refused.json() == {
            "status": 401,
            "error": "unauthorized",
            "message": "missing API key: send 'Authorization: Bearer <key>' or "
            "'X-API-Key: <key>' (WebSocket: ?api_key=<key>)",
        }
        for path in ("/health", "/metrics", "/schema/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


async def test_bearer_and_x_api_key_both_work(api, user_token) -> None:
    async with api() as client:
        assert (await client.get("/starlistings", headers=bearer(user_token))).status_code == 200
        assert (
            await client.get("/starlistings", headers={"X-API-Key": user_token})
        ).status_code == 200
        wrong = await client.get("/starlistings", headers=bearer(user_token + "x"))
        assert (wrong.status_code, wrong.json()["message"]) == (401, "unknown API key")
        # the query parameter is for WebSockets only: a URL ends up in logs
        query = await client.get("/starlistings", params={"api_key": user_token})
        assert query.status_code == 401


async def test_keys_are_stored_hashed(conn) -> None:
    key, token = await create_key(conn, "notebook")
    row = await conn.fetchrow("SELECT prefix, key_hash FROM api_keys WHERE id = $1", key.id)
    assert token.startswith("kirby_") and len(token) == 49
    assert row["prefix"] == token[:12] == key.prefix
    assert bytes(row["key_hash"]) == hashlib.sha256(token.encode()).digest()
    stored = await conn.fetchval(
        "SELECT count(*) FROM api_keys WHERE key_hash::text LIKE $1", f"%{token}%"
    )
    assert stored == 0


async def test_expired_and_revoked_keys_are_refused_with_the_reason(api, conn) -> None:
    expired, expired_token = await create_key(
        conn, "short", expires_at=datetime.now(UTC) + timedelta(seconds=30)
    )
    await conn.execute(
        "UPDATE api_keys SET expires_at = '2024-01-01T00:00:00Z' WHERE id = $1", expired.id
    )
    revoked, revoked_token = await create_key(conn, "gone")
    await revoke_key(conn, revoked.id)
    async with api() as client:
        first = await client.get(BTC_1M, headers=bearer(expired_token))
        second = await client.get(BTC_1M, headers=bearer(revoked_token))
    assert first.json()["message"] == f"API key {expired.prefix}... expired at 2024-01-01T00:00:00Z"
    assert second.status_code == 401
    assert second.json()["message"].startswith(f"API key {revoked.prefix}... was revoked at ")


async def test_admin_routes_create_list_and_revoke(api, admin_token, user_token) -> None:
    async with api() as client:
        forbidden = await client.get("/admin/api-keys", headers=bearer(user_token))
        assert forbidden.status_code == 403
        assert "is not an admin key" in forbidden.json()["message"]

        created = await client.post(
            "/admin/api-keys",
            json={"name": "bot", "rate_limit_per_minute": 50, "expires_at": "2099-01-01T00:00:00Z"},
            headers=bearer(admin_token),
        )
        assert created.status_code == 201
        body = created.json()
        token, key = body["key"], body["api_key"]
        assert (key["name"], key["admin"], key["rate_limit_per_minute"]) == ("bot", False, 50)
        assert key["expires_at"] == "2099-01-01T00:00:00Z"
        assert key["prefix"] == token[:12]
        assert (await client.get(BTC_1M, headers=bearer(token))).status_code == 200

        listed = (await client.get("/admin/api-keys", headers=bearer(admin_token))).json()
        assert [k["name"] for k in listed["data"]] == ["test admin", "test user", "bot"]
        assert token not in str(listed)

        revoked = await client.delete(f"/admin/api-keys/{key['id']}", headers=bearer(admin_token))
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
        # at once on this process, although the key was just verified and cached
        assert (await client.get(BTC_1M, headers=bearer(token))).status_code == 401

        missing = await client.delete("/admin/api-keys/9999", headers=bearer(admin_token))
        assert (missing.status_code, missing.json()["message"]) == (404, "unknown API key id 9999")


async def test_create_key_validation(api, admin_token) -> None:
    async with api() as client:
        for body, parameter in (
            ({"name": ""}, "name"),
            ({"name": "a\x00b"}, "name"),
            ({"name": "x", "rate_limit_per_minute": 0}, "rate_limit_per_minute"),
            ({"name": "x", "surprise": 1}, None),
        ):
            response = await client.post("/admin/api-keys", json=body, headers=bearer(admin_token))
            assert response.status_code == 400, body
            assert response.json()["error"] in {"invalid_parameter", "invalid_request"}
            if parameter:
                assert parameter in response.json()["message"]
        past = await client.post(
            "/admin/api-keys",
            json={"name": "x", "expires_at": "2020-01-01T00:00:00Z"},
            headers=bearer(admin_token),
        )
        assert past.status_code == 400
        assert past.json()["message"] == (
            "expires_at 2020-01-01T00:00:00Z is in the past; give a future time"
        )


async def test_usage_is_counted_in_batches(api, conn, user_token) -> None:
    async with api() as client:
        for _ in range(3):
            await client.get("/starlistings", headers=bearer(user_token))
        # nothing written per request ...
        assert (
            await conn.fetchval("SELECT request_count FROM api_keys WHERE name = 'test user'") == 0
        )
        flushed = client.blocking_portal.call(runtime(client).usage.flush)
        assert flushed == 1
        row = await conn.fetchrow(
            "SELECT request_count, last_used_at FROM api_keys WHERE name = 'test user'"
        )
        assert row["request_count"] == 3
        assert datetime.now(UTC) - row["last_used_at"] < timedelta(minutes=1)
        await client.get("/starlistings", headers=bearer(user_token))
    # ... and what is pending when the app stops is flushed on shutdown
    assert await conn.fetchval("SELECT request_count FROM api_keys WHERE name = 'test user'") == 4


async def test_auth_off_opens_every_route(api) -> None:
    async with api(api_auth_enabled=False) as client:
        assert (await client.get("/starlistings")).status_code == 200
        assert (await client.get("/admin/api-keys")).status_code == 200
