"""Prometheus metrics: every count docsync keeps, defined once, counted anywhere.

Every layer counts into this module with one call where the thing happens
(``metrics.connected()``, ``metrics.request(event, outcome)`` ...), so it
sits just above the bottom of the layers and imports nothing of docsync but
the exceptions. :func:`render` is what the ``/metrics`` view
(``docsync.views.metrics``) answers.

Several server processes: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
directory in the environment of every process before it starts (prometheus
client's multiprocess mode). Each process then writes its values there and
whichever process answers a scrape adds up all of them, so any worker behind
one port gives the deployment's totals. See docs/metrics.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .exceptions import DocSyncError, StorageUnavailable

#: The environment variable that turns on multiprocess mode (prometheus-client's).
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

CONNECTIONS_OPEN = Gauge(
    "docsync_connections_open",
    "Connections that completed their CONNECT and are still open.",
    multiprocess_mode="livesum",
)
CONNECTS = Counter("docsync_connects", "CONNECTs accepted.")
REFUSALS = Counter("docsync_connect_refusals", "Connections refused, by reason.", ["reason"])
REQUESTS = Counter(
    "docsync_requests",
    "Client requests answered, by event and outcome (ok, or the error type the client got).",
    ["event", "outcome"],
)
SYNC_SECONDS = Histogram(
    "docsync_sync_duration_seconds",
    "Seconds from a sync request's arrival to its answer (successful syncs).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OPERATIONS_STORED = Counter(
    "docsync_operations_stored", "Operations in acknowledged syncs (stored in the log)."
)
MESSAGES_SENT = Counter(
    "docsync_messages_sent",
    "Messages the server sent to clients on its own, by type (dirty, presence).",
    ["type"],
)
SQUASH_SECONDS = Histogram(
    "docsync_squash_duration_seconds",
    "Seconds each background squash took; its _count is the squash runs.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SQUASH_FAILURES = Counter("docsync_squash_failures", "Background squashes that failed.")
CHANNEL_LAYER_ERRORS = Counter(
    "docsync_channel_layer_errors", "Channel-layer calls that failed, by action.", ["action"]
)
REDIS_ERRORS = Counter("docsync_redis_errors", "Redis calls of the shared state that failed.")
DATABASE_ERRORS = Counter(
    "docsync_database_errors",
    "Database errors: unavailable (a request found the storage unreachable) or error.",
    ["kind"],
)
SLOWDOWNS = Counter(
    "docsync_slowdowns",
    "Answers held back by a limiter (docsync.throttle), by limiter.",
    ["limiter"],
)

# The ``inc`` of each label child, looked up once: ``labels()`` takes a lock
# and checks its values, which would double the cost of a count.
_incs: dict[tuple[Any, ...], Callable[..., None]] = {}


def _inc(metric: Any, *labels: str) -> Callable[..., None]:
    key = (metric, *labels)
    inc = _incs.get(key)
    if inc is None:
        inc = _incs[key] = metric.labels(*labels).inc
    return inc


# -- the counting calls ------------------------------------------------------


def connected() -> None:
    """A CONNECT was accepted: one more open connection."""
    CONNECTS.inc()
    CONNECTIONS_OPEN.inc()


def disconnected() -> None:
    """A connection that was accepted ended."""
    CONNECTIONS_OPEN.dec()


#: CONNECT refusals, by the start of the message the client gets, and their reason.
REFUSAL_REASONS = (
    ("Authentication failed: invalid credentials", "invalid_credentials"),
    ("Authentication failed: claimed user ID mismatch", "claimed_user_mismatch"),
    ("Authentication failed: invalid", "invalid_handshake"),
    ("Authentication required", "authentication_required"),
    ("Authentication error: Token expired", "token_expired"),
    ("Authentication error", "authentication_error"),
    ("Too many connections", "too_many_connections"),
    ("Invalid handshake", "invalid_handshake"),
    ("Device ID", "invalid_handshake"),
    ("Client ID", "invalid_handshake"),
    (StorageUnavailable.default_message, "storage_unavailable"),
)
_REASON = re.compile(r"[a-z_]+")


def refused(message: str) -> None:
    """A connection was refused with ``message`` (or a reason, ``"unsupported_protocol"``)."""
    _inc(REFUSALS, refusal_reason(message))()


def refusal_reason(message: str) -> str:
    """The ``reason`` label of a refusal message: one of a few words, never the message."""
    for start, reason in REFUSAL_REASONS:
        if message.startswith(start):
            return reason
    return message if _REASON.fullmatch(message) and len(message) <= 32 else "other"


def request(event: str, outcome: str) -> None:
    """A request of ``event`` (a known event's name, or ``"unknown"``) was answered."""
    inc = _incs.get(("r", event, outcome))  # the hot path: one lookup
    if inc is None:
        inc = _incs["r", event, outcome] = REQUESTS.labels(event, outcome).inc
    inc()


def request_failed(event: str, exc: BaseException) -> None:
    """A request failed with ``exc``: counted under the error type the client is told."""
    request(event, exc.wire_type if isinstance(exc, DocSyncError) else "DatabaseError")


def synced(seconds: float, operations: int) -> None:
    """A sync was answered after ``seconds``, storing ``operations``."""
    _observe_sync(seconds)
    if operations:
        _store(operations)


_observe_sync = SYNC_SECONDS.observe
_store = OPERATIONS_STORED.inc


def sent(kind: str) -> None:
    """The server sent a client a ``kind`` message (``dirty``, ``presence``)."""
    inc = _incs.get(("s", kind))  # the hot path: one lookup
    if inc is None:
        inc = _incs["s", kind] = MESSAGES_SENT.labels(kind).inc
    inc()


def channel_layer_failed(action: str) -> None:
    """A channel-layer call (``group_send`` ...) failed."""
    _inc(CHANNEL_LAYER_ERRORS, action)()


def database_unavailable() -> None:
    """A request found the storage unreachable (``docsync.outage``)."""
    _inc(DATABASE_ERRORS, "unavailable")()


def database_error(exc: BaseException) -> None:
    """``exc`` came out of a database hop: counted if it is a database error."""
    from django.db import DatabaseError

    if isinstance(exc, DatabaseError) or type(exc).__module__.startswith("psycopg"):
        _inc(DATABASE_ERRORS, "error")()


def slowed_down(limiter: str) -> None:
    """A limiter held an answer back (``CONNECT_FAILURE``, ``ERROR``, ``REFUSAL_BACKOFF``)."""
    _inc(SLOWDOWNS, limiter.lower())()


# -- exposition --------------------------------------------------------------


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, or ``None`` when each process counts alone."""
    return os.environ.get(MULTIPROC_DIR) or None


def registry() -> CollectorRegistry:
    """What a scrape collects: every process's values in multiprocess mode,
    else this process's (with prometheus-client's process and GC metrics)."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    forget_dead_processes(path)
    collecting = CollectorRegistry()
    multiprocess.MultiProcessCollector(collecting, path=path)  # type: ignore[no-untyped-call]
    return collecting


def render() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


_LIVE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def forget_dead_processes(path: str) -> None:
    """Drop the open-connection gauges of processes that are gone (killed,
    restarted): their counters stay, their connections are no longer open.

    The processes must share this machine's process ids (one host, one
    container): a process id not in use here counts as dead.
    """
    for name in os.listdir(path):
        match = _LIVE_FILE.fullmatch(name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), path)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
