from django.contrib import admin
from django.urls import include, path

import docsync.views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/docsync/", include("docsync.rest.urls")),
    path("", include("docsync.urls")),
    path("metrics", docsync.views.metrics),
]
