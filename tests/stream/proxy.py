"""A TCP proxy on loopback in front of the test PostgreSQL, that a test can cut and restore.

The collector connects to the proxy; the proxy forwards to the real server over TCP or, for
the embedded server, its unix socket. `cut()` resets every proxied connection and refuses
new ones (what a crashed or unreachable server looks like); `restore()` lets them through.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class PostgresProxy:
    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        query = dict(parse_qsl(parts.query))
        socket_dir = query.pop("host", None)
        port = parts.port or 5432
        if socket_dir and socket_dir.startswith("/"):
            self._open = lambda: asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{port}")
        else:
            host = socket_dir or parts.hostname or "localhost"
            self._open = lambda: asyncio.open_connection(host, port)
        self._parts, self._query = parts, query
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.is_cut = False

    @property
    def url(self) -> str:
        """The target URL with the proxy as its host."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        user = self._parts.username or ""
        password = f":{self._parts.password}" if self._parts.password else ""
        netloc = f"{user}{password}@127.0.0.1:{port}"
        return urlunsplit(self._parts._replace(netloc=netloc, query=urlencode(self._query)))

    async def __aenter__(self) -> PostgresProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        self.is_cut = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.is_cut = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await self._open()
        self._writers |= {writer, upstream_writer}
        pipes = [
            asyncio.create_task(self._pipe(reader, upstream_writer)),
            asyncio.create_task(self._pipe(upstream_reader, writer)),
        ]
        self._tasks.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        self._tasks.difference_update(pipes)
        for end in (writer, upstream_writer):
            self._writers.discard(end)
            end.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
