"""Structured logs: the logger hierarchy, one line per connection end and per
failed request, and a JSON formatter for log shippers.

Loggers (all under ``docsync``, so ``"loggers": {"docsync": {...}}`` takes
them all):

* ``docsync.connections``: one INFO line per connection end (see
  :func:`connection_ended`);
* ``docsync.requests``: one INFO line per request answered with an error
  (see :func:`request_failed`), except while storage is unavailable
  (``docsync.outage`` logs an outage once when it starts and once when it
  ends);
* ``docsync.<module>``: everything else, named after its module
  (``docsync.consumers``, ``docsync.transport``, ``docsync.handshake``,
  ``docsync.server``, ``docsync.revocation``, ``docsync.outage``,
  ``docsync.health``, ...): unexpected errors with their traceback at
  ERROR, outages at WARNING, dropped frames at INFO and DEBUG.

Each connection or request line carries its fields twice: in the text
(``docsync: connection ... ended (...)``) and as the record attribute
``docsync`` (a dict), which :class:`JSONFormatter` writes as top-level keys::

    LOGGING = {
        "version": 1,
        "formatters": {"json": {"()": "docsync.logs.JSONFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {"docsync": {"handlers": ["console"], "level": "INFO"}},
    }
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

connections_logger = logging.getLogger("docsync.connections")
requests_logger = logging.getLogger("docsync.requests")

#: Longest document id written to a log line (a client chooses them).
MAX_LOGGED_ID = 200


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_LOGGED_ID:
        return value[:MAX_LOGGED_ID] + "..."
    return value


def connection_ended(
    connection: str,
    user_id: str | None,
    doc_ids: list[str],
    reason: str,
    duration: float,
    refused: str | None = None,
) -> None:
    """Log the end of a connection: its id, user, documents, reason and duration."""
    fields: dict[str, Any] = {
        "event": "connection_end",
        "connection": connection,
        "user_id": user_id,
        "doc_ids": [_short(d) for d in doc_ids],
        "reason": reason,
        "duration_s": round(duration, 3),
    }
    if refused is not None:
        fields["refused"] = refused
    connections_logger.info(
        "docsync: connection %s ended (%s) after %.1f s: user %s, documents %s%s",
        connection,
        reason,
        duration,
        user_id,
        fields["doc_ids"],
        f", CONNECT refused: {refused}" if refused is not None else "",
        extra={"docsync": fields},
    )


def request_failed(
    connection: str,
    user_id: str | None,
    request: str,
    doc_id: Any,
    error_type: str,
    message: str,
) -> None:
    """Log a request answered with an error (the error the client was sent)."""
    fields: dict[str, Any] = {
        "event": "request_failed",
        "connection": connection,
        "user_id": user_id,
        "request": request,
        "doc_id": _short(doc_id) if isinstance(doc_id, str) else None,
        "error_type": error_type,
        "reason": message,
    }
    requests_logger.info(
        "docsync: %s from connection %s (user %s, document %s) failed: %s: %s",
        request or "request",
        connection,
        user_id,
        fields["doc_id"],
        error_type,
        message,
        extra={"docsync": fields},
    )


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's
    ``docsync`` fields, and the traceback (``exc``) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "docsync", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                body.setdefault(key, value)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, default=str, ensure_ascii=False)
