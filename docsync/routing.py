"""WebSocket routes: include ``websocket_urlpatterns`` in your ``asgi.py``."""

from django.urls import path

from .checks import ensure_valid_settings
from .consumers import DocSyncConsumer

# Server start-up (asgi.py imports this module): a wrong DOCSYNC setting stops
# the server here with the same messages as ``manage.py check``, instead of
# failing the first connection.
ensure_valid_settings()

websocket_urlpatterns = [
    # channels' URLRouter takes ASGI apps where django-stubs expects views.
    path("socket.io/", DocSyncConsumer.as_asgi()),  # type: ignore[arg-type]
]
