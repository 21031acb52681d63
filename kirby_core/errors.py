"""Kirby's exception hierarchy: every error a user or an exchange can cause.

    KirbyError                  base; the message names the bad value and what is allowed
    ├── ConfigError             a setting or a catalog file is invalid
    │   └── CatalogError        a catalog entry is wrong (file, entry and allowed values named)
    ├── NotFound                an unknown starlisting, trading pair or coin was asked for
    ├── InvalidRequest          a bad time range, limit or parameter
    ├── StorageError            PostgreSQL refused or could not be reached
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
    """PostgreSQL could not be reached or refused the operation."""


class ExchangeError(KirbyError):
    """An exchange call failed."""


class ExchangeUnavailable(ExchangeError):
    """Network error, 5xx or 429 that persisted through the retry policy."""


class ExchangeProtocolError(ExchangeError):
    """The exchange answered with a payload that does not match its documented shape."""
