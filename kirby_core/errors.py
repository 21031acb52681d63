"""Kirby's exception hierarchy: every error a user or an exchange can cause.

    KirbyError                  base; the message names the bad value and what is allowed
    ├── ConfigError             a setting or a catalog file is invalid
    │   └── CatalogError        a catalog entry is wrong (file, entry and allowed values named)
    ├── NotFound                an unknown starlisting, trading pair or coin was asked for
    ├── InvalidRequest          a bad time range, limit or parameter
    ├── StorageError            PostgreSQL failed an operation (`kirby_core.db.errors` classifies)
    │   ├── StorageUnavailable  refused, timed out, server gone, too many connections: retry later
    │   └── StorageRefused      the data or the statement is at fault (bad value, constraint,
    │                           schema mismatch): retrying the same thing fails the same way
    └── ExchangeError           an exchange call failed
        ├── ExchangeUnavailable     network error, 5xx or rate limit that outlived its retries
        └── ExchangeProtocolError   a payload that does not have the documented shape

Lower-layer errors (asyncpg, ccxt, the Hyperliquid SDK) are translated at the boundary with
`raise ... from exc`, so callers only ever catch `KirbyError`.
"""

from __future__ import annotations


class KirbyError(Exception):
    """Base of every error Kirby raises on purpose."""


class ConfigError(KirbyError):
    """A setting or a configuration file is invalid."""


class CatalogError(ConfigError):
    """A catalog entry is invalid; nothing was written."""


class NotFound(KirbyError):
    """An unknown starlisting, trading pair or other named thing was requested."""


class InvalidRequest(KirbyError):
    """A parameter is out of range (time range, limit, interval...)."""


class StorageError(KirbyError):
    """PostgreSQL could not be reached or refused the operation (catch a subclass to tell which)."""


class StorageUnavailable(StorageError):
    """The server could not be reached or did not answer in time; the same call may work later."""


class StorageRefused(StorageError):
    """The server refused the operation itself (SQLSTATE class 22, 23, 42...): do not retry.

    `input_at_fault`: a value sent was bad (out of range, malformed, a constraint broken), so
    a client that sent it can be told; `field` names it when known.
    """

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        input_at_fault: bool = False,
        field: str | None = None,
        argument: int | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.input_at_fault = input_at_fault
        self.field = field
        self.argument = argument
        """1-based index of the query argument that could not be encoded, when that failed."""


class ExchangeError(KirbyError):
    """An exchange call failed."""


class ExchangeUnavailable(ExchangeError):
    """Network error, 5xx or 429 that persisted through the retry policy."""


class ExchangeProtocolError(ExchangeError):
    """The exchange answered with a payload that does not match its documented shape."""
