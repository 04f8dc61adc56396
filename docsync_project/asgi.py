"""ASGI entry point: Django for HTTP, docsync's Socket.IO consumer for WebSockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docsync_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from docsync.auth import AuthMiddlewareStack  # noqa: E402
from docsync.routing import websocket_urlpatterns  # noqa: E402

if settings.DEBUG:
    # runserver serves static files; uvicorn and daphne do not. In production
    # (DEBUG off) the reverse proxy serves collectstatic's STATIC_ROOT.
    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
