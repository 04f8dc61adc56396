"""System checks for docsync's configuration."""

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured


@register()
def check_settings(app_configs, **kwargs):
    from .conf import docsync_settings

    messages = []
    try:
        docsync_settings.reload()
        docsync_settings.user_settings  # noqa: B018  (validates the keys)
    except ImproperlyConfigured as exc:
        messages.append(Error(str(exc), id="docsync.E001"))
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if not layers or "default" not in layers:
        messages.append(
            Error(
                "docsync needs a channel layer to fan out events.",
                hint="Set CHANNEL_LAYERS = {'default': {'BACKEND': "
                "'channels.layers.InMemoryChannelLayer'}} (one process) or "
                "channels_redis.core.RedisChannelLayer (several).",
                id="docsync.E002",
            )
        )
    elif (
        layers["default"].get("BACKEND", "").endswith("InMemoryChannelLayer") and not settings.DEBUG
    ):
        messages.append(
            Warning(
                "The in-memory channel layer serves one process only.",
                hint="With several server processes use channels_redis.",
                id="docsync.W001",
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
def check_object_permission_backend(app_configs, **kwargs):
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
