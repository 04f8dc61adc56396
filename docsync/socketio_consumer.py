"""Socket.IO v5 over Engine.IO: packets, the default namespace, acks, attachments.

``SocketIOConsumer`` turns the Engine.IO messages of ``docsync.transport``
into Socket.IO packets (``docsync.protocol``, python-socketio's packet
class): it reassembles binary attachments, refuses other namespaces, and
hands the protocol on top (``docsync.consumers``) a CONNECT
(:meth:`~SocketIOConsumer.on_connect`), a DISCONNECT
(:meth:`~SocketIOConsumer.on_namespace_disconnect`) and each well-formed
EVENT (:meth:`~SocketIOConsumer.on_event`). It sends events, acks, CONNECT
and CONNECT_ERROR. Nothing here knows what an event means.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from . import protocol as p
from .exceptions import DocSyncError, InvalidValue, ProtocolError, ValidationError
from .transport import EngineIOConsumer

logger = logging.getLogger(__name__)

# The ack id of a packet that could not be decoded, to answer it with the
# error. At most 15 digits (what a JavaScript client can count to): a longer
# run is no ack id of a client's, and int() refuses over 4,300 digits.
_ACK_ID = re.compile(r"^[25](?:\d+-)?(?:/[^,]*,)?(\d{1,15})(?!\d)")


class SocketIOConsumer(EngineIOConsumer):
    """One Socket.IO client on the default namespace (``/``)."""

    def init_session(self) -> None:
        self.pending: p.Packet | None = None  # a binary packet waiting for attachments
        self.pending_bytes = 0

    async def on_message(self, text: str) -> None:
        try:
            packet = p.decode_packet(text, self.server.max_json_depth)
        except (ProtocolError, ValidationError) as exc:
            await self._malformed(text, exc)
            return
        if self.pending is not None:
            logger.info("docsync: incomplete binary packet from %s dropped", self.sid)
            self.pending = None
        if packet.attachment_count:
            self.pending = packet
            self.pending_bytes = 0
            return
        await self._handle(packet)

    async def on_binary(self, data: bytes) -> None:
        packet = self.pending
        if packet is None:
            logger.info("docsync: unexpected binary frame from %s dropped", self.sid)
            return
        self.pending_bytes += len(data)
        if self.pending_bytes > self.server.max_payload:
            # maxPayload bounds a whole packet, not each of its frames.
            await self.shutdown("transport close", code=1009)
            return
        try:
            complete = packet.add_attachment(data)
        except ProtocolError as exc:
            self.pending = None
            logger.info("docsync: malformed binary packet from %s dropped: %s", self.sid, exc)
            if packet.id is not None and self.connected:
                await self.on_invalid(packet.id, exc)
            return
        if complete:
            self.pending = None
            await self._handle(packet)

    async def _malformed(self, text: str, exc: ProtocolError | ValidationError) -> None:
        logger.info("docsync: malformed packet from %s dropped: %s", getattr(self, "sid", "?"), exc)
        if text[:1] == "0" and not self.connected and isinstance(exc, InvalidValue):
            await self.on_invalid_connect(exc)
            return
        match = _ACK_ID.match(text)
        if match and self.connected:
            await self.on_invalid(int(match.group(1)), exc)

    async def _handle(self, packet: p.Packet) -> None:
        kind = packet.packet_type
        if packet.namespace not in (None, "/"):
            if kind == p.CONNECT:
                await self.send(p.encode_connect_error("Invalid namespace", packet.namespace))
            return
        if kind == p.CONNECT:
            await self.on_connect(packet.data)
        elif kind == p.DISCONNECT:
            await self.on_namespace_disconnect()
        elif kind in (p.EVENT, p.BINARY_EVENT):
            await self._on_event_packet(packet)
        else:
            logger.debug("docsync: ignored Socket.IO packet type %s", kind)

    async def _on_event_packet(self, packet: p.Packet) -> None:
        if not self.connected:
            logger.debug("docsync: event before CONNECT dropped")
            return
        try:
            event = p.parse_event_packet(packet)
        except ProtocolError as exc:
            await self.on_invalid(packet.id, exc, request=True)
            return
        await self.on_event(event.name, event.arg, event.ack_id)

    # -- sending -------------------------------------------------------------

    async def emit(self, name: str, data: Any) -> None:
        """Send the event ``name`` with one argument to this client."""
        await self._send_frames(p.encode_event(name, data))

    async def ack(self, ack_id: int | None, response: Any) -> None:
        """Answer the request ``ack_id`` (nothing when the client asked no ack)."""
        if ack_id is not None:
            await self._send_frames(p.encode_ack(ack_id, response))

    async def accept_namespace(self, sid: str) -> None:
        """Answer CONNECT: the client joined ``/`` as ``sid``."""
        await self.send(p.encode_connect(sid))

    async def refuse_namespace(self, message: str) -> None:
        """Answer CONNECT with CONNECT_ERROR ``{"message": message}``."""
        await self.send(p.encode_connect_error(message))

    async def disconnect_namespace(self) -> None:
        """Send DISCONNECT (the official client does not reconnect after it)."""
        await self.send(text_data=p.EIO_MESSAGE + str(p.DISCONNECT))

    # -- what the protocol on top provides -------------------------------------

    async def on_connect(self, auth: Any) -> None:
        """A CONNECT to ``/`` with its auth payload (``None`` when there was none)."""
        raise NotImplementedError(".on_connect() must be implemented.")

    async def on_namespace_disconnect(self) -> None:
        """The client sent DISCONNECT (left ``/``)."""

    async def on_event(self, name: str, arg: Any, ack_id: int | None) -> None:
        """A well-formed EVENT ``[name, arg]`` of a connected client."""
        raise NotImplementedError(".on_event() must be implemented.")

    async def on_invalid(
        self, ack_id: int | None, exc: DocSyncError, *, request: bool = False
    ) -> None:
        """A packet of a connected client that could not be read, with its ack id.

        ``request`` is True for an EVENT whose shape is wrong (a request that
        failed), False for a packet that could not be decoded at all.
        """

    async def on_invalid_connect(self, exc: InvalidValue) -> None:
        """A CONNECT whose auth payload holds a value that cannot be accepted."""
