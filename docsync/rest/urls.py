"""Routes of the REST API.

Mount them with ``path("api/docsync/", include("docsync.rest.urls"))``.
"""

from django.urls import path, register_converter

from . import schema, views


class DocIdConverter:
    """Any document id, slashes and newlines included (``path`` stops at a newline)."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class ShareIdConverter:
    """A share's id or a clock; a negative one is refused by the view, not taken for
    another route."""

    regex = r"-?[0-9]+"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(DocIdConverter, "docid")
register_converter(ShareIdConverter, "shareid")

urlpatterns = [
    path("documents/", views.DocumentListView.as_view(), name="docsync-rest-documents"),
    path(
        "documents/<docid:doc_id>/operations/",
        views.OperationsView.as_view(),
        name="docsync-rest-operations",
    ),
    path(
        "documents/<docid:doc_id>/shares/<shareid:share_id>/",
        views.ShareDetailView.as_view(),
        name="docsync-rest-share",
    ),
    path(
        "documents/<docid:doc_id>/shares/", views.SharesView.as_view(), name="docsync-rest-shares"
    ),
    path(
        "documents/<docid:doc_id>/history/<shareid:clock>/",
        views.StateAtView.as_view(),
        name="docsync-rest-state-at",
    ),
    path(
        "documents/<docid:doc_id>/history/",
        views.HistoryView.as_view(),
        name="docsync-rest-history",
    ),
    path(
        "documents/<docid:doc_id>/restore/",
        views.RestoreView.as_view(),
        name="docsync-rest-restore",
    ),
    path(
        "documents/<docid:doc_id>/presence/",
        views.PresenceView.as_view(),
        name="docsync-rest-presence",
    ),
    path(
        "documents/<docid:doc_id>/",
        views.DocumentDetailView.as_view(),
        name="docsync-rest-document",
    ),
    path("schema/", schema.SchemaView.as_view(), name="docsync-rest-schema"),
    path("schema/ui/", schema.SchemaUIView.as_view(), name="docsync-rest-schema-ui"),
]
