"""A real webhook receiver for tests: an aiohttp server that checks signatures and
records every event it is sent (duplicates too), and can be stopped and started
again on the same port."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from docsync.webhooks import SignatureError, verify_signature
from tests.liveserver import free_port

SECRET = "whsec-test"


class Receiver:
    """Records ``(event, headers)``; answers 200, or ``status`` when set."""

    def __init__(self, secret: str = SECRET, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.events: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.monotonic() of each event
        self.bad_signatures = 0
        self.status = 200
        self._runner: web.AppRunner | None = None
        self._cond = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def settings(self, **extra: Any) -> dict[str, Any]:
        """A ``DOCSYNC["WEBHOOKS"]`` entry for this receiver."""
        return {"name": "test", "url": self.url, "secret": self.secret, **extra}

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_signature(self.secret, body, request.headers.get("DocSync-Signature"))
        except SignatureError:
            self.bad_signatures += 1
            return web.Response(status=400)
        event = json.loads(body)
        assert request.headers["DocSync-Event-Id"] == event["id"]
        assert request.headers["DocSync-Event-Type"] == event["type"]
        async with self._cond:
            self.events.append(event)
            self.arrived.append(time.monotonic())
            self._cond.notify_all()
        return web.Response(status=self.status)

    def of(self, event_type: str, **data: Any) -> list[dict[str, Any]]:
        """The events of ``event_type`` whose data has the given values."""
        return [
            e
            for e in self.events
            if e["type"] == event_type and all(e["data"].get(k) == v for k, v in data.items())
        ]

    async def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        """Wait until ``predicate(self)`` holds."""

        async def until() -> None:
            async with self._cond:
                await self._cond.wait_for(lambda: predicate(self))

        await asyncio.wait_for(until(), timeout)
