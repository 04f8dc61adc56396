"""A raw Engine.IO / Socket.IO client over Channels' WebsocketCommunicator."""

from __future__ import annotations

import json
from typing import Any

from channels.testing import WebsocketCommunicator

PATH = "/socket.io/?EIO=4&transport=websocket"


def dumps(obj: Any) -> str:
    """JSON as the reference server writes it (compact, UTF-8 kept)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def event(name: str, data: Any, ack: int | None = None) -> str:
    """The text frame of an EVENT (``42<ack>["name",data]``)."""
    return f"42{'' if ack is None else ack}" + dumps([name, data])


def ack(ack_id: int, data: Any) -> str:
    """The text frame of an ACK (``43<ack>[data]``)."""
    return f"43{ack_id}" + dumps([data])


def auth(user: str, device: str | None = None, client: str | None = None) -> dict[str, Any]:
    return {
        "deviceId": device or f"dev-{user}",
        "clientId": client or f"cli-{user}",
        "claimedUserId": None,
        "token": f"valid-{user}",
    }


class RawClient:
    """Speaks frames, so tests can assert exact bytes."""

    def __init__(self, app, path: str = PATH, headers=None):
        self.comm = WebsocketCommunicator(app, path, headers=headers or [])
        self.ack_id = 0

    async def open(self) -> str:
        connected, _ = await self.comm.connect()
        assert connected
        return await self.recv()

    async def send(self, text: str) -> None:
        await self.comm.send_to(text_data=text)

    async def send_bytes(self, data: bytes) -> None:
        await self.comm.send_to(bytes_data=data)

    async def recv(self, timeout: float = 2) -> str | bytes:
        return await self.comm.receive_from(timeout)

    async def recv_json(self, timeout: float = 2) -> tuple[str, Any]:
        """Receive one text frame; return its prefix (``42``, ``431`` ...) and JSON."""
        frame = await self.recv(timeout)
        assert isinstance(frame, str), frame
        start = min(i for i in (frame.find("["), frame.find("{")) if i >= 0)
        return frame[:start], json.loads(frame[start:])

    async def recv_output(self, timeout: float = 2) -> dict[str, Any]:
        return await self.comm.receive_output(timeout)

    async def expect_close(self, timeout: float = 2) -> int:
        """Wait for the server to close the WebSocket; return the close code."""
        while True:
            out = await self.recv_output(timeout)
            if out["type"] == "websocket.close":
                return out.get("code", 1000)

    async def connect(
        self, user: str, device: str | None = None, client: str | None = None
    ) -> list[str]:
        await self.open()
        return await self.connect_on_open(user, device, client)

    async def connect_on_open(
        self, user: str, device: str | None = None, client: str | None = None
    ) -> list[str]:
        """CONNECT on an open socket; return the CONNECT answer and ``identity``."""
        await self.send("40" + dumps(auth(user, device, client)))
        return [await self.recv(3), await self.recv(3)]

    async def emit(self, name: str, data: Any) -> int:
        """Send an event with the next ack id; return that id."""
        ack_id = self.ack_id
        self.ack_id += 1
        await self.send(event(name, data, ack_id))
        return ack_id

    async def call(self, name: str, data: Any, timeout: float = 2) -> Any:
        """Send an event and return its ack's response, skipping nothing."""
        ack_id = await self.emit(name, data)
        prefix, body = await self.recv_json(timeout)
        assert prefix == f"43{ack_id}", (prefix, body)
        return body[0]

    async def nothing(self, timeout: float = 0.1) -> bool:
        return await self.comm.receive_nothing(timeout)

    async def close(self) -> None:
        await self.comm.disconnect()
