"""The default authenticate's token users read on the event loop (PostgreSQL):
the same users, the same answers as the ORM path, and the ORM path wherever
the loop path does not apply."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from rest_framework.authtoken.models import Token

from docsync import auth, loopauth
from docsync.tokens import SALT, TokenExpired, mint_token
from tests.conftest_db import django_db_on, require_database

pytestmark = [pytest.mark.postgres, django_db_on("postgres")]

User = get_user_model()


@pytest.fixture
def on_postgres(monkeypatch):
    """The lookups on the ``postgres`` alias, as ``lookups()`` gives them there."""
    require_database("postgres")
    found = loopauth.UserLookups("postgres", User, Token)
    monkeypatch.setattr(loopauth, "lookups", lambda: found)
    return found


def make_user(name: str, **fields) -> tuple[object, str]:
    user = User.objects.db_manager("postgres").create_user(name, **fields)
    return user, Token.objects.using("postgres").create(user=user).key


def run(coro):
    return asyncio.run(coro)


def test_a_drf_token_gives_the_user_as_the_orm_reads_it(on_postgres):
    user, key = make_user("alice", email="a@example.com", first_name="Alice")
    found = run(on_postgres.user_by_token(key))
    orm = User.objects.using("postgres").get(pk=user.pk)
    assert found is not None and found._state.db == "postgres" and not found._state.adding
    for field in User._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(orm, field.attname), field.name
    assert found.date_joined.utcoffset().total_seconds() == 0  # UTC, as Django's own


def test_authenticate_async_answers_as_authenticate(on_postgres):
    user, key = make_user("bob")
    identity = run(auth.authenticate_async({"token": key}))
    assert identity["userId"] == str(user.pk)
    assert identity["context"] == {"user_pk": user.pk, "auth": "token"}
    assert identity["user"].pk == user.pk
    assert run(auth.authenticate_async({"token": "no-such-token"})) is None


def test_an_inactive_users_token_is_refused(on_postgres):
    _, key = make_user("carol", is_active=False)
    assert run(auth.authenticate_async({"token": key})) is None


def test_a_signed_token_reads_its_user_on_the_loop(on_postgres):
    user, _ = make_user("dave")
    token = mint_token(user, lifetime=60)
    identity = run(auth.authenticate_async({"token": token}))
    assert identity["userId"] == str(user.pk)
    assert identity["expiresAt"] == pytest.approx(time.time() + 60, abs=5)
    gone = signing.dumps({"u": user.pk + 1000, "e": time.time() + 60}, salt=SALT)
    assert run(auth.authenticate_async({"token": gone})) is None
    junk = signing.dumps({"u": "not a pk", "e": time.time() + 60}, salt=SALT)
    assert run(auth.authenticate_async({"token": junk})) is None


def test_an_expired_signed_token_raises_as_before(on_postgres):
    user, _ = make_user("erin")
    token = signing.dumps({"u": user.pk, "e": time.time() - 1}, salt=SALT)
    with pytest.raises(TokenExpired):
        run(auth.authenticate_async({"token": token}))


def test_handshakes_at_once_share_one_connection(on_postgres, monkeypatch):
    """120 clients connecting together: one connection opened, every user found."""
    users = [make_user(f"u{i}") for i in range(120)]
    opened = []
    connect = on_postgres._rows._connect

    async def counting():
        opened.append(1)
        return await connect()

    monkeypatch.setattr(on_postgres._rows, "_connect", counting)

    async def main():
        return await asyncio.gather(*(auth.authenticate_async({"token": k}) for _, k in users))

    identities = run(main())
    assert [i["userId"] for i in identities] == [str(u.pk) for u, _ in users]
    assert len(opened) == 1


def test_a_handshake_cut_short_leaves_the_others_their_connection(on_postgres):
    users = [make_user(f"v{i}") for i in range(20)]

    async def main():
        tasks = [asyncio.ensure_future(on_postgres.user_by_token(k)) for _, k in users]
        await asyncio.sleep(0)
        tasks[0].cancel()
        return await asyncio.gather(*tasks[1:])

    found = run(main())
    assert [u.pk for u in found] == [u.pk for u, _ in users[1:]]


def test_the_server_awaits_the_twin():
    from docsync.hops import call_sync_or_async

    assert auth.authenticate.aio is auth.authenticate_async
    request = {"token": None, "user": None, "headers": {}}
    assert run(call_sync_or_async(auth.authenticate, request)) is None


@pytest.mark.django_db(transaction=True)
def test_elsewhere_the_orm_path_runs_in_a_thread():
    """The test settings' default database is SQLite: no loop path there."""
    loopauth.lookups.cache_clear()
    try:
        assert loopauth.lookups() is None
        user = User.objects.create_user("frank")
        key = Token.objects.create(user=user).key
        identity = run(auth.authenticate_async({"token": key}))
        assert identity["userId"] == str(user.pk)
    finally:
        loopauth.lookups.cache_clear()
