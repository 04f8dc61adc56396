"""URLs of the example project: the landing page and docs, the admin, sign-in,
docsync's REST API, and its HTTP route (the long-polling refusal)."""

from django.contrib import admin
from django.urls import include, path

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
]
