"""The app's configuration: ``INSTALLED_APPS = [..., "docsync"]`` picks it."""

from typing import Any

from django.apps import AppConfig


class DocSyncConfig(AppConfig):
    """The docsync app: registers its system checks and revocation receivers."""

    name = "docsync"
    verbose_name = "DocSync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (  # noqa: F401  (registers the system checks)
            checks,
            checks_orm,
            consumers,  # noqa: F401  (for the deprecated DocSyncServer.as_asgi())
        )
        from .revocation import connect_receivers

        connect_receivers()


def __getattr__(name: str) -> Any:
    # The 0.2 spelling, through a module attribute (a second class name here
    # would make Django's AppConfig discovery ambiguous).
    if name == "DocsyncConfig":
        import warnings

        warnings.warn(
            "docsync.apps.DocsyncConfig is deprecated: use DocSyncConfig.",
            DeprecationWarning,
            stacklevel=2,
        )
        return DocSyncConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
