"""Liveness and readiness (docsync.health): each dependency probed within a bound.

Unreachable dependencies are closed ports; hanging ones are sockets that
listen and never answer (the client's connect succeeds, its first read
waits for ever), which is what a wedged database or a black-holed Redis
looks like to a driver. Databases that are down or hang are tested on a
live server (tests/test_health_e2e.py): pytest-django refuses connections
to aliases a test did not declare.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.test import override_settings

from docsync.default import get_default_server
from tests.conftest_db import database_unavailable, require_database
from tests.liveserver import free_port
from tests.services import require_redis

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_LAYER = "channels_redis.core.RedisChannelLayer"

# Only the aliases whose server runs get a test database (a plain run on a
# machine without PostgreSQL or MariaDB skips the test instead of erroring).
ALIASES_UP = sorted(a for a in django_settings.DATABASES if database_unavailable(a) is None)


@contextlib.contextmanager
def silent_port():
    """A port that accepts connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def ready(client, **docsync):
    with override_settings(DOCSYNC=docsync):
        started = time.monotonic()
        response = client.get("/health/ready/")
        return response, time.monotonic() - started


def test_liveness_answers_without_touching_a_dependency(client):
    down = f"redis://127.0.0.1:{free_port()}/0"
    layers = {"default": {"BACKEND": REDIS_LAYER, "CONFIG": {"hosts": [down]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        response = client.get("/health/live/")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db(transaction=True, databases=ALIASES_UP)
def test_ready_names_every_check(client, settings):
    for alias in settings.DATABASES:
        require_database(alias)
    response, _ = ready(client)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    names = {f"database:{alias}" for alias in settings.DATABASES} | {"channel_layer", "draining"}
    assert set(body["checks"]) == names
    assert all(check["ok"] and check["ms"] >= 0 for check in body["checks"].values())


def test_an_unreachable_redis_fails_readiness(client):
    down = f"redis://127.0.0.1:{free_port()}/0"
    layers = {"default": {"BACKEND": REDIS_LAYER, "CONFIG": {"hosts": [down]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        response, took = ready(
            client,
            HEALTH_DATABASES=["default"],
            STATE_BACKEND="docsync.redis_state.RedisState",
            STATE_OPTIONS={"url": down},
        )
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database:default"]["ok"] is True
    assert checks["channel_layer"]["ok"] is False and checks["channel_layer"]["error"]
    assert checks["state_redis"] == {
        **checks["state_redis"],
        "ok": False,
        "error": "ConnectionError",
    }
    assert took < 2.5


def test_a_hanging_redis_is_answered_for_within_the_timeout(client):
    with silent_port() as port:
        hang = f"redis://127.0.0.1:{port}/0"
        layers = {"default": {"BACKEND": REDIS_LAYER, "CONFIG": {"hosts": [hang]}}}
        with override_settings(CHANNEL_LAYERS=layers):
            response, took = ready(
                client,
                HEALTH_DATABASES=[],
                HEALTH_TIMEOUT=0.5,
                STATE_BACKEND="docsync.redis_state.RedisState",
                STATE_OPTIONS={"url": hang},
            )
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["channel_layer"]["error"] == "timed out after 0.5 s"
    assert checks["state_redis"]["ok"] is False  # timed out, or RedisState's 1 s socket timeout
    assert took < 1.5


def test_a_real_redis_passes(client):
    redis_url = require_redis()
    layers = {"default": {"BACKEND": REDIS_LAYER, "CONFIG": {"hosts": [redis_url]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        response, _ = ready(
            client,
            HEALTH_DATABASES=[],
            STATE_BACKEND="docsync.redis_state.RedisState",
            STATE_OPTIONS={"url": redis_url},
        )
    assert response.status_code == 200, response.json()
    assert {"channel_layer", "state_redis"} <= set(response.json()["checks"])


def test_a_draining_server_is_not_ready(client):
    # Settings of its own: the server it closes is dropped afterwards.
    with override_settings(DOCSYNC={"HEALTH_DATABASES": []}):
        async_to_sync(get_default_server().close)()
        response = client.get("/health/ready/")
        assert response.status_code == 503
        assert response.json()["checks"]["draining"] == {
            "ok": False,
            "error": "draining",
            "ms": response.json()["checks"]["draining"]["ms"],
        }
        assert client.get("/health/live/").status_code == 200
