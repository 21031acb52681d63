"""/admin/api-keys as a hostile or careless client uses it: names, caching, sniffing."""

from __future__ import annotations

import pytest

from kirby_api.errors import InvalidParameter
from kirby_api.keys import create_key
from tests.api.conftest import bearer

HOSTILE_NAMES = ["a\x00b", "a\nb", "a\x1b[2Jb", "a\x7fb", "a\x85b", "a\u2028b", "a\u2029b"]


async def test_names_with_control_characters_are_refused(api, admin_token, conn) -> None:
    async with api() as client:
        for name in HOSTILE_NAMES:
            response = await client.post(
                "/admin/api-keys", json={"name": name}, headers=bearer(admin_token)
            )
            assert response.status_code == 400, name
            body = response.json()
            assert (body["error"], body["parameter"]) == ("invalid_parameter", "name")
            assert body["message"].startswith(f"name '{name[0]}\\")  # shown escaped
            assert "contains the control character" in body["message"]
        fine = await client.post(
            "/admin/api-keys", json={"name": "café ₿ notebook"}, headers=bearer(admin_token)
        )
        assert fine.status_code == 201
    assert await conn.fetchval("SELECT count(*) FROM api_keys") == 2  # admin + café


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_the_one_place_keys_are_created_refuses_them(conn, name) -> None:
    with pytest.raises(InvalidParameter, match="control character"):
        await create_key(conn, name)
    assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0


async def test_admin_responses_are_not_cached_or_sniffed(api, admin_token) -> None:
    async with api() as client:
        created = await client.post(
            "/admin/api-keys", json={"name": "notebook"}, headers=bearer(admin_token)
        )
        listed = await client.get("/admin/api-keys", headers=bearer(admin_token))
        revoked = await client.delete(
            f"/admin/api-keys/{created.json()['api_key']['id']}", headers=bearer(admin_token)
        )
    for response in (created, listed, revoked):
        assert response.status_code in (200, 201)
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
