"""The Socket.IO CONNECT handshake (PROTOCOL §3): checks in order, exact messages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http.cookies import SimpleCookie
from typing import Any

from .exceptions import AuthenticationFailed, DocSyncError, StorageUnavailable
from .hops import call_sync_or_async
from .identity import Identity
from .listeners import Event
from .outage import StorageOutage
from .requests import MAX_ID_LENGTH

logger = logging.getLogger(__name__)


def _check_payload(auth: Any) -> dict[str, Any]:
    if auth is None:
        auth = {}  # a bare "40": the client sent no auth object
    if not isinstance(auth, dict):
        raise AuthenticationFailed("Authentication required")
    token = auth.get("token")
    if token is not None and not isinstance(token, str):
        raise AuthenticationFailed("Authentication failed: invalid token")
    claimed = auth.get("claimedUserId")
    if claimed is not None and not isinstance(claimed, str):
        raise AuthenticationFailed("Authentication failed: invalid claimed user ID")
    for key, label in (("deviceId", "Device ID"), ("clientId", "Client ID")):
        value = auth.get(key)
        if not isinstance(value, str) or not value:
            raise AuthenticationFailed(f"{label} required")
        if len(value) > MAX_ID_LENGTH:
            raise AuthenticationFailed(
                f"{label} too long ({len(value)} characters, at most {MAX_ID_LENGTH})"
            )
    return auth


def auth_request(scope: Mapping[str, Any], token: str | None) -> Event:
    """What ``authenticate`` receives: the handshake request and the token."""
    headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", [])}
    cookies: dict[str, str] = {}
    if "cookie" in headers:
        cookies = {k: m.value for k, m in SimpleCookie(headers["cookie"]).items()}
    return Event(
        token=token,
        headers=headers,
        cookies=cookies,
        scope=scope,
        user=scope.get("user"),
        session=scope.get("session"),
    )


def _normalize(result: Any) -> dict[str, Any] | None:
    if result is None or result is False:
        return None
    if not isinstance(result, dict):
        raise TypeError(f"authenticate must return a dict with 'userId' or None, got {result!r}")
    user_id = result.get("userId", result.get("user_id"))
    if user_id is None:
        return None
    identity = {"userId": str(user_id), "context": result.get("context")}
    identity["user"] = result.get("user")
    expires_at = result.get("expiresAt")
    if expires_at is not None:
        if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
            raise TypeError(f"authenticate's expiresAt must be Unix seconds, got {expires_at!r}")
        identity["expiresAt"] = float(expires_at)
    return identity


async def handshake(
    authenticate: Callable[..., Any], scope: Mapping[str, Any], auth: Any
) -> Identity:
    """Check a CONNECT payload and authenticate it with ``authenticate``.

    Returns the connection's :class:`~docsync.identity.Identity` (the Django
    user when known, and ``expires_at`` when its credentials expire); raises
    ``AuthenticationFailed`` with the
    exact message the client must see, or ``StorageUnavailable`` when the
    database is down (the client should come back, not give up).
    """
    auth = _check_payload(auth)
    try:
        result = await call_sync_or_async(authenticate, auth_request(scope, auth.get("token")))
        identity = _normalize(result)
    except StorageUnavailable as exc:
        StorageOutage.failed(exc)
        raise
    except DocSyncError as exc:
        raise AuthenticationFailed(f"Authentication error: {exc.message}") from exc
    except Exception as exc:
        # Its text may hold anything (SQL, paths): logged, never sent.
        logger.exception("docsync: authenticate raised %s", exc.__class__.__name__)
        raise AuthenticationFailed("Authentication error: internal server error") from exc
    if identity is None:
        raise AuthenticationFailed("Authentication failed: invalid credentials")
    claimed = auth.get("claimedUserId")
    if claimed is not None and claimed != identity["userId"]:
        raise AuthenticationFailed("Authentication failed: claimed user ID mismatch")
    return Identity(
        user_id=identity["userId"],
        device_id=auth["deviceId"],
        client_id=auth["clientId"],
        context=identity["context"],
        user=identity["user"],
        expires_at=identity.get("expiresAt"),
    )
