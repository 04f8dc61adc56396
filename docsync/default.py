"""What the ``DOCSYNC`` settings describe, built once: server, provider, bindings.

The routed consumer, the admin, the management commands, the health checks
and the Python and REST APIs all obtain them here, so they can never
disagree: with ``DOCSYNC["SERVER"]`` set, its provider and bindings are the
ones everybody uses. Changing ``DOCSYNC`` (``override_settings`` in a test)
forgets them.
"""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.core.signals import setting_changed

from .bindings.base import BindingRegistry, get_binding_registry
from .conf import docsync_settings
from .providers.base import BaseProvider
from .providers.orm import ORMProvider
from .server import DocSyncServer
from .state import BaseState, InProcessState
from .webhooks.pump import attach as attach_webhooks

_server: DocSyncServer | None = None


def get_default_server() -> DocSyncServer:
    """The server the ``DOCSYNC`` settings describe (``DOCSYNC["SERVER"]``, if set)."""
    global _server
    if _server is None:
        _server = _build_server()
    return _server


def default_provider() -> BaseProvider:
    """The provider of the default server."""
    return get_default_server().provider


def default_bindings() -> BindingRegistry:
    """The binding registry of the default server (one, built once)."""
    return get_default_server().bindings


def orm_provider_for(using: str) -> ORMProvider:
    """The default provider if it is an ``ORMProvider`` on ``using``, else a new one.

    The admin and the management commands work on rows of one database and
    must go through a provider on that same database.
    """
    provider = default_provider()
    if isinstance(provider, ORMProvider) and provider.using == using:
        return provider
    return ORMProvider(using=using)


def built_default_server() -> DocSyncServer | None:
    """The default server if something built it already (never builds one)."""
    return _server


def default_server_draining() -> bool:
    """Whether this process's default server has begun closing (never builds one)."""
    return _server is not None and _server.draining


def reset_default_server() -> None:
    """Forget the default server (the settings changed)."""
    global _server
    _server = None


def _build_server() -> DocSyncServer:
    s = docsync_settings
    if s.SERVER is not None:
        server = (
            s.SERVER()
            if callable(s.SERVER) and not isinstance(s.SERVER, DocSyncServer)
            else s.SERVER
        )
        return cast(DocSyncServer, server)  # docsync.checks reports any other object
    state = _instance(s.STATE_BACKEND or _default_state_backend(), s.STATE_OPTIONS)
    server = DocSyncServer(
        doc_binding=get_binding_registry(),
        provider=_instance(s.PROVIDER, s.PROVIDER_OPTIONS),
        authenticate=s.AUTHENTICATE,
        authorize=s.AUTHORIZE,
        state=state,
    )
    attach_webhooks(server)
    return server


def _instance(spec: Any, options: dict[str, Any] | None) -> Any:
    """A class built with ``options``, or the object the setting already names."""
    return spec(**(options or {})) if isinstance(spec, type) else spec


def _default_state_backend() -> type[BaseState]:
    layer = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {})
    if layer.get("BACKEND", "").startswith("channels_redis"):
        try:
            from .redis_state import RedisState
        except ImportError:
            return InProcessState
        return RedisState
    return InProcessState


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "DOCSYNC":
        reset_default_server()


setting_changed.connect(_reset)
