"""System checks for docsync's configuration.

``check_settings`` reads every ``DOCSYNC`` value against its rule
(``docsync.conf.RULES``), imports every dotted path, checks that each names
the right kind of object and accepts its options, and builds every binding;
each problem is a check message naming the key, the value and the fix.
``ensure_valid_settings`` raises the same errors at server start-up
(``docsync.routing`` calls it), for servers that do not run the checks.
"""

from __future__ import annotations

import inspect
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured


def _error(message: str, hint: str, id: str) -> Error:  # noqa: A002
    return Error(message, hint=hint, id=id)


def _signature_problem(target: Any, *args: Any, **kwargs: Any) -> str | None:
    """Why ``target(*args, **kwargs)`` would be refused by its signature, else ``None``."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None  # builtins without a signature: cannot tell
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    return None


def _described(name: str, raw: Any) -> str:
    from .conf import short_repr

    return f"DOCSYNC[{name!r}] = {short_repr(raw)}"


def _options_key(name: str) -> str:
    """Where the options of class setting ``name`` were written, as the user wrote it."""
    from .conf import CLASS_SETTINGS, docsync_settings

    if isinstance(docsync_settings.user_settings.get(name), dict):
        return f"DOCSYNC[{name!r}]['options']"
    return f"DOCSYNC[{CLASS_SETTINGS[name]!r}]"


def _check_imports(messages: list[CheckMessage], broken: set[str]) -> None:
    """Import the dotted paths; check the kind of object and its options."""
    from .conf import DEFAULTS, IMPORT_STRINGS, docsync_settings, short_repr

    user = docsync_settings.user_settings
    loaded: dict[str, Any] = {}
    for name in sorted(IMPORT_STRINGS - broken):
        try:
            loaded[name] = getattr(docsync_settings, name)
        except ImproperlyConfigured as exc:
            messages.append(
                _error(str(exc), "Fix the dotted path, or install its package.", "docsync.E004")
            )
    raw = {name: user.get(name, DEFAULTS[name]) for name in loaded}

    from .providers.base import BaseProvider

    if "PROVIDER" in loaded:
        provider = loaded["PROVIDER"]
        options = {} if "PROVIDER_OPTIONS" in broken else docsync_settings.PROVIDER_OPTIONS
        if isinstance(provider, type) and issubclass(provider, BaseProvider):
            problem = None
            if provider.__module__.startswith("docsync."):
                try:  # docsync's own providers are cheap to build and check their options
                    provider(**options)
                except Exception as exc:  # noqa: BLE001  (reported, with the fix)
                    problem = f"{type(exc).__name__}: {exc}"
            else:
                problem = _signature_problem(provider, **options)
            if problem:
                messages.append(
                    _error(
                        f"{_options_key('PROVIDER')} = {short_repr(options)} does not fit "
                        f"{provider.__name__}: {problem}",
                        f"Give {_options_key('PROVIDER')} the keyword arguments that "
                        f"{provider.__name__} takes.",
                        "docsync.E003",
                    )
                )
        elif not isinstance(provider, BaseProvider):
            messages.append(
                _error(
                    f"{_described('PROVIDER', raw['PROVIDER'])} is {short_repr(provider)}, "
                    "not a provider.",
                    "Name a subclass of docsync.providers.base.BaseProvider, e.g. "
                    "'docsync.providers.orm.ORMProvider'.",
                    "docsync.E004",
                )
            )
        elif options:
            messages.append(
                _error(
                    f"{_described('PROVIDER_OPTIONS', options)} is ignored: PROVIDER is "
                    "already a provider object.",
                    "Name the provider's class in PROVIDER, or drop PROVIDER_OPTIONS.",
                    "docsync.E003",
                )
            )

    for name, what in (("AUTHENTICATE", "the request"), ("AUTHORIZE", "the event")):
        if name not in loaded:
            continue
        function = loaded[name]
        if not callable(function):
            problem = f"is {short_repr(function)}, which cannot be called"
        else:
            problem = _signature_problem(function, object())
            problem = problem and f"cannot be called with one argument ({what}): {problem}"
        if problem:
            messages.append(
                _error(
                    f"{_described(name, raw[name])} {problem}.",
                    f"Name a function (or async function) that takes {what}, like the default "
                    f"{DEFAULTS_HINT[name]!r}.",
                    "docsync.E004",
                )
            )

    from .state import BaseState

    state = loaded.get("STATE_BACKEND")
    if state is not None:
        options = {} if "STATE_OPTIONS" in broken else docsync_settings.STATE_OPTIONS
        if isinstance(state, type) and issubclass(state, BaseState):
            problem = _signature_problem(state, **options)
            if problem:
                messages.append(
                    _error(
                        f"{_options_key('STATE_BACKEND')} = {short_repr(options)} does not fit "
                        f"{state.__name__}: {problem}",
                        f"Give {_options_key('STATE_BACKEND')} the keyword arguments that "
                        f"{state.__name__} takes (RedisState: heartbeat, ttl, prefix, url).",
                        "docsync.E003",
                    )
                )
        elif not isinstance(state, BaseState):
            messages.append(
                _error(
                    f"{_described('STATE_BACKEND', raw['STATE_BACKEND'])} is "
                    f"{short_repr(state)}, not a state backend.",
                    "Name a subclass of docsync.state.BaseState "
                    "('docsync.redis_state.RedisState'), or None to choose by channel layer.",
                    "docsync.E004",
                )
            )

    from .server import DocSyncServer

    server = loaded.get("SERVER")
    if server is not None and not isinstance(server, DocSyncServer):
        problem = None
        if not callable(server):
            problem = f"is {short_repr(server)}, neither a DocSyncServer nor a factory"
        elif not isinstance(server, type):
            problem = _signature_problem(server)
            problem = problem and f"cannot be called without arguments: {problem}"
        if problem:
            messages.append(
                _error(
                    f"{_described('SERVER', raw['SERVER'])} {problem}.",
                    "Name a docsync.server.DocSyncServer, or a function without arguments "
                    "that returns one.",
                    "docsync.E004",
                )
            )


#: The defaults of the callables, named in hints.
DEFAULTS_HINT = {
    "AUTHENTICATE": "docsync.auth.authenticate",
    "AUTHORIZE": "docsync.permissions.authorize",
}


def _check_bindings(messages: list[CheckMessage], broken: set[str]) -> None:
    """Build every binding of BINDINGS and DEFAULT_BINDING."""
    from .bindings.base import BindingRegistry, load_binding
    from .conf import docsync_settings, short_repr

    specs: list[tuple[str, str, Any]] = []
    if "BINDINGS" not in broken:
        for doc_type, spec in docsync_settings.BINDINGS.items():
            specs.append((f"BINDINGS[{doc_type!r}]", doc_type, spec))
    if "DEFAULT_BINDING" not in broken and docsync_settings.DEFAULT_BINDING is not None:
        specs.append(("DEFAULT_BINDING", "", docsync_settings.DEFAULT_BINDING))
    for where, _doc_type, spec in specs:
        try:
            if isinstance(spec, dict):
                unknown = sorted(set(spec) - {"class", "options"})
                if unknown:
                    raise ImproperlyConfigured(
                        f"DOCSYNC[{where}] has unknown keys {unknown}: "
                        "use {'class': 'dotted.path.Binding', 'options': {...}}."
                    )
                if not isinstance(spec.get("options", {}), dict):
                    raise ImproperlyConfigured(
                        f"DOCSYNC[{where}]['options'] = {short_repr(spec['options'])} "
                        "is not a dict of keyword arguments."
                    )
            load_binding(spec, where)
        except ImproperlyConfigured as exc:
            text = str(exc)
            if "DOCSYNC[" not in text:
                text = f"DOCSYNC[{where}] = {short_repr(spec)}: {text}"
            messages.append(
                _error(text, "Fix the binding's class path or options.", "docsync.E005")
            )
        except Exception as exc:  # noqa: BLE001  (a binding that cannot be built)
            messages.append(
                _error(
                    f"DOCSYNC[{where}] = {short_repr(spec)} could not be built: "
                    f"{type(exc).__name__}: {exc}",
                    "Fix the binding's options (see the binding's documentation).",
                    "docsync.E005",
                )
            )
    if not messages and "BINDINGS" not in broken and "DEFAULT_BINDING" not in broken:
        try:
            BindingRegistry.from_settings(
                docsync_settings.BINDINGS, docsync_settings.DEFAULT_BINDING
            )
        except Exception as exc:  # noqa: BLE001
            messages.append(
                _error(f"DOCSYNC['BINDINGS']: {exc}", "Fix the bindings.", "docsync.E005")
            )


def _check_health_databases(
    messages: list[CheckMessage], user: dict[str, Any], broken: set[str]
) -> None:
    """Every alias of ``HEALTH_DATABASES`` is one of ``DATABASES``."""
    from django.conf import settings

    aliases = user.get("HEALTH_DATABASES")
    if "HEALTH_DATABASES" in broken or not aliases:
        return
    unknown = [alias for alias in aliases if alias not in settings.DATABASES]
    if unknown:
        messages.append(
            _error(
                f"DOCSYNC['HEALTH_DATABASES'] = {aliases!r} names "
                f"{', '.join(map(repr, unknown))}, not in DATABASES.",
                f"Use aliases of DATABASES ({', '.join(map(repr, settings.DATABASES))}), "
                "or None for all of them.",
                "docsync.E003",
            )
        )


def settings_problems() -> list[CheckMessage]:
    """Every problem of the ``DOCSYNC`` settings, as check messages."""
    from .conf import DEFAULTS, docsync_settings, value_problem

    docsync_settings.reload()
    try:
        user = docsync_settings.user_settings
    except ImproperlyConfigured as exc:
        return [
            _error(
                str(exc),
                "DOCSYNC is a dict of the keys in docsync's settings documentation.",
                "docsync.E001",
            )
        ]
    messages: list[CheckMessage] = []
    broken: set[str] = set()
    for name in DEFAULTS:
        if name not in user:
            continue
        problem = value_problem(name, user[name])
        if problem:
            broken.add(name)
            messages.append(_error(problem[0], problem[1], "docsync.E003"))
    _check_imports(messages, broken)
    _check_health_databases(messages, user, broken)
    binding_messages: list[CheckMessage] = []
    _check_bindings(binding_messages, broken)
    return messages + binding_messages


def ensure_valid_settings() -> None:
    """Raise ``ImproperlyConfigured`` listing every error of the ``DOCSYNC`` settings."""
    errors = [m for m in settings_problems() if m.is_serious()]
    if errors:
        lines = [f"{m.id}: {m.msg}" + (f" HINT: {m.hint}" if m.hint else "") for m in errors]
        raise ImproperlyConfigured("docsync's settings are wrong:\n" + "\n".join(lines))


def _runserver_app() -> str | None:
    """The app whose ``runserver`` command ``manage.py runserver`` runs."""
    import os

    from django.core.management import find_commands

    for config in apps.get_app_configs():  # the first app in INSTALLED_APPS wins
        if "runserver" in find_commands(os.path.join(config.path, "management")):
            return config.name
    return None


#: Channel layers that reach the connections of one process only.
_ONE_PROCESS_LAYERS = ("InMemoryChannelLayer", "InProcessChannelLayer")


@register()
def check_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """The ``DOCSYNC`` settings, the channel layer, and runserver's ASGI server."""
    messages = settings_problems()
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if not layers or "default" not in layers:
        messages.append(
            Error(
                "docsync needs a channel layer to fan out events.",
                hint="Set CHANNEL_LAYERS = {'default': {'BACKEND': "
                "'docsync.channel_layer.InProcessChannelLayer'}} (one process) or "
                "channels_redis.core.RedisChannelLayer (several).",
                id="docsync.E002",
            )
        )
    elif layers["default"].get("BACKEND", "").endswith(_ONE_PROCESS_LAYERS) and not settings.DEBUG:
        messages.append(
            Warning(
                "The in-memory channel layer serves one process only.",
                hint="With several server processes use channels_redis.",
                id="docsync.W001",
            )
        )
    runserver = _runserver_app()
    if runserver != "daphne":
        where = (
            "'daphne' is not in INSTALLED_APPS"
            if not apps.is_installed("daphne")
            else f"'daphne' comes after {runserver!r} in INSTALLED_APPS"
        )
        messages.append(
            Warning(
                f"{where}, so runserver serves WSGI only: docsync's WebSocket upgrade "
                "gets a misleading 400 from it.",
                hint="Put 'daphne' first in INSTALLED_APPS. If you never use runserver "
                "(uvicorn, daphne directly), add 'docsync.W003' to SILENCED_SYSTEM_CHECKS.",
                id="docsync.W003",
            )
        )
    return messages


#: Backends known to answer object permissions (``has_perm(perm, obj)``).
OBJECT_PERMISSION_BACKENDS = (
    "docsync.backends.DocumentPermissionBackend",
    "guardian.backends.ObjectPermissionBackend",
    "rules.permissions.ObjectPermissionBackend",
)


def _answers_objects(path: str) -> bool:
    """Whether the backend at ``path`` may grant permissions on objects."""
    from django.contrib.auth.backends import BaseBackend, ModelBackend
    from django.utils.module_loading import import_string

    if path in OBJECT_PERMISSION_BACKENDS:
        return True
    try:
        backend = import_string(path)
    except ImportError:
        return False  # Django's own check (auth) reports it
    if not isinstance(backend, type):
        return False
    if issubclass(backend, ModelBackend):
        # ModelBackend answers nothing for objects, unless a subclass says otherwise.
        return any(
            getattr(backend, name) is not getattr(ModelBackend, name)
            for name in ("has_perm", "get_all_permissions", "get_user_permissions")
        )
    return any(
        getattr(backend, name, None) not in (None, getattr(BaseBackend, name, None))
        for name in ("has_perm", "get_all_permissions", "get_user_permissions")
    )


@register()
def check_object_permission_backend(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Warn when the default authorize has no backend answering object permissions."""
    from .conf import docsync_settings
    from .permissions import DocumentPermissions

    try:
        authorize = docsync_settings.AUTHORIZE
    except ImproperlyConfigured:
        return []  # docsync.E001 reports broken settings
    if not isinstance(authorize, DocumentPermissions):
        return []
    if any(_answers_objects(path) for path in settings.AUTHENTICATION_BACKENDS):
        return []
    return [
        Warning(
            "docsync's default authorize checks permissions on each document, but no "
            "backend in AUTHENTICATION_BACKENDS answers object permissions: only "
            "superusers can read or write documents that already exist.",
            hint="Add 'docsync.backends.DocumentPermissionBackend' (owners and shares) "
            "to AUTHENTICATION_BACKENDS, or an object-permission backend of your own "
            "(django-guardian, django-rules).",
            id="docsync.W002",
        )
    ]
