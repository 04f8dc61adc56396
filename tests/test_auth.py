"""The default authenticate: DRF tokens, and sessions with an Origin check."""

import json

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from rest_framework.authtoken.models import Token

from docsync.auth import authenticate, origin_allowed
from docsync.handshake import auth_request
from docsync.providers.memory import InMemoryProvider
from docsync.server import DocSyncServer
from tests.wsclient import RawClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", password="pw")


def request_for(token=None, user=None, origin=None):
    headers = [(b"origin", origin.encode())] if origin else []
    return auth_request({"headers": headers, "user": user}, token)


def test_token_authenticates_its_active_user(alice):
    token = Token.objects.create(user=alice)
    identity = authenticate(request_for(token=token.key))
    assert identity["userId"] == str(alice.pk)
    assert identity["context"] == {"user_pk": alice.pk, "auth": "token"}


def test_unknown_token_and_inactive_user_are_refused(alice):
    token = Token.objects.create(user=alice)
    assert authenticate(request_for(token="nope")) is None
    alice.is_active = False
    alice.save()
    assert authenticate(request_for(token=token.key)) is None


def test_a_wrong_token_does_not_fall_back_to_the_session(alice):
    assert authenticate(request_for(token="nope", user=alice)) is None


def test_session_user_needs_an_allowed_origin(alice):
    assert authenticate(request_for(user=alice))["userId"] == str(alice.pk)
    assert authenticate(request_for(user=alice, origin="http://localhost:8000")) is not None
    assert authenticate(request_for(user=alice, origin="https://evil.example")) is None


def test_origin_allowed_follows_allowed_hosts():
    assert origin_allowed({})
    assert origin_allowed({"origin": "http://127.0.0.1:3000"})
    assert not origin_allowed({"origin": "http://attacker.test"})


async def connect_with_cookie(origin: str):
    session = SessionStore()
    user = await database_sync_to_async(get_user_model().objects.create_user)("bob")
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    await database_sync_to_async(session.save)()
    server = DocSyncServer(provider=InMemoryProvider())
    app = AuthMiddlewareStack(server.as_asgi())
    headers = [
        (b"cookie", f"sessionid={session.session_key}".encode()),
        (b"origin", origin.encode()),
    ]
    client = RawClient(app, headers=headers)
    await client.open()
    await client.send("40" + json.dumps({"deviceId": "d", "clientId": "c"}))
    return user, client


@pytest.mark.asyncio
async def test_session_cookie_over_the_websocket():
    user, client = await connect_with_cookie("http://localhost")
    assert (await client.recv()).startswith('40{"sid"')
    assert await client.recv() == f'42["identity",{{"userId":"{user.pk}"}}]'
    await client.close()


@pytest.mark.asyncio
async def test_session_cookie_from_a_foreign_origin_is_refused():
    _, client = await connect_with_cookie("https://evil.example")
    assert await client.recv() == '44{"message":"Authentication failed: invalid credentials"}'
    await client.close()
