"""``GracefulDrain``: the ASGI wrapper that drains a process on SIGTERM (rolling deploys).

Wrap the project's application in ``asgi.py``::

    application = GracefulDrain(ProtocolTypeRouter({...}))

On SIGTERM the process drains (``docsync.drain``: readiness fails, new
WebSockets are refused, each open transport is dropped so that its client
reconnects to another process, spread over ``DRAIN_WINDOW`` seconds), closes
the server (``DocSyncServer.close``: squashes finished, this process's
presence gone from Redis) and only then hands the signal on to the ASGI
server, which stops as it always does, with no connection left to close.

Neither uvicorn nor daphne offers a hook early enough: uvicorn sends the
ASGI ``lifespan.shutdown`` only after it has closed every WebSocket (code
1012, all at once), and daphne has no lifespan and cancels every
application on SIGTERM. So the wrapper chains its own SIGTERM handler in
front of the server's, once the server has installed its own: at
``lifespan.startup`` under uvicorn, at the first request under daphne
(which sends no lifespan). A second SIGTERM stops at once. Signal handlers
can only be set in the main thread: under ``runserver``'s autoreloader (a
thread) nothing is chained and the server stops as it would without the
wrapper. The ``lifespan`` scope is answered here, not passed on (channels'
``ProtocolTypeRouter`` refuses it); ``lifespan.shutdown`` closes the server
when no drain did. Importing this module sets nothing of Django up, so the
import may stand anywhere in ``asgi.py``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from .conf import docsync_settings

if TYPE_CHECKING:
    from .server import DocSyncServer

logger = logging.getLogger(__name__)

Handler = Any  # what signal.getsignal returns: a callable, SIG_DFL, SIG_IGN or None


class GracefulDrain:
    """ASGI middleware: on SIGTERM, drain this process, then let the server stop.

    ``server``: the ``DocSyncServer`` routed (the default server of the
    settings when not given).
    """

    def __init__(self, application: Any, server: DocSyncServer | None = None) -> None:
        self.application = application
        self.server = server
        self._installed = False
        self._previous: Handler = None
        self._draining: asyncio.Task[None] | None = None
        self._closed = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self._installed:
            self._install()
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.application(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- SIGTERM -------------------------------------------------------------

    def _install(self) -> None:
        """Put our SIGTERM handler in front of the ASGI server's (main thread only)."""
        self._installed = True
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is not None:
            logger.info("docsync: SIGTERM again: stopping now")
            self._hand_on(sig, frame)
            return
        try:
            self._loop.call_soon_threadsafe(self._start, sig, frame)
        except RuntimeError:  # the loop is closed: nothing left to drain
            self._hand_on(sig, frame)

    def _start(self, sig: int, frame: FrameType | None) -> None:
        self._draining = self._loop.create_task(self._drain_then_stop(sig, frame))

    async def _drain_then_stop(self, sig: int, frame: FrameType | None) -> None:
        from .drain import drain

        server = self._server()
        if server is not None:
            await drain(server, float(docsync_settings.DRAIN_WINDOW))
            await self._close()
        self._hand_on(sig, frame)

    def _hand_on(self, sig: int, frame: FrameType | None) -> None:
        """Give the signal to the handler that was there before ours."""
        previous = self._previous
        if callable(previous):
            previous(sig, frame)
            return
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        signal.raise_signal(sig)

    # -- closing -------------------------------------------------------------

    def _server(self) -> DocSyncServer | None:
        from .default import built_default_server

        return self.server if self.server is not None else built_default_server()

    async def _close(self) -> None:
        """``DocSyncServer.close()`` once, bounded by ``DRAIN_GRACE``."""
        server = self._server()
        if self._closed or server is None:
            return
        self._closed = True
        from .drain import DRAIN_GRACE

        try:
            async with asyncio.timeout(DRAIN_GRACE):
                await server.close()
        except Exception:
            logger.exception("docsync: closing the server failed")
