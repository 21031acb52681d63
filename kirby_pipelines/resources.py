"""`kirby`: the resource through which assets, checks and sensors reach Kirby.

A thin wrapper: it builds `Settings` (from `KIRBY_*`, plus any overrides it was configured
with) when a run or a tick asks, never at import, and hands out core objects. Tests and the
CLI configure it from a `Settings` they already hold (`KirbyResource.of`).

`progress` is a second, optional resource: `kirby backfill` / `kirby export` pass an object
whose `advance(n, label)` moves their progress bar; under Dagster it is None.
"""

from __future__ import annotations

from typing import Protocol

import dagster as dg

from kirby_core.db.urls import DatabaseUrls, resolve
from kirby_core.locations import Location, lake_location
from kirby_core.settings import Database, Settings


class KirbyResource(dg.ConfigurableResource):
    """Kirby's settings and database URLs for runs, checks and sensor ticks."""

    overrides: dict[str, str] = {}  # noqa: RUF012 (pydantic copies field defaults)
    """Settings fields that win over the environment (tests, the CLI)."""

    @classmethod
    def of(cls, settings: Settings) -> KirbyResource:
        values = settings.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        return cls(overrides={name: str(value) for name, value in values.items()})

    def settings(self) -> Settings:
        return Settings(**self.overrides)  # type: ignore[arg-type]  # pydantic parses the strings

    def urls(self) -> DatabaseUrls:
        """Database URLs; starts the embedded PostgreSQL when no URL is configured."""
        return resolve(self.settings())

    def url(self, database: Database) -> str:
        return self.urls().of(database)

    def lake(self) -> Location:
        """The Parquet lake's root: a local directory or an object-store URL."""
        return lake_location(self.settings())


class Progress(Protocol):
    def advance(self, steps: int, label: str) -> None: ...


ProgressParam = dg.ResourceParam[Progress | None]
"""How an asset takes the `progress` resource."""


def report_progress(progress: Progress | None, steps: int, label: str) -> None:
    if progress is not None:
        progress.advance(steps, label)


NO_PROGRESS = dg.ResourceDefinition.none_resource(
    description="Progress callbacks of `kirby backfill` / `kirby export`; None under Dagster."
)
