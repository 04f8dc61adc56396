"""Sending one event over HTTP (aiohttp): signed, timed out, judged by its status."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import __version__
from .outbox import Claimed, Result
from .signing import HEADER, sign
from .types import Receiver


def client_session(timeout: float) -> Any:
    """An ``aiohttp.ClientSession`` for deliveries (aiohttp is the ``webhooks`` extra)."""
    try:
        import aiohttp
    except ImportError as exc:  # pragma: no cover - a packaging error
        raise ImportError(
            "docsync webhooks need aiohttp: pip install 'docsync[webhooks]' (or aiohttp)."
        ) from exc
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": f"docsync/{__version__} webhooks"},
    )


def headers(receiver: Receiver, claimed: Claimed, body: bytes) -> dict[str, str]:
    """The request headers: content type, event id and type, and the signature."""
    return {
        "Content-Type": "application/json",
        "DocSync-Event-Id": claimed.event_id,
        "DocSync-Event-Type": claimed.event_type,
        HEADER: sign(receiver.secret, body),
    }


async def deliver(session: Any, receiver: Receiver | None, claimed: Claimed) -> Result:
    """POST one event to its receiver; a 2xx answer is success, anything else a failure."""
    if receiver is None:
        return Result(claimed, ok=False, error=f"receiver {claimed.receiver!r} is not configured")
    body = claimed.body.encode("utf-8")
    try:
        async with session.post(
            receiver.url, data=body, headers=headers(receiver, claimed, body)
        ) as response:
            await response.read()
            if 200 <= response.status < 300:
                return Result(claimed, ok=True, status=response.status)
            return Result(
                claimed, ok=False, status=response.status, error=f"HTTP {response.status}"
            )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # connection refused, timeout, bad URL ...
        name = exc.__class__.__name__
        return Result(claimed, ok=False, error=f"{name}: {exc}" if str(exc) else name)
