"""The session Origin check compares scheme, host and port (issue 9, point 11).

A live uvicorn and daphne with the default authenticate; a browser-like
client sends the session cookie with an ``Origin`` header. Only the server's
own origin (same scheme, host and port) may use the cookie; another port,
scheme or host is refused like a missing session.
"""

from __future__ import annotations

import json

import pytest

from tests.liveserver import LiveServer, manage
from tests.sioclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.asyncio]

SESSION = """
import json
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
user = get_user_model().objects.create_user("olivia")
session = SessionStore()
session["_auth_user_id"] = str(user.pk)
session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
session["_auth_user_hash"] = user.get_session_auth_hash()
session.create()
print(json.dumps([user.pk, session.session_key]))
"""


@pytest.fixture(scope="module")
def env(pg_url):
    return {
        "E2E_DATABASE_URL": pg_url,
        "E2E_AUTHENTICATE": "docsync.auth.authenticate",
        "E2E_PROVIDER": "docsync.providers.orm.ORMProvider",
    }


@pytest.fixture(scope="module")
def session(env):
    return json.loads(manage("shell", "-c", SESSION, env=env).strip().splitlines()[-1])


class Browser(Client):
    """A client that sends a session cookie and an Origin, as a browser does."""

    def __init__(self, url: str, cookie: str, origin: str):
        super().__init__(url, auth={"deviceId": "dev-b", "clientId": "cli-b"})
        self.headers = {"Cookie": f"sessionid={cookie}", "Origin": origin}

    async def connect(self) -> Browser:
        await self.sio.connect(
            self.url, headers=self.headers, transports=["websocket"], auth=self.auth, wait_timeout=5
        )
        self.identity = await self.wait_for("identity")
        return self

    async def refused(self, namespace: str = "/"):
        self.sio.connect = _with_headers(self.sio.connect, self.headers)
        return await super().refused(namespace)


def _with_headers(connect, headers):
    async def wrapped(*args, **kwargs):
        return await connect(*args, headers=headers, **kwargs)

    return wrapped


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
async def test_only_the_servers_own_origin_may_use_the_session(server, env, session):
    user_pk, key = session
    live = LiveServer(env=env, server=server).start()
    try:
        own = live.url  # http://127.0.0.1:<port>
        browser = await Browser(live.url, key, own).connect()
        assert browser.identity == {"userId": str(user_pk)}
        await browser.close()
        other_port = f"http://127.0.0.1:{live.port + 1}"
        for origin in (other_port, f"https://127.0.0.1:{live.port}", "http://localhost:9999"):
            refused = await Browser(live.url, key, origin).refused()
            assert refused == {"message": "Authentication failed: invalid credentials"}, origin
    finally:
        live.stop()
    assert "Traceback" not in live.output()
