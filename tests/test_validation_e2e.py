"""Issue 9 points 1, 2 and 5 end to end: no client can poison a document or a
presence, or get a bad field past the door.

Real servers (uvicorn on PostgreSQL and Redis, daphne in memory), real
python-socketio clients, and raw WebSocket frames for what python-socketio
cannot send (a 5,000-digit number). Each poison is refused with a
``ValidationError`` naming the field, nothing is stored or relayed, the
other clients stay connected and keep syncing, and the server logs no
traceback.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import pytest

from tests.e2e_db import pg_url  # noqa: F401  (fixture)
from tests.liveserver import LiveServer, manage
from tests.services import require_redis
from tests.sioclient import Client

pytestmark = [pytest.mark.e2e]

DOCNODE = {
    "class": "docsync.bindings.docnode.DocNodeBinding",
    "options": {"doc_type": "doc", "nodes": {"doc": {}, "p": {"text": {"kind": "string"}}}},
}
BINDINGS = {"doc": DOCNODE, "canvas": {"class": "docsync.bindings.yjs.YjsBinding"}}
MAX_PRESENCE = 2000


def new_doc() -> str:
    """A fresh lowercase ULID (what the DocNode binding accepts as a doc id)."""
    chars = uuid.uuid4().bytes + uuid.uuid4().bytes
    return "01k" + "".join("0123456789abcdefghjkmnpqrstvwxyz"[b % 32] for b in chars)[:23]


def insert(node: str, text: str = "hi") -> list:
    """A DocNode batch inserting paragraph ``node`` into the root, with ``text``."""
    return [[[0, [[node, "p"]], 0, 0, 0]], {node: {"text": json.dumps(text)}}]


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.fixture(scope="module", params=["uvicorn-postgres-redis", "daphne-memory"])
def live(request):
    env = {"E2E_BINDINGS": json.dumps(BINDINGS), "E2E_SQUASH_THRESHOLD": "0"}
    env["E2E_MAX_PRESENCE"] = str(MAX_PRESENCE)
    server_kind = request.param.split("-")[0]
    pg = None
    if "postgres" in request.param:
        pg = request.getfixturevalue("pg_url")
        env |= {"E2E_PROVIDER": "docsync.providers.orm.ORMProvider", "E2E_DATABASE_URL": pg}
    if "redis" in request.param:
        env["E2E_REDIS_URL"] = require_redis()
    server = LiveServer(env, server=server_kind).start()
    server.pg = pg
    server.env_extra = env
    yield server
    server.stop()
    output = server.output()
    assert "Traceback" not in output, output[-3000:]
    assert "is unavailable" not in output, output  # a presence never looks like a Redis outage


class Clients:
    def __init__(self, url: str):
        self.url = url
        self.all: list[Client] = []

    async def __call__(self, user: str, **kwargs) -> Client:
        client = await Client(self.url, user, **kwargs).connect()
        self.all.append(client)
        return client

    async def close(self) -> None:
        for client in self.all:
            if client.sio.connected:
                await client.close()


@pytest.fixture
async def clients(live):
    made = Clients(live.url)
    yield made
    await made.close()


def refused(answer: dict, field: str, words: str) -> str:
    """Assert ``answer`` is a ValidationError naming ``field``; return its message."""
    assert "data" not in answer, answer
    error = answer["error"]
    assert error["type"] == "ValidationError", answer
    assert error["message"].startswith(field), error["message"]
    assert words in error["message"], error["message"]
    return error["message"]


async def still_fine(doc: str, reader: Client, writer: Client, clock: int, node: str) -> None:
    """The document reads as before, and the writer's next good batch is stored."""
    res = await reader.sync(doc, clock=0)
    assert res["data"]["clock"] == clock, res
    res = await writer.sync(doc, operations=[insert(node)], clock=clock)
    assert res["data"]["clock"] == clock + 1, res
    assert await reader.wait_for("dirty", lambda d: d["docId"] == doc)
    res = await reader.sync(doc, clock=clock)
    assert res["data"]["operations"] == [insert(node)]


POISONS = [
    # (name, operations value, field, words in the message)
    ("lone surrogate", ["\ud800"], "operations[0][0]", "lone surrogate (\\ud800)"),
    ("lone low surrogate in a key", [{"a\udc00": "x"}], "operations[0][0]", "lone surrogate"),
    ("NUL", [[], {"n": {"text": '"a\u0000b"'}}], "operations[0][1].n.text", "NUL character"),
    ("NaN", [float("nan")], "operations[0][0]", "NaN"),
]


@pytest.mark.parametrize("value,field,words", [p[1:] for p in POISONS], ids=[p[0] for p in POISONS])
async def test_poisoned_operations_are_refused_and_nothing_is_stored(clients, value, field, words):
    doc = new_doc()
    alice, bob = await clients("alice"), await clients("bob")
    assert (await alice.sync(doc, operations=[insert("a1")]))["data"]["clock"] == 1
    assert (await bob.sync(doc))["data"]["clock"] == 1
    refused(await alice.sync(doc, operations=[value], clock=1), field, words)
    await still_fine(doc, bob, alice, 1, "a2")


class RawSocket:
    """A WebSocket speaking frames, for what python-socketio would not send."""

    def __init__(self, url: str):
        self.url = url

    async def __aenter__(self) -> RawSocket:
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.url)
        assert (await self.text()).startswith("0{")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        await self.http.close()

    async def text(self, timeout: float = 5) -> str:
        while True:
            msg = await self.ws.receive(timeout)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            if msg.data != "2":
                return msg.data
            await self.ws.send_str("3")

    async def connect(self, auth_text: str) -> str:
        await self.ws.send_str("40" + auth_text)
        return await self.text()

    async def answer(self, ack: int, frame: str) -> dict:
        await self.ws.send_str(frame)
        while True:
            text = await self.text()
            if text.startswith(f"43{ack}["):
                return json.loads(text[len(f"43{ack}") :])[0]


async def test_numbers_and_depths_python_socketio_cannot_send_are_refused(live, clients):
    doc = new_doc()
    alice, bob = await clients("alice"), await clients("bob")
    await bob.sync(doc, operations=[insert("b1")])
    await alice.sync(doc, clock=1)
    async with RawSocket(live.ws_url) as raw:
        connected = await raw.connect('{"deviceId":"d","clientId":"c","token":"valid-eve"}')
        assert connected.startswith("40{")
        for value, field, words in [
            ("1" * 5000, "operations[0][0]", "5000 digits"),
            ("1e999", "operations[0][0]", "too large"),
            ("-Infinity", "operations[0][0]", "-Infinity"),
            # python-socketio itself cannot send this deep (its binary scan recurses).
            ("[" * 600 + "]" * 600, "operations[0][0][0][0][0]…", "nested too deeply"),
            ("[" * 20000 + "]" * 20000, "operations[0][0][0][0][0]…", "nested too deeply"),
        ]:
            payload = f'{{"type":"doc","docId":"{doc}","operations":[[{value}]],"clock":1}}'
            refused(await raw.answer(7, f'427["sync",{payload}]'), field, words)
        # The connection goes on: a good request right after is served.
        pull = f'{{"type":"doc","docId":"{doc}","operations":[],"clock":0}}'
        ok = await raw.answer(8, f'428["sync",{pull}]')
        assert ok["data"]["clock"] == 1
    await still_fine(doc, alice, bob, 1, "b2")


async def test_binding_refuses_what_it_could_never_squash(clients):
    doc, canvas = new_doc(), f"canvas-{uuid.uuid4().hex[:8]}"
    alice = await clients("alice")
    # The old quick-start client's batch, in a DocNode document.
    message = refused(
        await alice.sync(doc, operations=[{"hello": "world"}]), "operations[0]", "'doc' document"
    )
    assert "[ordered operations, state patch]" in message
    refused(await alice.sync(doc, operations=[[[[7, "x"]], {}]]), "operations[0]", "Operation #0")
    refused(await alice.sync(doc, operations=[[[], {"n": {"text": 1}}]]), "operations[0]", "patch")
    # A first snapshot the binding cannot load.
    refused(await alice.sync(doc, snapshot=["not-a-ulid", "doc", {}]), "serializedDoc", "ULID")
    refused(await alice.sync(doc, snapshot={"hello": "world"}), "serializedDoc", "snapshot")
    # A Yjs update must be bytes that decode.
    refused(
        await alice.sync(canvas, operations=["text"], doc_type="canvas"), "operations[0]", "bytes"
    )
    refused(
        await alice.sync(canvas, operations=[b"\xff\xff\xff"], doc_type="canvas"),
        "operations[0]",
        "not a valid Yjs update",
    )
    # Nothing of that was stored: the documents do not exist yet.
    assert (await alice.sync(doc))["data"] == {
        "docId": doc,
        "operations": [],
        "serializedDoc": None,
        "clock": 0,
    }
    # Well-formed values of both go in.
    res = await alice.sync(doc, operations=[insert("a1")], snapshot=[doc, "doc", {}])
    assert res["data"]["clock"] == 1
    pycrdt = pytest.importorskip("pycrdt")
    ydoc = pycrdt.Doc()
    ydoc.get("content", type=pycrdt.Text).insert(0, "hello")
    res = await alice.sync(canvas, operations=[ydoc.get_update()], doc_type="canvas")
    assert res["data"]["clock"] == 1


ON_THE_DATABASE = pytest.mark.parametrize("live", ["uvicorn-postgres-redis"], indirect=True)


@ON_THE_DATABASE
async def test_a_squash_folds_what_was_accepted(live, clients):
    """On the database: poison refused, so the squash of the log succeeds."""
    doc = new_doc()
    alice = await clients("alice")
    await alice.sync(doc, operations=[insert("a1")])
    refused(await alice.sync(doc, operations=[{"hello": "world"}], clock=1), "operations[0]", "")
    await alice.sync(doc, operations=[insert("a2", "\U0001f600 ok")], clock=1)
    out = manage("docsync_squash", doc, env={**live.env_extra, "E2E_DATABASE_URL": live.pg})
    assert "Squashed 1 document(s), folding 2 batch(es)" in out
    res = await alice.sync(doc)
    assert res["data"]["operations"] == [] and res["data"]["clock"] == 2
    assert sorted(node[0] for node in res["data"]["serializedDoc"][3]) == ["a1", "a2"]


@ON_THE_DATABASE
async def test_a_document_already_holding_bad_content_stays_readable(live, clients):
    """Defence in depth: content stored before validation existed (a lone surrogate,
    a value nested 600 deep) is still sent to readers; nobody's sync fails."""
    import psycopg

    from docsync.models import encode_operations

    doc = new_doc()
    alice, bob = await clients("alice"), await clients("bob")
    await alice.sync(doc, operations=[insert("a1")])
    bad = ["x\ud800y", nested(600)]
    fmt, data = encode_operations(bad)
    with psycopg.connect(live.pg) as conn:
        conn.execute(
            "UPDATE docsync_operationbatch SET operations = %s, operations_format = %s "
            "WHERE document_id = (SELECT id FROM docsync_document WHERE doc_id = %s)",
            [data, fmt, doc],
        )
    res = await bob.sync(doc)
    assert res["data"]["clock"] == 1
    assert res["data"]["operations"][0] == "x\ud800y"  # escaped on the wire, the same string
    depth, value = 0, res["data"]["operations"][1]
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    assert depth == 599
    res = await alice.sync(doc, operations=[insert("a2")], clock=1)
    assert res["data"]["clock"] == 2


PRESENCE_POISONS = [
    ("200 deep", nested(200), "presence[0][0][0][0][0]", "nested too deeply"),
    ("lone surrogate", {"name": "\udbff"}, "presence.name", "lone surrogate"),
    ("NUL key", {"\u0000": 1}, "presence", "NUL character"),
    ("too large", {"cursor": "x" * MAX_PRESENCE}, "presence", "too large"),
    ("binary", {"cursor": b"\x01\x02"}, "presence", "without binary data"),
]


@pytest.mark.parametrize(
    "value,field,words", [p[1:] for p in PRESENCE_POISONS], ids=[p[0] for p in PRESENCE_POISONS]
)
async def test_presence_cannot_hurt_others(clients, value, field, words):
    doc = new_doc()
    alice, bob, carol = await clients("alice"), await clients("bob"), await clients("carol")
    await alice.sync(doc, operations=[insert("a1")])
    await bob.sync(doc)
    await carol.sync(doc)
    refused(await alice.call("presence", {"docId": doc, "presence": value}), field, words)
    # Everyone is still there, and a good presence still reaches them all.
    assert await alice.call("presence", {"docId": doc, "presence": {"cursor": 3}}) == {}
    for other in (bob, carol):
        got = await other.wait_for("presence", lambda d: d["presence"].get("cli-alice"))
        assert got == {"docId": doc, "presence": {"cli-alice": {"cursor": 3}}}
        assert other.sio.connected
        assert "disconnect" not in other.names()
    # A newcomer gets the good presence, never the refused one.
    dave = await clients("dave")
    await dave.sync(doc)
    got = await dave.wait_for("presence")
    assert got == {"docId": doc, "presence": {"cli-alice": {"cursor": 3}}}


async def test_presence_at_the_size_limit_is_accepted(clients):
    doc = new_doc()
    alice, bob = await clients("alice"), await clients("bob")
    await alice.sync(doc)
    await bob.sync(doc)
    value = {"c": "x" * (MAX_PRESENCE - len('{"c":""}'))}
    assert await alice.call("presence", {"docId": doc, "presence": value}) == {}
    got = await bob.wait_for("presence", lambda d: d["presence"].get("cli-alice"))
    assert got["presence"]["cli-alice"] == value


BAD_AUTH = [
    ("deviceId lone surrogate", {"deviceId": "d\ud800"}, "deviceId", "lone surrogate"),
    ("deviceId NUL", {"deviceId": "d\u0000"}, "deviceId", "NUL character"),
    ("clientId lone surrogate", {"clientId": "\udfff"}, "clientId", "lone surrogate"),
    ("clientId NUL", {"clientId": "\u0000"}, "clientId", "NUL character"),
    ("deviceId too long", {"deviceId": "d" * 256}, "Device ID too long", "at most 255"),
    ("clientId too long", {"clientId": "c" * 300}, "Client ID too long", "at most 255"),
]


@pytest.mark.parametrize("bad,field,words", [b[1:] for b in BAD_AUTH], ids=[b[0] for b in BAD_AUTH])
async def test_connect_refuses_bad_fields_clearly(live, clients, bad, field, words):
    auth = {"deviceId": "dev", "clientId": "cli", "claimedUserId": None, "token": "valid-eve"}
    client = Client(live.url, auth={**auth, **bad})
    try:
        error = await client.refused()
    finally:
        await client.sio.disconnect()
    message = error["message"] if isinstance(error, dict) else str(error)
    assert field in message and words in message, message
    # Others are unaffected.
    alice = await clients("alice")
    assert (await alice.sync(new_doc()))["data"]["clock"] == 0


async def test_a_device_id_as_long_as_the_column_is_accepted(live, clients):
    doc = new_doc()
    alice = await clients("alice", device="d" * 255)
    assert (await alice.sync(doc, operations=[insert("a1")]))["data"]["clock"] == 1


BAD_FIELDS = [
    ("docId lone surrogate", {"docId": "01k\ud800"}, "docId", "lone surrogate"),
    ("docId NUL", {"docId": "01k\u0000"}, "docId", "NUL character"),
    ("type lone surrogate", {"type": "doc\udc00"}, "type", "lone surrogate"),
    ("type NUL", {"type": "\u0000"}, "type", "NUL character"),
]


@pytest.mark.parametrize(
    "bad,field,words", [b[1:] for b in BAD_FIELDS], ids=[b[0] for b in BAD_FIELDS]
)
async def test_requests_name_the_bad_field(clients, bad, field, words):
    alice, bob = await clients("alice"), await clients("bob")
    request = {"type": "doc", "docId": new_doc(), "operations": [], "serializedDoc": None}
    refused(await alice.call("sync", {**request, "clock": 0, **bad}), field, words)
    if "docId" in bad:
        for event in ("presence", "unsubscribe-doc", "delete-doc"):
            answer = await alice.call(event, {"docId": bad["docId"], "presence": None})
            refused(answer, field, words)
    # The same connection, and the others, go on.
    for client in (alice, bob):
        assert (await client.sync(new_doc()))["data"]["clock"] == 0


async def test_no_client_was_disconnected_by_another(live, clients):
    """Last in the module: a long-lived client that saw every test's poison pass by."""
    doc = new_doc()
    watcher = await clients("watcher")
    await watcher.sync(doc)
    await asyncio.sleep(0)
    assert watcher.sio.connected and "disconnect" not in watcher.names()
