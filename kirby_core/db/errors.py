"""What a PostgreSQL failure means: unavailable (retry later) or refused (do not retry).

Every boundary that talks to PostgreSQL catches `DRIVER_ERRORS` and raises
`storage_error(exc)` from it, so callers see a `StorageUnavailable` or a `StorageRefused`
(`kirby_core.errors`), never an asyncpg exception. The cause decides, by SQLSTATE class:

    unavailable  08 connection, 53 resources (too many connections), 57 operator
                 intervention (shutdown, cancel), 58 system, 40 rollback (deadlock,
                 serialization), 55P03 lock timeout; timeouts, OSError, a closed connection
    refused      everything else the server answers: 22 data (out of range, malformed),
                 23 constraint, 42 schema or syntax...; a bind value asyncpg cannot encode.
                 `input_at_fault` when a value sent is the cause (a bad value, a constraint)

A refused statement fails the same way however often it is retried; an unavailable one may
work in a moment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import asyncpg
from asyncpg.exceptions import _base

from kirby_core.errors import StorageError, StorageRefused, StorageUnavailable

DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
"""What asyncpg and the network raise; `storage_error` classifies each."""

_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57", "58", "40"})
_UNAVAILABLE_STATES = frozenset({"55P03"})
_INPUT_STATES = frozenset({"22001", "22003", "22007", "22008", "22023", "22P02"})
"""Data exceptions a bad value causes (too long, out of range, malformed); others of class 22
(division by zero...) are the statement's fault."""
_BAD_ARGUMENT = re.compile(r"query argument \$(\d+)\b.*\((.*)\)\s*$", re.DOTALL)


def storage_error(exc: BaseException, context: str = "") -> StorageError:
    """The Kirby error for a driver or network failure; `context` prefixes the message."""
    prefix = f"{context}: " if context else ""
    if isinstance(exc, TimeoutError):
        return StorageUnavailable(f"{prefix}the database did not answer in time")
    bad_argument = _BAD_ARGUMENT.search(str(exc))
    if isinstance(exc, asyncpg.DataError | _base.DataError) and bad_argument:
        # a bind value asyncpg could not encode; the value itself is left out of the message
        argument = int(bad_argument[1])
        return StorageRefused(
            f"{prefix}invalid query argument ${argument}: {bad_argument[2]}",
            sqlstate="22000",
            input_at_fault=True,
            argument=argument,
        )
    if isinstance(exc, _base.DataError):
        return StorageRefused(f"{prefix}{exc}", input_at_fault=True)
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES:
            return StorageUnavailable(f"{prefix}the database is unavailable: {exc}")
        column = getattr(exc, "column_name", None)
        return StorageRefused(
            f"{prefix}{exc}",
            sqlstate=state,
            input_at_fault=state[:2] == "23" or state in _INPUT_STATES,
            field=column,
        )
    reason = str(exc) or type(exc).__name__
    return StorageUnavailable(f"{prefix}the database is unavailable: {reason}")


@contextmanager
def arguments_named(names: Sequence[str]) -> Iterator[None]:
    """Translate driver errors (`storage_error`) and name the field of a refused query
    argument: `names[i]` is argument `$i+1`. Works on a raw connection or the API's pool."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise _named(storage_error(exc), names) from exc
    except StorageRefused as exc:
        raise _named(exc, names)  # noqa: B904  (already translated: keep its own cause)


def _named(error: StorageError, names: Sequence[str]) -> StorageError:
    if not isinstance(error, StorageRefused) or error.field is not None:
        return error
    if error.argument is not None and error.argument <= len(names):
        error.field = names[error.argument - 1]
        error.args = (str(error).replace(f"query argument ${error.argument}", error.field, 1),)
    return error
