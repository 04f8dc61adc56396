"""Skip (or, in CI, fail) tests whose service is not running."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("DOCSYNC_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (DOCSYNC_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


@functools.cache
def redis_unavailable() -> str | None:
    url = urlparse(settings.REDIS_URL)
    try:
        with socket.create_connection((url.hostname, url.port or 6379), timeout=2) as s:
            s.sendall(b"PING\r\n")
            if not s.recv(16).startswith(b"+PONG"):
                return f"Redis: {settings.REDIS_URL} did not answer PING"
    except OSError as exc:
        return f"Redis: {settings.REDIS_URL} is unreachable: {exc}"
    return None


def require_redis() -> str:
    """Return the Redis URL, or skip/fail when Redis is not running."""
    reason = redis_unavailable()
    if reason:
        _skip_or_fail(reason)
    return settings.REDIS_URL
