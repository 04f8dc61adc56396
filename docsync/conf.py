"""docsync's settings: one ``DOCSYNC`` dict, read through ``docsync_settings``.

Modelled on Django REST framework's ``settings.py``: defaults live here,
dotted paths listed in ``IMPORT_STRINGS`` are imported on first use, unknown
keys are refused with a message naming them, and the cache is dropped when a
test changes ``DOCSYNC`` with ``override_settings``.

Every value is checked against its :class:`Rule` (``RULES``, or one inferred
from the default's type for a setting without an entry) when it is read, and
all of them at once by ``manage.py check`` and at server start-up
(``docsync.checks.ensure_valid_settings``), so a wrong type is an error naming
the key, the value and the fix instead of a ``TypeError`` on a connection.

A setting naming a class with options is written one way throughout:
a dotted path, or ``{"class": "dotted.path", "options": {...}}`` (``PROVIDER``,
``STATE_BACKEND``, each binding). The 0.1 spellings ``PROVIDER_OPTIONS`` and
``STATE_OPTIONS`` still work, with a ``DeprecationWarning``.

This module imports nothing of docsync: what caches an object built from
the settings connects to ``setting_changed`` itself (``docsync.default``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # Where documents live (see docsync.providers): a dotted path, or
    # {"class": "dotted.path", "options": {...}}.
    "PROVIDER": "docsync.providers.memory.InMemoryProvider",
    # Deprecated: the options of PROVIDER (write PROVIDER as a dict instead).
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
    # channels-redis. Like PROVIDER: a dotted path or {"class", "options"}.
    "STATE_BACKEND": None,
    # Deprecated: the options of STATE_BACKEND.
    "STATE_OPTIONS": {},
    # The server object routed by docsync.routing; None builds one from the
    # settings above.
    "SERVER": None,
    # Engine.IO transport.
    "PING_INTERVAL": 25_000,
    "PING_TIMEOUT": 20_000,
    "MAX_PAYLOAD": 1_000_000,
    "CONNECT_TIMEOUT": 45_000,
    # Bytes a connection may have been sent without showing it read them
    # (by answering a ping). Past it the server pings at once and holds
    # further frames for that connection until the pong; a connection whose
    # held frames pass it too is dropped, as is one whose ping goes
    # unanswered for PING_TIMEOUT. At most about twice this much is queued
    # per connection. A single larger frame (a big snapshot) still goes out.
    "MAX_UNREAD": 1_000_000,
    # What a client's values may hold (docsync.payload): arrays and objects
    # nested at most this deep (the frame's outer array is level 1), and a
    # presence value of at most this many bytes as JSON.
    "MAX_JSON_DEPTH": 128,
    "MAX_PRESENCE": 16_384,
    # Threads (each with its own database connection) that run requests;
    # syncs of different documents run in parallel up to this many.
    "DATABASE_THREADS": 8,
    # Seconds: a document's subscribers hear at most one dirty per interval
    # from this process; the writes within one are announced together at its
    # end (the first at once). 0 announces every write on its own.
    "DIRTY_INTERVAL": 0.005,
    # On the first connection: freeze the objects alive at start-up and let
    # the youngest generation grow to 10,000 objects (docsync.gctune).
    "GC_TUNING": True,
    # Squash a document's log into its snapshot once this many batches are
    # pending (0 disables squashing).
    "SQUASH_THRESHOLD": 100,
    # A connection, or a user over all its connections, whose requests keep
    # being refused is slowed down: after this many errors within
    # ERROR_WINDOW seconds, further error answers go out one at a time,
    # ERROR_DELAY seconds apart.
    "ERROR_BURST": 20,
    "ERROR_WINDOW": 1.0,
    "ERROR_DELAY": 0.25,
    # Seconds a token minted by docsync.tokens.mint_token (or
    # ``manage.py docsync_token --expires-in``) is valid when no lifetime
    # is given.
    "TOKEN_LIFETIME": 3600,
    # Readiness (docsync.health): the database aliases probed (None: every
    # alias in DATABASES), and the seconds each probe may take.
    "HEALTH_DATABASES": None,
    "HEALTH_TIMEOUT": 2.0,
    # Draining on SIGTERM (docsync.lifespan.GracefulDrain): the seconds over
    # which this process's transports are dropped, one after the other, so
    # that their clients reconnect elsewhere a few at a time.
    "DRAIN_WINDOW": 10.0,
    # The same refusal of the same document, again and again (a tab retrying
    # a deleted document): the 2nd answer waits REFUSAL_BACKOFF seconds, each
    # next one twice as long, up to REFUSAL_BACKOFF_MAX (under the official
    # client's 5 s ack timeout); a success on that document starts over.
    "REFUSAL_BACKOFF": 0.1,
    "REFUSAL_BACKOFF_MAX": 4.0,
    # Failed logins: after CONNECT_FAILURE_BURST CONNECTs with bad credentials
    # from one client address within CONNECT_FAILURE_WINDOW seconds, that
    # address's CONNECTs are answered one at a time, CONNECT_FAILURE_DELAY
    # seconds apart.
    "CONNECT_FAILURE_BURST": 10,
    "CONNECT_FAILURE_WINDOW": 60.0,
    "CONNECT_FAILURE_DELAY": 1.0,
    # Documents one connection may have open (synced and not unsubscribed),
    # and connections one user may have open on one process (0: no limit).
    "MAX_DOCUMENTS_PER_CONNECTION": 1000,
    "MAX_CONNECTIONS_PER_USER": 100,
    # How much history (docsync.history) ``manage.py docsync_prune_history``
    # keeps: None keeps everything; {"days": N} what is newer than N days,
    # {"versions": N} the newest N versions (squash results, restores), both:
    # what either keeps.
    "HISTORY_RETENTION": None,
    # The bearer token a scrape of docsync.views.metrics must send
    # (Authorization: Bearer ...); None: the view refuses every scrape.
    "METRICS_TOKEN": None,
    # Webhooks (docs/webhooks.md): the receivers, each {"url", "secret"} and
    # optionally "name" and "events"; more can be added in the admin.
    "WEBHOOKS": [],
    # A document.changed goes out once a document has had no change for
    # WEBHOOK_QUIET seconds, or WEBHOOK_MAX_DELAY seconds after the first
    # change it announces if it never goes quiet.
    "WEBHOOK_QUIET": 2.0,
    "WEBHOOK_MAX_DELAY": 30.0,
    # Seconds one delivery may take; failed ones are tried again after
    # WEBHOOK_RETRY_DELAY seconds, doubling up to WEBHOOK_RETRY_MAX_DELAY,
    # and given up (status "failed") after WEBHOOK_MAX_ATTEMPTS attempts.
    "WEBHOOK_TIMEOUT": 10.0,
    "WEBHOOK_RETRY_DELAY": 1.0,
    "WEBHOOK_RETRY_MAX_DELAY": 600.0,
    "WEBHOOK_MAX_ATTEMPTS": 20,
    # Deliveries sent at once per process; seconds between the pump's rounds
    # when nothing is due; seconds between sweeps for unannounced changes.
    "WEBHOOK_CONCURRENCY": 8,
    "WEBHOOK_POLL_INTERVAL": 0.5,
    "WEBHOOK_SWEEP_INTERVAL": 60.0,
    # Whether server processes send deliveries and sweep themselves (False:
    # only ``manage.py docsync_webhooks`` does; servers still write events).
    "WEBHOOK_IN_SERVER": True,
}

IMPORT_STRINGS = {"PROVIDER", "AUTHENTICATE", "AUTHORIZE", "STATE_BACKEND", "SERVER"}

#: Settings that name a class, and the deprecated settings of their options.
CLASS_SETTINGS = {"PROVIDER": "PROVIDER_OPTIONS", "STATE_BACKEND": "STATE_OPTIONS"}
_OPTIONS_OF = {options: name for name, options in CLASS_SETTINGS.items()}


@dataclass(frozen=True)
class Rule:
    """What the value of one setting must be: ``what`` in words, ``ok`` as a test."""

    what: str
    ok: Callable[[Any], bool]


def whole(minimum: int, unit: str = "") -> Rule:
    """A whole number (not a bool, not a string) of at least ``minimum``."""
    unit = f" ({unit})" if unit else ""
    return Rule(
        f"a whole number >= {minimum}{unit}",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
    )


def number(minimum: float = 0, unit: str = "") -> Rule:
    """A finite int or float of at least ``minimum``."""
    unit = f" ({unit})" if unit else ""
    return Rule(
        f"a number >= {minimum:g}{unit}",
        lambda v: (
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and v >= minimum
        ),
    )


BOOLEAN = Rule("True or False", lambda v: isinstance(v, bool))
OPTIONS = Rule(
    "a dict of keyword arguments (str keys)",
    lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
)
DOTTED = Rule(
    "a dotted path ('package.module.name') or the object itself",
    lambda v: (
        (isinstance(v, str) and "." in v.strip(".")) or (v is not None and not isinstance(v, str))
    ),
)
DOTTED_OR_NONE = Rule(f"None or {DOTTED.what}", lambda v: v is None or DOTTED.ok(v))
CLASS_SPEC = Rule(
    f"{DOTTED.what}, or {{'class': 'dotted.path', 'options': {{...}}}}",
    lambda v: (
        (
            isinstance(v, dict)
            and set(v) <= {"class", "options"}
            and DOTTED.ok(v.get("class"))
            and OPTIONS.ok(v.get("options", {}))
        )
        or (not isinstance(v, dict) and DOTTED.ok(v))
    ),
)
CLASS_SPEC_OR_NONE = Rule(f"None, {CLASS_SPEC.what}", lambda v: v is None or CLASS_SPEC.ok(v))
BINDING = Rule(
    "None, a dotted path to a binding class, a binding, "
    "or {'class': 'dotted.path', 'options': {...}}",
    lambda v: v is None or isinstance(v, str | dict) or not isinstance(v, int | float | list),
)
BINDINGS = Rule(
    "a dict: document type (str) -> binding",
    lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
)


def _retention_ok(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict) or not value or set(value) - {"days", "versions"}:
        return False
    return all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value.values())


RETENTION = Rule(
    'None (keep everything) or a dict {"days": N} and/or {"versions": N}, each N a whole '
    "number >= 1",
    _retention_ok,
)

#: The rule of each setting; a setting missing here gets one from its
#: default's type (see :func:`rule_for`).
RULES: dict[str, Rule] = {
    "PROVIDER": CLASS_SPEC,
    "PROVIDER_OPTIONS": OPTIONS,
    "BINDINGS": BINDINGS,
    "DEFAULT_BINDING": BINDING,
    "AUTHENTICATE": DOTTED,
    "AUTHORIZE": DOTTED,
    "OPEN_DOCUMENTS": BOOLEAN,
    "GC_TUNING": BOOLEAN,
    "STATE_BACKEND": CLASS_SPEC_OR_NONE,
    "STATE_OPTIONS": OPTIONS,
    "SERVER": DOTTED_OR_NONE,
    "PING_INTERVAL": whole(1, "milliseconds"),
    "PING_TIMEOUT": whole(1, "milliseconds"),
    "MAX_PAYLOAD": whole(1, "bytes"),
    "CONNECT_TIMEOUT": whole(1, "milliseconds"),
    "MAX_UNREAD": whole(1, "bytes"),
    "MAX_JSON_DEPTH": whole(3, "levels of nesting"),
    "MAX_PRESENCE": whole(1, "bytes"),
    "DATABASE_THREADS": whole(1, "threads"),
    "DIRTY_INTERVAL": number(0, "seconds; 0 announces every write on its own"),
    "SQUASH_THRESHOLD": whole(0, "batches; 0 never squashes"),
    "ERROR_BURST": whole(0, "errors"),
    "ERROR_WINDOW": number(0, "seconds"),
    "ERROR_DELAY": number(0, "seconds"),
    "TOKEN_LIFETIME": whole(1, "seconds"),
    "HEALTH_DATABASES": Rule(
        "None (every alias in DATABASES) or a list of database aliases (str)",
        lambda v: v is None or (isinstance(v, list | tuple) and all(isinstance(a, str) for a in v)),
    ),
    "HEALTH_TIMEOUT": Rule(
        "a number of seconds > 0",
        lambda v: (
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        ),
    ),
    "DRAIN_WINDOW": number(0, "seconds; 0 drops every transport at once"),
    "REFUSAL_BACKOFF": number(0, "seconds; 0 never backs off"),
    "REFUSAL_BACKOFF_MAX": number(0, "seconds"),
    "CONNECT_FAILURE_BURST": whole(0, "failed CONNECTs"),
    "CONNECT_FAILURE_WINDOW": number(0, "seconds"),
    "CONNECT_FAILURE_DELAY": number(0, "seconds"),
    "MAX_DOCUMENTS_PER_CONNECTION": whole(0, "documents; 0 for no limit"),
    "MAX_CONNECTIONS_PER_USER": whole(0, "connections; 0 for no limit"),
    "HISTORY_RETENTION": RETENTION,
    "METRICS_TOKEN": Rule(
        "None (metrics are not served) or a token of at least 16 characters (str)",
        lambda v: v is None or (isinstance(v, str) and len(v) >= 16),
    ),
    "WEBHOOKS": Rule(
        "a list of receivers, each a dict with 'url' and 'secret' (checked in full by "
        "docsync.E020)",
        lambda v: isinstance(v, list | tuple) and all(isinstance(e, dict) for e in v),
    ),
    "WEBHOOK_QUIET": number(0, "seconds"),
    "WEBHOOK_MAX_DELAY": number(0, "seconds"),
    "WEBHOOK_TIMEOUT": Rule(
        "a number of seconds > 0",
        lambda v: (
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        ),
    ),
    "WEBHOOK_RETRY_DELAY": number(0, "seconds"),
    "WEBHOOK_RETRY_MAX_DELAY": number(0, "seconds"),
    "WEBHOOK_MAX_ATTEMPTS": whole(1, "attempts"),
    "WEBHOOK_CONCURRENCY": whole(1, "deliveries"),
    "WEBHOOK_POLL_INTERVAL": number(0.01, "seconds"),
    "WEBHOOK_SWEEP_INTERVAL": number(0.01, "seconds"),
    "WEBHOOK_IN_SERVER": BOOLEAN,
}


def rule_for(name: str) -> Rule:
    """The rule of setting ``name``: from ``RULES``, else from its default's type."""
    if name in RULES:
        return RULES[name]
    default = DEFAULTS[name]
    if isinstance(default, bool):
        return BOOLEAN
    if isinstance(default, int):
        return whole(min(default, 1))
    if isinstance(default, float):
        return number(min(default, 0.0))
    if isinstance(default, dict):
        return OPTIONS
    if isinstance(default, str) or name in IMPORT_STRINGS:
        return DOTTED_OR_NONE if default is None else DOTTED
    if default is None:
        return Rule("any value", lambda v: True)  # give it an entry in RULES
    if isinstance(default, list | tuple):
        return Rule("a list", lambda v: isinstance(v, list | tuple))
    return Rule(f"like the default {default!r}", lambda v: type(v) is type(default))


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def value_problem(name: str, value: Any) -> tuple[str, str] | None:
    """``(message, fix)`` when ``value`` breaks the rule of setting ``name``, else ``None``."""
    rule = rule_for(name)
    if rule.ok(value):
        return None
    return (
        f"DOCSYNC[{name!r}] = {short_repr(value)} is not {rule.what}.",
        f"Set DOCSYNC[{name!r}] to {rule.what}, e.g. the default {DEFAULTS[name]!r}, "
        "or remove the key.",
    )


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


class DocSyncSettings:
    """Attribute access to ``DOCSYNC``, falling back to ``DEFAULTS``.

    ``PROVIDER`` and ``STATE_BACKEND`` read as the class (or object) they
    name, and ``PROVIDER_OPTIONS`` / ``STATE_OPTIONS`` as its options,
    whichever way they were written.
    """

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
        problem = value_problem(attr, value)
        if problem:
            raise ImproperlyConfigured(f"{problem[0]} {problem[1]}")
        if attr in CLASS_SETTINGS and isinstance(value, dict):
            value = value["class"]
        elif attr in _OPTIONS_OF:
            value = self._options(attr, value)
        if attr in IMPORT_STRINGS:
            value = perform_import(value, attr)
        self._cached[attr] = value
        return value

    def _options(self, attr: str, value: dict[str, Any]) -> dict[str, Any]:
        """The options of a class setting: from its dict form, or the old key."""
        name = _OPTIONS_OF[attr]
        spec = self.user_settings.get(name)
        if attr not in self.user_settings:
            return dict(spec.get("options", {})) if isinstance(spec, dict) else value
        if isinstance(spec, dict):
            raise ImproperlyConfigured(
                f"DOCSYNC[{attr!r}] and DOCSYNC[{name!r}] as a dict both give options; "
                f"keep only {{'class': ..., 'options': {{...}}}} in DOCSYNC[{name!r}]."
            )
        warnings.warn(
            f"DOCSYNC[{attr!r}] is deprecated: write DOCSYNC[{name!r}] as "
            f"{{'class': 'dotted.path', 'options': {{...}}}}.",
            DeprecationWarning,
            stacklevel=3,
        )
        return value

    def reload(self) -> None:
        """Forget what was read (the ``DOCSYNC`` setting changed)."""
        self._cached.clear()
        self._user = None


docsync_settings = DocSyncSettings()


def __getattr__(name: str) -> Any:
    # The 0.1 spelling (conf imports nothing of docsync: no shared helper here).
    if name != "DocsyncSettings":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        "docsync.conf.DocsyncSettings is deprecated: use DocSyncSettings.",
        DeprecationWarning,
        stacklevel=2,
    )
    return DocSyncSettings


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "DOCSYNC":
        docsync_settings.reload()


setting_changed.connect(_reload)
