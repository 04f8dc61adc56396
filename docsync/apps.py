"""The app's configuration: ``INSTALLED_APPS = [..., "docsync"]`` picks it."""

from django.apps import AppConfig

from .utils import deprecated_names


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
        from .webhooks import checks as _webhook_checks  # noqa: F401

        connect_receivers()


# The 0.1 spelling, still importable.
__getattr__ = deprecated_names("docsync.apps", {"DocsyncConfig": ("DocSyncConfig", DocSyncConfig)})
