"""Which database a command talks to, and the URL spelling each driver wants.

Settings carry plain `postgresql://` URLs. asyncpg takes them as they are; SQLAlchemy (used
by Alembic and Dagster) needs the driver named explicitly, because a bare `postgresql://`
means psycopg 3 in SQLAlchemy 2.1, which Kirby does not install.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from kirby_core.db import embedded
from kirby_core.logs import redact as redact  # one redaction for logs and messages
from kirby_core.settings import Database, Settings

_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")


@dataclass(frozen=True)
class DatabaseUrls:
    realtime: str
    training: str

    def of(self, database: Database) -> str:
        return self.realtime if database == "realtime" else self.training


def resolve(settings: Settings) -> DatabaseUrls:
    """The configured URLs; with none configured, the embedded server's (started if needed)."""
    if settings.database_url:
        realtime = plain_url(settings.database_url)
        training = plain_url(settings.training_database_url or settings.database_url)
        return DatabaseUrls(realtime, training)
    server = embedded.start(settings.home)
    training = (
        plain_url(settings.training_database_url)
        if settings.training_database_url
        else with_database(server, embedded.TRAINING_DATABASE)
    )
    return DatabaseUrls(with_database(server, embedded.REALTIME_DATABASE), training)


def plain_url(url: str) -> str:
    """Any `postgres[ql][+driver]://` spelling -> `postgresql://` (asyncpg's)."""
    return _SCHEME.sub("postgresql://", url)


def sqlalchemy_url(url: str) -> str:
    return _SCHEME.sub("postgresql+psycopg2://", url)


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at `database` (query such as `?host=` kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))
