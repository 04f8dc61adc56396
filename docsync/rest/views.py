"""The REST API's views: documents, their operations, shares and presence.

Every decision is ``docsync.api``'s, so the server's ``AUTHORIZE`` and
permission backends decide here exactly as over the WebSocket. Errors are
DRF's: 400 naming the field, 401 without credentials, 403 when the user may
read the document but not do this, 404 for a document that does not exist
*or* that the user may not read (a stranger cannot tell them apart), 409 for
a deleted document (or an id taken), 503 when storage is unavailable.
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.handlers.asgi import ASGIRequest
from django.db import IntegrityError, connections, transaction
from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, fields, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import api
from ..default import get_default_server
from ..exceptions import (
    DocSyncError,
    DocumentDeleted,
    DocumentExists,
    DocumentNotFound,
    HistoryUnavailable,
    InvalidValue,
    PermissionDenied,
    StorageError,
    StorageUnavailable,
    ValidationError,
)
from ..models import Document, DocumentShare
from ..server import DocSyncServer
from ..utils import user_pk
from . import serializers as s

F = TypeVar("F", bound=Callable[..., Any])

ERROR = inline_serializer("Error", {"detail": fields.CharField()})
FIELD_ERRORS = OpenApiResponse(
    OpenApiTypes.OBJECT, description="The fields in error, each with its messages."
)
NOT_FOUND = OpenApiResponse(ERROR, description="No such document, or one you may not read.")
FORBIDDEN = OpenApiResponse(ERROR, description="You may read the document but not do this.")
DELETED = OpenApiResponse(ERROR, description="The document was deleted.")
UNAUTHENTICATED = OpenApiResponse(ERROR, description="No or wrong credentials.")
COMMON = {401: UNAUTHENTICATED, 404: NOT_FOUND}
#: The fields an error message may begin with, as the request names them.
_FIELDS = {"type": "type", "operations": "operations", "serializedDoc": "snapshot", "docId": "id"}


def documented(**kwargs: Any) -> Callable[[F], F]:
    """``extend_schema`` on drf-spectacular's ``AutoSchema``, whatever the project's
    ``DEFAULT_SCHEMA_CLASS`` (docsync does not ask you to change it)."""

    def decorator(method: F) -> F:
        method.kwargs = {"schema": AutoSchema}  # type: ignore[attr-defined]
        return extend_schema(**kwargs)(method)

    return decorator


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = gettext_lazy("The document was deleted.")
    default_code = "conflict"


class Unavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = gettext_lazy("The document could not be read or written; try again.")
    default_code = "unavailable"


def _field_of(exc: ValidationError) -> str:
    if isinstance(exc, InvalidValue) and exc.path and isinstance(exc.path[0], str):
        return _FIELDS.get(exc.path[0], exc.path[0])
    first = exc.message.split(" ", 1)[0].split("[", 1)[0]
    return _FIELDS.get(first, "non_field_errors")


class DocsyncAPIView(APIView):
    """Base of the views: token and session authentication, docsync's errors as DRF's.

    Subclass and set ``authentication_classes`` for other authentication.
    """

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]  # operations are JSON values (bytes as {"base64": ...})
    schema = AutoSchema()
    #: The server whose ``AUTHORIZE`` decides (``None``: the default server).
    server: DocSyncServer | None = None

    def get_server(self) -> DocSyncServer:
        return self.server or get_default_server()

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            _close_connections(request)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # No document id or filter holds NUL, which PostgreSQL text cannot store.
        if "\x00" in str(kwargs.get("doc_id", "")):
            raise exceptions.NotFound("No such document.")
        for name, value in request.query_params.items():
            if "\x00" in value:
                raise exceptions.ValidationError({name: ["must not contain NUL characters."]})

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, DocSyncError):
            exc = self.translate(exc)
        response: Response = super().handle_exception(exc)
        return response

    def translate(self, exc: DocSyncError) -> Exception:
        """The DRF exception a docsync error is answered with."""
        if isinstance(exc, (DocumentDeleted, DocumentExists, HistoryUnavailable)):
            return Conflict(exc.message)
        if isinstance(exc, DocumentNotFound):
            return exceptions.NotFound("No such document.")
        if isinstance(exc, ValidationError):
            return exceptions.ValidationError({_field_of(exc): [exc.message]})
        if isinstance(exc, PermissionDenied):
            return self.refused()
        if isinstance(exc, (StorageUnavailable, StorageError)):
            return Unavailable(exc.message)
        return exceptions.APIException(exc.message)

    def refused(self) -> Exception:
        """403 if the user may read the document, else 404 (as if it did not exist)."""
        doc_id = self.kwargs.get("doc_id")
        if doc_id is not None and api.may(
            self.request.user, "read", doc_id, server=self.get_server()
        ):
            return exceptions.PermissionDenied("You may not do this to this document.")
        return exceptions.NotFound("No such document.")

    def document(self, doc_id: str) -> Document:
        """The ``Document`` row the user may read (404 otherwise, 409 if deleted)."""
        if not api.may(self.request.user, "read", doc_id, server=self.get_server()):
            raise exceptions.NotFound("No such document.")
        row = Document.objects.filter(doc_id=doc_id).first()
        if row is None:
            raise exceptions.NotFound("No such document.")
        if row.deleted_at is not None:
            raise Conflict()
        return row

    def may_manage(self, doc_id: str) -> None:
        """Changing shares needs the delete permission (owner, manager, superuser)."""
        self.document(doc_id)
        if not api.may(self.request.user, "delete", doc_id, server=self.get_server()):
            raise exceptions.PermissionDenied(
                "Only those who may delete the document (owner, managers) may change its shares."
            )


def _close_connections(request: Any) -> None:
    """Under ASGI, close this thread's database connections once the request is done.

    Django runs each ASGI request's synchronous code in a thread of its own,
    so a persistent connection (``CONN_MAX_AGE``) is never reused and is
    left open until garbage collection: 59 at once on PostgreSQL for 8
    concurrent writers, until ``too many clients``. Under WSGI Django's own
    handling stands; inside an atomic block (tests) nothing is closed.
    """
    if not isinstance(getattr(request, "_request", request), ASGIRequest):
        return
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


class DocumentPagination(PageNumberPagination):
    """Pages of 50 documents; ``page_size`` up to 500."""

    page_size = 50
    page_size_query_param = "page_size"  # type: ignore[assignment]
    max_page_size = 500  # type: ignore[assignment]


DOC_ID = OpenApiParameter("doc_id", str, OpenApiParameter.PATH, description="The document id.")
LIST_FILTERS = [
    OpenApiParameter("type", str, description="Only documents of this type."),
    OpenApiParameter("owner", str, description="Only documents owned by this user (id)."),
    OpenApiParameter("updated_after", OpenApiTypes.DATETIME, description="Changed after."),
    OpenApiParameter("updated_before", OpenApiTypes.DATETIME, description="Changed before."),
]


class DocumentListView(DocsyncAPIView):
    """List the documents you may read; create one."""

    pagination_class = DocumentPagination

    @documented(
        operation_id="documents_list",
        parameters=LIST_FILTERS,
        responses={
            200: s.DocumentSerializer(many=True),
            400: FIELD_ERRORS,
            401: UNAUTHENTICATED,
            404: OpenApiResponse(ERROR, description="No such page."),
        },
    )
    def get(self, request: Request) -> Response:
        visible = api.visible_documents(request.user, server=self.get_server())
        documents = self.filtered(visible, request.query_params)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(documents, request, view=self)
        data = s.DocumentSerializer(page, many=True).data
        response: Response = paginator.get_paginated_response(data)
        return response

    def filtered(self, documents: QuerySet[Document], params: Any) -> QuerySet[Document]:
        if "type" in params:
            documents = documents.filter(doc_type=params["type"])
        if "owner" in params:
            documents = documents.filter(owner_id=_user_pk(params["owner"]))
        for name, lookup in (("updated_after", "gt"), ("updated_before", "lt")):
            if name in params:
                documents = documents.filter(**{f"updated_at__{lookup}": _moment(name, params)})
        return documents.select_related(None).order_by("-updated_at", "-pk")

    @documented(
        operation_id="documents_create",
        request=s.CreateDocumentSerializer,
        responses={
            201: s.DocumentDetailSerializer,
            400: FIELD_ERRORS,
            401: UNAUTHENTICATED,
            403: OpenApiResponse(ERROR, description="You may not create documents."),
            409: OpenApiResponse(ERROR, description="A document with this id exists."),
        },
    )
    def post(self, request: Request) -> Response:
        body = s.CreateDocumentSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        doc_id = data.get("id") or new_ulid()
        self.kwargs["doc_id"] = doc_id
        operations = s.decode_values(data.get("operations") or [])
        server = self.get_server()
        try:
            api.create_document(
                doc_id,
                data["type"],
                user=request.user,
                snapshot=data.get("snapshot"),
                operations=operations,
                server=server,
            )
        except PermissionDenied:
            if api.may(request.user, "read", doc_id, server=server):
                raise DocumentExists(doc_id) from None
            raise exceptions.PermissionDenied("You may not create this document.") from None
        detail = _detail(self, doc_id)
        return Response(detail, status=status.HTTP_201_CREATED)


def _user_pk(value: str) -> Any:
    pk = user_pk(value)
    if pk is None:
        raise exceptions.ValidationError({"owner": [f"{value[:40]!r} is not a user id."]})
    return pk


def _moment(name: str, params: Any) -> Any:
    try:
        moment = parse_datetime(params[name])
        if moment is not None and moment.tzinfo is not None:
            # PostgreSQL takes offsets up to 15:59 only: send it in UTC.
            moment = moment.astimezone(datetime.UTC)
    except (ValueError, OverflowError):
        moment = None
    if moment is None:
        raise exceptions.ValidationError({name: ["Give an ISO 8601 date and time."]})
    return moment


def _detail(view: DocsyncAPIView, doc_id: str) -> Any:
    state = api.get_state(doc_id, user=view.request.user, server=view.get_server())
    row = Document.objects.filter(doc_id=doc_id).first()  # get_state decided access
    if row is None:
        raise exceptions.NotFound("No such document.")
    binding = view.get_server().bindings.get(state.doc_type)
    rendered = binding.to_json(state.state) if binding is not None else _plain(state.state)
    data = dict(s.DocumentSerializer(row).data)
    data.update(clock=state.clock, snapshot_clock=state.snapshot_clock)
    data.update(state=rendered, folded=state.folded)
    return data


def _plain(value: Any) -> Any:
    from ..bindings.base import BaseBinding

    return BaseBinding.to_json(BaseBinding(), value)


class DocumentDetailView(DocsyncAPIView):
    """A document: its metadata, clock and current state; delete it (a tombstone)."""

    @documented(
        operation_id="documents_retrieve",
        parameters=[DOC_ID],
        responses={200: s.DocumentDetailSerializer, **COMMON, 409: DELETED},
    )
    def get(self, request: Request, doc_id: str) -> Response:
        return Response(_detail(self, doc_id))

    @documented(
        operation_id="documents_destroy",
        parameters=[DOC_ID],
        responses={204: None, **COMMON, 403: FORBIDDEN, 409: DELETED},
    )
    def delete(self, request: Request, doc_id: str) -> Response:
        if not api.delete_document(doc_id, user=request.user, server=self.get_server()):
            raise Conflict("The document was deleted already.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class OperationsView(DocsyncAPIView):
    """Apply operations to a document, as a client's sync does."""

    @documented(
        operation_id="documents_operations_create",
        parameters=[DOC_ID],
        request=s.OperationsSerializer,
        responses={
            201: s.AppliedSerializer,
            400: FIELD_ERRORS,
            **COMMON,
            403: FORBIDDEN,
            409: DELETED,
        },
    )
    def post(self, request: Request, doc_id: str) -> Response:
        body = s.OperationsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        operations = s.decode_values(body.validated_data["operations"])
        try:
            applied = api.apply_operations(
                doc_id, operations, user=request.user, server=self.get_server()
            )
        except InvalidValue as exc:
            if exc.path == ("type",):  # the document does not exist
                raise exceptions.NotFound("No such document.") from None
            raise
        data = {"id": applied.doc_id, "type": applied.doc_type, "clock": applied.clock}
        return Response(data, status=status.HTTP_201_CREATED)


class SharesView(DocsyncAPIView):
    """A document's shares: list them; add one (owner, managers)."""

    @documented(
        operation_id="documents_shares_list",
        parameters=[DOC_ID],
        responses={200: s.ShareSerializer(many=True), **COMMON, 409: DELETED},
    )
    def get(self, request: Request, doc_id: str) -> Response:
        row = self.document(doc_id)
        shares = row.shares.order_by("pk")
        return Response(s.ShareSerializer(shares, many=True).data)

    @documented(
        operation_id="documents_shares_create",
        parameters=[DOC_ID],
        request=s.ShareSerializer,
        responses={
            201: s.ShareSerializer,
            400: FIELD_ERRORS,
            **COMMON,
            403: FORBIDDEN,
            409: OpenApiResponse(ERROR, description="Deleted, or shared already with them."),
        },
    )
    def post(self, request: Request, doc_id: str) -> Response:
        self.may_manage(doc_id)
        body = s.ShareSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                share = body.save(document=Document.objects.get(doc_id=doc_id))
        except IntegrityError:
            raise Conflict("The document is shared with them already.") from None
        return Response(s.ShareSerializer(share).data, status=status.HTTP_201_CREATED)


SHARE_ID = OpenApiParameter("share_id", int, OpenApiParameter.PATH, description="The share's id.")


class ShareDetailView(DocsyncAPIView):
    """One share: change its role, or remove it (revocation reaches open sockets)."""

    def share(self, doc_id: str, share_id: int) -> DocumentShare:
        self.may_manage(doc_id)
        share = DocumentShare.objects.filter(pk=share_id, document__doc_id=doc_id).first()
        if share is None:
            raise exceptions.NotFound("No such share.")
        return share

    @documented(
        operation_id="documents_shares_partial_update",
        parameters=[DOC_ID, SHARE_ID],
        request=s.ShareRoleSerializer,
        responses={
            200: s.ShareSerializer,
            400: FIELD_ERRORS,
            **COMMON,
            403: FORBIDDEN,
            409: DELETED,
        },
    )
    def patch(self, request: Request, doc_id: str, share_id: int) -> Response:
        share = self.share(doc_id, share_id)
        body = s.ShareRoleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        share.role = body.validated_data["role"]
        share.save(update_fields=["role"])  # a downgrade re-checks open sockets
        return Response(s.ShareSerializer(share).data)

    @documented(
        operation_id="documents_shares_destroy",
        parameters=[DOC_ID, SHARE_ID],
        responses={204: None, **COMMON, 403: FORBIDDEN, 409: DELETED},
    )
    def delete(self, request: Request, doc_id: str, share_id: int) -> Response:
        self.share(doc_id, share_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class PresenceView(DocsyncAPIView):
    """Who is connected to the document right now (every process), and their presence."""

    @documented(
        operation_id="documents_presence_retrieve",
        parameters=[DOC_ID],
        responses={200: s.PresenceSerializer, **COMMON, 409: DELETED},
    )
    def get(self, request: Request, doc_id: str) -> Response:
        self.document(doc_id)
        who = api.connected(doc_id, user=request.user, server=self.get_server())
        members = [
            {"user_id": m.user_id, "device_id": m.device_id, "client_id": m.client_id}
            for m in who.members
        ]
        return Response({"members": members, "presence": who.presence})


CLOCK = OpenApiParameter("clock", int, OpenApiParameter.PATH, description="A clock.")
HISTORY_GONE = OpenApiResponse(ERROR, description="Deleted, or that history is not kept.")


class HistoryView(DocsyncAPIView):
    """The document's timeline: who changed it, when, from where, how much."""

    @documented(
        operation_id="documents_history_list",
        parameters=[
            DOC_ID,
            OpenApiParameter("before_clock", int, description="Only entries below this clock."),
            OpenApiParameter("limit", int, description="Entries per page (1 to 500, 50)."),
        ],
        responses={200: s.HistorySerializer, 400: FIELD_ERRORS, **COMMON, 409: DELETED},
    )
    def get(self, request: Request, doc_id: str) -> Response:
        before = _integer(request.query_params, "before_clock", None, 0)
        limit = _integer(request.query_params, "limit", 50, 1, 500)
        entries = api.history(
            doc_id, user=request.user, before_clock=before, limit=limit, server=self.get_server()
        )
        results = [vars(entry) for entry in entries]
        more = len(entries) == limit and entries[-1].clock > 0
        return Response(
            {"results": results, "next_before_clock": entries[-1].clock if more else None}
        )


def _integer(params: Any, name: str, default: int | None, low: int, high: int = 2**53) -> Any:
    if name not in params:
        return default
    try:
        value = int(params[name])
    except ValueError:
        raise exceptions.ValidationError({name: ["Give a whole number."]}) from None
    if not low <= value <= high:
        raise exceptions.ValidationError({name: [f"Give a number from {low} to {high}."]})
    return value


class StateAtView(DocsyncAPIView):
    """The document's state at one clock, rebuilt from its history."""

    @documented(
        operation_id="documents_history_retrieve",
        parameters=[DOC_ID, CLOCK],
        responses={200: s.StateAtSerializer, 400: FIELD_ERRORS, **COMMON, 409: HISTORY_GONE},
    )
    def get(self, request: Request, doc_id: str, clock: int) -> Response:
        server = self.get_server()
        state = api.state_at(doc_id, clock, user=request.user, server=server)
        row = Document.objects.filter(doc_id=doc_id).first()
        binding = server.bindings.get(row.doc_type if row is not None else "")
        rendered = binding.to_json(state) if binding is not None else _plain(state)
        return Response({"clock": clock, "state": rendered})


class RestoreView(DocsyncAPIView):
    """Restore the state of an older clock as a new change (every client follows)."""

    @documented(
        operation_id="documents_restore_create",
        parameters=[DOC_ID],
        request=s.RestoreSerializer,
        responses={
            201: s.RestoredSerializer,
            400: FIELD_ERRORS,
            **COMMON,
            403: FORBIDDEN,
            409: HISTORY_GONE,
        },
    )
    def post(self, request: Request, doc_id: str) -> Response:
        body = s.RestoreSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        clock = body.validated_data["clock"]
        restored = api.restore(doc_id, clock, user=request.user, server=self.get_server())
        data = {"id": restored.doc_id, "clock": restored.clock, "new_clock": restored.new_clock}
        return Response(data, status=status.HTTP_201_CREATED)


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_ulid() -> str:
    """A new lowercase ULID (what DocNode document ids are)."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
