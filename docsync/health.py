"""Liveness and readiness probes for load balancers and orchestrators.

``live``: the process answers (no dependency is touched). ``ready``: every
database alias answers ``SELECT 1``, the channel layer carries a message
(with channels-redis: a round trip through Redis), the Redis of the state
backend answers ``PING`` (``RedisState``), and this process is not draining
(``DocSyncServer.close()`` has not begun). Probes run at once, each with
the deadline ``DOCSYNC["HEALTH_TIMEOUT"]``, so the answer comes within about
that long even when a dependency hangs: a database probe runs in a thread of
its own, and a probe that is still hanging from an earlier request is waited
for again instead of being started twice (at most one stuck thread per
database). Errors are logged in full; the body only names their class.

Both are routed by ``docsync.urls`` (``health/live/`` and ``health/ready/``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from .conf import docsync_settings

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[str | None]]

_inflight: dict[str, concurrent.futures.Future[None]] = {}
_inflight_lock = threading.Lock()


def _in_thread(name: str, probe: Callable[[], None]) -> concurrent.futures.Future[None]:
    """Run ``probe`` in a thread of its own, unless the last one is still running."""
    with _inflight_lock:
        future = _inflight.get(name)
        if future is not None and not future.done():
            return future
        future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()  # so that no waiter can cancel it

        def run() -> None:
            try:
                probe()
            except BaseException as exc:  # noqa: BLE001  (reported by the waiter)
                future.set_exception(exc)
            else:
                future.set_result(None)

        _inflight[name] = future
        threading.Thread(target=run, name=f"docsync-health-{name}", daemon=True).start()
        return future


def _select_one(alias: str) -> None:
    from django.db import connections

    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def database_check(alias: str) -> Check:
    """``SELECT 1`` on database ``alias``, in a thread (a driver call cannot be cancelled)."""

    async def check() -> str | None:
        await asyncio.wrap_future(_in_thread(f"database:{alias}", lambda: _select_one(alias)))
        return None

    return check


async def channel_layer_check() -> str | None:
    """A message sent to a new channel of the channel layer comes back."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return "not configured"
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "docsync.health"})
    message = await layer.receive(channel)
    if message.get("type") != "docsync.health":
        raise RuntimeError(f"the channel layer returned {message!r}")
    return None


def redis_check(url: str) -> Check:
    """``PING`` on the Redis at ``url`` (a client of its own, closed after)."""

    async def check() -> str | None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(url)
        try:
            await client.ping()
        finally:
            await client.aclose()
        return None

    return check


async def draining_check() -> str | None:
    """Fails once this process's server has begun closing its connections."""
    from .default import default_server_draining

    if default_server_draining():
        raise RuntimeError("draining")
    return None


def _state_redis_url() -> str | None:
    """The URL of the state backend's Redis, when it is ``RedisState``."""
    from .default import get_default_server

    state = get_default_server().state
    try:
        from .redis_state import RedisState
    except ImportError:  # pragma: no cover - redis comes with channels-redis
        return None
    return state.url if isinstance(state, RedisState) else None


def readiness_checks() -> dict[str, Check]:
    """The checks ``ready`` runs, by name."""
    aliases = docsync_settings.HEALTH_DATABASES
    if aliases is None:
        aliases = list(settings.DATABASES)
    checks: dict[str, Check] = {f"database:{alias}": database_check(alias) for alias in aliases}
    checks["channel_layer"] = channel_layer_check
    url = _state_redis_url()
    if url is not None:
        checks["state_redis"] = redis_check(url)
    checks["draining"] = draining_check
    return checks


async def _run(name: str, check: Check, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any]
    try:
        note = await asyncio.wait_for(check(), timeout)
    except TimeoutError:
        result = {"ok": False, "error": f"timed out after {timeout:g} s"}
        logger.warning("docsync: readiness check %s timed out after %g s", name, timeout)
    except Exception as exc:  # noqa: BLE001  (the failing dependency is the answer)
        result = {"ok": False, "error": exc.__class__.__name__}
        if name != "draining":
            logger.warning("docsync: readiness check %s failed: %r", name, exc)
        else:
            result["error"] = "draining"
    else:
        result = {"ok": True}
        if note:
            result["note"] = note
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


async def readiness() -> dict[str, Any]:
    """Run every readiness check at once; ``{"status", "checks": {name: result}}``."""
    timeout = docsync_settings.HEALTH_TIMEOUT
    checks = readiness_checks()
    results = await asyncio.gather(*(_run(n, c, timeout) for n, c in checks.items()))
    named = dict(zip(checks, results, strict=True))
    ok = all(r["ok"] for r in named.values())
    return {"status": "ok" if ok else "unavailable", "checks": named}


def _no_store(response: JsonResponse) -> JsonResponse:
    response["Cache-Control"] = "no-store"
    return response


def live(request: HttpRequest) -> JsonResponse:
    """Liveness: 200 whenever the process answers HTTP."""
    return _no_store(JsonResponse({"status": "ok"}))


async def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when every check passes, else 503; the body names each check."""
    body = await readiness()
    return _no_store(JsonResponse(body, status=200 if body["status"] == "ok" else 503))
