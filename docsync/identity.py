"""Who is connected: one frozen value, made once at CONNECT.

:class:`Identity` is what every layer needs of a connection: the provider
records it with each batch (it is an :class:`Origin`), listeners and
``authorize`` receive it reshaped as their documented dicts
(:meth:`Identity.event`, :meth:`Identity.authorize_event`), and revocation
finds the connection by :attr:`Identity.user_pk`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .listeners import Event


@dataclass(frozen=True)
class Origin:
    """Who sent a batch of operations (kept with it for audit and the admin)."""

    user_id: str | None = None
    device_id: str | None = None
    client_id: str | None = None


def user_pk_of(context: Any, user_id: Any) -> Any:
    """The Django user's primary key: ``context["user_pk"]``, else the ``userId``.

    The default ``authenticate`` puts the pk in the context; a custom one
    whose ``userId`` is the pk need not.
    """
    pk = context.get("user_pk") if isinstance(context, dict) else None
    return user_id if pk is None else pk


@dataclass(frozen=True)
class Identity(Origin):
    """A connection's identity: who (``user_id``), from where (device, client).

    ``context`` is what ``authenticate`` returned beside the ``userId``;
    ``user`` the Django user when it returned one; ``expires_at`` (Unix
    seconds) when its credentials expire.
    """

    user_id: str = ""
    device_id: str = ""
    client_id: str = ""
    context: Any = None
    user: Any = field(default=None, compare=False, repr=False)
    expires_at: float | None = None

    @property
    def user_pk(self) -> Any:
        """The primary key of the Django user (see :func:`user_pk_of`)."""
        return user_pk_of(self.context, self.user_id)

    def event(self, **fields: Any) -> Event:
        """A listener's event about this connection, with ``fields`` added."""
        return Event(
            userId=self.user_id, deviceId=self.device_id, clientId=self.client_id, **fields
        )

    def authorize_event(self, kind: str, req: dict[str, Any]) -> Event:
        """What ``authorize`` receives for a request of ``kind`` (its wire fields)."""
        return Event(type=kind, req=Event(req), userId=self.user_id, context=self.context)
