"""Engine.IO v4 over a Channels WebSocket: the transport under Socket.IO.

``EngineIOConsumer`` accepts the WebSocket (refusing other EIO versions and
transports), sends the OPEN packet, pings and enforces the pong timeout and
the connect timeout, limits frame size, unwraps MESSAGE packets for the
protocol on top (``on_message`` / ``on_binary``), and ends a connection
exactly once (``on_end``), from either side.

Every database access goes through ``database_sync_to_async`` (which closes
stale connections around each call), so ``dispatch`` skips Channels' per-frame
``aclose_old_connections`` thread hop, which alone halves throughput.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from . import protocol as p
from .fanout import FanOutMixin
from .server import DocSyncServer, get_default_server

logger = logging.getLogger(__name__)


def new_sid() -> str:
    return secrets.token_urlsafe(15)


class EngineIOConsumer(FanOutMixin, AsyncWebsocketConsumer):
    """One Engine.IO v4 connection over WebSocket, serving a ``DocSyncServer``."""

    server: DocSyncServer | None = None

    def __init__(self, server: DocSyncServer | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if server is not None:
            self.server = server

    # -- Channels plumbing ---------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.srv = self.server or get_default_server()
        self.init_session()
        self.closing = False
        self.pong = asyncio.Event()
        self.heartbeat: asyncio.Task | None = None
        self.connect_deadline: asyncio.TimerHandle | None = None
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        await self.accept()
        eio, transport = query.get("EIO", [""])[0], query.get("transport", [""])[0]
        if eio != "4" or transport != "websocket":
            logger.info("docsync: refused EIO=%r transport=%r", eio, transport)
            await self._close(
                1002,
                reason=f"Unsupported protocol: EIO={eio or '?'} transport={transport or '?'}; "
                "this server speaks Engine.IO 4 over WebSocket",
            )
            self.closing = True
            return
        self.sid = new_sid()
        self.srv.register(self)  # server.close() closes sockets that never CONNECT too
        await self.send(
            p.open_packet(
                self.sid, self.srv.ping_interval, self.srv.ping_timeout, self.srv.max_payload
            )
        )
        loop = asyncio.get_running_loop()
        self.heartbeat = loop.create_task(self._heartbeat())
        self.connect_deadline = loop.call_later(
            self.srv.connect_timeout / 1000, self._connect_timed_out
        )

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # uvicorn closes every WebSocket with 1012 (service restart) on shutdown.
        going = message.get("code") == 1012
        await self._end("server shutting down" if going else "transport close")
        raise StopConsumer()

    async def on_server_stop(self) -> None:
        cleanup = getattr(self, "cleanup", None)
        try:
            if cleanup is not None:
                await asyncio.wait_for(cleanup, 5)
            else:
                await asyncio.wait_for(self.shutdown("server shutting down"), 5)
        except Exception:
            logger.exception("docsync: clean-up on server shutdown failed")

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close=False
    ) -> None:
        if self.closing:
            return  # nothing goes out after a server-side close
        await super().send(text_data, bytes_data, close)

    async def _send_frames(self, frames: list[str | bytes]) -> None:
        for frame in frames:
            if isinstance(frame, str):
                await self.send(text_data=frame)
            else:
                await self.send(bytes_data=bytes(frame))

    # -- Engine.IO -----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        if self._too_big(text_data, bytes_data):
            logger.info(
                "docsync: frame over maxPayload (%s bytes) from %s", self.srv.max_payload, self.sid
            )
            await self.shutdown("transport close", code=1009)
            return
        if bytes_data is not None:
            await self.on_binary(bytes_data)
            return
        kind = text_data[:1]
        if kind == p.EIO_MESSAGE:
            await self.on_message(text_data[1:])
        elif kind == p.EIO_PONG:
            self.pong.set()
        elif kind in (p.EIO_PING, p.EIO_CLOSE):
            # Only the server pings in EIO 4; the reference closes on a client ping.
            await self.shutdown("transport close")
        else:
            logger.debug("docsync: ignored Engine.IO packet %r", text_data[:16])

    def _too_big(self, text: str | None, data: bytes | None) -> bool:
        limit = self.srv.max_payload
        if data is not None:
            return len(data) > limit
        if len(text) > limit:
            return True
        return len(text) * 4 > limit and len(text.encode()) > limit

    async def _heartbeat(self) -> None:
        interval, timeout = self.srv.ping_interval / 1000, self.srv.ping_timeout / 1000
        try:
            while not self.closing:
                await asyncio.sleep(interval)
                self.pong.clear()
                await self.send(text_data=p.EIO_PING)
                try:
                    await asyncio.wait_for(self.pong.wait(), timeout)
                except TimeoutError:
                    await self.shutdown("ping timeout")
                    return
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("docsync: heartbeat failed")

    def _connect_timed_out(self) -> None:
        if not self.connected and not self.closing:
            task = asyncio.get_running_loop().create_task(self.shutdown("transport close"))
            self.srv._tasks.add(task)
            task.add_done_callback(self.srv._tasks.discard)

    async def shutdown(self, reason: str, code: int = 1000) -> None:
        """Close the WebSocket from the server side, cleaning up first."""
        if self.closing:
            return
        await self._end(reason)
        await self._close(code)

    async def _close(self, code: int, reason: str | None = None) -> None:
        """Close with an RFC 6455 code; fall back to its 4xxx twin where refused.

        Daphne (autobahn) only sends 1000 and 3000-4999 and raises on 1002 or
        1009, so those become 4002 and 4009 there. Not ``send(close=...)``:
        channels 4.3 refuses a send without data.
        """
        try:
            await self.close(code=code, reason=reason)
        except Exception:
            if code == 1000 or code >= 3000:
                raise
            await self.close(code=4000 + code % 1000, reason=reason)

    async def _end(self, reason: str) -> None:
        if getattr(self, "closing", True):
            return
        self.closing = True
        if self.connect_deadline is not None:
            self.connect_deadline.cancel()
        if self.heartbeat is not None and self.heartbeat is not asyncio.current_task():
            self.heartbeat.cancel()
        self.srv.unregister(self)
        # Shielded: when the ASGI server cancels us on shutdown right after the
        # transport closed, the others must still learn that we left.
        self.cleanup = asyncio.ensure_future(self.on_end(reason))
        await asyncio.shield(self.cleanup)

    # -- what the protocol on top provides -------------------------------------

    def init_session(self) -> None:
        """Set up per-connection state (called first in ``connect``)."""

    @property
    def connected(self) -> bool:
        """Whether the client completed its handshake (else: connect timeout)."""
        return False

    async def on_message(self, text: str) -> None:
        """An Engine.IO MESSAGE (the text after the ``4``)."""
        raise NotImplementedError(".on_message() must be implemented.")

    async def on_binary(self, data: bytes) -> None:
        """A binary frame (an attachment of the packet before it)."""
        raise NotImplementedError(".on_binary() must be implemented.")

    async def on_end(self, reason: str) -> None:
        """The connection is over (``reason`` as PROTOCOL §6 names it): clean up."""
