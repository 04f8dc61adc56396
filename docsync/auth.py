"""Authentication: who is connecting.

The default ``authenticate`` accepts a DRF token or an expiring signed
token (``docsync.tokens``) sent as the Socket.IO ``token``, or else a
Django session (the cookie on the WebSocket handshake, resolved by
:func:`AuthMiddlewareStack`, or Channels' own) when the handshake's Origin is the
server's own (same scheme, host and port) or one of
``CSRF_TRUSTED_ORIGINS``, since browsers send cookies cross-site. It
returns the user's primary key as ``userId`` and, in ``context``, what
``authorize`` needs to find the user again.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from . import tokens
from .hops import in_thread

logger = logging.getLogger(__name__)


class SessionAuthMiddleware(AuthMiddleware):
    """Channels' ``AuthMiddleware``, without a database thread for no session.

    Channels resolves ``scope["user"]`` from the session in a database thread
    on every connection. Without the session cookie the user can only be
    anonymous (the session is empty), so such a connection, a token client's
    such as the official client's, gets ``AnonymousUser`` at once.
    """

    async def resolve_scope(self, scope: Any) -> None:
        if settings.SESSION_COOKIE_NAME in scope.get("cookies", ()):
            await super().resolve_scope(scope)
        else:
            scope["user"]._wrapped = AnonymousUser()


def AuthMiddlewareStack(inner: Any) -> Any:  # noqa: N802  (Channels' name)
    """Channels' ``AuthMiddlewareStack`` with :class:`SessionAuthMiddleware`:
    cookies, session and ``scope["user"]`` for ``inner``, as in Channels."""
    return CookieMiddleware(SessionMiddleware(SessionAuthMiddleware(inner)))


def identity_for(user: Any, method: str, expires_at: float | None = None) -> dict[str, Any]:
    """The identity ``authenticate`` returns for a Django user.

    With ``expires_at`` (Unix seconds) the connection is dropped then, so
    that the client reconnects with a new token.
    """
    identity: dict[str, Any] = {"userId": str(user.pk)}
    identity["context"] = {"user_pk": user.pk, "auth": method}
    identity["user"] = user
    if expires_at is not None:
        identity["expiresAt"] = expires_at
    return identity


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


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin, the default port filled in."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _trusted(origin: tuple[str, str, int], netloc: str) -> bool:
    """Whether ``origin`` is one of ``CSRF_TRUSTED_ORIGINS`` (``*.`` wildcards too)."""
    for trusted in getattr(settings, "CSRF_TRUSTED_ORIGINS", []):
        if "*" in trusted:
            scheme, _, pattern = trusted.partition("://")
            if scheme == origin[0] and is_same_domain(netloc, pattern.lstrip("*")):
                return True
        elif _origin(trusted) == origin:
            return True
    return False


def origin_allowed(headers: dict[str, str], scope: dict[str, Any] | None = None) -> bool:
    """Whether the handshake's Origin may carry a session cookie.

    No Origin (a non-browser client) is allowed. Otherwise the Origin's
    scheme, host and port must be the server's own, as Django's CSRF check
    wants for forms: the handshake's ``Host`` (one of ``ALLOWED_HOSTS``)
    with ``https`` over ``wss`` and ``http`` over ``ws``; or the Origin is
    one of ``CSRF_TRUSTED_ORIGINS``. Behind a TLS-terminating proxy, run the
    ASGI server with proxy headers (uvicorn ``--proxy-headers``, daphne
    ``--proxy-headers``) so that the scheme is ``wss``.
    """
    origin = headers.get("origin")
    if origin is None:
        return True
    parsed = _origin(origin)
    if parsed is None:
        return False
    if _trusted(parsed, urlsplit(origin).netloc):
        return True
    host = headers.get("host")
    if not host:
        return False
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not validate_host(split_domain_port(host)[0], allowed):
        return False
    scheme = "https" if (scope or {}).get("scheme") in ("wss", "https") else "http"
    return _origin(f"{scheme}://{host}") == parsed


def authenticate(request: Any) -> dict[str, Any] | None:
    """Default ``authenticate``: a signed or DRF token, else a same-origin session.

    An expired signed token raises :class:`docsync.tokens.TokenExpired`
    (the client is told ``Authentication error: Token expired``).
    """
    token = request.get("token")
    if token and tokens.is_signed_token(token):
        claims = tokens.read_token(token)  # raises TokenExpired
        user = tokens.token_user(claims) if claims is not None else None
        if user is None or claims is None:
            return None
        return identity_for(user, "token", expires_at=claims.expires_at)
    if token:
        user = token_user(token)
        return identity_for(user, "token") if user is not None else None
    user = request.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if not user.is_active:
        return None
    if not origin_allowed(request["headers"], request.get("scope")):
        logger.info("docsync: session refused for Origin %r", request["headers"].get("origin"))
        return None
    return identity_for(user, "session")


async def authenticate_async(request: Any) -> dict[str, Any] | None:
    """:func:`authenticate` for the server: the same answers, token users read on the loop.

    With a token, on PostgreSQL (psycopg 3), the user is read with one
    prepared statement on the event loop (:mod:`docsync.loopauth`): no
    thread hop, no query compiler. Anything else (a session, another
    database) runs :func:`authenticate` in a database thread.
    """
    from .loopauth import lookups

    token = request.get("token")
    found = lookups() if token else None
    signed = bool(token) and tokens.is_signed_token(token)
    if found is None or not (signed or found.by_token_sql):
        identity: dict[str, Any] | None = await in_thread(authenticate, request)
        return identity
    expires_at = None
    if signed:
        claims = tokens.read_token(token)  # raises TokenExpired
        if claims is None:
            return None
        user, expires_at = await found.user_by_pk(claims.user_pk), claims.expires_at
    else:
        user = await found.user_by_token(token)
    if user is None or not user.is_active:
        return None
    return identity_for(user, "token", expires_at=expires_at)


#: The server awaits this twin instead of running ``authenticate`` in a thread.
authenticate.aio = authenticate_async  # type: ignore[attr-defined]
