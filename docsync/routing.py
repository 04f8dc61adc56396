"""WebSocket routes: include ``websocket_urlpatterns`` in your ``asgi.py``."""

from django.urls import path

from .consumers import DocSyncConsumer

websocket_urlpatterns = [
    path("socket.io/", DocSyncConsumer.as_asgi()),
]
