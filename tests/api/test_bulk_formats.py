"""CSV and Parquet pages: CSV is PostgreSQL's COPY streamed, Parquet is encoded off the loop.

CSV must say exactly what the JSON page says (every kind of value, NULLs, a time with
microseconds), arrive in pieces while PostgreSQL writes it, and never keep a pooled
connection after its client is gone, cut off or too slow.
"""

from __future__ import annotations

import asyncio
import csv
import io
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pyarrow.parquet as pq
import pytest

from kirby_api import bulk, pages
from kirby_api.bulk import PIECE_BYTES, CsvExport, CsvResponse
from kirby_api.database import ConnectionPool
from kirby_api.datasets import SERVED_CANDLES, SERVED_FUNDING, SERVED_OPEN_INTEREST, ServedDataset
from kirby_api.window import make_window
from kirby_core.errors import StorageError
from tests.api.conftest import BTC_1M, write_candles
from tests.api.test_json_rows import PATHS, _write

CSV_5000 = BTC_1M + "?format=csv&limit=5000"


def _as_text(value: object) -> str:
    return "" if value is None else str(value)


@pytest.mark.parametrize(
    "dataset", [SERVED_CANDLES, SERVED_FUNDING, SERVED_OPEN_INTEREST], ids=lambda d: d.name
)
@pytest.mark.parametrize("latest", [False, True], ids=["window", "latest"])
async def test_csv_says_what_json_says(
    client, conn, catalog, dataset: ServedDataset, latest
) -> None:
    await _write(conn, catalog)
    params = {} if latest else {"start_time": "2024-05-01T00:00:00Z"}
    json_page = await client.get(PATHS[dataset.name], params=params)
    csv_page = await client.get(PATHS[dataset.name], params={**params, "format": "csv"})

    rows = list(csv.reader(io.StringIO(csv_page.text)))
    assert rows[0] == list(dataset.field_names)
    expected = [[_as_text(v) for v in row.values()] for row in json_page.json()["data"]]
    assert rows[1:] == expected and len(expected) == 2
    for header in ("Kirby-Count", "Kirby-Next-Cursor", "Kirby-Prev-Cursor"):
        assert csv_page.headers.get(header) == json_page.headers.get(header)


async def test_an_empty_csv_page_is_its_header(client, catalog) -> None:
    page = await client.get(BTC_1M, params={"format": "csv"})
    assert page.status_code == 200 and page.headers["Kirby-Count"] == "0"
    assert page.text == ",".join(SERVED_CANDLES.field_names) + "\n"


async def test_csv_time_with_microseconds_and_nulls(client, conn, catalog) -> None:
    await _write(conn, catalog)
    text = (await client.get(PATHS[SERVED_FUNDING.name], params={"format": "csv"})).text
    assert text.splitlines()[1:] == [
        "2024-05-01T00:00:00Z,,,-0.0000125,,64213.50,,,2024-05-01T01:00:00.000250Z",
        "2024-05-01T00:01:00Z,0.0000001,,,,,,,",
    ]


def _chunk_sizes(base: str, path: str) -> list[int]:
    """The HTTP chunks of a response, as the server sent them."""
    host, port = base.split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while data := sock.recv(1 << 16):
            raw += data
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    sizes = []
    while True:
        line, _, body = body.partition(b"\r\n")
        sizes.append(int(line, 16))
        body = body[sizes[-1] + 2 :]
        if sizes[-1] == 0:
            return sizes


async def test_csv_is_streamed_in_pieces(served, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(5000))
    async with served() as base:
        sizes = await asyncio.to_thread(_chunk_sizes, base, CSV_5000)
    assert len(sizes) > 2 and sizes[-1] == 0
    assert all(size >= PIECE_BYTES for size in sizes[:-2])


async def test_parquet_is_encoded_off_the_event_loop(client, conn, catalog, monkeypatch) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(3))
    on_loop: list[bool] = []
    encode = pages.parquet_file

    def spy(*args):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # a worker thread has no running loop
            on_loop.append(False)
        return encode(*args)

    monkeypatch.setattr(pages, "parquet_file", spy)
    response = await client.get(BTC_1M, params={"format": "parquet"})
    assert pq.read_table(io.BytesIO(response.content)).num_rows == 3
    assert on_loop == [False]


def _stalled_download(base: str, path: str) -> socket.socket:
    """A client that asks for a CSV page, reads its first bytes and then stops reading."""
    host, port = base.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    return sock


async def test_a_client_cut_off_returns_its_connection(served, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(5000))
    async with served(api_pool_size=1, api_query_timeout_seconds=5) as base:
        for _ in range(3):
            sock = await asyncio.to_thread(_stalled_download, base, CSV_5000)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()  # reset, mid-stream
        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            page = await http.get(BTC_1M, params={"format": "csv", "limit": 5000})
        assert page.status_code == 200 and page.text.count("\n") == 5001


@asynccontextmanager
async def _export(settings, **overrides) -> AsyncIterator[tuple[ConnectionPool, CsvExport]]:
    settings = settings.model_copy(update=overrides)
    database = ConnectionPool(settings.database_url, settings)
    await database.open()
    try:
        yield database, CsvExport(database, settings)
    finally:
        await database.close()


async def test_a_stalled_client_is_cut_off_and_its_connection_returns(
    settings, conn, catalog, caplog, monkeypatch
) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(10))
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # a client that stopped reading

    monkeypatch.setattr(bulk, "PIECE_BYTES", 1)
    window = make_window(None, None, 5000, None)
    async with _export(settings, api_pool_size=1, api_bulk_timeout_seconds=0.2) as (db, export):
        response = CsvResponse(export, SERVED_CANDLES, catalog["BTC/1m"], window, lambda *_: {})
        await response({}, None, send)
        assert await db.fetchval("SELECT count(*) FROM candles") == 10  # the one connection
    assert [m.get("more_body") for m in sent] == [None, True]  # no final chunk
    assert "csv download cut off: the client read too slowly" in caplog.text


async def test_a_copy_past_its_time_gives_its_connection_back(settings, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(10))
    window = make_window(None, None, 5000, None)

    async def never(_data: bytes) -> None:
        await asyncio.Event().wait()

    async with _export(settings, api_pool_size=1, api_bulk_timeout_seconds=0.2) as (db, export):
        with pytest.raises(StorageError, match="did not answer in time"):
            async with export.open(SERVED_CANDLES, catalog["BTC/1m"], window) as page:
                await page.copy(never)
        assert await db.fetchval("SELECT count(*) FROM candles") == 10  # the one connection


async def test_csv_downloads_leave_the_pool_to_other_routes(settings, catalog) -> None:
    window = make_window(None, None, 10, None)
    overrides = {"api_pool_size": 2, "api_query_timeout_seconds": 0.2}
    async with (
        _export(settings, **overrides) as (db, export),
        export.open(SERVED_CANDLES, catalog["BTC/1m"], window),  # the one CSV slot
    ):
        with pytest.raises(StorageError, match="too many CSV downloads"):
            async with export.open(SERVED_CANDLES, catalog["BTC/1m"], window):
                pass
        assert await db.fetchval("SELECT 1") == 1  # the other connection is free
