"""Database aliases for docsync's tests, and skipping when a server is down.

``db_param(name, alias)`` is a ``pytest.param`` for a test parametrized over
databases: marked ``django_db`` on that alias when its server answers, and
otherwise left unmarked, so that pytest-django does not try to create a test
database on a server that is down. Fixtures call ``require_database(alias)``,
which skips with the reason (or fails when ``DOCSYNC_REQUIRE_SERVICES=1``,
as in CI).
"""

from __future__ import annotations

import functools
import os

import pytest
from django.conf import settings


@functools.cache
def database_unavailable(alias: str) -> str | None:
    """Why the server behind ``alias`` cannot be used, or ``None`` if it can."""
    group = {"postgres": "PostgreSQL", "mariadb": "MariaDB"}.get(alias, alias)
    if alias not in settings.DATABASES:
        missing = getattr(settings, f"{alias.upper()}_MISSING", None)
        return f"{group}: {missing or f'database {alias!r} is not configured'}"
    config = settings.DATABASES[alias]
    engine = config["ENGINE"]
    if engine.endswith("sqlite3"):
        return None
    try:
        if engine.endswith("postgresql"):
            import psycopg

            psycopg.connect(
                host=config["HOST"] or None,
                port=config["PORT"] or None,
                user=config["USER"] or None,
                password=config["PASSWORD"] or None,
                dbname=config["NAME"],
                connect_timeout=3,
            ).close()
        elif engine.endswith("mysql"):
            import MySQLdb

            MySQLdb.connect(
                host=config["HOST"] or "localhost",
                port=int(config["PORT"] or 3306),
                user=config["USER"],
                password=config["PASSWORD"],
                database=config["NAME"],
                connect_timeout=3,
            ).close()
    except ImportError as exc:
        return f"{group}: database {alias!r} needs a driver that is not installed: {exc}"
    except Exception as exc:  # noqa: BLE001  (any failure means: not usable)
        where = f"{config['HOST'] or 'localhost'}:{config['PORT'] or 'default port'}"
        return f"{group}: database {alias!r} at {where} is unreachable: {exc}".strip()
    return None


def require_database(alias: str | None) -> None:
    """Skip (or fail, under DOCSYNC_REQUIRE_SERVICES=1) when ``alias`` is down."""
    if alias is None:
        return
    reason = database_unavailable(alias)
    if reason is None:
        return
    if os.environ.get("DOCSYNC_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (DOCSYNC_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


def django_db_on(alias: str, *, transaction: bool = True):
    """``django_db`` on ``alias`` (and "default"), or no mark when its server is down.

    Without the mark pytest-django does not try to create that test database;
    the test then calls :func:`require_database`, which skips or fails.
    """
    if database_unavailable(alias) is not None:
        # A mark that does nothing: require_database() skips or fails the test.
        return pytest.mark.skipif(False, reason=f"database {alias!r} is down")
    # Django makes every other alias depend on "default": set up both.
    return pytest.mark.django_db(transaction=transaction, databases=sorted({"default", alias}))


def db_param(value: object, alias: str | None, *, id: str, transaction: bool = True):  # noqa: A002
    """A ``pytest.param`` whose test uses database ``alias`` (``None``: no database)."""
    marks = []
    if alias is not None:
        marks.append(django_db_on(alias, transaction=transaction))
    if alias == "postgres":
        marks.append(pytest.mark.postgres)
    return pytest.param(value, marks=marks, id=id)
