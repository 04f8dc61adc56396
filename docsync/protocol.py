"""Engine.IO v4 / Socket.IO v5 framing over WebSocket. Pure Python, no Django.

Socket.IO packets are parsed and built with python-socketio's ``Packet``
class (namespaces, ack ids, binary attachments); this module gives it the
JSON flavour the reference server writes (compact, non-ASCII kept as is) and
adds the one-character Engine.IO layer around it, which is simple enough
that engineio's own packet class (which tries to JSON-decode every message)
would only add work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from socketio import packet as sio

from . import payload
from .exceptions import InvalidValue, ProtocolError

# Engine.IO packet types (one character at the start of a text frame).
EIO_OPEN, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE = "0", "1", "2", "3", "4"

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_encode_ascii = json.JSONEncoder(separators=(",", ":")).encode
_SURROGATE = re.compile("[\ud800-\udfff]")

#: The most binary attachments one packet may carry: socket.io-client (its
#: parser since socket.io-parser 4.2.5) refuses a packet with more as a
#: "parse error" and drops the connection. Acks must stay within it.
MAX_ATTACHMENTS = 10

BINARY_TYPES = (bytes, bytearray, memoryview)


def _dumps(obj: Any) -> str:
    """JSON as JavaScript writes it; never text a WebSocket cannot carry.

    Validation keeps lone surrogates and deep nesting out of documents, but
    one stored before (or by other code) must still reach its readers: a
    lone surrogate is written as its ``\\udXXX`` escape (which UTF-8 can
    carry and JavaScript reads back as the same string), and a value too deep
    for the C encoder is written without recursion.
    """
    try:
        text = _encode(obj)
    except RecursionError:
        return _encode_deep(obj)
    if not text.isascii() and _SURROGATE.search(text) is not None:
        return _encode_ascii(obj)
    return text


def _encode_deep(obj: Any) -> str:
    """Encode ``obj`` like ``_encode_ascii``, without recursion (any depth)."""
    out: list[str] = []
    stack: list[Any] = [obj]
    while stack:
        item = stack.pop()
        if type(item) is _Raw:
            out.append(item.text)
        elif isinstance(item, list | tuple):
            out.append("[")
            stack.append(_Raw("]"))
            for i in range(len(item) - 1, -1, -1):
                stack.append(item[i])
                if i:
                    stack.append(_Raw(","))
        elif isinstance(item, dict):
            out.append("{")
            stack.append(_Raw("}"))
            items = list(item.items())
            for i in range(len(items) - 1, -1, -1):
                key, child = items[i]
                stack += [child, _Raw(_encode_ascii(str(key)) + ":")]
                if i:
                    stack.append(_Raw(","))
        else:
            out.append(_encode_ascii(item))
    return "".join(out)


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Json:
    """The ``json`` object python-socketio's Packet calls, writing like JavaScript."""

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        return _dumps(obj)

    loads = staticmethod(json.loads)


def _containers(data: Any) -> Iterator[Any]:
    """Every value in ``data``, without recursion (deep values must not break sends)."""
    stack = [data]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


def _is_binary(data: Any) -> bool:
    if isinstance(data, BINARY_TYPES):
        return True
    if not isinstance(data, list | dict):
        return False
    return any(isinstance(item, BINARY_TYPES) for item in _containers(data))


_SCALARS = frozenset({str, int, float, bool, type(None)})


def count_attachments(data: Any) -> int:
    """How many binary attachments ``data`` makes when sent."""
    if isinstance(data, BINARY_TYPES):
        return 1
    if not isinstance(data, list | dict):
        return 0
    # _containers, unrolled: this runs over every operation of each response.
    stack: list[Any] = [data]
    count, scalars = 0, _SCALARS
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in scalars:
            continue
        if kind is list:
            stack.extend(item)
        elif kind is dict:
            stack.extend(item.values())
        elif isinstance(item, BINARY_TYPES):
            count += 1
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return count


class Packet(sio.Packet):
    """python-socketio's packet with compact JSON and a short-circuiting binary scan."""

    json = _Json

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        return _is_binary(data)

    @classmethod
    def _deconstruct_binary_internal(cls, data: Any, attachments: list[bytes]) -> Any:
        # python-socketio sends bytes and bytearray; a memoryview (what some
        # database drivers return for binary columns) is bytes too.
        if isinstance(data, memoryview):
            data = bytes(data)
        return super()._deconstruct_binary_internal(data, attachments)

    @classmethod
    def _reconstruct_binary_internal(cls, data: Any, attachments: list[bytes]) -> Any:
        # python-socketio trusts "num"; a client's frame must not crash the consumer.
        if isinstance(data, dict) and data.get("_placeholder") and "num" in data:
            num = data["num"]
            if isinstance(num, bool) or not isinstance(num, int) or not 0 <= num < len(attachments):
                raise ProtocolError(
                    f"Binary placeholder num={num!r} does not match the packet's "
                    f"{len(attachments)} attachment(s)."
                )
            return attachments[num]
        return super()._reconstruct_binary_internal(data, attachments)


def open_packet(sid: str, ping_interval: int, ping_timeout: int, max_payload: int) -> str:
    """The Engine.IO OPEN packet, key order as the reference server sends it."""
    return EIO_OPEN + _dumps(
        {
            "sid": sid,
            "upgrades": [],
            "pingInterval": ping_interval,
            "pingTimeout": ping_timeout,
            "maxPayload": max_payload,
        }
    )


def _frames(packet: Packet) -> list[str | bytes]:
    encoded = packet.encode()
    if isinstance(encoded, list):
        return [EIO_MESSAGE + encoded[0], *encoded[1:]]
    return [EIO_MESSAGE + encoded]


def encode_event(name: str, data: Any) -> list[str | bytes]:
    """Frames of a server-to-client EVENT (BINARY_EVENT when data holds bytes)."""
    try:
        # What Packet.encode writes for data without bytes (JSON refuses
        # bytes: those go the Packet's way, as attachments).
        return [_EVENT_PREFIX + _dumps([name, data])]
    except TypeError:
        return _frames(Packet(EVENT, [name, data]))


def encode_ack(ack_id: int, response: Any) -> list[str | bytes]:
    """Frames of an ACK (BINARY_ACK when the response holds bytes)."""
    try:
        return [f"{_ACK_PREFIX}{ack_id}{_dumps([response])}"]
    except TypeError:
        return _frames(Packet(ACK, [response], id=ack_id))


_EVENT_PREFIX = EIO_MESSAGE + str(EVENT)
_ACK_PREFIX = EIO_MESSAGE + str(ACK)


def _text_frame(packet: Packet) -> str:
    """The one frame of a packet without binary data."""
    frame = _frames(packet)[0]
    assert isinstance(frame, str)
    return frame


def encode_connect(sid: str, namespace: str | None = None) -> str:
    return _text_frame(Packet(CONNECT, {"sid": sid}, namespace=namespace, binary=False))


def encode_connect_error(message: str, namespace: str | None = None) -> str:
    return _text_frame(
        Packet(CONNECT_ERROR, {"message": message}, namespace=namespace, binary=False)
    )


@lru_cache(maxsize=8)
def _client_packet(max_depth: int) -> type[Packet]:
    """A Packet class whose JSON decoding refuses what ``docsync.payload`` lists."""

    class ClientJson(_Json):
        @staticmethod
        def loads(s: str | bytes | bytearray, **kwargs: Any) -> Any:
            text = s if isinstance(s, str) else bytes(s).decode()
            return payload.loads(text, max_depth)

    return type("ClientPacket", (Packet,), {"json": ClientJson})


def decode_packet(text: str, max_depth: int = payload.DEFAULT_MAX_DEPTH) -> Packet:
    """Parse the Socket.IO part of an Engine.IO MESSAGE (after the ``4``).

    Raises ``ProtocolError`` for anything that is not a Socket.IO v5 packet,
    and ``InvalidValue`` for JSON holding what no document may hold
    (``docsync.payload``), its path relative to an event's argument.
    """
    if not text or text[0] not in "0123456":
        raise ProtocolError(f"Unknown Socket.IO packet type {text[:1]!r}")
    try:
        if text[0] == "2":
            packet = _decode_event(text, max_depth)
            if packet is not None:
                return packet
        packet = _client_packet(max_depth)(encoded_packet=text)
        if packet.attachment_count:
            # Putting the attachments in place recurses through the data:
            # refuse it too deep before, as every value is refused later.
            payload.check_depth(packet.data, max_depth)
        return packet
    except InvalidValue as exc:
        if text[0] in "25" and exc.path[:1] == (1,):  # ["name", argument]
            raise exc.relative_to((1,)) from None
        if text[0] in "25" and exc.path[:1] == (0,):
            raise ProtocolError(f"The event name {exc.problem}.") from None
        raise
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"Malformed Socket.IO packet: {exc}") from exc


_ASCII_DIGITS = frozenset("0123456789")


def _decode_event(text: str, max_depth: int) -> Packet | None:
    """An EVENT without namespace or attachments (``2<ack id>[...]``), decoded
    as ``Packet.decode`` would; ``None`` for any other shape (left to it)."""
    end, digits = len(text), _ASCII_DIGITS
    i = 1
    while i < end and text[i] in digits:
        i += 1
    if i > 16 or i == end or text[i] != "[":
        return None
    cls = _client_packet(max_depth)
    packet = cls.__new__(cls)
    packet.packet_type = EVENT
    packet.namespace = None
    packet.id = int(text[1:i]) if i > 1 else None
    packet.attachment_count = 0
    packet.attachments = []
    packet.data = payload.loads(text[i:], max_depth)
    return packet


@dataclass(frozen=True, slots=True)
class EventPacket:
    """A decoded EVENT packet: the event name, its single argument and its ack id."""

    name: str
    arg: Any
    ack_id: int | None


def parse_event_packet(packet: Packet) -> EventPacket:
    """Turn an EVENT packet into ``EventPacket``; ProtocolError if malformed."""
    data = packet.data
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise ProtocolError('An event must be a JSON array starting with its name: ["name", {...}]')
    return EventPacket(data[0], data[1] if len(data) > 1 else None, packet.id)
