"""A PostgreSQL database of its own for end-to-end servers, migrated."""

from __future__ import annotations

import json
import uuid

import pytest
from django.conf import settings

from tests.conftest_db import database_unavailable
from tests.liveserver import manage
from tests.services import _skip_or_fail


@pytest.fixture(scope="module")
def pg_url():
    reason = database_unavailable("postgres")
    if reason:
        _skip_or_fail(reason)
    import psycopg

    config = settings.DATABASES["postgres"]
    name = f"docsync_e2e_{uuid.uuid4().hex[:8]}"
    admin = dict(
        host=config["HOST"],
        port=config["PORT"] or 5432,
        user=config["USER"],
        dbname=config["NAME"],
        autocommit=True,
    )
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://{config['USER']}@{config['HOST']}:{config['PORT'] or 5432}/{name}"
    manage("migrate", "-v", "0", env={"E2E_DATABASE_URL": url})
    yield url
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(pg_url: str, provider: str) -> dict[str, str]:
    """A live server's environment: ``pg_url``, ``provider``, list binding, squash every 10."""
    return {
        "E2E_DATABASE_URL": pg_url,
        "E2E_PROVIDER": provider,
        "E2E_BINDINGS": json.dumps({"doc": "tests.bindings.ListBinding"}),
        "E2E_SQUASH_THRESHOLD": "10",
    }
