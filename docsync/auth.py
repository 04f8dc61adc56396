"""Authentication: who is connecting.

The default ``authenticate`` accepts a DRF token sent as the Socket.IO
``token``, or else a Django session (the cookie on the WebSocket handshake,
resolved by Channels' ``AuthMiddlewareStack``) when the handshake's Origin
is one of ``ALLOWED_HOSTS``, since browsers send cookies cross-site. It
returns the user's primary key as ``userId`` and, in ``context``, what
``authorize`` needs to find the user again.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from channels.security.websocket import OriginValidator
from django.apps import apps
from django.conf import settings

logger = logging.getLogger(__name__)


def identity_for(user: Any, method: str) -> dict[str, Any]:
    """The identity ``authenticate`` returns for a Django user."""
    return {"userId": str(user.pk), "context": {"user_pk": user.pk, "auth": method}, "user": user}


def token_user(key: str) -> Any | None:
    """The active user owning DRF token ``key``, or ``None``."""
    if not apps.is_installed("rest_framework.authtoken"):
        logger.warning(
            "docsync: a client sent a token but rest_framework.authtoken is not in "
            "INSTALLED_APPS; add it (and migrate) to accept DRF tokens."
        )
        return None
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


def origin_allowed(headers: dict[str, str]) -> bool:
    """Whether the handshake's Origin may carry a session cookie.

    No Origin (a non-browser client) is allowed; otherwise it must match
    ``ALLOWED_HOSTS`` as Channels' ``AllowedHostsOriginValidator`` does.
    """
    origin = headers.get("origin")
    if origin is None:
        return True
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    try:
        parsed = urlparse(origin)
    except ValueError:
        return False
    # Only its origin test is used: no application behind it.
    return OriginValidator(None, allowed).valid_origin(parsed)  # type: ignore[arg-type]


def authenticate(request: Any) -> dict[str, Any] | None:
    """Default ``authenticate``: a DRF token, else a same-origin session."""
    token = request.get("token")
    if token:
        user = token_user(token)
        return identity_for(user, "token") if user is not None else None
    user = request.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if not user.is_active:
        return None
    if not origin_allowed(request["headers"]):
        logger.info("docsync: session refused for Origin %r", request["headers"].get("origin"))
        return None
    return identity_for(user, "session")
