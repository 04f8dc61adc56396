"""The default authenticate: DRF tokens, and sessions with an Origin check."""

import json

import channels.auth
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import override_settings
from rest_framework.authtoken.models import Token

from docsync.auth import AuthMiddlewareStack, authenticate, origin_allowed
from docsync.consumers import DocSyncConsumer
from docsync.handshake import auth_request
from docsync.providers.memory import InMemoryProvider
from docsync.server import DocSyncServer
from tests.wsclient import RawClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", password="pw")


def request_for(token=None, user=None, origin=None, host="localhost:8000", scheme="ws"):
    headers = [(b"host", host.encode())] if host else []
    if origin:
        headers.append((b"origin", origin.encode()))
    return auth_request({"headers": headers, "user": user, "scheme": scheme}, token)


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
    assert authenticate(request_for(user=alice, origin="http://localhost:9999")) is None


@pytest.mark.parametrize(
    "origin, host, scheme, allowed",
    [
        (None, "localhost:8000", "ws", True),  # not a browser
        ("http://localhost:8000", "localhost:8000", "ws", True),
        ("http://LOCALHOST:8000", "localhost:8000", "ws", True),
        ("http://localhost:9999", "localhost:8000", "ws", False),  # another port
        ("https://localhost:8000", "localhost:8000", "ws", False),  # another scheme
        ("http://localhost", "localhost:80", "ws", True),  # default port
        ("https://localhost", "localhost", "wss", True),
        ("http://localhost", "localhost", "wss", False),
        ("http://127.0.0.1:8000", "localhost:8000", "ws", False),  # another host
        ("http://attacker.test", "attacker.test", "ws", False),  # host not allowed
        ("null", "localhost:8000", "ws", False),
        ("http://localhost:8000", None, "ws", False),  # no Host: nothing to compare
        ("http://localhost:abc", "localhost:8000", "ws", False),
    ],
)
def test_origin_must_match_scheme_host_and_port(origin, host, scheme, allowed):
    headers = {"host": host} if host else {}
    if origin:
        headers["origin"] = origin
    assert origin_allowed(headers, {"scheme": scheme}) is allowed


@override_settings(CSRF_TRUSTED_ORIGINS=["https://app.example.com", "https://*.example.org"])
def test_csrf_trusted_origins_are_allowed_cross_origin():
    headers = {"host": "localhost:8000"}
    assert origin_allowed({**headers, "origin": "https://app.example.com"})
    assert origin_allowed({**headers, "origin": "https://app.example.com:443"})
    assert not origin_allowed({**headers, "origin": "http://app.example.com"})
    assert not origin_allowed({**headers, "origin": "https://app.example.com:8443"})
    assert origin_allowed({**headers, "origin": "https://eu.example.org"})
    assert not origin_allowed({**headers, "origin": "http://eu.example.org"})
    assert not origin_allowed({**headers, "origin": "https://example.org.evil"})


async def connect_with_cookie(origin: str, stack=AuthMiddlewareStack):
    session = SessionStore()
    user = await database_sync_to_async(get_user_model().objects.create_user)("bob")
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    await database_sync_to_async(session.save)()
    server = DocSyncServer(provider=InMemoryProvider())
    app = stack(DocSyncConsumer.as_asgi(server=server))
    headers = [
        (b"host", b"localhost"),
        (b"cookie", f"sessionid={session.session_key}".encode()),
        (b"origin", origin.encode()),
    ]
    client = RawClient(app, headers=headers)
    await client.open()
    await client.send("40" + json.dumps({"deviceId": "d", "clientId": "c"}))
    return user, client


@pytest.mark.asyncio
@pytest.mark.parametrize("stack", [AuthMiddlewareStack, channels.auth.AuthMiddlewareStack])
async def test_session_cookie_over_the_websocket(stack):
    user, client = await connect_with_cookie("http://localhost", stack)
    assert (await client.recv()).startswith('40{"sid"')
    assert await client.recv() == f'42["identity",{{"userId":"{user.pk}"}}]'
    await client.close()


@pytest.mark.asyncio
async def test_session_cookie_from_a_foreign_origin_is_refused():
    _, client = await connect_with_cookie("https://evil.example")
    assert await client.recv() == '44{"message":"Authentication failed: invalid credentials"}'
    await client.close()


@pytest.mark.asyncio
async def test_no_session_cookie_is_anonymous_without_reading_the_session(monkeypatch):
    """docsync's stack gives a connection without the cookie AnonymousUser at once
    (Channels' resolves it in a database thread, ``channels.auth.get_user``)."""

    async def no_get_user(scope):
        raise AssertionError("the session was read")

    monkeypatch.setattr(channels.auth, "get_user", no_get_user)
    seen = {}

    async def inner(scope, receive, send):
        seen["user"] = scope["user"]

    headers = [(b"cookie", b"other=1")]
    await AuthMiddlewareStack(inner)({"type": "websocket", "headers": headers}, None, None)
    assert not seen["user"].is_authenticated
    with pytest.raises(AssertionError, match="the session was read"):
        await channels.auth.AuthMiddlewareStack(inner)(
            {"type": "websocket", "headers": headers}, None, None
        )
