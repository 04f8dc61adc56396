"""A DocSync client on a bare TCP socket, for clients that misbehave.

It speaks just enough WebSocket, Engine.IO and Socket.IO to connect and send
requests, and then does what real clients do when things go wrong: it stops
reading (its kernel receive buffer is kept small, so the server notices
soon), or it vanishes with a TCP reset in the middle of an answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class ClosedByServer(ConnectionError):
    """The server sent a close frame: ``code`` and ``reason``."""

    def __init__(self, payload: bytes):
        self.code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        self.reason = payload[2:].decode(errors="replace")
        super().__init__(f"closed by the server: {self.code} {self.reason!r}")


class RawSocketClient:
    """One connection; ``recv_*`` reads only when the test asks it to."""

    def __init__(self, port: int, rcvbuf: int = 4096):
        self.port = port
        self.rcvbuf = rcvbuf
        self.ack_id = 0

    async def open(self) -> str:
        sock = socket.socket()
        # Small buffers: a client that stops reading fills them quickly.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        self.sock = sock
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = await self.reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        return await self.recv_text()

    async def connect(self, user: str) -> Any:
        """Open, CONNECT as ``user`` (``valid-<user>`` token); return the identity."""
        await self.open()
        auth = {"deviceId": f"dev-{user}", "clientId": f"cli-{user}", "token": f"valid-{user}"}
        await self.send_text("40" + json.dumps(auth))
        frame = await self.recv_text()
        assert frame.startswith("40"), frame
        return await self.recv_event("identity")

    async def send_text(self, text: str) -> None:
        self.writer.write(_frame(text.encode()))
        await self.writer.drain()

    async def emit(self, name: str, data: Any) -> int:
        """Send an event with an ack id; return the id."""
        self.ack_id += 1
        await self.send_text(f"42{self.ack_id}" + json.dumps([name, data]))
        return self.ack_id

    async def recv_frame(self) -> tuple[int, bytes]:
        head = await self.reader.readexactly(2)
        opcode, size = head[0] & 0x0F, head[1] & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return opcode, await self.reader.readexactly(size)

    async def recv_text(self, timeout: float = 5) -> str:
        """The next text frame; answers Engine.IO and WebSocket pings on the way."""
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.recv_frame()
                if opcode == 0x9:  # WebSocket ping (uvicorn's keepalive)
                    self.writer.write(_frame(payload, 0xA))
                    continue
                if opcode == 0x8:
                    raise ClosedByServer(payload)
                if opcode != 0x1:
                    continue
                text = payload.decode()
                if text == "2":
                    await self.send_text("3")
                    continue
                return text

    async def recv_event(self, name: str, timeout: float = 5) -> Any:
        prefix = f'42["{name}",'
        while True:
            text = await self.recv_text(timeout)
            if text.startswith(prefix):
                return json.loads(text[2:])[1]

    async def recv_ack(self, ack_id: int, timeout: float = 5) -> Any:
        prefix = f"43{ack_id}["
        while True:
            text = await self.recv_text(timeout)
            if text.startswith(prefix):
                return json.loads(text[len(prefix) - 1 :])[0]

    def vanish(self) -> None:
        """Disappear at once: a TCP reset, nothing read, no close frame."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.transport.abort()
