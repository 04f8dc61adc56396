"""The default ``authenticate``'s user lookups on the event loop (PostgreSQL).

A token handshake needs one row: the user owning a DRF token, or the user a
signed token names. Through the ORM that costs a thread hop, Django's query
compiler and a connection health check on every connection (several
milliseconds of CPU on a busy server). On PostgreSQL with psycopg 3 the same
row is read here with one prepared statement on an ``AsyncConnection`` of
the event loop (:class:`docsync.providers.pgasync.LoopConnections`, one per
loop and database, separate from ``PostgresProvider``'s), and the user is
built from it as the ORM would (``Model.from_db``).

:func:`lookups` says whether that path applies: the user model's database
(and the token's) is PostgreSQL on psycopg 3, and no field of the user model
converts its database value (a ``JSONField``, an encrypted field...), since
this connection has psycopg's loaders, not Django's. Otherwise it returns
``None`` and ``docsync.auth.authenticate`` runs as before, in a thread.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, router

from .providers.pgasync import LoopConnections
from .utils import user_pk

#: Prepare each statement at its first use (a handful of statements).
_PREPARE = 1


class UserLookups:
    """The two statements: the user by primary key, the user by DRF token key."""

    def __init__(self, using: str, user_model: Any, token_model: Any | None) -> None:
        self.using = using
        self.model = user_model
        connection = connections[using]
        quote = connection.ops.quote_name
        fields = user_model._meta.concrete_fields
        self.attnames = [f.attname for f in fields]
        table = quote(user_model._meta.db_table)
        columns = ", ".join(f"u.{quote(f.column)}" for f in fields)
        pk = quote(user_model._meta.pk.column)
        self.by_pk_sql = f"SELECT {columns} FROM {table} u WHERE u.{pk} = %s"
        self.by_token_sql = None
        if token_model is not None:
            opts = token_model._meta
            self.by_token_sql = (
                f"SELECT {columns} FROM {quote(opts.db_table)} t JOIN {table} u "
                f"ON u.{pk} = t.{quote(opts.get_field('user').column)} "
                f"WHERE t.{quote(opts.get_field('key').column)} = %s"
            )
        self._rows = LoopConnections(using, _PREPARE)

    async def user_by_pk(self, pk: Any) -> Any | None:
        """The user whose primary key is ``pk`` (``None``: none, or not a valid key)."""
        pk = user_pk(pk)
        if pk is None:
            return None
        return await self._user(self.by_pk_sql, pk)

    async def user_by_token(self, key: str) -> Any | None:
        """The user owning DRF token ``key``, or ``None``."""
        assert self.by_token_sql is not None
        return await self._user(self.by_token_sql, key)

    async def _user(self, sql: str, param: Any) -> Any | None:
        # Shielded: a handshake cut short must not cut the statement short
        # (that would close the connection other handshakes are queued on).
        statement = self._rows.execute(sql, (param,), "a user", quiet=True)
        rows = await asyncio.shield(statement)
        if not rows:
            return None
        return self.model.from_db(self.using, self.attnames, rows[0])


@cache
def lookups() -> UserLookups | None:
    """The lookups on this process's event loops, or ``None`` where they do not apply."""
    user_model = get_user_model()
    token_model = None
    if apps.is_installed("rest_framework.authtoken"):
        from rest_framework.authtoken.models import Token

        token_model = Token
    using = router.db_for_read(user_model)
    if token_model is not None and router.db_for_read(token_model) != using:
        return None
    connection = connections[using]
    if connection.vendor != "postgresql" or not _psycopg3() or not settings.USE_TZ:
        return None  # (without USE_TZ Django reads naive datetimes: its loaders)
    for field in user_model._meta.concrete_fields:
        if hasattr(field, "from_db_value") or connection.ops.get_db_converters(field.cached_col):
            return None
    return UserLookups(using, user_model, token_model)


def _psycopg3() -> bool:
    try:
        from django.db.backends.postgresql.psycopg_any import (  # type: ignore[import-untyped]
            is_psycopg3,
        )
    except ImportError:
        return False
    return bool(is_psycopg3)
