"""Tokens that expire: signed with Django's signing, no table.

A token is ``django.core.signing.dumps({"u": user_pk, "e": expires_at})``
with the salt :data:`SALT`: its signature is an HMAC keyed by
``SECRET_KEY``, so it needs no database row, any server process can check
it, and rotating ``SECRET_KEY`` (with ``SECRET_KEY_FALLBACKS`` for a grace
period) or changing the salt invalidates every token at once. Revocation
works as for every other connection: the user is fetched again on each
CONNECT (an inactive or deleted user is refused), and live revocation
(``docsync.revocation``) closes open connections of a deactivated or
deleted user. A token carries its expiry, so different lifetimes can be
minted side by side; ``DOCSYNC["TOKEN_LIFETIME"]`` is the default.

The default ``authenticate`` (``docsync.auth``) accepts these beside DRF
tokens: a signed token holds ``:``, a DRF key never does. An expired token
is refused at CONNECT (``Authentication error: Token expired``); a
connection whose token expires while it is open has its transport dropped,
so that the official client reconnects and asks for a token again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core import signing

from .conf import docsync_settings
from .exceptions import AuthenticationFailed

#: The signing salt of docsync tokens (never valid as another signed value).
SALT = "docsync.tokens"

#: What a client is told when its token has expired.
EXPIRED = "Token expired"


class TokenExpired(AuthenticationFailed):
    """A well-signed token past its expiry."""

    default_message = EXPIRED


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says: whose it is and until when (Unix seconds)."""

    user_pk: Any
    expires_at: float


def _seconds(lifetime: float | timedelta | None) -> float:
    if lifetime is None:
        lifetime = docsync_settings.TOKEN_LIFETIME
    seconds = lifetime.total_seconds() if isinstance(lifetime, timedelta) else float(lifetime)
    if not seconds > 0:
        raise ValueError(f"a token lifetime must be positive, got {lifetime!r}")
    return seconds


def mint_token(user: Any, lifetime: float | timedelta | None = None) -> str:
    """A token for ``user`` valid for ``lifetime`` (seconds or a timedelta).

    Without ``lifetime``, ``DOCSYNC["TOKEN_LIFETIME"]``. Hand it to a client
    as its Socket.IO ``token``; mint a new one when it is about to expire
    (the official client asks for its token on every connection attempt).
    """
    expires_at = time.time() + _seconds(lifetime)
    pk = user.pk if isinstance(user.pk, int | str) else str(user.pk)  # a UUID, say
    return signing.dumps({"u": pk, "e": expires_at}, salt=SALT, compress=False)


def is_signed_token(token: str) -> bool:
    """Whether ``token`` looks like a docsync token (a DRF key has no ``:``)."""
    return ":" in token


def read_token(token: str, now: float | None = None) -> TokenClaims | None:
    """The claims of a valid ``token``; ``None`` when its signature is bad.

    Raises :class:`TokenExpired` for a token signed by this server but past
    its expiry.
    """
    try:
        claims = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return None
    if not isinstance(claims, dict) or "u" not in claims:
        return None
    expires_at = claims.get("e")
    if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
        return None
    if (time.time() if now is None else now) >= expires_at:
        raise TokenExpired()
    return TokenClaims(user_pk=claims["u"], expires_at=float(expires_at))


def token_user(claims: TokenClaims) -> Any | None:
    """The active user a token's claims name, or ``None``."""
    from django.contrib.auth import get_user_model

    user = get_user_model()._default_manager.filter(pk=claims.user_pk).first()
    if user is None or not user.is_active:
        return None
    return user
