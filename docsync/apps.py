from django.apps import AppConfig


class DocsyncConfig(AppConfig):
    name = "docsync"
    verbose_name = "DocSync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, checks_orm  # noqa: F401  (registers the system checks)
        from .revocation import connect_receivers

        connect_receivers()
