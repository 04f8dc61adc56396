"""Listeners and signals: who hears about connections, syncs and deletes.

A :class:`Listeners` (``DocSyncServer`` is one) keeps the listeners of the
seven server events (:data:`EVENTS`) and, after each, sends the Django signal
of the same event (:data:`SIGNALS`, ``docsync.signals``). What a listener
receives is an :class:`Event`: a dict with the reference server's camelCase
keys, whose attributes take the snake_case twins too.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from django.dispatch import Signal

from . import signals

logger = logging.getLogger(__name__)

#: The server events, in the order of a connection's life.
EVENTS = (
    "client_connect",
    "client_disconnect",
    "doc_subscribe",
    "doc_unsubscribe",
    "sync_request",
    "doc_delete",
    "doc_edit",
)

#: The Django signal sent after the listeners of each event.
SIGNALS: dict[str, Signal] = {
    "client_connect": signals.client_connected,
    "client_disconnect": signals.client_disconnected,
    "doc_subscribe": signals.doc_subscribed,
    "doc_unsubscribe": signals.doc_unsubscribed,
    "sync_request": signals.sync_finished,
    "doc_delete": signals.doc_deleted,
    "doc_edit": signals.doc_edited,
}

#: The events whose signal also gives the ``Document`` (``document=``).
DOCUMENT_EVENTS = frozenset({"doc_subscribe", "doc_unsubscribe", "sync_request", "doc_delete"})

_CAMEL = re.compile(r"_([a-z])")


def has_receivers(signal: Signal) -> bool:
    """``signal.has_listeners()``, without its lock and weak-reference walk
    when no receiver was ever connected (the usual case, asked per request)."""
    return bool(signal.receivers) and signal.has_listeners()


class Event(dict[str, Any]):
    """What a listener receives: a dict with the reference's (camelCase) keys.

    Attribute access takes the snake_case twins too: ``event.user_id`` is
    ``event["userId"]``, ``event.duration_ms`` is ``event["durationMs"]``.
    """

    def __getattr__(self, name: str) -> Any:
        key = _CAMEL.sub(lambda m: m.group(1).upper(), name)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(name) from None

    def snake(self) -> dict[str, Any]:
        """The same fields with snake_case names (for signal kwargs)."""
        return {re.sub(r"([A-Z])", r"_\1", k).lower(): v for k, v in self.items()}


class Listeners:
    """The listeners of :data:`EVENTS`: ``on_*`` to add one, :meth:`emit` to run them.

    Signals are sent with ``sender=signal_sender`` and ``server=self``.
    """

    #: The ``sender`` of the signals (``DocSyncServer`` sets itself).
    signal_sender: Any = None

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[..., Any]]] = {name: [] for name in EVENTS}

    def _on(self, name: str, listener: Callable[..., Any]) -> Callable[[], None]:
        self._listeners[name].append(listener)

        def remove() -> None:
            if listener in self._listeners[name]:
                self._listeners[name].remove(listener)

        return remove

    def on_client_connect(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Call ``listener(event)`` after a client connects; returns a remover.

        Fields: userId, deviceId, clientId, context.
        """
        return self._on("client_connect", listener)

    def on_client_disconnect(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, reason."""
        return self._on("client_disconnect", listener)

    def on_doc_subscribe(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, docId."""
        return self._on("doc_subscribe", listener)

    def on_doc_unsubscribe(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, docId, reason."""
        return self._on("doc_unsubscribe", listener)

    def on_sync_request(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, status, req, res (on success),
        durationMs, clientsCount, devicesCount, error (on error)."""
        return self._on("sync_request", listener)

    def on_doc_delete(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, docId (a docsync addition)."""
        return self._on("doc_delete", listener)

    def on_doc_edit(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Fields: userId, deviceId, clientId, docId, clock, operations: a server-side
        edit (``docsync.api.apply_operations``), after it committed."""
        return self._on("doc_edit", listener)

    def on_doc_restore(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """Call ``listener(event)`` after a restore committed in this process.

        Any restore (``docsync.history.restore_document``: the admin, the
        Python or REST API), fed by the ``doc_restored`` signal, in the
        restoring thread; an ``async`` listener runs to completion there.
        Fields: userId, docId, clock (the new one), restoredFrom. Returns a
        remover.
        """

        def receiver(sender: Any, **kwargs: Any) -> None:
            event = Event(
                userId=kwargs["user_id"],
                docId=kwargs["doc_id"],
                clock=kwargs["clock"],
                restoredFrom=kwargs["restored_from"],
            )
            if inspect.iscoroutinefunction(listener):
                async_to_sync(listener)(event)
            else:
                listener(event)

        signals.doc_restored.connect(receiver, weak=False)

        def remove() -> None:
            signals.doc_restored.disconnect(receiver)

        return remove

    def wants(self, name: str) -> bool:
        """Whether anyone listens to ``name`` (so costly fields can be skipped)."""
        return bool(self._listeners[name]) or has_receivers(SIGNALS[name])

    async def emit(self, name: str, event: Event, **extra: Any) -> None:
        """Run the listeners of ``name``, then send its Django signal.

        ``extra`` goes to the signal only (``user``, ``document``). A
        listener or receiver that raises is logged and ignored.
        """
        for listener in list(self._listeners[name]):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("docsync %s listener %r failed", name, listener)
        signal = SIGNALS[name]
        if has_receivers(signal):
            await self._send_signal(signal, **event.snake(), **extra)

    async def _send_signal(self, signal: Signal, **kwargs: Any) -> None:
        for receiver, result in await signal.asend_robust(
            sender=self.signal_sender or type(self), server=self, **kwargs
        ):
            if isinstance(result, Exception):
                logger.error(
                    "docsync signal receiver %r failed: %s",
                    receiver,
                    result,
                    exc_info=(type(result), result, result.__traceback__),
                )
