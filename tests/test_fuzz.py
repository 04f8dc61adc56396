"""A bounded frame fuzzer against a live uvicorn and a live daphne.

Hypothesis builds sessions of Engine.IO / Socket.IO frames, malformed and
well-formed but hostile (wrong types, deep nesting, lone surrogates, NUL,
huge numbers, wrong binary attachment counts, ...), and sends each session
over a new WebSocket to a real server (ORM provider on PostgreSQL, Redis, a
DocNode and a list binding, squashing every few batches, pings every second,
the throttles on). After every session:

* the server logged no traceback;
* the fuzzing connection is not hung: it is closed, or it answers a valid
  CONNECT and a valid sync within a few seconds;
* a control client, connected throughout and subscribed to the documents
  the fuzzer writes, is still connected, writes and reads its own document
  exactly, and can read every fuzzed document.

About 1,000 frames per server in CI (``FUZZ_EXAMPLES``: 120 sessions each);
the frames that once hurt others (issue 9) are always tried first.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Verbosity, example, given, settings
from hypothesis import strategies as st

from tests.liveserver import LiveServer
from tests.rawws import RawLiveClient
from tests.services import require_redis
from tests.wsclient import auth, dumps

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
# The fuzzed documents (the control client reads them all the time), by type.
TYPES = {
    "01kfzz00000000000000000000": "doc",
    "01kfzz00000000000000000001": "list",
    "01kfzz00000000000000000002": "other",
}
POOL = list(TYPES)


# -- JSON text, including what json.dumps cannot write ----------------------


@dataclass(frozen=True)
class Raw:
    """A piece of JSON text written as is (huge numbers, NaN, deep nesting)."""

    text: str


def to_json(value: Any) -> str:
    """JSON text of ``value``; lone surrogates become ``\\ud800`` escapes."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{to_json(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # ensure_ascii: surrogates and NUL as escapes


HOSTILE_STRINGS = [
    "",
    "\ud800",
    "a\udfffb",
    "\udc00\ud800",
    "a\x00b",
    "\x00",
    "x" * 300,
    "𝔘𝔫𝔦",
    "\u202e",
    "\ufeff",
    "__proto__",
    "../../etc",
    "_placeholder",
]
strings = st.one_of(st.text(max_size=12), st.sampled_from(HOSTILE_STRINGS))
huge_numbers = st.one_of(
    st.integers(4000, 6000).map(lambda n: Raw("9" * n)),
    st.integers(300, 400).map(lambda n: Raw(f"1e{n}")),
    st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("-0"), Raw("1e-400")]),
    st.just(2**64),
    st.just(-(2**63) - 1),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    strings,
    huge_numbers,
)
deep = st.tuples(st.integers(30, 3000), st.sampled_from(["[]", "{}", "mixed"])).map(
    lambda d: Raw(
        "[" * d[0] + "]" * d[0]
        if d[1] == "[]"
        else '{"a":' * d[0] + "1" + "}" * d[0]
        if d[1] == "{}"
        else '[{"a":' * (d[0] // 2) + "0" + "}]" * (d[0] // 2)
    )
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(strings, children, max_size=4)
    ),
    max_leaves=10,
)
hostile = st.one_of(values, deep)
doc_ids = st.one_of(st.sampled_from(POOL), strings, values)


def field(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a valid value of a field, sometimes anything."""
    return st.one_of(valid, valid, hostile)


docnode_ops = st.lists(
    st.tuples(st.lists(st.lists(values, max_size=5), max_size=2), st.dictionaries(strings, values)),
    max_size=2,
).map(lambda ops: [list(op) for op in ops])


@st.composite
def sync_payloads(draw) -> Any:
    doc_id = draw(st.sampled_from(POOL))
    payload = {
        "type": draw(field(st.just(TYPES[doc_id]))),
        "docId": draw(field(st.just(doc_id))),
        "operations": draw(field(st.one_of(st.lists(values, max_size=4), docnode_ops))),
        "serializedDoc": draw(field(st.one_of(st.none(), st.lists(values, max_size=3)))),
        "clock": draw(field(st.integers(0, 5))),
    }
    for key in draw(st.lists(st.sampled_from(sorted(payload)), max_size=2)):
        payload.pop(key, None)  # a missing field
    if draw(st.booleans()):
        payload[draw(strings)] = draw(values)  # an extra one
    return payload if draw(st.integers(0, 9)) else draw(hostile)


presence_payloads = (
    st.fixed_dictionaries({"docId": field(st.sampled_from(POOL)), "presence": hostile}) | hostile
)
doc_payloads = st.fixed_dictionaries({"docId": doc_ids}) | hostile
event_args = st.one_of(
    st.tuples(st.just("sync"), sync_payloads()),
    st.tuples(st.just("presence"), presence_payloads),
    st.tuples(st.sampled_from(["unsubscribe-doc", "delete-doc"]), doc_payloads),
    st.tuples(st.one_of(strings, values), hostile),
)
ack_ids = st.one_of(
    st.integers(0, 1000).map(str), st.just(""), st.sampled_from(["9" * 30, "-1", "0x1", "01"])
)
namespaces = st.one_of(
    st.just(""), st.just(""), st.sampled_from(["/,", "/admin,", "/\ud800,", "/"])
)


@st.composite
def event_frames(draw) -> list[str | bytes]:
    name, arg = draw(event_args)
    body = [name, arg] if draw(st.integers(0, 9)) else draw(st.lists(hostile, max_size=3))
    return [f"42{draw(namespaces)}{draw(ack_ids)}" + to_json(body)]


@st.composite
def binary_frames(draw) -> list[str | bytes]:
    """A BINARY_EVENT whose announced, referenced and sent attachments may disagree."""
    announced = draw(st.one_of(st.integers(0, 12), st.sampled_from([-1, 10**6])))
    nums = draw(st.lists(st.one_of(st.integers(-2, 12), values), max_size=4))
    placeholders = [{"_placeholder": True, "num": n} for n in nums]
    arg = draw(sync_payloads())
    if isinstance(arg, dict) and draw(st.booleans()):
        arg["operations"] = placeholders
    elif draw(st.booleans()):
        arg = {"docId": draw(st.sampled_from(POOL)), "presence": placeholders}
        name = "presence"
    name = "sync" if not isinstance(arg, dict) or "presence" not in arg else "presence"
    head = f"45{announced}-{draw(ack_ids)}" + to_json([name, arg])
    sent = draw(st.integers(0, 4))
    return [head] + [draw(st.binary(max_size=64)) for _ in range(sent)]


connect_auth = st.one_of(
    st.fixed_dictionaries(
        {
            "deviceId": field(st.just("dev-fuzz")),
            "clientId": field(st.just("cli-fuzz")),
            "claimedUserId": field(st.one_of(st.none(), st.just("fuzz"))),
            "token": field(st.just("valid-fuzz")),
        }
    ),
    hostile,
)


def socketio(text: st.SearchStrategy) -> st.SearchStrategy:
    return text.map(lambda t: ["4" + t])


single_frames = st.one_of(
    socketio(st.builds(lambda ns, a: f"0{ns}" + to_json(a), namespaces, connect_auth)),
    socketio(st.sampled_from(["1", "1/,", "3", "30[]", "4{}", "7", "9", "", "2", "5", "6"])),
    socketio(st.builds(lambda i, a: f"3{i}" + to_json(a), ack_ids, st.lists(hostile, max_size=2))),
    socketio(strings),
    st.sampled_from(["3", "5", "6", "", "0", "7", "40", "4"]).map(lambda t: [t]),
    st.binary(max_size=128).map(lambda b: [b]),
    strings.map(lambda t: [t]),
)
frames = st.one_of(event_frames(), event_frames(), event_frames(), binary_frames(), single_frames)
# Rarely: a client ping or CLOSE (the server closes), a frame over maxPayload.
enders = st.sampled_from([["2"], ["1"], ["4" + "x" * 1_000_100]])


@st.composite
def sessions(draw) -> tuple[bool, list[str | bytes]]:
    connect_first = draw(st.integers(0, 9)) > 1
    chunks = draw(st.lists(frames, min_size=4, max_size=30))
    if draw(st.integers(0, 19)) == 0:
        chunks.append(draw(enders))
    return connect_first, [frame for chunk in chunks for frame in chunk]


def _known_examples():
    """Frames that once hurt others (issue 9), always tried first."""
    list_doc = POOL[1]
    deep_array = "[" * 3000 + "]" * 3000
    deep_object = '{"a":' * 600 + "1" + "}" * 600

    def sync(operations: str, doc: str = list_doc, clock: str = "0") -> str:
        return (
            f'421["sync",{{"type":"list","docId":{to_json(doc)},"operations":{operations},'
            f'"serializedDoc":null,"clock":{clock}}}]'
        )

    def presence(value: str) -> str:
        return f'422["presence",{{"docId":"{list_doc}","presence":{value}}}]'

    frames = [
        (False, ["40" + deep_array]),  # nesting past Python's parser, at decode
        (True, ["42" + deep_array]),
        (True, ["42[NaN," + deep_array + "]"]),  # a refused number and too deep, both
        (True, ["42[" + "9" * 5000 + "," + deep_array + "]"]),
        (True, [presence(deep_object)]),  # relayed to the control client
        (True, [presence('"\\ud800"')]),  # a lone surrogate through Redis
        (True, [presence('"a\\u0000b"')]),
        (True, [sync('["\\ud800"]')]),  # stored, then every read of the document
        (True, [sync(f"[{deep_object}]")]),
        (True, [sync('[{"k":"a\\u0000"}]')]),
        (True, [sync("[1]", doc="a\u0000b"), sync("[1]", doc="\ud800")]),
        (True, [sync("[1]", clock="9" * 5000), sync("[1]", clock="1e400")]),
        (True, ['453-7["sync",{"operations":[{"_placeholder":true,"num":5}]}]', b"x"]),
        (False, ["40" + to_json({"deviceId": "\ud800", "clientId": "c", "token": "valid-x"})]),
        (False, ["40" + to_json({"deviceId": "d" * 300, "clientId": "c", "token": "valid-x"})]),
    ]

    def apply(test):
        for item in reversed(frames):
            test = example(item)(test)
        return test

    return apply


KNOWN = _known_examples()


# -- the servers and the control client -------------------------------------


def server_env(pg_url: str, redis_url: str) -> dict[str, str]:
    return {
        "E2E_DATABASE_URL": pg_url,
        "E2E_REDIS_URL": redis_url,
        "E2E_PROVIDER": "docsync.providers.orm.ORMProvider",
        "E2E_BINDINGS": json.dumps(
            {
                "doc": {
                    "class": "docsync.bindings.docnode.DocNodeBinding",
                    "options": {
                        "doc_type": "doc",
                        "nodes": {"doc": {}, "p": {"text": {"kind": "string"}}},
                    },
                },
                "list": "tests.bindings.ListBinding",
            }
        ),
        "E2E_SQUASH_THRESHOLD": "3",
        "E2E_AUTHORIZE": "tests.auth.allow_all_but_deletes",
        # Throttles on, but short: the fuzzer and the control share an address.
        "E2E_DOCSYNC": json.dumps({"CONNECT_FAILURE_DELAY": 0.02, "REFUSAL_BACKOFF_MAX": 0.5}),
        # Heartbeats during the run (the clients answer them).
        "E2E_PING_INTERVAL": "1000",
        "E2E_PING_TIMEOUT": "3000",
        "PYTHONUNBUFFERED": "1",
    }


class Control:
    """The bystander: one connection throughout, subscribed to every fuzzed document."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.client = RawLiveClient(server.ws_url)

    async def start(self) -> None:
        await self.client.connect(auth("control"))
        for doc_id, doc_type in TYPES.items():  # create them, of their type
            req = {**_pull(doc_id), "type": doc_type, "operations": [["seed"]]}
            if doc_type == "doc":
                req.update(operations=[], serializedDoc=[doc_id, "doc", {}])
            assert "data" in await self.client.call("sync", req)

    async def read(self, doc_id: str, doc_type: str) -> dict[str, Any]:
        res = await self.client.call("sync", {**_pull(doc_id), "type": doc_type})
        assert "data" in res, f"control client could not read {doc_id}: {res}"
        return res["data"]

    async def check(self) -> None:
        """Still connected; writes and reads a new document exactly; reads every fuzzed one."""
        assert not self.client.closed.is_set(), "the control client was disconnected"
        doc = f"01kc{uuid.uuid4().hex[:22]}"
        for clock in range(2):
            req = {
                **_pull(doc),
                "type": "list",
                "operations": [["control", clock]],
                "clock": clock,
            }
            res = await self.client.call("sync", req)
            assert res == {
                "data": {"docId": doc, "operations": [], "serializedDoc": None, "clock": clock + 1}
            }, res
        data = await self.read(doc, "list")
        assert data["operations"] == [["control", 0], ["control", 1]], data
        for doc_id, doc_type in TYPES.items():
            await self.read(doc_id, doc_type)
        res = await self.client.call("unsubscribe-doc", {"docId": doc})
        assert res == {"success": True}, res


def _pull(doc_id: str) -> dict[str, Any]:
    return {"type": "doc", "docId": doc_id, "operations": [], "serializedDoc": None, "clock": 0}


async def run_session(server: LiveServer, connect_first: bool, frames: list) -> None:
    client = RawLiveClient(server.ws_url)
    await client.open()
    try:
        if connect_first:
            await client.connect_on_open(auth("fuzz"))
            await client.call("sync", {**_pull(POOL[1]), "type": "list"})
        for frame in frames:
            if client.closed.is_set():
                break
            try:
                await client.send(frame)
            except ConnectionError:
                break
        await probe(client)
    finally:
        await client.close()


async def probe(client: RawLiveClient, timeout: float = 5) -> None:
    """The connection is closed, or it answers a valid CONNECT and sync in time."""
    if client.closed.is_set():
        return
    try:
        await client.send("40" + dumps(auth("fuzz", "dev-probe", "cli-probe")))
        answer = await client.wait_connect_answer(timeout)
        if answer is None or answer.startswith("44"):
            return  # closed (a second CONNECT), or refused
        res = await client.call("sync", {**_pull(POOL[1]), "type": "list"}, timeout)
        assert "data" in res or "error" in res, res
    except ConnectionError:
        return
    except TimeoutError:
        raise AssertionError("the fuzzing connection hung (no answer, not closed)") from None


_UTF8_NOISE = re.compile(
    r"ERROR: +Invalid UTF-8 sequence received from client\.\n"
    r"Traceback.*?\nUnicodeDecodeError[^\n]*\n",
    re.S,
)


# The same in a connection the client is already closing: uvicorn's attempt
# to close it with 1007 raises InvalidState inside uvloop (uvicorn's frames
# only; a frame of docsync's in the block would make it count).
_UTF8_NOISE_CLOSING = re.compile(
    r"Fatal error on transport TCPTransport\n"
    r"(?:(?!Fatal error)(?![^\n]*/docsync/\w+\.py)[^\n]*\n)*?"
    r"UnicodeDecodeError[^\n]*\n"
    r"(?:(?!Fatal error)(?![^\n]*/docsync/\w+\.py)[^\n]*\n)*?"
    r"websockets\.exceptions\.InvalidState: connection is closing\n",
)


def without_uvicorn_utf8_noise(log: str) -> str:
    """uvicorn's websockets-sansio closes a text frame of invalid UTF-8 with
    1007 as it should, and logs that with a traceback of its own (not an
    unhandled error, and not docsync's); when the client is closing already,
    that close fails inside uvicorn, with another. Everything else counts."""
    return _UTF8_NOISE_CLOSING.sub("", _UTF8_NOISE.sub("", log))


@pytest.fixture(scope="module", params=["uvicorn", "daphne"])
def fuzz_server(request, pg_url):
    env = server_env(pg_url, require_redis())
    server = LiveServer(env=env, server=request.param).start()
    yield server
    server.stop()


class LoopThread:
    """An event loop running in a thread of its own, so the clients answer
    pings while hypothesis builds the next example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_fuzzed_frames_hurt_no_one(fuzz_server):
    server = fuzz_server
    loop = LoopThread()
    controls = [Control(server)]
    loop.run(controls[0].start())
    frames_sent = [0]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        verbosity=Verbosity.verbose if os.environ.get("FUZZ_VERBOSE") else Verbosity.normal,
    )
    @given(sessions())
    @KNOWN
    def session(example) -> None:
        connect_first, frames = example
        if controls[-1].client.closed.is_set():  # an earlier example's failure
            controls.append(Control(server))
            loop.run(controls[-1].start())
        offset = len(server.output())
        loop.run(run_session(server, connect_first, frames))
        loop.run(controls[-1].check())
        frames_sent[0] += len(frames)
        assert server.proc.poll() is None, "the server died"
        new_log = without_uvicorn_utf8_noise(server.output()[offset:])
        assert "Traceback" not in new_log, new_log[-6000:]

    try:
        session()
    finally:
        for control in controls:
            loop.run(control.client.close())
        loop.stop()
    print(f"\n{server.server}: {frames_sent[0]} frames in {EXAMPLES} sessions ({server.log.name})")
