"""Readiness of a real server (daphne) while its PostgreSQL and Redis stop, and hang.

The server's own PostgreSQL (``PgCluster``) and Redis (``RedisProcess``) are
stopped by pid and started again; a dependency that hangs is a port that
accepts and never answers. Every answer must come within the probe timeout
(plus a margin for a shared machine).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.liveserver import LiveServer
from tests.pgcluster import PgCluster, pg_bin
from tests.services import _skip_or_fail
from tests.test_multiprocess import RedisProcess

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

TIMEOUT = 1.0  # DOCSYNC["HEALTH_TIMEOUT"] of the servers here
BOUND = TIMEOUT + 1.5


def get(url: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, json.loads(body), time.monotonic() - started


def wait_status(url: str, status: int, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got, body, _ = get(url)
        if got == status or time.monotonic() > deadline:
            assert got == status, body
            return body
        time.sleep(0.2)


def failing(body: dict) -> set[str]:
    return {name for name, check in body["checks"].items() if not check["ok"]}


@pytest.fixture(scope="module")
def services():
    if pg_bin() is None:
        _skip_or_fail("PostgreSQL server binaries (initdb, postgres) are not installed")
    if shutil.which("redis-server") is None:
        _skip_or_fail("redis-server is not installed")
    pg = PgCluster().start()
    redis = RedisProcess().start()
    yield pg, redis
    redis.stop()
    pg.destroy()


def test_ready_follows_postgres_and_redis_stopping_and_starting(services):
    pg, redis = services
    env = {
        "E2E_DATABASE_URL": pg.url("postgres"),
        "E2E_REDIS_URL": redis.url,
        "E2E_HEALTH_TIMEOUT": str(TIMEOUT),
    }
    server = LiveServer(env=env).start()
    ready = f"{server.url}/health/ready/"
    try:
        body = wait_status(ready, 200)
        assert set(body["checks"]) == {
            "database:default",
            "channel_layer",
            "state_redis",
            "draining",
        }

        pg.stop()
        status, body, took = get(ready)
        assert status == 503 and failing(body) == {"database:default"}, body
        assert took < BOUND

        redis.stop()
        status, body, took = get(ready)
        assert status == 503, body
        assert failing(body) == {"database:default", "channel_layer", "state_redis"}
        assert took < BOUND
        status, body, _ = get(f"{server.url}/health/live/")
        assert (status, body) == (200, {"status": "ok"})

        pg.start()
        redis.start()
        wait_status(ready, 200)
    finally:
        server.stop()


def test_ready_answers_within_the_timeout_when_dependencies_hang():
    with socket.socket() as db, socket.socket() as rd:
        for listener in (db, rd):
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
        env = {
            "E2E_DATABASE_URL": f"postgres://postgres@127.0.0.1:{db.getsockname()[1]}/x",
            "E2E_REDIS_URL": f"redis://127.0.0.1:{rd.getsockname()[1]}/0",
            "E2E_HEALTH_TIMEOUT": str(TIMEOUT),
        }
        server = LiveServer(env=env).start()
        try:
            # Several probes at once, some while earlier ones still hang.
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(get, [f"{server.url}/health/ready/"] * 8))
            for status, body, took in answers:
                assert status == 503 and took < BOUND + 1, (took, body)
                assert (
                    body["checks"]["database:default"]["error"] == f"timed out after {TIMEOUT:g} s"
                )
                assert body["checks"]["channel_layer"]["ok"] is False
            status, _, took = get(f"{server.url}/health/live/")
            assert status == 200 and took < 1
        finally:
            server.stop()
