"""Engine.IO v4 over a Channels WebSocket: the transport under Socket.IO.

``EngineIOConsumer`` is the bottom of the consumer stack (Engine.IO here,
Socket.IO in ``docsync.socketio_consumer``, DocSync in ``docsync.consumers``).
It accepts the WebSocket (refusing other EIO versions and
transports), sends the OPEN packet, pings and enforces the pong timeout and
the connect timeout, limits frame size, unwraps MESSAGE packets for the
protocol on top (``on_message`` / ``on_binary``), and ends a connection
exactly once (``on_end``), whatever ends it.

Ending a connection has ONE path. Whatever asks for it (the client closing,
a send that finds the client gone, a handler raising, a ping timeout, a
client that stops reading, the server stopping) calls :meth:`request_end`;
the connection then ends as soon as the request it is handling is done (so
that the ``dirty`` and events of work already committed still go out):
:meth:`_terminate` runs ``on_end`` once, closes the socket (bounded in
time) and stops the consumer. Sends never raise: once the client is gone
they do nothing.

Frames are read ahead of the handlers (:meth:`EngineIOConsumer.read_ahead`):
a pong is taken as it arrives, not after the requests queued before it, so
a connection whose requests wait (a busy document, a slow database) is not
dropped for a ping timeout. Everything else reaches the handlers in order.

A client that stops reading is dropped. A pong proves the client read
everything sent before its ping, so the transport counts the bytes sent
since the last answered ping; past ``MAX_UNREAD`` it pings at once and holds
further frames in the connection's own queue until the pong comes. A
connection whose held frames pass ``MAX_UNREAD`` as well, whose ping is not
answered within ``PING_TIMEOUT``, or whose send blocks that long (uvicorn
stops accepting frames when the socket does not drain), is dropped.

Every database access goes through ``database_sync_to_async`` (which closes
stale connections around each call), so ``dispatch`` skips Channels' per-frame
``aclose_old_connections`` thread hop, which alone halves throughput.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from . import metrics
from . import protocol as p
from .default import get_default_server
from .fanout import FanOutMixin
from .gctune import tune_once
from .server import DocSyncServer

if TYPE_CHECKING:
    from asgiref.typing import WebSocketDisconnectEvent

logger = logging.getLogger(__name__)

#: Seconds a server-side close may take before the connection is let go.
CLOSE_TIMEOUT = 1.0
#: Frames read ahead of the handlers; past this the client is not read from.
READ_AHEAD = 16
#: What a pong read ahead becomes when held frames wait for the handlers to send them.
_RELEASE = {"type": "eio.release"}


def new_sid() -> str:
    return secrets.token_urlsafe(15)


class EngineIOConsumer(FanOutMixin, AsyncWebsocketConsumer):
    """One Engine.IO v4 connection over WebSocket, serving a ``DocSyncServer``."""

    #: The server served: ``as_asgi(server=...)``, or set on a subclass; the
    #: default server of the settings (``docsync.default``) when neither is.
    server: DocSyncServer
    read_ahead_limit = READ_AHEAD

    def __init__(self, server: DocSyncServer | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if server is not None:
            self.server = server
        elif getattr(type(self), "server", None) is None:
            self.server = get_default_server()
        self.closing = False
        self.cleanup: asyncio.Future[Any] | None = None
        self._busy = False  # a handler is running
        self._end_reason: tuple[str, int] | None = None
        self._ended = asyncio.Event()  # on_end has run
        self._close_sent = False
        self._sent = 0  # bytes handed to the ASGI server
        self._confirmed = 0  # of those, how many the client proved it read (a pong)
        self._pings: list[int] = []  # _sent right after each unanswered ping
        self._held: deque[tuple[dict[str, Any], int]] | None = None  # waiting for a pong
        self._held_bytes = 0
        self._writer: asyncio.Task[Any] | None = None  # the task inside frame_send
        self._abandoned = False
        self._end_when_idle: tuple[str, int] | None = None  # drop(): after this request

    # -- Channels plumbing ---------------------------------------------------

    async def read_ahead(self, receive: Any) -> None:
        """Read the client in a task of its own; pongs are taken at once."""
        while True:
            try:
                message = await receive()
            except Exception:
                logger.exception("docsync: reading %s failed", self._sid_or_new())
                message = {"type": "websocket.disconnect", "code": 1006}
            if message["type"] == "websocket.receive" and message.get("text") == p.EIO_PONG:
                if self.closing or not self._pong_seen():
                    continue
                message = _RELEASE  # frames held for this pong go out in the handlers' order
            await self.queue_client_message(message)
            if message["type"] == "websocket.disconnect":
                return

    async def eio_release(self, message: dict[str, Any]) -> None:
        await self._release_held()

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        if self._end_reason is not None and message["type"] != "websocket.disconnect":
            return  # ending: nothing more is handled
        self._busy = True
        try:
            await handler(message)
        except StopConsumer:
            raise
        except Exception:
            logger.exception(
                "docsync: handling %s failed; closing %s", message["type"], self._sid_or_new()
            )
            self.request_end("transport error")
        finally:
            self._busy = False
        if self._end_when_idle is not None:
            self.request_end(*self._end_when_idle)
        if self._end_reason is not None:
            await self._terminate()
            raise StopConsumer()

    async def connect(self) -> None:
        tune_once()  # the first connection of the process (docsync.gctune)
        self.init_session()
        self.pong = asyncio.Event()
        self.heartbeat: asyncio.Task[None] | None = None
        self.connect_deadline: asyncio.TimerHandle | None = None
        if self.server.draining:
            # This process is going away (docsync.drain): HTTP 403, the client
            # tries again, on another process behind the load balancer.
            self.closing = True
            await self.close()
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        await self.accept()
        eio, transport = query.get("EIO", [""])[0], query.get("transport", [""])[0]
        if eio != "4" or transport != "websocket":
            logger.info("docsync: refused EIO=%r transport=%r", eio, transport)
            metrics.refused("unsupported_protocol")
            await self._close(
                1002,
                reason=f"Unsupported protocol: EIO={eio or '?'} transport={transport or '?'}; "
                "this server speaks Engine.IO 4 over WebSocket",
            )
            self.closing = True
            return
        self.sid = new_sid()
        # server.close() closes sockets that never CONNECT too.
        self.server.register(self)
        await self.send(
            p.open_packet(
                self.sid,
                self.server.ping_interval,
                self.server.ping_timeout,
                self.server.max_payload,
            )
        )
        loop = asyncio.get_running_loop()
        self.heartbeat = loop.create_task(self._heartbeat())
        self.connect_deadline = loop.call_later(
            self.server.connect_timeout / 1000, self._connect_timed_out
        )

    def _sid_or_new(self) -> str:
        return getattr(self, "sid", "a new connection")

    async def websocket_disconnect(self, message: WebSocketDisconnectEvent) -> None:
        # uvicorn closes every WebSocket with 1012 (service restart) on shutdown.
        going = message.get("code") == 1012
        await self._end("server shutting down" if going else "transport close")
        raise StopConsumer()

    async def on_server_stop(self) -> None:
        try:
            if self.cleanup is not None:
                await asyncio.wait_for(asyncio.shield(self.cleanup), 5)
            else:
                await asyncio.wait_for(self._end("server shutting down"), 5)
        except Exception:
            logger.exception("docsync: clean-up on server shutdown failed")

    # -- sending -------------------------------------------------------------

    async def send(  # type: ignore[override]  # AsyncWebsocketConsumer's, not AsyncConsumer's
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Send a frame (then end the connection if ``close``); never raises.

        Frames past ``MAX_UNREAD`` wait in the connection's queue for a pong.
        """
        if self.closing or self._end_reason is not None:
            return  # nothing goes out once the connection is ending
        message: dict[str, Any]
        if text_data is not None:
            message, size = {"type": "websocket.send", "text": text_data}, len(text_data)
        elif bytes_data is not None:
            message, size = {"type": "websocket.send", "bytes": bytes_data}, len(bytes_data)
        else:
            raise ValueError("send() needs text_data or bytes_data")
        if self._held or self._sent - self._confirmed > self.server.max_unread:
            self._hold(message, size)
        else:
            await self._write(message, size)
        if close:
            self.request_end("transport close")

    async def _write(self, message: dict[str, Any], size: int) -> None:
        self._sent += size
        writer = asyncio.current_task()
        # Only the handler's send is one request_end() may abandon: a ping
        # sent meanwhile (the heartbeat's task) must not hide it.
        handler = writer is not None and writer is self._task
        if handler:
            self._writer = writer
        try:
            await self.frame_send(message)
        except asyncio.CancelledError:
            if not self._abandoned:
                raise
            # request_end() from another task: this send was blocked for
            # PING_TIMEOUT (the client does not read); the handler goes on.
            self._abandoned = False
            if writer is not None:
                writer.uncancel()
        except Exception as exc:  # uvicorn's ClientDisconnected, a closed transport ...
            logger.debug("docsync: send to %s failed: %r", self._sid_or_new(), exc)
            self.request_end("transport close")
        finally:
            if handler:
                self._writer = None

    async def _write_timed(self, message: dict[str, Any], size: int) -> None:
        """A send outside the handler's task (pings): blocked ``PING_TIMEOUT``, it ends."""
        try:
            async with asyncio.timeout(self.server.ping_timeout / 1000):
                await self._write(message, size)
        except TimeoutError:
            logger.info(
                "docsync: dropping %s: a ping waited %s ms to be sent",
                self.sid,
                self.server.ping_timeout,
            )
            self.request_end("ping timeout")

    def _hold(self, message: dict[str, Any], size: int) -> None:
        if self._held is None:
            self._held = deque()
        self._held.append((message, size))
        self._held_bytes += size
        if self._held_bytes > self.server.max_unread:
            logger.info(
                "docsync: dropping %s: it stopped reading (%s bytes unread, %s held)",
                self.sid,
                self._sent - self._confirmed,
                self._held_bytes,
            )
            self.request_end("transport error")
        elif not self._pings:
            self._spawn(self._probe())

    async def _probe(self) -> None:
        """Ping now: its pong releases the held frames (else: ping timeout)."""
        mark = await self._ping()
        asyncio.get_running_loop().call_later(
            self.server.ping_timeout / 1000, self._check_answered, mark
        )

    def _check_answered(self, mark: int) -> None:
        if self._pings and self._pings[0] <= mark and self._end_reason is None:
            logger.info(
                "docsync: dropping %s: no pong within %s ms", self.sid, self.server.ping_timeout
            )
            self.request_end("ping timeout")

    async def _ping(self) -> int:
        """Send a ping; return the mark its pong will confirm."""
        self.pong.clear()
        mark = self._sent + 1
        self._pings.append(mark)
        await self._write_timed({"type": "websocket.send", "text": p.EIO_PING}, 1)
        return mark

    def _pong_seen(self) -> bool:
        """Count a pong; whether frames wait for :meth:`_release_held`."""
        if not self._pings:
            return False  # a pong nobody asked for
        self._confirmed = self._pings.pop(0)
        if not self._pings:
            self.pong.set()
        return bool(self._held)

    async def _release_held(self) -> None:
        while self._held and self._sent - self._confirmed <= self.server.max_unread:
            message, size = self._held.popleft()
            self._held_bytes -= size
            await self._write(message, size)
        if self._held and not self._pings:
            self._spawn(self._probe())

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
                "docsync: frame over maxPayload (%s bytes) from %s",
                self.server.max_payload,
                self.sid,
            )
            self.request_end("transport close", code=1009)
            return
        if bytes_data is not None:
            await self.on_binary(bytes_data)
            return
        if text_data is None:
            return
        kind = text_data[:1]
        if kind == p.EIO_MESSAGE:
            await self.on_message(text_data[1:])
        elif kind == p.EIO_PONG:  # read ahead normally (see read_ahead)
            if self._pong_seen():
                await self._release_held()
        elif kind in (p.EIO_PING, p.EIO_CLOSE):
            # Only the server pings in EIO 4; the reference closes on a client ping.
            self.request_end("transport close")
        else:
            logger.debug("docsync: ignored Engine.IO packet %r", text_data[:16])

    def _too_big(self, text: str | None, data: bytes | None) -> bool:
        limit = self.server.max_payload
        if data is not None:
            return len(data) > limit
        if text is None:
            return False
        if len(text) > limit:
            return True
        return len(text) * 4 > limit and len(text.encode()) > limit

    async def _heartbeat(self) -> None:
        interval, timeout = self.server.ping_interval / 1000, self.server.ping_timeout / 1000
        try:
            while self._end_reason is None and not self.closing:
                await asyncio.sleep(interval)
                await self.layer_groups_refresh()
                await self._ping()
                try:
                    async with asyncio.timeout(timeout):
                        await self.pong.wait()
                except TimeoutError:
                    if self._end_reason is None:
                        logger.debug("docsync: ping timeout of %s", self.sid)
                    self.request_end("ping timeout")
                    return
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("docsync: heartbeat of %s failed", self.sid)
            self.request_end("transport error")

    def _connect_timed_out(self) -> None:
        if not self.connected and not self.closing:
            self.request_end("transport close")

    # -- ending: one path ------------------------------------------------------

    def request_end(self, reason: str, code: int = 1000) -> None:
        """End the connection (``reason`` as PROTOCOL §6 names it), once.

        Inside a handler it ends when the handler returns; from elsewhere
        (heartbeat, timers, ``server.close()``) at once.
        """
        if self._end_reason is not None or self.closing:
            return
        self._end_reason = (reason, code)
        if not self._busy:
            self._spawn(self._terminate(stop=True))
        elif self._writer is self._task and asyncio.current_task() is not self._task:
            # The handler is stuck in a send that the client never reads.
            logger.info(
                "docsync: dropping %s (%s) in the middle of a blocked send", self.sid, reason
            )
            self._abandoned = True
            if self._task is not None:
                self._task.cancel()

    async def shutdown(self, reason: str, code: int = 1000) -> None:
        """Close the WebSocket from the server side, cleaning up first."""
        self.request_end(reason, code)
        if self._busy or not hasattr(self, "sid"):
            return  # inside a handler: it ends when the handler returns
        try:
            await asyncio.wait_for(self._ended.wait(), 5 + CLOSE_TIMEOUT)
        except TimeoutError:
            logger.warning("docsync: %s did not end within 6 s", self.sid)

    async def drop(self, reason: str, code: int = 1000) -> None:
        """Drop the transport once the request being handled is answered (a drain).

        Unlike :meth:`shutdown`, that answer still goes out, so the client
        learns that what it sent was stored. Returns once the connection ended.
        """
        if self._busy:
            self._end_when_idle = (reason, code)
        else:
            self.request_end(reason, code)
        try:
            await asyncio.wait_for(self._ended.wait(), 5 + CLOSE_TIMEOUT)
        except TimeoutError:
            logger.warning("docsync: %s did not end within 6 s", self._sid_or_new())

    async def _terminate(self, stop: bool = False) -> None:
        """Clean up once, close the socket (bounded), and stop the consumer."""
        reason, code = self._end_reason or ("transport close", 1000)
        await self._end(reason)
        if not self._close_sent:
            self._close_sent = True
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._close(code, reason=reason)
            except Exception as exc:  # gone, or not reading: nothing to close politely
                logger.debug("docsync: closing %s: %r", self._sid_or_new(), exc)
        if stop:
            self.stop_consumer()

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
            if self.cleanup is not None:
                await asyncio.shield(self.cleanup)  # a second caller waits for the first
            return
        self.closing = True
        if self.connect_deadline is not None:
            self.connect_deadline.cancel()
        if self.heartbeat is not None and self.heartbeat is not asyncio.current_task():
            self.heartbeat.cancel()
        self._held = None
        self.server.unregister(self)
        # Shielded: when the ASGI server cancels us on shutdown right after the
        # transport closed, the others must still learn that we left.
        self.cleanup = asyncio.ensure_future(self._on_end_logged(reason))
        await asyncio.shield(self.cleanup)

    async def _on_end_logged(self, reason: str) -> None:
        try:
            await self.on_end(reason)
        except Exception:
            logger.exception("docsync: cleaning up %s failed", self._sid_or_new())
        finally:
            self._ended.set()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.server.spawn(coro)

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
