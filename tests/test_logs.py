"""Structured logs (docsync.logs): one line per connection end and per failed request."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest

from docsync.logs import JSONFormatter
from tests.wsclient import RawClient, auth, dumps

pytestmark = pytest.mark.django_db(transaction=True)

DOC = "01k00000000000000000000001"


def fields(caplog, logger: str) -> list[dict]:
    return [r.docsync for r in caplog.records if r.name == logger]


async def ended(caplog) -> None:
    """Wait for the connection's end line (its clean-up runs after the close)."""
    for _ in range(100):
        if fields(caplog, "docsync.connections"):
            return
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_a_connection_end_names_its_id_user_documents_and_reason(app, caplog):
    caplog.set_level(logging.INFO, logger="docsync")
    c = RawClient(app)
    await c.connect("alice")
    pull = {"type": "doc", "docId": DOC, "operations": [], "serializedDoc": None, "clock": 0}
    ack_id = await c.emit("sync", pull)
    frames = [await c.recv_json(), await c.recv_json()]  # the answer and collaboration
    assert f"43{ack_id}" in [prefix for prefix, _ in frames], frames
    await c.close()
    await ended(caplog)
    [end] = fields(caplog, "docsync.connections")
    assert end["event"] == "connection_end" and end["user_id"] == "alice"
    assert end["doc_ids"] == [DOC] and end["reason"] == "transport close"
    assert end["connection"] and end["duration_s"] >= 0 and "refused" not in end
    [record] = [r for r in caplog.records if r.name == "docsync.connections"]
    assert "alice" in record.getMessage() and DOC in record.getMessage()


@pytest.mark.asyncio
async def test_a_refused_connect_is_one_line_with_the_refusal(app, caplog):
    caplog.set_level(logging.INFO, logger="docsync")
    c = RawClient(app)
    await c.open()
    await c.send("40" + dumps({**auth("x"), "token": "wrong"}))
    assert await c.recv() == '44{"message":"Authentication failed: invalid credentials"}'
    await c.close()
    await ended(caplog)
    [end] = fields(caplog, "docsync.connections")
    assert end["user_id"] is None and end["doc_ids"] == []
    assert end["refused"] == "Authentication failed: invalid credentials"


@pytest.mark.asyncio
async def test_a_failed_request_is_one_line_with_what_the_client_was_told(app, caplog):
    caplog.set_level(logging.INFO, logger="docsync")
    c = RawClient(app)
    await c.connect("bob")
    answer = await c.call("sync", {"type": "doc", "docId": DOC, "operations": "nope"})
    assert "error" in answer
    await c.call("no-such-event", {"docId": "x" * 500})
    await c.close()
    failed = fields(caplog, "docsync.requests")
    assert [f["request"] for f in failed] == ["sync", "no-such-event"]
    first, second = failed
    assert first["user_id"] == "bob" and first["doc_id"] == DOC
    assert first["error_type"] == answer["error"]["type"]
    assert first["reason"] == answer["error"]["message"]
    assert second["reason"] == "Unknown event: no-such-event"
    assert len(second["doc_id"]) == 203  # a client's id is cut short in logs


def test_the_json_formatter_writes_one_object_per_line():
    record = logging.LogRecord(
        "docsync.connections", logging.INFO, __file__, 1, "a %s", ("b",), None
    )
    record.docsync = {"event": "connection_end", "user_id": "7", "doc_ids": ["d"]}
    line = JSONFormatter().format(record)
    assert "\n" not in line
    body = json.loads(line)
    assert body["message"] == "a b" and body["logger"] == "docsync.connections"
    assert body["level"] == "INFO" and body["time"].endswith("+00:00")
    assert body["user_id"] == "7" and body["doc_ids"] == ["d"]
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("docsync.x", logging.ERROR, __file__, 1, "m", (), sys.exc_info())
    body = json.loads(JSONFormatter().format(record))
    assert "ValueError: boom" in body["exc"] and "docsync" not in body
