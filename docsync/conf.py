"""docsync's settings: one ``DOCSYNC`` dict, read through ``docsync_settings``.

Modelled on Django REST framework's ``settings.py``: defaults live here,
dotted paths listed in ``IMPORT_STRINGS`` are imported on first use, unknown
keys are refused with a message naming them, and the cache is dropped when a
test changes ``DOCSYNC`` with ``override_settings``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # Where documents live (see docsync.providers).
    "PROVIDER": "docsync.providers.memory.InMemoryProvider",
    "PROVIDER_OPTIONS": {},
    # Document bindings by document type, and the one used for other types.
    # A value is a dotted path to a binding class (or instance), or a dict
    # {"class": "dotted.path", "options": {...}}.
    "BINDINGS": {},
    "DEFAULT_BINDING": None,
    # Who is connecting, and may they do this?
    "AUTHENTICATE": "docsync.auth.authenticate",
    "AUTHORIZE": "docsync.permissions.authorize",
    # With the default authorize: documents nobody has shared yet may be read
    # and edited by every active user ("anyone with the link"); sharing one,
    # or ticking "private" in the admin, makes it private for good.
    "OPEN_DOCUMENTS": False,
    # Where per-document shared state (subscribers, presence) lives. None
    # picks the in-process store, or the Redis one when the channel layer is
    # channels-redis.
    "STATE_BACKEND": None,
    "STATE_OPTIONS": {},
    # The server object routed by docsync.routing; None builds one from the
    # settings above.
    "SERVER": None,
    # Engine.IO transport.
    "PING_INTERVAL": 25_000,
    "PING_TIMEOUT": 20_000,
    "MAX_PAYLOAD": 1_000_000,
    "CONNECT_TIMEOUT": 45_000,
    # Threads (each with its own database connection) that run requests;
    # syncs of different documents run in parallel up to this many.
    "DATABASE_THREADS": 8,
    # Squash a document's log into its snapshot once this many batches are
    # pending (0 disables squashing).
    "SQUASH_THRESHOLD": 100,
    # A connection whose requests keep being refused is slowed down: after
    # this many errors within ERROR_WINDOW seconds, each further answer waits.
    "ERROR_BURST": 20,
    "ERROR_WINDOW": 1.0,
    "ERROR_DELAY": 0.25,
}

IMPORT_STRINGS = {"PROVIDER", "AUTHENTICATE", "AUTHORIZE", "STATE_BACKEND", "SERVER"}


def perform_import(value: Any, setting_name: str) -> Any:
    """Import ``value`` if it is a dotted path; explain what failed if not."""
    if not isinstance(value, str):
        return value
    try:
        return import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Could not import {value!r} for DOCSYNC[{setting_name!r}]: "
            f"{exc.__class__.__name__}: {exc}. Check the dotted path."
        ) from exc


class DocsyncSettings:
    """Attribute access to ``DOCSYNC``, falling back to ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cached: dict[str, Any] = {}
        self._user: dict[str, Any] | None = None

    @property
    def user_settings(self) -> dict[str, Any]:
        if self._user is None:
            user = getattr(settings, "DOCSYNC", {}) or {}
            if not isinstance(user, dict):
                raise ImproperlyConfigured("The DOCSYNC setting must be a dict.")
            unknown = sorted(set(user) - set(DEFAULTS))
            if unknown:
                raise ImproperlyConfigured(
                    f"Unknown DOCSYNC keys: {', '.join(unknown)}. "
                    f"Valid keys are: {', '.join(sorted(DEFAULTS))}."
                )
            self._user = user
        return self._user

    def __getattr__(self, attr: str) -> Any:
        if attr not in DEFAULTS:
            raise AttributeError(f"Invalid docsync setting: {attr!r}")
        if attr in self._cached:
            return self._cached[attr]
        value = self.user_settings.get(attr, DEFAULTS[attr])
        if attr in IMPORT_STRINGS:
            value = perform_import(value, attr)
        self._cached[attr] = value
        return value

    def reload(self) -> None:
        self._cached.clear()
        self._user = None


docsync_settings = DocsyncSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "DOCSYNC":
        docsync_settings.reload()
        from docsync import server

        server.reset_default_server()


setting_changed.connect(_reload)
