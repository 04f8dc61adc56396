"""Small helpers shared by settings and the app."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse

_ENGINES = {
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "pgsql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
    "mariadb": "django.db.backends.mysql",
    "sqlite": "django.db.backends.sqlite3",
}


def database_from_url(url: str) -> dict[str, Any]:
    """Turn ``DATABASE_URL`` into a ``DATABASES`` entry.

    ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
    ``postgres://user:pass@host:5432/name``, ``mysql://root@127.0.0.1/test``.
    """
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme not in _ENGINES:
        raise ValueError(
            f"Unsupported DATABASE_URL scheme {parsed.scheme!r}; "
            f"use one of {', '.join(sorted(_ENGINES))}."
        )
    engine = _ENGINES[scheme]
    if scheme == "sqlite":
        name = unquote(parsed.path[1:] if parsed.path.startswith("/") else parsed.path)
        return {
            "ENGINE": engine,
            "NAME": name or ":memory:",
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    config: dict[str, Any] = {
        "ENGINE": engine,
        "NAME": unquote(parsed.path.lstrip("/")),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        # Every request is a database_sync_to_async hop, which closes
        # connections past their age: with the default age of 0 each sync
        # would open a new connection (milliseconds on PostgreSQL).
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
    }
    if scheme in ("mysql", "mariadb"):
        config["OPTIONS"] = {"charset": "utf8mb4"}
    return config


def user_pk(value: Any) -> Any | None:
    """``value`` as the user model's primary key (``to_python``), or ``None``
    when it cannot be one (malformed, ``None``): the one check of a user id
    from a client, a token or a row before it is looked up."""
    if value is None:
        return None
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError

    try:
        return get_user_model()._meta.pk.to_python(value)
    except (ValidationError, TypeError, ValueError):
        return None


def deprecated_names(module: str, names: dict[str, tuple[str, Any]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names kept from an older release.

    ``names`` maps each old name to its replacement's name and value; using
    an old name warns ``DeprecationWarning`` naming the replacement.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new, value = names[name]
        warnings.warn(
            f"{module}.{name} is deprecated: use {new}.", DeprecationWarning, stacklevel=2
        )
        return value

    return __getattr__
