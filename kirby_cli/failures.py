"""How a `kirby` command ends when something fails: a few lines saying what to do.

`main.py` sends every exception that escapes a command through `explain`; the user sees
its lines (click's `Error: …`), never a traceback, unless Kirby logs at DEBUG. Known
failures name what to do:

    database not migrated      "run `kirby db migrate`"
    exchange unreachable       the host and the DNS or connect error
    database unreachable       host:port of the configured server(s)
    any other KirbyError       its message (it already names the bad value)
    a refused KIRBY_* setting  the variable and why, one line each
    anything else              one line + "run with --log-level DEBUG for the traceback"

A failure arrives either as a live exception (its `__cause__`/`__context__` chain) or as the
serialized error of a failed Dagster step (`cause`/`context` of a `SerializableErrorInfo`,
reached through a `RunFailed`'s `step_error`). Both are flattened into one list of `Link`s
and read by the same rules, so a Dagster run reports its root cause, not the wrapper's
"Error occurred while executing op" line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from kirby_core import errors
from kirby_core.settings import Settings

DEBUG_HINT = "run with --log-level DEBUG for the traceback"

_NOT_MIGRATED = {"UndefinedTableError", "UndefinedTable"}
"""asyncpg's and psycopg2's names for SQLSTATE 42P01 (relation does not exist)."""
_NETWORK = {
    # builtins by name too: a serialized error has no base classes
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "TimeoutError",
    "gaierror",
    # asyncpg
    "CannotConnectNowError",
    "ConnectionDoesNotExistError",
    "InvalidPasswordError",
    "InvalidAuthorizationSpecificationError",
    "InvalidCatalogNameError",
    # psycopg2 through SQLAlchemy (Alembic): refused, DNS, authentication
    "OperationalError",
}
# a bare OSError is a network error only when it says so (asyncpg: "Multiple exceptions:
# [Errno 111] Connect call failed …" when every address of a host refuses)
_NETWORK_OSERROR = re.compile(r"connect|name or service|multiple exceptions", re.IGNORECASE)
_HOST = re.compile(
    r"https?://([^/\s'\"]+)"  # a URL
    r"|connect to host ([^\s'\"]+)"  # aiohttp (ccxt)
    r"|host='([^']+)', port=(\d+)"  # urllib3 (the Hyperliquid SDK)
)


@dataclass(frozen=True)
class Link:
    """One exception of a chain: its class names (with base classes where known)."""

    name: str
    names: frozenset[str]
    message: str
    sqlstate: str | None = None

    @property
    def line(self) -> str:
        first = self.message.strip().splitlines()[0] if self.message.strip() else ""
        return first or self.name


def _kirby_bases() -> dict[str, frozenset[str]]:
    """Every KirbyError subclass by name, with its bases: a serialized error has a name only."""
    found: dict[str, frozenset[str]] = {}
    pending: list[type] = [errors.KirbyError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = frozenset(c.__name__ for c in cls.__mro__)
        pending.extend(cls.__subclasses__())
    return found


def chain(error: Any) -> list[Link]:
    """`error` and every exception it came from, outermost first."""
    bases = _kirby_bases()
    links: list[Link] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BaseException):
            name, names = type(error).__name__, frozenset(c.__name__ for c in type(error).__mro__)
            sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
            message = str(error)
            following = (
                getattr(error, "step_error", None)
                or error.__cause__
                or (None if error.__suppress_context__ else error.__context__)
            )
        else:  # dagster's SerializableErrorInfo
            name = error.cls_name
            names = bases.get(name, frozenset({name}))
            # Dagster's message starts "module.ClassName: ", as a traceback's last line
            sqlstate, message = None, re.sub(rf"^[\w.]*\b{re.escape(name)}: ", "", error.message)
            following = error.cause or error.context
        links.append(Link(name, names, message, sqlstate))
        error = following
    return links


def explain(error: BaseException, settings: Settings | None) -> list[str]:
    """What to tell the user about `error`: a few lines, the last one says what to do."""
    if isinstance(error, ValidationError) and error.title == Settings.__name__:
        return [
            *(
                f"KIRBY_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                for e in error.errors(include_url=False)
            ),
            "fix the variable (environment or .env) and run again",
        ]
    links = chain(error)
    prefix = f"{links[0].line}: " if getattr(error, "step_error", None) else ""
    lines = _explain(links[1:] if prefix else links, settings)
    return [prefix + lines[0], *lines[1:]]


def _explain(links: list[Link], settings: Settings | None) -> list[str]:
    def first(names: set[str]) -> Link | None:
        return next((link for link in links if link.names & names), None)

    def last(names: set[str]) -> Link | None:
        return next((link for link in reversed(links) if link.names & names), None)

    missing = next(
        (link for link in links if link.sqlstate == "42P01" or link.names & _NOT_MIGRATED), None
    )
    if missing is not None:
        return [f"the database is not migrated ({missing.line})", "run `kirby db migrate`"]
    network = next((link for link in reversed(links) if _is_network(link)), None)
    exchange = first({"ExchangeUnavailable"})
    if exchange is not None and network is not None:
        return [
            f"cannot reach {next(_hosts(links), 'the exchange')}: {network.line}",
            "check the network or the exchange URL settings (KIRBY_*_URL); "
            "`kirby sim` stands in for the exchanges offline",
        ]
    storage = network if exchange is None else None
    storage = storage or first({"StorageUnavailable"})
    if storage is not None:
        return [
            f"cannot connect to PostgreSQL at {_database_hosts(settings)}: {storage.line}",
            "start it, or point KIRBY_DATABASE_URL at a running server",
        ]
    known = last({"KirbyError"})
    if known is not None:
        return [known.line, *known.message.strip().splitlines()[1:3]]
    cause = next((link for link in links if not _dagster(link)), links[-1])
    return [f"{cause.name}: {cause.line}", DEBUG_HINT]


def _is_network(link: Link) -> bool:
    if link.names & _NETWORK:
        return True
    return "OSError" in link.names and _NETWORK_OSERROR.search(link.message) is not None


def _dagster(link: Link) -> bool:
    return any(name.startswith("Dagster") for name in link.names)


def _hosts(links: list[Link]) -> Iterator[str]:
    for link in links:
        for match in _HOST.finditer(link.message):
            url, aiohttp, host, port = match.groups()
            yield url or aiohttp or f"{host}:{port}"


def _database_hosts(settings: Settings | None) -> str:
    if settings is None:
        return "the configured server"
    if not settings.database_url:
        return f"Kirby's embedded server in {settings.home}"
    urls = [settings.database_url, settings.training_database_url or settings.database_url]
    hosts = []
    for url in urls:
        parts = urlsplit(url)
        hosts.append(f"{parts.hostname or 'localhost'}:{parts.port or 5432}")
    return ", ".join(dict.fromkeys(hosts))
