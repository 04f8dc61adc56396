"""End to end with the real Yjs: Node clients (``yjs`` + ``socket.io-client``) sync
a Yjs document through a real server and converge, across a squash.

The Node side is ``tests/yjs_node/client.cjs``, driven over stdin/stdout; the
npm packages are installed once into ``tests/.node_cache`` (git-ignored). Without
node/npm, or when the install fails, the tests skip, or fail under
``DOCSYNC_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.liveserver import LiveServer
from tests.node import node_script

pycrdt = pytest.importorskip("pycrdt")

pytestmark = [pytest.mark.e2e]


ROOTS = {"content": "text", "items": "array"}
BINDINGS = {"canvas": {"class": "docsync.bindings.yjs.YjsBinding", "options": {"roots": ROOTS}}}
THRESHOLD = 5


@pytest.fixture(scope="module")
def node_client() -> Path:
    """``client.cjs`` in tests/.node_cache with yjs and socket.io-client installed."""
    return node_script("client.cjs")


class NodeClients:
    """The Node process running ``client.cjs``: one call per command, answers in order."""

    def __init__(self, script: Path, url: str):
        self.proc = subprocess.Popen(
            ["node", str(script), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.answers: queue.Queue[str | None] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.answers.put(line)
        self.answers.put(None)

    def __call__(self, cmd: str, timeout: float = 10, **args: Any) -> Any:
        self.next_id += 1
        self.proc.stdin.write(json.dumps({"id": self.next_id, "cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        try:
            line = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"node client: no answer to {cmd} within {timeout}s") from None
        if line is None:
            raise AssertionError(f"node client exited: {self.proc.stderr.read()}")
        answer = json.loads(line)
        assert answer["id"] == self.next_id
        if not answer["ok"]:
            raise AssertionError(f"node client: {cmd} failed: {answer['error']}")
        return answer["result"]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(params=["memory", "postgres"])
def provider(request) -> dict[str, str]:
    """Server environment: the in-memory provider, or the ORM provider on PostgreSQL."""
    if request.param == "memory":
        return {}
    url = request.getfixturevalue("pg_url")
    return {"E2E_PROVIDER": "docsync.providers.orm.ORMProvider", "E2E_DATABASE_URL": url}


@pytest.fixture
def threshold() -> int:
    """The server's SQUASH_THRESHOLD (0: never squash); a test may override it."""
    return THRESHOLD


@pytest.fixture
def live(provider, threshold):
    env = {
        **provider,
        "E2E_BINDINGS": json.dumps(BINDINGS),
        "E2E_SQUASH_THRESHOLD": str(threshold),
    }
    server = LiveServer(env).start()
    yield server
    server.stop()
    output = server.output()
    assert "Traceback" not in output, output
    assert "WARNING" not in output, output


@pytest.fixture
def node(node_client, live):
    clients = NodeClients(node_client, live.url)
    yield clients
    clients.close()


def yjs_updates(count: int) -> list[bytes]:
    """``count`` Yjs updates, one per insert into the text root ``content``."""
    doc = pycrdt.Doc()
    text = doc.get("content", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        text += f"{i},"
    return updates


@pytest.mark.parametrize("count", [7, 8, 9, 40])
def test_a_response_never_holds_more_than_ten_binary_values(count):
    """Unit check of the merge, no Node needed: snapshot + updates <= 10 attachments."""
    from docsync.bindings.base import BindingRegistry
    from docsync.bindings.yjs import YjsBinding
    from docsync.protocol import MAX_ATTACHMENTS, count_attachments, encode_ack
    from docsync.providers.base import Origin
    from docsync.providers.memory import InMemoryProvider
    from docsync.requests import SyncRequest
    from docsync.sync import sync_document

    registry = BindingRegistry()
    registry.register("canvas", YjsBinding(roots=ROOTS))
    provider = InMemoryProvider()
    origin = Origin("alice", "d", "c")
    updates = yjs_updates(count + 1)
    first = SyncRequest("canvas", "doc", updates[:1], updates[0], 0)
    sync_document(provider, first, origin, registry)  # stores a snapshot at clock 0
    for update in updates[1:]:
        sync_document(provider, SyncRequest("canvas", "doc", [update], None, 1), origin, registry)
    outcome = sync_document(provider, SyncRequest("canvas", "doc", [], None, 0), origin, registry)
    assert outcome.serialized_doc is not None
    attachments = count_attachments([outcome.operations, outcome.serialized_doc])
    assert attachments <= MAX_ATTACHMENTS
    assert len(outcome.operations) == (count + 1 if count + 2 <= MAX_ATTACHMENTS else 1)
    frames = encode_ack(1, {"data": outcome.as_wire("doc")})
    assert frames[0].startswith(f"46{attachments}-1[")
    doc = pycrdt.Doc()
    for value in [outcome.serialized_doc, *outcome.operations]:
        doc.apply_update(value)
    assert str(doc.get("content", type=pycrdt.Text)) == "".join(f"{i}," for i in range(count + 1))


def same_everywhere(node, *names: str) -> dict[str, Any]:
    """The content of clients ``names``, asserted identical and free of errors."""
    states = {name: node("content", name=name) for name in names}
    first = states[names[0]]
    for name, state in states.items():
        assert state["errors"] == [], (name, state["errors"])
        assert state["pending"] == 0, name
        assert (state["content"], state["items"]) == (first["content"], first["items"]), states
    return first


def stored_document(pg: str | None, doc_id: str) -> dict[str, Any] | None:
    """The document's row and log as PostgreSQL holds them (None on the memory provider)."""
    if pg is None:
        return None
    import psycopg

    with psycopg.connect(pg) as conn:
        row = conn.execute(
            "SELECT id, snapshot, snapshot_format, snapshot_clock, latest_clock "
            "FROM docsync_document WHERE doc_id = %s",
            [doc_id],
        ).fetchone()
        batches = conn.execute(
            "SELECT clock, operations_format, operations FROM docsync_operationbatch "
            "WHERE document_id = %s ORDER BY clock",
            [row[0]],
        ).fetchall()
    return {
        "snapshot": bytes(row[1]) if row[1] is not None else None,
        "format": row[2],
        "snapshot_clock": row[3],
        "latest_clock": row[4],
        "batches": batches,
    }


def wait_for_squash(node, live, pg: str | None, doc_id: str, latest: int) -> dict[str, Any]:
    """Wait until the server folded the log into its snapshot; return the evidence.

    A probe client with no local state pulls until the server's answer carries a
    snapshot and fewer operations than the squash threshold (on PostgreSQL the
    row and the log are read too).
    """
    deadline = time.monotonic() + 10
    probe = f"probe-{uuid.uuid4().hex[:6]}"
    while True:
        node("connect", name=probe, user="probe", docId=doc_id, type="canvas")
        node("sync", names=[probe])
        pulled = node("content", name=probe)["syncs"][0]
        node("close", name=probe)
        row = stored_document(pg, doc_id)
        squashed = pulled["snapshotBytes"] and pulled["operations"] < THRESHOLD
        if row is not None:
            squashed = squashed and row["snapshot_clock"] > 0 and len(row["batches"]) < THRESHOLD
        if squashed:
            return {"pulled": pulled, "row": row}
        assert time.monotonic() < deadline, f"no squash: {pulled} {row}\n{live.output()[-2000:]}"
        time.sleep(0.2)


def test_yjs_clients_converge_through_the_server_across_a_squash(node, live, provider):
    pg = provider.get("E2E_DATABASE_URL")
    doc_id = f"yjs-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    node("connect", name="A", user="alice", docId=doc_id, type="canvas")
    node("connect", name="B", user="bob", docId=doc_id, type="canvas")

    # A starts the document; B pulls it.
    node("edit", name="A", text=[["insert", 0, "Hello, wörld 🌍"]], array=[["push", [1, "two"]]])
    node("sync", names=["A"])
    node("sync", names=["B"])
    assert node("content", name="B")["content"] == "Hello, wörld 🌍"

    # Concurrent edits, synced at the same time: more batches than the threshold.
    rounds = 4
    for r in range(rounds):
        node("edit", name="A", text=[["insert", 0, f"a{r} "]], array=[["push", [{"a": r}]]])
        node("edit", name="B", text=[["append", f" b{r}"]], array=[["insert", 0, [f"b{r}"]]])
        if r == 2:  # a deletion, concurrent with B's insert at the start
            node("edit", name="A", text=[["delete", 0, 3]], array=[["delete", 0, 1]])
        node("sync", names=["A", "B"])
    node("settle")
    node("sync", names=["A", "B"])
    node("settle")
    state = same_everywhere(node, "A", "B")
    text = state["content"]
    for r in range(rounds):
        assert f" b{r}" in text
        assert (f"a{r} " in text) == (r != 2), text  # "a2 " was deleted again
    assert "Hello, wörld 🌍" in text
    assert len(state["items"]) == 2 + 2 * rounds - 1

    # The server squashed: a snapshot with the log folded in, a short log left.
    latest = max(state["clock"], node("content", name="B")["clock"])
    evidence = wait_for_squash(node, live, pg, doc_id, latest)
    row = evidence["row"]
    if row is not None:
        assert row["format"] == "bytes" and len(row["snapshot"]) > 0
        # The stored snapshot plus what is left of the log is the document.
        doc = pycrdt.Doc()
        doc.apply_update(row["snapshot"])
        from docsync.models import decode_operations

        for _clock, fmt, data in row["batches"]:
            for update in decode_operations(fmt, bytes(data)):
                doc.apply_update(update)
        assert str(doc.get("content", type=pycrdt.Text)) == text
        assert doc.get("items", type=pycrdt.Array).to_py() == [
            float(i) if isinstance(i, int) else i for i in state["items"]
        ]

    # Edits after the squash stay in the log.
    node("edit", name="A", text=[["append", "!"]], array=[["push", ["after"]]])
    node("sync", names=["A"])
    node("edit", name="B", text=[["insert", 0, ">> "]])
    node("sync", names=["B"])
    node("settle")
    node("sync", names=["A", "B"])
    node("settle")
    state = same_everywhere(node, "A", "B")
    assert state["content"].startswith(">> ") and state["content"].endswith("!")

    # C joins with nothing: it gets the squashed snapshot and the rest of the log.
    node("connect", name="C", user="carol", docId=doc_id, type="canvas", sendSnapshot=False)
    node("sync", names=["C"])
    first = node("content", name="C")["syncs"][0]
    assert first["snapshotBytes"] > 0
    # What is not squashed yet (nothing if a second squash already ran).
    assert first["operations"] < THRESHOLD, first
    same_everywhere(node, "A", "B", "C")

    # And C's edit reaches the others.
    node("edit", name="C", text=[["insert", 3, "C "]], array=[["insert", 1, ["from C"]]])
    node("sync", names=["C"])
    node("settle")
    node("sync", names=["A", "B"])
    final = same_everywhere(node, "A", "B", "C")
    assert final["content"].startswith(">> C ") and "from C" in final["items"]
    print(
        f"\n{'postgres' if pg else 'memory'}: converged on {len(final['content'])} chars, "
        f"{len(final['items'])} items; squash: {evidence}; C's first sync: {first}; "
        f"{time.monotonic() - started:.1f}s"
    )


@pytest.mark.parametrize("threshold", [0])
def test_a_client_that_missed_many_updates_catches_up(node, live):
    """More than 10 Yjs updates in one answer: socket.io-client refuses a packet
    with more than 10 binary attachments ("parse error", the connection drops),
    so the server merges them into one update."""
    doc_id = f"yjs-{uuid.uuid4().hex[:12]}"
    node("connect", name="A", user="alice", docId=doc_id, type="canvas")
    for i in range(14):
        node("edit", name="A", text=[["append", f"{i},"]], array=[["push", [i]]])
        node("sync", names=["A"])

    # B has nothing and no snapshot to send: snapshot + 13 batches, merged.
    node("connect", name="B", user="bob", docId=doc_id, type="canvas", sendSnapshot=False)
    node("sync", names=["B"])
    first = node("content", name="B")["syncs"][0]
    assert first["snapshotBytes"] > 0 and first["operations"] == 1, first
    state = same_everywhere(node, "A", "B")
    assert state["content"] == "".join(f"{i}," for i in range(14))
    assert state["items"] == list(range(14))

    # B sends 12 updates at once (more attachments than a client accepts is
    # fine for the server); A learns of them by `dirty`, as one merged update.
    for i in range(12):
        node("edit", name="B", text=[["insert", 0, f"b{i} "]])
    assert node("content", name="B")["pending"] == 12
    node("sync", names=["B"])
    assert node("content", name="B")["syncs"][-1]["sent"] == 12
    node("settle")
    state = same_everywhere(node, "A", "B")
    assert state["content"].startswith("b11 b10 ")
    assert node("content", name="A")["syncs"][-1]["operations"] == 1


@pytest.mark.parametrize("threshold", [2])
def test_a_squash_keeps_text_split_inside_a_surrogate_pair(node, live):
    """Issue 9 point 10: A types ``a😀b``, B deletes the emoji's second UTF-16
    unit (a legal Y.Text index), A inserts ``c`` at 3. Yjs holds ``a\\ufffdbc``
    on both; after the server squashes, a late joiner must hold the same (a
    round trip through a pycrdt Doc gave ``a\\ufffdc``)."""
    doc_id = f"yjs-{uuid.uuid4().hex[:12]}"
    node("connect", name="A", user="alice", docId=doc_id, type="canvas")
    node("connect", name="B", user="bob", docId=doc_id, type="canvas")
    node("edit", name="A", text=[["insert", 0, "a😀b"]])
    node("sync", names=["A"])
    node("sync", names=["B"])
    node("edit", name="B", text=[["delete", 2, 1]])
    node("sync", names=["B"])
    node("sync", names=["A"])
    node("edit", name="A", text=[["insert", 3, "c"]])
    node("sync", names=["A"])
    node("settle")
    node("sync", names=["A", "B"])
    merged = same_everywhere(node, "A", "B")["content"]
    assert merged == "a\ufffdbc"

    # Past the threshold the server squashes; a late joiner then gets a snapshot only.
    deadline = time.monotonic() + 10
    for attempt in range(100):
        late = f"late-{attempt}"
        node("connect", name=late, user="carol", docId=doc_id, type="canvas", sendSnapshot=False)
        node("sync", names=[late])
        state = node("content", name=late)
        node("close", name=late)
        if state["syncs"][0]["operations"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert state["syncs"][0]["operations"] == 0, ("no squash", state, live.output()[-2000:])
    assert state["syncs"][0]["snapshotBytes"] > 0
    assert state["content"] == merged
