"""A python-socketio AsyncClient wrapper that records the events it receives."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio


class Client:
    """A real Socket.IO client (python-socketio), as a user would write one."""

    def __init__(
        self,
        url: str,
        user: str | None = None,
        *,
        device: str | None = None,
        client: str | None = None,
        token: str | None = None,
        auth: Any = None,
    ):
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self._cond = asyncio.Condition()
        if auth is None:
            auth = {
                "deviceId": device or f"dev-{user}",
                "clientId": client or f"cli-{user}",
                "claimedUserId": None,
                "token": token if token is not None else f"valid-{user}",
            }
        self.auth = auth
        self.client_id = auth.get("clientId") if isinstance(auth, dict) else None
        self.sio.on("*", self._record)
        # Reserved events do not reach the catch-all handler.
        for name in ("connect_error", "disconnect"):
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str):
        async def record(*args: Any) -> None:
            await self._record(name, args[0] if args else None)

        return record

    async def _record(self, name: str, data: Any = None) -> None:
        async with self._cond:
            self.events.append((name, data))
            self._cond.notify_all()

    async def connect(self) -> Client:
        await self.sio.connect(self.url, transports=["websocket"], auth=self.auth, wait_timeout=5)
        self.identity = await self.wait_for("identity")
        return self

    async def refused(self, namespace: str = "/") -> Any:
        """Connect, expecting a refusal; return what ``connect_error`` received."""
        if namespace != "/":
            self.sio.on("connect_error", self._recorder("connect_error"), namespace=namespace)
        try:
            await self.sio.connect(
                self.url,
                transports=["websocket"],
                auth=self.auth,
                namespaces=[namespace],
                wait_timeout=5,
            )
        except socketio.exceptions.ConnectionError as exc:
            self.error = exc
        else:
            await self.sio.disconnect()
            raise AssertionError("the connection was accepted")
        return await self.wait_for("connect_error")

    async def wait_for(self, name: str, predicate=lambda data: True, timeout: float = 5.0) -> Any:
        """Wait for (and consume) the first recorded event ``name`` matching ``predicate``."""

        async def find():
            for i, (n, d) in enumerate(self.events):
                if n == name and predicate(d):
                    del self.events[i]
                    return True, d
            return False, None

        async with self._cond:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                found, data = await find()
                if found:
                    return data
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise TimeoutError(f"no {name!r} event within {timeout}s; got {self.events!r}")
                try:
                    await asyncio.wait_for(self._cond.wait(), remaining)
                except TimeoutError:
                    pass

    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    async def call(self, event: str, data: Any, timeout: float = 5.0) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    async def sync(
        self, doc_id: str, operations=(), snapshot=None, clock: int = 0, doc_type: str = "doc"
    ):
        return await self.call(
            "sync",
            {
                "type": doc_type,
                "docId": doc_id,
                "operations": list(operations),
                "serializedDoc": snapshot,
                "clock": clock,
            },
        )

    async def close(self) -> None:
        await self.sio.disconnect()
