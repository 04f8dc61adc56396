from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/docsync/", include("docsync.rest.urls")),
    path("", include("docsync.urls")),
]
