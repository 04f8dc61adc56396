"""URLs of the example project: the landing page and docs, the admin, sign-in,
docsync's REST API, its HTTP routes (the long-polling refusal, health probes)
and its Prometheus metrics (served with DOCSYNC_METRICS_TOKEN set)."""

from django.contrib import admin
from django.urls import include, path

import docsync.views

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("demo/guest/", views.guest_login, name="guest-login"),
    path("docs/", views.docs_page, name="docs"),
    path("docs/<str:name>", views.docs_page, name="docs-page"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/docsync/", include("docsync.rest.urls")),
    path("", include("docsync.urls")),
    path("metrics", docsync.views.metrics),
]
