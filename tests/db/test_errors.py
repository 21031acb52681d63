"""Storage errors are classified by cause: unavailable (retry later) or refused (do not)."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
from asyncpg import exceptions as pg

from kirby_core.db.connection import connect
from kirby_core.db.errors import arguments_named, storage_error
from kirby_core.db.urls import DatabaseUrls, with_database
from kirby_core.errors import StorageRefused, StorageUnavailable


@pytest.mark.parametrize(
    ("exc", "unavailable"),
    [
        (pg.TooManyConnectionsError("sorry, too many clients already"), True),  # 53300
        (pg.CannotConnectNowError("the database system is starting up"), True),  # 57P03
        (pg.AdminShutdownError("terminating connection"), True),  # 57P01
        (pg.QueryCanceledError("canceling statement due to statement timeout"), True),  # 57014
        (pg.ConnectionDoesNotExistError("connection was closed"), True),  # 08003
        (pg.DeadlockDetectedError("deadlock detected"), True),  # 40P01
        (pg.LockNotAvailableError("could not obtain lock"), True),  # 55P03
        (TimeoutError(), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (asyncpg.InterfaceError("connection is closed"), True),
        (pg.NumericValueOutOfRangeError("integer out of range"), False),  # 22003
        (pg.UniqueViolationError("duplicate key value"), False),  # 23505
        (pg.UndefinedColumnError('column "x" does not exist'), False),  # 42703
        (pg.UndefinedTableError('relation "x" does not exist'), False),  # 42P01
    ],
)
def test_classified_by_cause(exc: BaseException, unavailable: bool) -> None:
    error = storage_error(exc)
    assert isinstance(error, StorageUnavailable if unavailable else StorageRefused)


@pytest.mark.parametrize(
    ("exc", "input_at_fault"),
    [
        (pg.NumericValueOutOfRangeError("integer out of range"), True),
        (pg.CheckViolationError("violates check constraint"), True),
        (pg.DivisionByZeroError("division by zero"), False),  # class 22, the statement's fault
        (pg.UndefinedColumnError('column "x" does not exist'), False),
    ],
)
def test_refusals_say_whether_the_input_is_at_fault(
    exc: BaseException, input_at_fault: bool
) -> None:
    error = storage_error(exc)
    assert isinstance(error, StorageRefused)
    assert error.input_at_fault is input_at_fault


async def test_a_value_the_server_refuses(conn: asyncpg.Connection) -> None:
    with pytest.raises(pg.InvalidTextRepresentationError) as raised:
        await conn.fetchval("SELECT $1::text::integer", "twelve")
    error = storage_error(raised.value)
    assert isinstance(error, StorageRefused)
    assert error.sqlstate == "22P02" and error.input_at_fault
    assert "twelve" in str(error)


async def test_a_value_the_driver_cannot_send_is_named(conn: asyncpg.Connection) -> None:
    # a valid Python datetime that is past year 9999 in UTC
    beyond = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    with pytest.raises(StorageRefused) as raised, arguments_named(["name", "expires_at"]):
        await conn.fetchval("SELECT $1::text, $2::timestamptz", "key", beyond)
    error = raised.value
    assert error.input_at_fault and error.argument == 2 and error.field == "expires_at"
    assert str(error) == "invalid expires_at: date value out of range"


async def test_connect_names_the_server_it_could_not_reach() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StorageUnavailable, match=rf"cannot connect to .*127\.0\.0\.1:{port}"):
        await connect(f"postgresql://kirby:secret@127.0.0.1:{port}/kirby", connect_timeout=5)


async def test_connect_to_a_missing_database_is_refused(database_urls: DatabaseUrls) -> None:
    with pytest.raises(StorageRefused, match="does not exist"):
        await connect(with_database(database_urls.realtime, "kirby_no_such_database"))


async def test_connect_sessions_are_utc_and_named(database_urls: DatabaseUrls) -> None:
    conn = await connect(database_urls.realtime, application_name="kirby_test")
    try:
        assert await conn.fetchval("SHOW timezone") == "UTC"
        assert await conn.fetchval("SHOW application_name") == "kirby_test"
    finally:
        await conn.close()
