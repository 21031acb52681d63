"""`kirby api serve` runs the API with uvicorn; `kirby apikey` manages its keys."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
import click
import uvicorn
from litestar import Litestar

from kirby_api import create_app
from kirby_api.keys import ApiKey, create_key, list_keys, revoke_key
from kirby_api.shared_state import SharedStateUnavailable, publish_revoked
from kirby_core.db import urls
from kirby_core.db.connection import connect
from kirby_core.logs import configure_logging, escape
from kirby_core.settings import Settings

T = TypeVar("T")


def _uvicorn_options(settings: Settings) -> dict:
    return {
        "access_log": False,  # the API writes its own structured access log
        "log_config": None,  # keep Kirby's logging
        "ws_max_size": settings.api_ws_max_message_bytes,
        # Compressing each message per client would cost the fan-out more than it saves.
        "ws_per_message_deflate": False,
        # uvicorn's proxy-headers middleware does exactly what KIRBY_API_TRUSTED_PROXIES
        # promises: only from a trusted peer, the client becomes X-Forwarded-For's right-most
        # untrusted address. Its default trusts 127.0.0.1 (or $FORWARDED_ALLOW_IPS); Kirby
        # trusts no one unless told.
        "proxy_headers": bool(settings.api_trusted_proxies),
        "forwarded_allow_ips": [str(network) for network in settings.api_trusted_proxies],
    }


def worker_app() -> Litestar:
    """App factory for `--workers` > 1 (each worker process builds its own app)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


@click.group()
def api() -> None:
    """The REST + WebSocket API (Litestar)."""


@api.command()
@click.option("--host", default=None, help="Bind address (default: KIRBY_API_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: KIRBY_API_PORT).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes; each holds its own pool, catalog and LISTEN connection.",
)
@click.option(
    "--allow-insecure-bind",
    is_flag=True,
    help="With authentication off, bind a non-loopback address anyway "
    "(default: KIRBY_API_ALLOW_INSECURE_BIND).",
)
@click.pass_obj
def serve(
    settings: Settings, host: str | None, port: int | None, workers: int, allow_insecure_bind: bool
) -> None:
    """Serve the API over HTTP and WebSocket until interrupted."""
    host, port = host or settings.api_host, port or settings.api_port
    insecure_ok = allow_insecure_bind or settings.api_allow_insecure_bind
    if not settings.api_auth_enabled and not _is_loopback(host) and not insecure_ok:
        raise click.ClickException(
            f"refusing to bind {host} with authentication off (KIRBY_API_AUTH_ENABLED=false): "
            "every route, admin included, would be open to the network; bind 127.0.0.1, "
            "turn authentication on, or pass --allow-insecure-bind "
            "(KIRBY_API_ALLOW_INSECURE_BIND=true)"
        )
    auth = "on" if settings.api_auth_enabled else "OFF (every route is open)"
    click.echo(f"Kirby API on http://{host}:{port} (docs: /schema, auth {auth})")
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, **_uvicorn_options(settings))
    else:
        uvicorn.run(
            "kirby_cli.api:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            **_uvicorn_options(settings),
        )


def _run(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go() -> T:
        conn = await connect(urls.resolve(settings).realtime)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def _describe(key: ApiKey) -> str:
    def when(moment: datetime | None) -> str:
        return f"{moment:%Y-%m-%d %H:%M}Z" if moment else "-"

    state = "revoked" if key.revoked_at else "active"
    if not key.revoked_at and key.expires_at and key.expires_at <= datetime.now(UTC):
        state = "expired"
    name = escape(key.name)  # stored before names were checked, or written by hand
    return (
        f"{key.id:>5}  {key.prefix}...  {name:<24} {'admin' if key.admin else 'user ':<5} "
        f"{state:<7} expires={when(key.expires_at)} requests={key.request_count} "
        f"last_used={when(key.last_used_at)}"
    )


@click.group()
def apikey() -> None:
    """API keys: create (shown once), list, revoke."""


@apikey.command()
@click.argument("name")
@click.option("--admin", is_flag=True, help="May manage keys through /admin/api-keys.")
@click.option("--expires-in-days", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--rate-limit", type=click.IntRange(min=1), default=None, help="Requests/minute.")
@click.option("--max-ws", type=click.IntRange(min=0), default=None, help="WebSocket connections.")
@click.pass_obj
def create(
    settings: Settings,
    name: str,
    admin: bool,
    expires_in_days: float | None,
    rate_limit: int | None,
    max_ws: int | None,
) -> None:
    """Create a key for NAME and print it (the only time it is shown)."""
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    key, token = _run(
        settings,
        lambda conn: create_key(
            conn,
            name,
            admin=admin,
            expires_at=expires_at,
            rate_limit_per_minute=rate_limit,
            max_ws_connections=max_ws,
        ),
    )
    click.echo(_describe(key))
    click.echo(f"key: {token}")
    click.echo("Store it now: Kirby keeps only its hash and cannot show it again.")


@apikey.command("list")
@click.pass_obj
def apikey_list(settings: Settings) -> None:
    """List keys (never the keys themselves)."""
    keys = _run(settings, list_keys)
    for key in keys:
        click.echo(_describe(key))
    if not keys:
        click.echo("no API keys; create one with `kirby apikey create NAME`")


@apikey.command()
@click.argument("key_id", type=int)
@click.pass_obj
def revoke(settings: Settings, key_id: int) -> None:
    """Revoke key KEY_ID (with KIRBY_REDIS_URL every API process closes its sockets at once;
    without, API processes notice within KIRBY_API_KEY_CACHE_SECONDS)."""
    click.echo(_describe(_run(settings, lambda conn: revoke_key(conn, key_id))))
    if settings.redis_url is not None:
        try:
            asyncio.run(publish_revoked(settings.redis_url, key_id))
        except SharedStateUnavailable:
            click.echo(
                "warning: Redis (KIRBY_REDIS_URL) is unreachable, so the revocation was not "
                "announced; API processes notice it within KIRBY_API_KEY_CACHE_SECONDS",
                err=True,
            )
