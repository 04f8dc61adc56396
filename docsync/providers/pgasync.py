"""Statements run on the event loop: psycopg's ``AsyncConnection``, one per loop.

``PostgresProvider`` runs its group commits here (``AsyncGroupCommit``:
one group at a time per event loop, so one connection per loop suffices):
a write then costs no thread hop at all. The connection is opened on first
use with the Django connection's parameters (``get_connection_params()``),
in autocommit mode, and replaced after it breaks. Errors are reported as on
the thread path: a lost database raises ``StorageUnavailable``, anything
else ``StorageError``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from django.db import connections

from .. import metrics
from ..exceptions import StorageError, StorageUnavailable
from ..outage import connection_lost

logger = logging.getLogger(__name__)

#: Parameters of Django's that are Django's own business (sync cursor class,
#: its adapters, its prepare threshold).
_DJANGO_ONLY = ("cursor_factory", "context", "prepare_threshold")


class LoopConnections:
    """One autocommit ``psycopg.AsyncConnection`` to ``using`` per event loop."""

    def __init__(self, using: str, prepare_threshold: int) -> None:
        self.using = using
        self.prepare_threshold = prepare_threshold
        self._connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        #: Statements that arrive together while there is no connection open
        #: one: the others wait for it (psycopg queues statements on it).
        self._opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def execute(self, sql: str, params: Any, what: str, quiet: bool = False) -> list[Any]:
        """Run ``sql`` (prepared) and return its rows; raise as ``PostgresProvider`` does."""
        import psycopg

        loop = asyncio.get_running_loop()
        try:
            conn = self._connections.get(loop)
            if conn is None or conn.closed or conn.broken:
                conn = await self._open(loop)
            async with conn.cursor() as cursor:
                await cursor.execute(sql, params, prepare=True)
                rows: list[Any] = await cursor.fetchall()
                return rows
        except asyncio.CancelledError:
            self._discard(loop)  # a statement cut short leaves the connection unusable
            raise
        except (psycopg.Error, OSError) as exc:
            conn = self._connections.get(loop)
            if conn is None or conn.closed or conn.broken:
                self._discard(loop)
            if isinstance(exc, OSError) or connection_lost(exc) or conn is None or conn.broken:
                raise StorageUnavailable() from exc
            metrics.database_error(exc)
            if quiet:
                logger.info("Database error on %s: %s", what, exc)
            else:
                logger.exception("Database error on document %r", what)
            raise StorageError() from exc

    async def _open(self, loop: asyncio.AbstractEventLoop) -> Any:
        """This loop's connection, opened by the first statement that needs it."""
        lock = self._opening.get(loop)
        if lock is None:
            lock = self._opening[loop] = asyncio.Lock()
        async with lock:
            conn = self._connections.get(loop)
            if conn is None or conn.closed or conn.broken:
                conn = self._connections[loop] = await self._connect()
            return conn

    async def _connect(self) -> Any:
        import psycopg

        connection = connections[self.using]
        params = connection.get_connection_params()
        for name in _DJANGO_ONLY:
            params.pop(name, None)
        # An explicit OPTIONS["prepare_threshold"] (PgBouncer) holds here too.
        options = connection.settings_dict.get("OPTIONS", {})
        threshold = options.get("prepare_threshold", self.prepare_threshold)
        conn = await psycopg.AsyncConnection.connect(
            **params, autocommit=True, prepare_threshold=threshold
        )
        # As Django's own connections: datetimes read in the database's time zone.
        timezone = connection.timezone_name
        if conn.info.parameter_status("TimeZone") != timezone:
            await conn.execute("SELECT set_config('TimeZone', %s, false)", (timezone,))
        return conn

    def _discard(self, loop: asyncio.AbstractEventLoop) -> None:
        conn = self._connections.pop(loop, None)
        if conn is not None and not conn.closed:
            conn.pgconn.finish()  # no round trip: it may be mid-statement or gone
