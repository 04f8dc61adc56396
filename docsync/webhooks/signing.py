"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>." + body``.

A request carries ``DocSync-Signature: t=<unix seconds>,v1=<hex digest>``.
A receiver recomputes the digest with the shared secret over the timestamp,
a dot and the raw body, compares it in constant time, and refuses a
timestamp older than its replay window (:func:`verify_signature` does all
three). Pure Python: receivers may copy this module.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "DocSync-Signature"

#: Seconds a signature is accepted by :func:`verify_signature` by default.
DEFAULT_TOLERANCE = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, wrong or too old."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``b"<timestamp>." + body`` keyed with ``secret``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``DocSync-Signature`` header value for ``body`` (now, unless ``timestamp``)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a ``DocSync-Signature`` header; return its timestamp, raise ``SignatureError``.

    ``body`` must be the raw request body, byte for byte. A timestamp more
    than ``tolerance`` seconds away from ``now`` is refused (a replay).
    """
    fields = dict(part.split("=", 1) for part in (header or "").split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        raise SignatureError(f"No timestamp in the {HEADER} header: {header!r}") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"The signature is {now - timestamp:.0f} s old (at most {tolerance})")
    expected = signature(secret, timestamp, body)
    if not hmac.compare_digest(expected, fields.get("v1", "")):
        raise SignatureError("The signature does not match the body and the secret")
    return timestamp
