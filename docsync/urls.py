"""HTTP routes of docsync: Socket.IO long-polling refused clearly, health probes."""

from django.urls import path

from . import health, views

urlpatterns = [
    path("socket.io/", views.transport_unknown, name="docsync-polling"),
    path("health/live/", health.live, name="docsync-live"),
    path("health/ready/", health.ready, name="docsync-ready"),
]
