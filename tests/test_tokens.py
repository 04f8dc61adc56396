"""Expiring signed tokens (docsync.tokens): minting, checking, the command."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.management import CommandError, call_command
from django.test import override_settings

from docsync.auth import authenticate
from docsync.handshake import auth_request
from docsync.tokens import (
    SALT,
    TokenExpired,
    is_signed_token,
    mint_token,
    read_token,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice")


def request_for(token: str):
    return auth_request({"headers": [], "user": None, "scheme": "ws"}, token)


def test_a_minted_token_authenticates_its_user_until_it_expires(alice):
    before = time.time()
    token = mint_token(alice, lifetime=60)
    assert is_signed_token(token)
    identity = authenticate(request_for(token))
    assert identity["userId"] == str(alice.pk)
    assert identity["context"] == {"user_pk": alice.pk, "auth": "token"}
    assert before + 60 <= identity["expiresAt"] <= time.time() + 60
    with pytest.raises(TokenExpired, match="Token expired"):
        read_token(token, now=time.time() + 61)


def test_the_default_lifetime_is_the_setting(alice):
    with override_settings(DOCSYNC={"TOKEN_LIFETIME": 120}):
        claims = read_token(mint_token(alice))
    assert claims is not None and 119 < claims.expires_at - time.time() <= 120
    claims = read_token(mint_token(alice, timedelta(minutes=5)))
    assert 299 < claims.expires_at - time.time() <= 300
    for bad in (0, -1, timedelta(0)):
        with pytest.raises(ValueError, match="positive"):
            mint_token(alice, bad)


def test_an_expired_token_is_refused_with_a_clear_message(alice):
    token = mint_token(alice, lifetime=0.05)
    time.sleep(0.1)
    with pytest.raises(TokenExpired) as caught:
        authenticate(request_for(token))
    assert caught.value.message == "Token expired"


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: signing.dumps({"u": 1, "e": time.time() + 60}, salt="other"),  # another salt
        lambda t: signing.dumps({"u": 1, "e": "later"}, salt=SALT),  # no expiry
        lambda t: signing.dumps(["u", 1], salt=SALT),
        lambda t: "a:b:c",
    ],
)
def test_a_forged_or_malformed_token_is_refused(alice, forge):
    token = forge(mint_token(alice, 60))
    assert read_token(token) is None
    assert authenticate(request_for(token)) is None


def test_another_secret_key_invalidates_every_token(alice):
    token = mint_token(alice, 60)
    with override_settings(SECRET_KEY="rotated", SECRET_KEY_FALLBACKS=[]):
        assert authenticate(request_for(token)) is None
    with override_settings(SECRET_KEY="rotated", SECRET_KEY_FALLBACKS=["docsync-tests"]):
        assert authenticate(request_for(token))["userId"] == str(alice.pk)


def test_an_inactive_or_deleted_user_is_refused(alice):
    token = mint_token(alice, 60)
    alice.is_active = False
    alice.save()
    assert authenticate(request_for(token)) is None
    alice.delete()
    assert authenticate(request_for(token)) is None


def test_the_command_prints_an_expiring_token(alice):
    out = StringIO()
    call_command("docsync_token", "alice", "--expires-in", "30", stdout=out)
    claims = read_token(out.getvalue().strip())
    assert claims.user_pk == alice.pk and 29 < claims.expires_at - time.time() <= 30
    out = StringIO()
    with override_settings(DOCSYNC={"TOKEN_LIFETIME": 90}):
        call_command("docsync_token", "bob", "--create", "--expiring", stdout=out)
    claims = read_token(out.getvalue().strip())
    assert claims.user_pk == get_user_model().objects.get(username="bob").pk
    assert 89 < claims.expires_at - time.time() <= 90
    for bad in ("0", "-5", "soon", "inf"):
        with pytest.raises(CommandError, match="seconds"):
            call_command("docsync_token", "alice", "--expires-in", bad)
