"""The README's quick start, as a newcomer runs it: the example project on
SQLite, a token from ``docsync_token``, and the example client."""

import subprocess
import sys

import pytest

from tests.liveserver import ROOT, LiveServer, manage

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
        assert "identity: {'userId': '1'}" in run.stdout
        assert "'clock': 1" in run.stdout
        bad = subprocess.run(
            [sys.executable, "examples/quickstart_client.py", "not-a-token", server.url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert bad.returncode != 0
    finally:
        server.stop()
