"""Settings of the example project, and the default way to run docsync.

With no environment variables it runs on embedded defaults: SQLite next to
``manage.py`` and the in-memory channel layer. Set ``DATABASE_URL``
(``postgres://user@host:5432/name``, ``mysql://...``, ``sqlite:///path``) and
``REDIS_URL`` (``redis://host:6379/0``) for the production shape: PostgreSQL
and channels-redis, several processes behind a load balancer.
"""

import os
from pathlib import Path

from docsync.utils import database_from_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-docsync-example-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",  # the REST API's schema (docsync.rest)
    "drf_spectacular_sidecar",  # its Swagger UI, served offline
    "docsync",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "docsync_project.urls"
ASGI_APPLICATION = "docsync_project.asgi.application"
WSGI_APPLICATION = "docsync_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "docsync_project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
    )
}

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "docsync.channel_layer.InProcessChannelLayer"}}

DOCSYNC = {
    # Documents live in the database: SQLite here through the ORM, PostgreSQL
    # with DATABASE_URL through the provider made for it (same tables).
    "PROVIDER": (
        "docsync.providers.postgres.PostgresProvider"
        if DATABASES["default"]["ENGINE"].endswith("postgresql")
        else "docsync.providers.orm.ORMProvider"
    ),
    # Access goes by Django permissions (owner, shares, groups). In this example
    # a document nobody has shared yet is open to every signed-in user, so two
    # users can try collaboration at once; sharing it makes it private.
    "OPEN_DOCUMENTS": True,
    # The document types this server can squash. "doc" is the DocNode type
    # of the DocSync examples: paragraphs ("p") with a text state.
    "BINDINGS": {
        "doc": {
            "class": "docsync.bindings.docnode.DocNodeBinding",
            "options": {"doc_type": "doc", "nodes": {"doc": {}, "p": {"text": {"kind": "string"}}}},
        },
    },
    # The bearer token Prometheus sends to /metrics (docs/metrics.md); unset: 403.
    "METRICS_TOKEN": os.environ.get("DOCSYNC_METRICS_TOKEN") or None,
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
}

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    # Owners and shares (docsync.DocumentShare) of documents.
    "docsync.backends.DocumentPermissionBackend",
]

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# The landing page's demo client (plain JavaScript, no build step). With
# DEBUG, asgi.py serves static files itself (under uvicorn too); without it,
# run collectstatic and let the reverse proxy serve STATIC_ROOT.
STATICFILES_DIRS = [BASE_DIR / "docsync_project" / "static"]
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))
LOGIN_REDIRECT_URL = LOGOUT_REDIRECT_URL = "/"
# The landing page's "join as a guest" button creates an account with the
# name asked for (never signs in to an existing one). On with DEBUG only.
DEMO_GUESTS = os.environ.get("DOCSYNC_DEMO_GUESTS", "1" if DEBUG else "0") == "1"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "docsync": {"handlers": ["console"], "level": os.environ.get("DOCSYNC_LOG_LEVEL", "INFO")}
    },
}
