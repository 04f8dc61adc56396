"""Draining a process for a rolling deploy: its clients move elsewhere, a few at a time.

The official DocSync client does not reconnect after a Socket.IO
DISCONNECT, but does (about 1.4 s later) after its transport drops. So a
process that is going away:

1. stops accepting: readiness fails (``DocSyncServer.draining``, so the load
   balancer sends nobody new) and a new WebSocket is refused (HTTP 403; the
   client tries again, elsewhere);
2. drops each open transport with reason ``server shutting down`` (PROTOCOL
   §6) and WebSocket code 1012 (service restart), never a Socket.IO
   DISCONNECT, one connection every ``DRAIN_WINDOW / n`` seconds, so that its
   clients do not all land on the other processes at once. A connection in
   the middle of a request ends once it is answered, with its ``dirty`` and
   listener events sent (``EngineIOConsumer.request_end``); its presence is
   cleared on every process at once;
3. waits for what it started in the background (squashes),

all within ``DRAIN_WINDOW + DRAIN_GRACE`` seconds: what is still open then
is left to :meth:`DocSyncServer.close`. ``docsync.lifespan`` runs this on
SIGTERM under uvicorn and daphne.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .server import DocSyncServer

logger = logging.getLogger(__name__)

#: Seconds past ``DRAIN_WINDOW`` a drain may take (requests in flight,
#: connections slow to close, squashes) before the process stops anyway.
DRAIN_GRACE = 10.0

#: The reason connections end with (PROTOCOL §6), and the WebSocket code.
REASON, CODE = "server shutting down", 1012


async def drain(server: DocSyncServer, window: float) -> float:
    """Drain ``server``'s connections over ``window`` seconds; return the seconds taken.

    Bounded by ``window + DRAIN_GRACE``; never raises.
    """
    started = time.monotonic()
    server.draining = True
    connections = server.open_connections()
    logger.info("docsync: draining %d connection(s) over %g s", len(connections), window)
    try:
        async with asyncio.timeout(window + DRAIN_GRACE):
            await _drop_spread(connections, window)
            await _settle(server)
    except TimeoutError:
        logger.warning(
            "docsync: drain not done after %g s (%d connection(s), %d task(s) left)",
            window + DRAIN_GRACE,
            server.connections,
            server.background_tasks,
        )
    except Exception:
        logger.exception("docsync: draining failed")
    took = time.monotonic() - started
    logger.info("docsync: drained in %.2f s", took)
    return took


async def _drop_spread(connections: list[Any], window: float) -> None:
    """Drop connection ``i`` of ``n`` at ``window * i / n`` seconds from now."""
    loop = asyncio.get_running_loop()
    start, n = loop.time(), len(connections)
    drops = []
    for i, connection in enumerate(connections):
        delay = start + window * i / n - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        drops.append(loop.create_task(_drop(connection)))
    if drops:
        await asyncio.gather(*drops)


async def _drop(connection: Any) -> None:
    try:
        drop = getattr(connection, "drop", None)  # answers the request in flight first
        await (drop or connection.shutdown)(REASON, CODE)
    except Exception:
        logger.exception("docsync: dropping a connection while draining failed")


async def _settle(server: DocSyncServer) -> None:
    """Wait until every connection has ended and the background work is done."""
    # One whose CONNECT was under way when the drain began registered since.
    late = server.open_connections()
    if late:
        await asyncio.gather(*(_drop(c) for c in late))
    while server.connections:
        await asyncio.sleep(0.05)
    await server.wait_background()
