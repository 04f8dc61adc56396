"""Settings for docsync's own test suite (not the example project's).

``default`` is SQLite. ``postgres`` and ``mariadb`` point at the servers of
this machine (override with TEST_POSTGRES_URL / TEST_MARIADB_URL); tests that
use them skip with a reason when they are down, and CI turns such skips into
failures (DOCSYNC_REQUIRE_SERVICES=1).

The ``mariadb`` alias exists only when its driver (mysqlclient) imports:
Django loads the backend of every alias when it sets up test databases, so a
missing driver would otherwise be an error in every database test.
"""

import importlib.util
import os

from docsync.utils import database_from_url

SECRET_KEY = "docsync-tests"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"

INSTALLED_APPS = [
    "daphne",  # runserver speaks ASGI (no docsync.W003)
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
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TEST_SQLITE_NAME", ":memory:"),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        "TEST": {"NAME": os.environ.get("TEST_SQLITE_NAME")},
    },
    "postgres": database_from_url(POSTGRES_URL),
}
#: Why the ``mariadb`` alias is missing (tests that need it skip with this).
MARIADB_MISSING = None
if importlib.util.find_spec("MySQLdb") is None:
    MARIADB_MISSING = (
        "the MariaDB driver mysqlclient is not installed "
        "(apt-get install libmariadb-dev pkg-config && pip install -r requirements-mariadb.txt)"
    )
else:
    DATABASES["mariadb"] = database_from_url(MARIADB_URL)

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    # Owners and shares (docsync.DocumentShare) of documents.
    "docsync.backends.DocumentPermissionBackend",
]

CHANNEL_LAYERS = {"default": {"BACKEND": "docsync.channel_layer.InProcessChannelLayer"}}

DOCSYNC: dict[str, object] = {}
STATIC_URL = "static/"
