"""Kirby's settings: the only place that reads the environment.

Every field can be set as `KIRBY_<FIELD>` in the environment or a `.env` file. Settings are
built once at an entry point (the CLI, the API app factory, a Dagster resource) and passed
down; nothing reads them at import time, so tests build `Settings(...)` directly.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Database = Literal["realtime", "training"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIRBY_", env_file=".env", extra="ignore")

    database_url: str | None = None
    """Realtime database (live Hyperliquid data). Unset: Kirby's embedded PostgreSQL."""
    training_database_url: str | None = None
    """Training database (historical Binance data). Unset: same as `database_url`
    (with the embedded server, its own `kirby_training` database)."""
    home: Path = Path(".kirby")
    """Local state: the embedded PostgreSQL lives in `<home>/postgres`."""

    hyperliquid_rest_url: str = "https://api.hyperliquid.xyz"
    """Hyperliquid REST base; `/info` is appended."""
    hyperliquid_ws_url: str = "wss://api.hyperliquid.xyz/ws"
    """Hyperliquid WebSocket endpoint."""
    ws_origins: dict[str, str] = {}
    """Other exchanges' WebSocket origins replaced by another URL prefix (the simulator, a
    proxy), e.g. `{"wss://stream.bybit.com": "ws://127.0.0.1:8000"}`: the path the exchange
    uses is kept after the prefix. JSON in `KIRBY_WS_ORIGINS`."""
    stream_poll_delay_seconds: float = Field(default=2.0, ge=0)
    """Live collector: how long after a minute closes it polls what the exchange's WebSocket
    lacks from REST (Binance's open interest, Coinbase's 1m/15m/1d candles), so the closed
    minute is final there."""
    binance_spot_url: str = "https://api.binance.com"
    """Binance spot REST host; `/api/v3/...` is appended."""
    binance_futures_url: str = "https://fapi.binance.com"
    """Binance USD-M futures REST host; `/fapi/v1/...` is appended."""
    bybit_rest_url: str = "https://api.bybit.com"
    """Bybit REST host; `/v5/market/...` is appended."""
    okx_rest_url: str = "https://www.okx.com"
    """OKX REST host; `/api/v5/...` is appended."""
    coinbase_rest_url: str = "https://api.coinbase.com"
    """Coinbase REST host; `/api/v3/brokerage/...` is appended."""

    realtime_catalog: Path = Path("config/starlistings.yaml")
    """Catalog of the realtime database."""
    training_catalog: Path = Path("config/training_stars.yaml")
    """Catalog of the training database."""
    lake_dir: str = "lake"
    """Root of the Parquet lake written by exports: a local directory, or a filesystem URL
    such as `s3://bucket/lake` (see `backup_url` for credentials and endpoint)."""
    backup_url: str = "backups"
    """Where database backups go: a local directory, or a filesystem URL such as
    `s3://bucket/prefix` (credentials from the standard AWS variables, endpoint from
    `KIRBY_S3_ENDPOINT_URL`)."""
    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, Ceph, R2...) for `s3://` URLs. Unset: AWS itself, or
    `AWS_ENDPOINT_URL` as the AWS libraries read it."""
    pg_bin_dir: Path | None = None
    """Directory holding `pg_dump`/`pg_restore`. Unset: the first found whose major version
    matches the server (pgserver's, /usr/lib/postgresql/<major>/bin, PATH)."""

    http_timeout_seconds: float = Field(default=10.0, gt=0)
    """Timeout of one exchange REST call."""
    http_max_retries: int = Field(default=5, ge=0)
    """Retries of a rate-limited (429) or failing (5xx, network) exchange call."""
    retention: str | None = None
    """Realtime database: how long market data is kept, e.g.
    `candles:1m=30d,candles=365d,funding_rates=90d,trades=30d` (see
    `kirby_core.db.retention`); applied on every `kirby db migrate`. Candle, funding and
    open-interest rules need TimescaleDB; `trades` also works on plain PostgreSQL (its daily
    partitions are dropped). Unset: keep all."""
    training_retention: str | None = None
    """The same for the training database. Unset: keep all of its history."""
    timescaledb: Literal["auto", "on", "off"] = "auto"
    """Hypertables at migrate: auto (if timescaledb is available and preloaded, else plain
    tables and a warning), on (refuse without them), off (plain tables)."""

    stream_flush_seconds: float = Field(default=1.0, gt=0)
    """Live collector: how often buffered candles are written (funding/OI: at minute close)."""
    stream_trades: bool = True
    """Live collector: collect every trade of each pair (`KIRBY_STREAM_TRADES=false`: off)."""
    stream_catalog_poll_seconds: float = Field(default=30.0, gt=0)
    """Live collector: how often the catalog is re-read to pick up (de)activated starlistings."""
    stream_heartbeat_seconds: float = Field(default=5.0, gt=0)
    """Live collector: how often its `stream_heartbeats` row is refreshed."""
    stream_stale_seconds: float = Field(default=60.0, gt=0)
    """Supervisor: a collector whose heartbeat is older than this is stale (relaunched)."""
    stream_stall_seconds: float = Field(default=15.0, gt=0)
    """Live collector: no data from any symbol of a connection for this long replaces the
    connection; one symbol this quiet while the others flow is resubscribed."""
    stream_ping_seconds: float = Field(default=20.0, gt=0)
    """Live collector: ping interval of an exchange that declares no interval of its own
    (Hyperliquid closes a connection after 60 s of silence)."""
    stream_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    """Live collector: timeout of one WebSocket connect and handshake."""
    stream_database_timeout_seconds: float = Field(default=10.0, gt=0)
    """Live collector: timeout of one database round (connect, or one flush)."""
    stream_max_buffered_rows: int = Field(default=200_000, ge=10)
    """Live collector: memory bound; beyond it the oldest rows are dropped (and recorded)."""
    stream_reconnect_backoff_max_seconds: float = Field(default=30.0, gt=0)
    """Live collector: cap of the backoff between WebSocket reconnects."""
    stream_database_backoff_max_seconds: float = Field(default=10.0, gt=0)
    """Live collector: cap of the backoff between retries of a failed flush."""
    stream_shutdown_seconds: float = Field(default=5.0, gt=0)
    """Live collector: on SIGTERM, how long the final flush may keep retrying."""
    books_enabled: bool = True
    """Live collector: keep the order books of every catalog pair (`kirby_stream.books`)."""
    books_levels: int = Field(default=20, ge=1, le=1000)
    """Live collector: levels a side of each stored book sample (top-N)."""
    books_sample_seconds: float = Field(default=1.0, ge=1.0)
    """Live collector: how often each book is sampled into `books` (whole seconds apart)."""
    books_stale_seconds: float = Field(default=10.0, gt=0)
    """Live collector: a book without an applied update for this long counts as stale."""
    stream_supervisor_enabled: bool = True
    """Dagster's `stream_supervisor` sensor does nothing while false (a hard off switch)."""
    backfill_new_series_days: int = Field(default=30, gt=0)
    """Dagster: days of history requested, most recent first, when a series appears in a
    catalog (Hyperliquid candles stop at what the exchange still keeps)."""
    repair_settle_seconds: int = Field(default=120, ge=0)
    """Dagster `live_gap_repair`: seconds after an outage of today ended before its window is
    refetched (the exchange closes and publishes the last candles and points meanwhile)."""
    dagster_database_url: str | None = None
    """Dagster's own storage (runs, events, schedules). Unset: SQLite under `<home>/dagster`."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Minimum level of log lines."""
    log_format: Literal["text", "json"] = "text"
    """`text` is key=value per line; `json` is one JSON object per line."""

    api_host: str = "127.0.0.1"
    """Address `kirby api serve` binds to."""
    api_port: int = Field(default=8000, ge=1, le=65535)
    """Port `kirby api serve` listens on."""
    api_auth_enabled: bool = True
    """Require an API key on every route but /health, /metrics and /schema. Off: local use
    only (every route, admin included, is open)."""
    api_allow_insecure_bind: bool = False
    """Let `kirby api serve` bind a non-loopback address while authentication is off."""
    api_trusted_proxies: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    """Comma-separated addresses or CIDR networks of the reverse proxies in front of the API
    (e.g. `127.0.0.1` or `10.0.0.0/8`). Only a request whose direct peer is one of them is
    taken to come from X-Forwarded-For's right-most untrusted address (and X-Forwarded-Proto's
    scheme); rate limits, the failed-auth budget and the access log use that address. Unset:
    no proxy is trusted and the headers are ignored."""
    api_rate_limit_per_minute: int = Field(default=1200, gt=0)
    """REST requests a key (or, without a key, a client address) may make per minute, per
    API process (with `redis_url`, across all of them); a key's own limit overrides it.
    WebSocket actions spend the same budget."""
    api_auth_failures_per_minute: int = Field(default=60, gt=0)
    """Requests without a valid API key one client address may make per minute, per API
    process (with `redis_url`, across all of them); over that it gets 429 until its budget
    refills."""
    api_ws_max_connections: int = Field(default=2000, gt=0)
    """WebSocket connections one API process accepts in total (with `redis_url`, all API
    processes together)."""
    api_ws_max_connections_per_key: int = Field(default=5, gt=0)
    """WebSocket connections one key may hold per API process (with `redis_url`, across all
    of them); a key's own cap overrides it."""
    api_ws_max_subscriptions: int = Field(default=100, gt=0)
    """Starlistings one WebSocket connection may subscribe to."""
    api_ws_max_message_bytes: int = Field(default=65536, gt=0)
    """Largest client WebSocket message; a larger one closes the connection (code 1009)."""
    api_ws_send_queue: int = Field(default=2000, gt=0)
    """Messages queued for one WebSocket client; a client that lets it fill is disconnected
    (code 4408) so it never delays the others."""
    api_ws_resume_seconds: float = Field(default=3600.0, gt=0)
    """How long change events are kept (the stream deletes older ones): a WebSocket client
    that reconnects may resume from an event id this recent, and an API replica whose
    LISTEN connection dropped catches up exactly within it."""
    api_ws_heartbeat_seconds: float = Field(default=30.0, gt=0)
    """Interval of the server's `ping` message on every WebSocket."""
    api_catalog_refresh_seconds: float = Field(default=30.0, gt=0)
    """How often the API re-reads the catalog (starlistings are looked up in memory)."""
    api_key_cache_seconds: float = Field(default=10.0, ge=0)
    """How long a verified API key is trusted before it is read again: the longest a
    revocation takes to reach another API process. Open WebSockets re-read their key this
    often (at least every second) and close with 4401 when it is dead."""
    api_usage_flush_seconds: float = Field(default=10.0, gt=0)
    """How often per-key request counters are written to the database (one statement)."""
    api_backup_watch_seconds: float = Field(default=300.0, gt=0)
    """How often the API reads the backup location's newest manifests for
    `kirby_backup_last_success_timestamp_seconds` (object storage: one listing each time)."""
    api_stream_stale_seconds: float = Field(default=120.0, gt=0)
    """Heartbeat age after which /health reports the stream as stale."""
    api_pool_size: int = Field(default=10, gt=0)
    """Connections in the API's PostgreSQL pool (the LISTEN connection comes on top)."""
    api_query_timeout_seconds: float = Field(default=10.0, gt=0)
    """Every database wait of a request (pool acquire and queries together) ends within
    this, or the request fails with 503 + Retry-After."""
    api_bulk_timeout_seconds: float = Field(default=60.0, gt=0)
    """Longest a CSV download may hold its database connection (a client reading too slowly
    is cut off)."""
    api_bulk_streams: int = Field(default=2, gt=0)
    """CSV downloads streamed at once per API process (at most half the pool); the others
    wait their turn. PostgreSQL formats the rows: more than its cores only adds latency."""
    redis_url: str | None = None
    """Redis shared by API replicas (`redis://[:password@]host:port/db`, `rediss://` for
    TLS): rate limits, failed-auth budgets and WebSocket caps count across all replicas, and
    a revoked key closes on every replica at once. Unset: each API process keeps them in
    memory. While it is unreachable, rate-limited routes and new WebSockets answer 503."""
    api_ws_lease_seconds: float = Field(default=15.0, gt=0)
    """With Redis: how long a WebSocket connection's slot (for the caps) outlives its API
    replica's last refresh, so a replica that died frees its slots within this time."""
    api_latest_cache_seconds: float = Field(default=1.0, ge=0)
    """Longest a cached latest-N page lives; a NOTIFY for its series drops it at once. It
    bounds staleness only for writes that do not NOTIFY (backfills). 0 turns the cache off."""

    @field_validator("lake_dir", "backup_url", mode="before")
    @classmethod
    def _location_text(cls, value: object) -> object:
        """A location may be given as a Path (a local directory)."""
        return str(value) if isinstance(value, Path) else value

    @field_validator("api_trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        networks = []
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or CIDR network "
                    "(allowed: comma-separated entries such as 127.0.0.1, 10.0.0.0/8, ::1)"
                ) from None
        return tuple(networks)

    def catalog_path(self, database: Database) -> Path:
        """A relative path missing from the working directory is taken from Kirby's checkout,
        so the default catalogs are found wherever `kirby` runs."""
        path = self.realtime_catalog if database == "realtime" else self.training_catalog
        bundled = Path(__file__).resolve().parent.parent / path
        return (
            bundled if not path.is_absolute() and not path.exists() and bundled.exists() else path
        )
