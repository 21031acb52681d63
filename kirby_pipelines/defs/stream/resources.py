"""`stream`: what the stream job and its supervisor need beyond the shared `kirby` resource.

Settings and database URLs come from `kirby` (`kirby_pipelines.resources.KirbyResource`);
this resource adds the observation interval of stream runs and reads the collectors'
heartbeats for the supervisor. It holds no connection between uses, so a sensor tick costs
one short database round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from kirby_core.db.connection import connect
from kirby_core.db.errors import DRIVER_ERRORS, storage_error
from kirby_core.db.urls import resolve
from kirby_core.settings import Settings
from kirby_stream import Heartbeat, read_heartbeats

HEARTBEAT_QUERY_SECONDS = 10.0
"""Bound on the supervisor's database round trip: sensor ticks must stay short."""


class StreamResource(dg.ConfigurableResource):
    """The stream job's observation interval and the collectors' heartbeats."""

    observation_seconds: float = 60.0
    """How often a stream run records an AssetObservation per live asset."""

    def heartbeats(self, settings: Settings, collector_ids: Sequence[str]) -> list[Heartbeat]:
        """Fresh heartbeats plus those of `collector_ids`; `StorageError` if unreachable."""
        url = resolve(settings).realtime
        fresh_within = timedelta(seconds=settings.stream_stale_seconds)
        try:
            return asyncio.run(_read(url, fresh_within, collector_ids))
        except DRIVER_ERRORS as exc:
            raise storage_error(exc, "cannot read stream heartbeats") from exc


async def _read(url: str, fresh_within: timedelta, collector_ids: Sequence[str]) -> list[Heartbeat]:
    async with asyncio.timeout(HEARTBEAT_QUERY_SECONDS):
        conn = await connect(url)
        try:
            return await read_heartbeats(conn, fresh_within, collector_ids)
        finally:
            await conn.close()


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"stream": StreamResource()})
