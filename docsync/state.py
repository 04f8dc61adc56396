"""Shared per-document state: who is subscribed, and their presence.

One small async interface; ``InProcessState`` keeps it in this process (right
with the in-memory channel layer), and ``docsync.redis_state.RedisState``
keeps it in Redis so that every process of a deployment sees the same
subscribers and presence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Member:
    """One connection subscribed to a document."""

    channel: str
    user_id: str
    device_id: str
    client_id: str


def has_collaborators(members: list[Member]) -> bool:
    """True when more than one distinct user is subscribed (PROTOCOL §5)."""
    users = {m.user_id for m in members}
    return len(users) > 1


class BaseState:
    """Subscribers and presence per document. All methods are coroutines."""

    async def join(self, doc_id: str, member: Member) -> list[Member]:
        """Subscribe ``member``; return every member after joining."""
        raise NotImplementedError(".join() must be implemented.")

    async def leave(self, doc_id: str, member: Member) -> list[Member]:
        """Unsubscribe ``member`` and drop its presence; return who remains."""
        raise NotImplementedError(".leave() must be implemented.")

    async def members(self, doc_id: str) -> list[Member]:
        """Return the members subscribed to ``doc_id``."""
        raise NotImplementedError(".members() must be implemented.")

    async def set_presence(self, doc_id: str, client_id: str, value: Any) -> None:
        """Store ``value`` as ``client_id``'s presence (``None`` removes it)."""
        raise NotImplementedError(".set_presence() must be implemented.")

    async def get_presence(self, doc_id: str) -> dict[str, Any]:
        """Return the presence map of ``doc_id`` (client id -> value)."""
        raise NotImplementedError(".get_presence() must be implemented.")

    async def close(self) -> None:
        """The server is closing (``DocSyncServer.close``): release what this
        process holds (heartbeats, its members and presence in a shared store)."""


class InProcessState(BaseState):
    """Keeps subscribers and presence in dicts of this process."""

    def __init__(self, **options: Any) -> None:
        self._members: dict[str, dict[str, Member]] = {}
        self._presence: dict[str, dict[str, Any]] = {}

    async def join(self, doc_id: str, member: Member) -> list[Member]:
        members = self._members.setdefault(doc_id, {})
        members[member.channel] = member
        return list(members.values())

    async def leave(self, doc_id: str, member: Member) -> list[Member]:
        members = self._members.get(doc_id, {})
        members.pop(member.channel, None)
        presence = self._presence.get(doc_id)
        if presence is not None:
            presence.pop(member.client_id, None)
            if not presence:
                del self._presence[doc_id]
        if not members:
            self._members.pop(doc_id, None)
        return list(members.values())

    async def members(self, doc_id: str) -> list[Member]:
        return list(self._members.get(doc_id, {}).values())

    async def set_presence(self, doc_id: str, client_id: str, value: Any) -> None:
        if value is None:
            presence = self._presence.get(doc_id)
            if presence is not None:
                presence.pop(client_id, None)
                if not presence:
                    del self._presence[doc_id]
        else:
            self._presence.setdefault(doc_id, {})[client_id] = value

    async def get_presence(self, doc_id: str) -> dict[str, Any]:
        return dict(self._presence.get(doc_id, {}))
