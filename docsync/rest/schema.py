"""The OpenAPI 3 schema of the REST API (drf-spectacular) and its browsable UI.

The schema covers docsync's endpoints only, wherever the project mounts
them; the UI is Swagger UI served from drf-spectacular-sidecar's static
files, so it works offline (no CDN).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView, _get_sidecar_url

from .. import __version__

SETTINGS = {
    "TITLE": "docsync REST API",
    "DESCRIPTION": "Documents of a docsync server: list, create, read, change, delete, "
    "share, and who is connected. Decided by the same AUTHORIZE as the WebSocket.",
    "VERSION": __version__,
    "PREPROCESSING_HOOKS": ["docsync.rest.schema.only_docsync"],
    "COMPONENT_SPLIT_REQUEST": True,
}


def only_docsync(endpoints: list[Any], **kwargs: Any) -> list[Any]:
    """Keep the endpoints of ``docsync.rest`` (the project may have other APIs)."""
    from .views import DocsyncAPIView

    return [e for e in endpoints if issubclass(getattr(e[3], "cls", object), DocsyncAPIView)]


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema (YAML, or JSON with ``?format=json``)."""

    custom_settings = SETTINGS


class SchemaUIView(SpectacularSwaggerView):
    """Swagger UI on the schema, from drf-spectacular-sidecar's static files."""

    url_name = "docsync-rest-schema"
    title = "docsync REST API"

    @staticmethod
    def _swagger_ui_resource(filename: str) -> str:
        return str(_get_sidecar_url(f"swagger-ui-dist/{filename}"))

    @staticmethod
    def _swagger_ui_favicon() -> str:
        return str(_get_sidecar_url("swagger-ui-dist/favicon-32x32.png"))
