"""HTTP routes of docsync: answer Socket.IO long-polling with a clear refusal."""

from django.urls import path

from . import views

urlpatterns = [
    path("socket.io/", views.transport_unknown, name="docsync-polling"),
]
