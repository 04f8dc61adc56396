"""A raw Engine.IO / Socket.IO client over Channels' WebsocketCommunicator."""

from __future__ import annotations

import json
from typing import Any

from channels.testing import WebsocketCommunicator


class RawClient:
    """Speaks frames, so tests can assert exact bytes."""

    def __init__(self, app, path: str = "/socket.io/?EIO=4&transport=websocket", headers=None):
        self.comm = WebsocketCommunicator(app, path, headers=headers or [])

    async def open(self) -> str:
        connected, _ = await self.comm.connect()
        assert connected
        return await self.recv()

    async def send(self, text: str) -> None:
        await self.comm.send_to(text_data=text)

    async def send_bytes(self, data: bytes) -> None:
        await self.comm.send_to(bytes_data=data)

    async def recv(self, timeout: float = 2) -> str:
        return await self.comm.receive_from(timeout)

    async def recv_output(self, timeout: float = 2) -> dict[str, Any]:
        return await self.comm.receive_output(timeout)

    async def connect(self, user: str, device: str | None = None, client: str | None = None) -> list[str]:
        await self.open()
        auth = {
            "deviceId": device or f"dev-{user}",
            "clientId": client or f"cli-{user}",
            "claimedUserId": None,
            "token": f"valid-{user}",
        }
        await self.send("40" + json.dumps(auth, separators=(",", ":")))
        return [await self.recv(), await self.recv()]

    async def nothing(self, timeout: float = 0.1) -> bool:
        return await self.comm.receive_nothing(timeout)

    async def close(self) -> None:
        await self.comm.disconnect()
