"""A raw Engine.IO / Socket.IO client for live servers (over ``websockets``).

Unlike python-socketio it sends any frame it is given (the fuzzer's), and it
notices at once when the server goes away: every pending call then raises
``ConnectionError`` instead of waiting for its timeout.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from tests.wsclient import dumps


class RawLiveClient:
    """One WebSocket to a live server; answers pings, matches acks to calls."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.ws: Any = None
        self.ack_id = 0
        self.calls: dict[int, asyncio.Future] = {}
        self.events: list[tuple[str, Any]] = []
        self.frames: asyncio.Queue = asyncio.Queue()  # frames that are not acks or pings
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._reader: asyncio.Task | None = None

    async def open(self, timeout: float = 5) -> str:
        """Open the WebSocket; return the Engine.IO OPEN frame."""
        self.ws = await asyncio.wait_for(
            websockets.connect(self.ws_url, compression=None, max_size=None, open_timeout=timeout),
            timeout,
        )
        first = await asyncio.wait_for(self.ws.recv(), timeout)
        self._reader = asyncio.create_task(self._read())
        return first

    async def connect(self, auth: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
        """Open and complete CONNECT; return the ``identity`` event's data."""
        await self.open(timeout)
        return await self.connect_on_open(auth, timeout)

    async def connect_on_open(self, auth: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
        """Complete CONNECT on an open socket; return the ``identity`` event's data."""
        await self.send("40" + dumps(auth))
        answer = await self.wait_connect_answer(timeout)
        if answer is None:
            raise ConnectionError("the server closed the connection")
        if not answer.startswith("40"):
            raise ConnectionRefusedError(answer)
        identity = await self.next_frame(timeout)
        return json.loads(identity[2:])[1]

    async def wait_connect_answer(self, timeout: float = 5) -> str | None:
        """The next CONNECT or CONNECT_ERROR frame (``None`` if the socket closes)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                frame = await self.next_frame(max(remaining, 0.001))
            except ConnectionError:
                return None
            if isinstance(frame, str) and frame[:2] in ("40", "44"):
                return frame

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame == "2":
                    await self.ws.send("3")
                    continue
                if isinstance(frame, str) and frame.startswith("43"):
                    body = frame[2:]
                    start = body.index("[")
                    future = self.calls.pop(int(body[:start]), None)
                    if future is not None and not future.done():
                        future.set_result(_loads(body[start:])[0])
                    continue
                if isinstance(frame, str) and frame.startswith("42"):
                    name, *args = _loads(frame[2:])
                    self.events.append((name, args[0] if args else None))
                await self.frames.put(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = getattr(self.ws, "close_code", None)
            self.closed.set()
            for future in self.calls.values():
                if not future.done():
                    future.set_exception(ConnectionError("the server closed the connection"))
            self.calls.clear()

    async def send(self, frame: str | bytes) -> None:
        """Send a text (str) or binary (bytes) frame; lone surrogates go out as
        the invalid UTF-8 they make (a text frame the server must refuse)."""
        try:
            if isinstance(frame, str):
                await self.ws.send(frame.encode("utf-8", "surrogatepass"), text=True)
            else:
                await self.ws.send(frame)
        except websockets.ConnectionClosed as exc:
            raise ConnectionError("the server closed the connection") from exc

    async def next_frame(self, timeout: float = 5) -> str | bytes:
        """The next frame that is not a ping or an ack (events, CONNECT answers)."""
        getter = asyncio.ensure_future(self.frames.get())
        closed = asyncio.ensure_future(self.closed.wait())
        done, _ = await asyncio.wait(
            {getter, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        closed.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        if closed in done:
            raise ConnectionError("the server closed the connection")
        raise TimeoutError(f"no frame within {timeout}s")

    async def call(self, name: str, data: Any, timeout: float = 5) -> Any:
        """Send an event with an ack id; return the ack's response."""
        if self.closed.is_set():
            raise ConnectionError("the server closed the connection")
        ack_id = self.ack_id
        self.ack_id += 1
        future = asyncio.get_running_loop().create_future()
        self.calls[ack_id] = future
        await self.send(f"42{ack_id}" + dumps([name, data]))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.calls.pop(ack_id, None)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def _loads(text: str) -> Any:
    """JSON from the server; nesting too deep for Python's parser stays text."""
    try:
        return json.loads(text)
    except RecursionError:
        return [text]
