"""A lightweight WebSocket client for many connections in one process (bench-only).

An asyncio Protocol that does the RFC 6455 handshake, sends masked text frames and splits
incoming frames without decoding them unless asked, stamping each frame with the
`time.perf_counter()` of the read that completed it. A thousand of these cost far less CPU
than a thousand full-featured clients, so the latency measured is mostly the server's.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable


class WsClient(asyncio.Protocol):
    def __init__(self, on_frame: Callable[[WsClient, bytes, float], None]) -> None:
        self._on_frame = on_frame
        self._buffer = bytearray()
        self._open = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(
        cls, host: str, port: int, path: str, on_frame: Callable[[WsClient, bytes, float], None]
    ) -> WsClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(on_frame), host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        assert client.transport is not None
        client.transport.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await client._open
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)
        if not self._open.done():
            self._open.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buffer += data
        if not self._open.done():
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self._buffer.startswith(b"HTTP/1.1 101"):
                self._open.set_exception(ConnectionError(bytes(self._buffer[:80])))
                return
            del self._buffer[: end + 4]
            self._open.set_result(None)
        while True:
            frame = self._take_frame()
            if frame is None:
                return
            self._on_frame(self, frame, now)

    def _take_frame(self) -> bytes | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        length, offset = buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length, offset = struct.unpack_from("!H", buffer, 2)[0], 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length, offset = struct.unpack_from("!Q", buffer, 2)[0], 10
        if len(buffer) < offset + length:
            return None
        payload = bytes(buffer[offset : offset + length])
        del buffer[: offset + length]
        return payload

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        assert self.transport is not None
        self.transport.write(header + mask + masked)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
