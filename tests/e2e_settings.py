"""Settings of the server process that end-to-end tests start (daphne)."""

import os

from tests.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "tests.urls"
ASGI_APPLICATION = "tests.e2e_asgi.application"

if os.environ.get("E2E_DATABASE_URL"):
    from docsync.utils import database_from_url

    DATABASES = {"default": database_from_url(os.environ["E2E_DATABASE_URL"])}  # noqa: F405
else:
    DATABASES = {"default": DATABASES["default"]}  # noqa: F405

if os.environ.get("E2E_REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ["E2E_REDIS_URL"]]},
        }
    }

DOCSYNC = {
    "AUTHENTICATE": os.environ.get("E2E_AUTHENTICATE", "tests.auth.token_authenticate"),
    "AUTHORIZE": os.environ.get("E2E_AUTHORIZE", "docsync.permissions.allow_all"),
    "PROVIDER": os.environ.get("E2E_PROVIDER", "docsync.providers.memory.InMemoryProvider"),
    "PING_INTERVAL": int(os.environ.get("E2E_PING_INTERVAL", "25000")),
    "PING_TIMEOUT": int(os.environ.get("E2E_PING_TIMEOUT", "20000")),
    "CONNECT_TIMEOUT": int(os.environ.get("E2E_CONNECT_TIMEOUT", "45000")),
    "SQUASH_THRESHOLD": int(os.environ.get("E2E_SQUASH_THRESHOLD", "100")),
    "MAX_UNREAD": int(os.environ.get("E2E_MAX_UNREAD", "1000000")),
    "MAX_PRESENCE": int(os.environ.get("E2E_MAX_PRESENCE", "16384")),
    "HEALTH_TIMEOUT": float(os.environ.get("E2E_HEALTH_TIMEOUT", "2.0")),
}
if os.environ.get("E2E_DOCSYNC"):  # any other DOCSYNC settings, as JSON
    import json

    DOCSYNC.update(json.loads(os.environ["E2E_DOCSYNC"]))
if os.environ.get("E2E_BINDINGS"):
    import json

    DOCSYNC["BINDINGS"] = json.loads(os.environ["E2E_BINDINGS"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"docsync": {"handlers": ["console"], "level": "INFO"}},
}
