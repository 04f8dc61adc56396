"""The README's quick start, as a newcomer runs it: the example project on
SQLite, a token from ``docsync_token``, and the example client."""

import subprocess
import sys

import pytest

from tests.liveserver import ROOT, LiveServer, manage
from tests.snippets import find

pytestmark = [pytest.mark.e2e]


def test_quickstart_client_against_example_project(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    settings = "docsync_project.settings"
    manage("migrate", "-v", "0", env=env, settings=settings)
    token = manage("docsync_token", "alice", "--create", env=env, settings=settings).strip()
    server = LiveServer(env=env, app="docsync_project.asgi:application", settings=settings).start()
    try:
        run = subprocess.run(
            [sys.executable, "examples/quickstart_client.py", token, server.url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 0, run.stderr
        # Exactly what the README says it prints.
        assert run.stdout == find("output", "examples/quickstart_client.py TOKEN").code
        # What it stored is a batch the "doc" binding applies: the squash folds it.
        squashed = manage(
            "docsync_squash", "01k00000000000000000000001", env=env, settings=settings
        )
        assert "Squashed 1 document(s), folding 1 batch(es)" in squashed
        bad = subprocess.run(
            [sys.executable, "examples/quickstart_client.py", "not-a-token", server.url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert bad.returncode != 0
        assert bad.stdout == find("output", "examples/quickstart_client.py not-a-token").code
    finally:
        server.stop()


async def test_two_users_collaborate_on_the_example_project(tmp_path):
    """What a newcomer tries next: two users with tokens on one document."""
    from tests.sioclient import Client

    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    settings = "docsync_project.settings"
    manage("migrate", "-v", "0", env=env, settings=settings)
    tokens = {
        name: manage("docsync_token", name, "--create", env=env, settings=settings).strip()
        for name in ("alice", "bob")
    }
    server = LiveServer(env=env, app="docsync_project.asgi:application", settings=settings).start()
    doc = "01kqv1ckstart0000000000000"
    snapshot = [doc, "doc", {}]
    alice = await Client(server.url, "alice", token=tokens["alice"]).connect()
    bob = await Client(server.url, "bob", token=tokens["bob"]).connect()
    try:
        res = await alice.sync(doc, snapshot=snapshot)
        assert res["data"]["clock"] == 0
        op = [[[0, [["alice.1", "p"]], 0, 0, 0]], {"alice.1": {"text": '"hello"'}}]
        res = await alice.sync(doc, operations=[op], snapshot=snapshot)
        assert res["data"]["clock"] == 1
        res = await bob.sync(doc)
        assert res["data"] == {
            "docId": doc,
            "operations": [op],
            "serializedDoc": snapshot,
            "clock": 1,
        }
        assert await alice.wait_for("collaboration", lambda d: d["hasCollaborators"])
        assert await bob.wait_for("collaboration", lambda d: d["hasCollaborators"])
        bob_op = [[[0, [["bob.1", "p"]], 0, "alice.1", 0]], {}]
        await bob.sync(doc, operations=[bob_op], snapshot=snapshot, clock=1)
        assert await alice.wait_for("dirty") == {"docId": doc}
        await alice.call("presence", {"docId": doc, "presence": {"cursor": 1}})
        assert await bob.wait_for("presence") == {
            "docId": doc,
            "presence": {"cli-alice": {"cursor": 1}},
        }
    finally:
        await alice.close()
        await bob.close()
        server.stop()
