"""Which documents this process wrote lately: the prompt path to webhooks' ``document.changed``.

Providers call :func:`note` after a committed write (a dict update under a
lock; nothing at all in a process without webhook receivers). The webhook
pump of this process (``docsync.webhooks.pump``) takes the documents that have been
quiet for ``WEBHOOK_QUIET`` seconds and compares each with its cursor. A
hint lost in a crash is harmless: the pump's sweep finds every document
whose row differs from its cursor.
"""

from __future__ import annotations

import threading
import time

from django.db import connections, transaction

_lock = threading.Lock()
#: (database alias, doc_id) -> [first noted, last noted] (time.monotonic()).
_pending: dict[tuple[str, str], list[float]] = {}
_enabled = False


def enable() -> None:
    """Start keeping hints (a pump runs in this process)."""
    global _enabled
    _enabled = True


def disable() -> None:
    """Stop keeping hints and forget those kept."""
    global _enabled
    _enabled = False
    with _lock:
        _pending.clear()


def note(using: str, doc_id: str) -> None:
    """``doc_id`` on database ``using`` was written (or will be, once the transaction commits)."""
    if not _enabled:
        return
    if connections[using].in_atomic_block:
        transaction.on_commit(lambda: _record(using, doc_id), using=using)
    else:
        _record(using, doc_id)


def _record(using: str, doc_id: str) -> None:
    now = time.monotonic()
    with _lock:
        times = _pending.get((using, doc_id))
        if times is None:
            _pending[(using, doc_id)] = [now, now]
        else:
            times[1] = now


def take_due(quiet: float, max_delay: float) -> dict[tuple[str, str], float]:
    """Remove and return the documents quiet for ``quiet`` s or noted ``max_delay`` s ago.

    Each maps to when it was first noted (``time.monotonic()``).
    """
    now = time.monotonic()
    with _lock:
        due = {
            key: first
            for key, (first, last) in _pending.items()
            if now - last >= quiet or now - first >= max_delay
        }
        for key in due:
            del _pending[key]
    return due


def put_back(key: tuple[str, str], first: float, due_in: float, quiet: float) -> None:
    """Look at ``key`` again in ``due_in`` seconds (another process is still changing it)."""
    with _lock:
        times = _pending.setdefault(key, [first, 0.0])
        times[0] = min(times[0], first)
        times[1] = max(times[1], time.monotonic() + due_in - quiet)


def next_due(quiet: float, max_delay: float) -> float | None:
    """Seconds until the next document is due for :func:`take_due` (``None``: none waits)."""
    now = time.monotonic()
    with _lock:
        if not _pending:
            return None
        due = min(min(last + quiet, first + max_delay) for first, last in _pending.values())
    return max(0.0, due - now)


def pending_count() -> int:
    """How many documents wait for their quiet period."""
    return len(_pending)
