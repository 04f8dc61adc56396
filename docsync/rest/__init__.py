"""The REST API on Django REST framework, built on ``docsync.api``.

Mount it with one ``include()``::

    path("api/docsync/", include("docsync.rest.urls")),

Views are in :mod:`docsync.rest.views`, request and response shapes in
:mod:`docsync.rest.serializers`; the OpenAPI 3 schema (drf-spectacular) is
served at ``schema/`` and browsed at ``schema/ui/`` (Swagger UI from
drf-spectacular-sidecar: no CDN).
"""
