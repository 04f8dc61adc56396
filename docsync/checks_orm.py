"""System checks for ``ORMProvider``'s database (registered on import)."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured


def _orm_provider_alias() -> str | None:
    """The database alias ``ORMProvider`` is configured with, or ``None``."""
    from .conf import docsync_settings
    from .providers.orm import ORMProvider

    provider = docsync_settings.PROVIDER
    if isinstance(provider, ORMProvider):
        return provider.using
    if isinstance(provider, type) and issubclass(provider, ORMProvider):
        return str((docsync_settings.PROVIDER_OPTIONS or {}).get("using", "default"))
    return None


def _provider_is(cls: type) -> bool:
    from .conf import docsync_settings

    provider = docsync_settings.PROVIDER
    return isinstance(provider, cls) or (isinstance(provider, type) and issubclass(provider, cls))


def _plain_orm_provider() -> bool:
    """Whether the provider is ``ORMProvider`` itself (not a subclass of it)."""
    from .conf import docsync_settings
    from .providers.orm import ORMProvider

    provider = docsync_settings.PROVIDER
    return provider is ORMProvider or type(provider) is ORMProvider


def _psycopg3() -> bool:
    """Whether Django talks to PostgreSQL with psycopg 3 (``PostgresProvider`` needs
    it): Django takes psycopg 3 whenever it is installed, psycopg2 otherwise."""
    return importlib.util.find_spec("psycopg") is not None


@register()
def check_orm_database(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        alias = _orm_provider_alias()
    except ImproperlyConfigured:
        return []  # docsync.E001 reports broken settings
    if alias is None:
        return []
    if alias not in settings.DATABASES:
        return [
            Error(
                f"ORMProvider uses database {alias!r}, which is not in DATABASES.",
                hint="Set DOCSYNC['PROVIDER_OPTIONS']['using'] to a DATABASES alias.",
                id="docsync.E010",
            )
        ]
    from .providers.orm import is_sqlite_without_immediate
    from .providers.postgres import PostgresProvider

    engine = settings.DATABASES[alias].get("ENGINE", "")
    if _provider_is(PostgresProvider) and not engine.endswith("postgresql"):
        return [
            Error(
                f"PostgresProvider uses database {alias!r}, which is not PostgreSQL "
                f"({engine or 'no ENGINE'}).",
                hint="Use docsync.providers.orm.ORMProvider on other databases, or point "
                "DOCSYNC['PROVIDER_OPTIONS']['using'] at a PostgreSQL alias.",
                id="docsync.E011",
            )
        ]
    if engine.endswith("postgresql") and _plain_orm_provider() and _psycopg3():
        return [
            Warning(
                f"ORMProvider uses PostgreSQL database {alias!r}: PostgresProvider "
                "syncs several times faster there (one prepared statement per sync, "
                "group commit) on the same tables, with the same admin and permissions.",
                hint="Set DOCSYNC['PROVIDER'] to 'docsync.providers.postgres.PostgresProvider' "
                "(or add docsync.W011 to SILENCED_SYSTEM_CHECKS to keep ORMProvider).",
                id="docsync.W011",
            )
        ]
    if is_sqlite_without_immediate(alias):
        return [
            Warning(
                f"ORMProvider uses SQLite database {alias!r} without IMMEDIATE "
                "transactions: concurrent syncs of one document can fail with "
                "'database is locked' instead of waiting their turn.",
                hint=f"Add 'OPTIONS': {{'transaction_mode': 'IMMEDIATE'}} to DATABASES[{alias!r}].",
                id="docsync.W010",
            )
        ]
    return []
