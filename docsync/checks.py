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
