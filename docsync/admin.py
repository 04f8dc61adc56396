"""Admin for documents: look, squash, delete; never touch clocks by hand.

Clocks and snapshots are read-only. Squashing and deleting go through
``ORMProvider`` (the document's lock, a tombstone on delete) rather than raw
row operations, so nothing done here can break a client's sync.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.db.models.functions import Length
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timesince import timesince
from django.utils.timezone import localtime

from .bindings.base import BaseBinding
from .default import default_bindings, orm_provider_for
from .exceptions import DocSyncError
from .history import HistoryEntry, document_history, restore_document, state_at
from .models import BINARY_TYPES, Document, DocumentShare, OperationBatch
from .squash import squash_document

RENDER_LIMIT = 100_000
PREVIEW_LIMIT = 1_000
PREVIEW_LINES = 12
#: Entries of the history timeline per page of a document's change page.
TIMELINE_PAGE = 50


def _pre(text: str) -> str:
    return format_html(
        '<pre style="white-space: pre-wrap; overflow-wrap: anywhere; max-height: 40em; '
        'overflow: auto">{}</pre>',
        text,
    )


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("no", "Live"), ("yes", "Deleted (tombstones)")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(deleted_at__isnull=self.value() == "no")
        return queryset


class SquashErrorFilter(admin.SimpleListFilter):
    title = "squash error"
    parameter_name = "squash_error"

    def lookups(self, request, model_admin):
        return [("yes", "Failed"), ("no", "OK")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(squash_error="")
        if self.value() == "no":
            return queryset.filter(squash_error="")
        return queryset


class ReadOnlyMixin:
    """Viewable, never added, changed or deleted through the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PendingBatchInline(ReadOnlyMixin, admin.TabularInline):
    model = OperationBatch
    verbose_name_plural = "pending batches (not yet squashed)"
    fields = ("clock", "user", "device_id", "client_id", "created_at", "operations_preview")
    readonly_fields = fields
    ordering = ("clock",)
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("document", "user")

    @admin.display(description="operations")
    def operations_preview(self, batch: OperationBatch) -> str:
        # Long values wrap anywhere: a hex or JSON run must not widen the page.
        return format_html(
            '<pre style="white-space: pre-wrap; overflow-wrap: anywhere; margin: 0">{}</pre>',
            _render_batch(batch, PREVIEW_LINES, PREVIEW_LIMIT),
        )


def _render_batch(batch: OperationBatch, max_lines: int, limit: int) -> str:
    """A batch as its binding describes it (one block per operations value)."""
    binding = default_bindings().get(batch.document.doc_type)
    render = binding.render_operations if binding is not None else BaseBinding().render_operations
    lines: list[str] = []
    for value in batch.get_operations():
        lines.extend(render(value).splitlines())
    if len(lines) > max_lines:
        lines[max_lines:] = [f"… ({len(lines) - max_lines} more lines)"]
    text = "\n".join(lines)
    return text if len(text) <= limit else text[:limit] + " …"


def render_state(doc_type: str, value: Any) -> str:
    """A snapshot (or a state rebuilt from history) as its binding renders it, as HTML."""
    if value is None:
        return "(no snapshot)"
    binding = default_bindings().get(doc_type)
    try:
        if binding is not None:
            text = binding.render(value)
        elif isinstance(value, BINARY_TYPES):
            text = f"<{len(value)} bytes>"
        else:
            text = json.dumps(value, indent=2, ensure_ascii=False)
    except Exception as exc:  # noqa: BLE001  (a broken snapshot still gets a page)
        text = f"Cannot render this snapshot: {exc.__class__.__name__}: {exc}"
    if len(text) > RENDER_LIMIT:
        text = text[:RENDER_LIMIT] + f"\n… ({len(text) - RENDER_LIMIT:,} more characters)"
    return _pre(text)


class DocumentShareInline(admin.TabularInline):
    """Who else may read, write or delete the document (besides its owner).

    Users and groups are picked by name with autocomplete when their admins
    have ``search_fields`` (Django's own do); otherwise by primary key.
    """

    model = DocumentShare
    fields = ("user", "group", "role", "created_at")
    readonly_fields = ("created_at",)
    raw_id_fields = ("user", "group")
    extra = 0

    def get_autocomplete_fields(self, request):
        return searchable_relations(self.admin_site, self.model, ("user", "group"))


def searchable_relations(site: admin.AdminSite, model: Any, names: tuple[str, ...]) -> list[str]:
    """Those of the foreign keys ``names`` whose target's admin can search (autocomplete)."""
    fields = []
    for name in names:
        target = model._meta.get_field(name).related_model
        target_admin = site._registry.get(target)
        if target_admin is not None and target_admin.get_search_fields(None):
            fields.append(name)
    return fields


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    # Narrow columns: with the navigation and filter sidebars open, a 1280 px
    # wide window leaves about 630 px for the table. Clocks are on the change
    # page; "pending" also says "deleted" or "squash failed" (both filters).
    # "clocks" is the latest clock, and the one folded into the snapshot.
    list_display = (
        "document",
        "doc_type",
        "owner",
        "clocks",
        "pending_batches",
        "snapshot_size",
        "updated",
    )
    list_filter = ("doc_type", "updated_at", DeletedFilter, SquashErrorFilter)
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    ordering = ("-updated_at",)
    fields = (
        "doc_id",
        "doc_type",
        "owner",
        "private",
        "snapshot_clock",
        "latest_clock",
        "pending_batches_detail",
        "snapshot_size_detail",
        "rendered_snapshot",
        "created_at",
        "updated_at",
        "deleted_at",
        "squash_error",
    )
    readonly_fields = tuple(name for name in fields if name not in ("owner", "private"))
    inlines = [DocumentShareInline, PendingBatchInline]
    actions = ["squash_now", "delete_leaving_tombstone"]

    def get_search_fields(self, request):
        return ("doc_id", f"owner__{get_user_model().USERNAME_FIELD}")

    def get_autocomplete_fields(self, request):
        return searchable_relations(self.admin_site, self.model, ("owner",))

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .defer("snapshot")
            .annotate(
                pending_count=F("latest_clock") - F("snapshot_clock"),
                snapshot_bytes=Length("snapshot"),
            )
        )

    def has_add_permission(self, request):
        return False  # documents come from clients

    # Columns.

    @admin.display(description="document id", ordering="doc_id")
    def document(self, doc: Document) -> str:
        return format_html(
            '<span style="font-family: var(--font-family-monospace); font-size: 0.75rem">{}</span>',
            doc.doc_id,
        )

    @admin.display(description="clocks", ordering="latest_clock")
    def clocks(self, doc: Document) -> str:
        """The latest clock, and (quieter) the clock the snapshot holds."""
        return format_html(
            '<span style="white-space: nowrap">{} <small style="color: var(--body-quiet-color)" '
            'title="the clock folded into the snapshot">snap&nbsp;{}</small></span>',
            doc.latest_clock,
            doc.snapshot_clock,
        )

    @admin.display(description="pending", ordering="pending_count")
    def pending_batches(self, doc: Document) -> str:
        """Batches not squashed yet; a tombstone has none, whatever its clocks say."""
        if doc.deleted_at is not None:
            return format_html('<span style="color: var(--body-quiet-color)">{}</span>', "deleted")
        if doc.squash_error:
            return format_html(
                '{} <span style="color: var(--error-fg)" title="{}">squash failed</span>',
                doc.pending,
                doc.squash_error,
            )
        return str(doc.pending)

    @admin.display(description="snapshot", ordering="snapshot_bytes")
    def snapshot_size(self, doc: Document) -> str:
        size = getattr(doc, "snapshot_bytes", None)
        return "—" if size is None else f"{size:,} B"

    # The same on the change page, under their full names.

    @admin.display(description="pending batches")
    def pending_batches_detail(self, doc: Document) -> str:
        return self.pending_batches(doc)

    @admin.display(description="snapshot size")
    def snapshot_size_detail(self, doc: Document) -> str:
        return self.snapshot_size(doc)

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, doc: Document) -> str:
        return format_html(
            '<span title="{}">{} ago</span>',
            date_format(localtime(doc.updated_at), "DATETIME_FORMAT"),
            timesince(doc.updated_at, depth=1),
        )

    # Boolean columns, for projects that list them (not shown by default).

    @admin.display(description="squash error", boolean=True)
    def has_squash_error(self, doc: Document) -> bool:
        return bool(doc.squash_error)

    @admin.display(description="deleted", boolean=True, ordering="deleted_at")
    def is_deleted(self, doc: Document) -> bool:
        return doc.deleted_at is not None

    @admin.display(description="snapshot")
    def rendered_snapshot(self, doc: Document) -> str:
        return render_state(doc.doc_type, doc.get_snapshot())

    # Saving and deleting: through the provider, never raw.

    def save_model(self, request, obj, form, change):
        # Only the owner and privacy are editable; saving every field would
        # write back clocks read before a concurrent sync.
        obj.save(update_fields=["owner", "private"])

    def delete_model(self, request, obj):
        self._tombstone(obj._state.db, [obj.doc_id])

    def delete_queryset(self, request, queryset):
        self._tombstone(queryset.db, list(queryset.values_list("doc_id", flat=True)))

    def get_deleted_objects(self, objs, request):
        # The rows stay as tombstones; their batches go with the delete.
        names = [f"{doc} (leaves a tombstone)" for doc in objs]
        perms_needed = set() if self.has_delete_permission(request) else {"document"}
        return names, {"documents": len(names)}, perms_needed, []

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_leaving_tombstone
        return actions

    def _tombstone(self, using: str, doc_ids: list[str]) -> int:
        provider = orm_provider_for(using)
        deleted = 0
        for doc_id in doc_ids:
            with provider.transaction("readwrite", doc_id) as tx:
                deleted += tx.delete_doc()
        return deleted

    # Actions.

    @admin.action(description="Squash now", permissions=["change"])
    def squash_now(self, request, queryset):
        self._squash(request, queryset.db, list(queryset.values_list("doc_id", flat=True)))

    def _squash(self, request, using: str, doc_ids: list[str]) -> None:
        provider, registry = orm_provider_for(using), default_bindings()
        squashed, failures, skipped = 0, [], []
        for doc_id in doc_ids:
            try:
                done = squash_document(provider, registry, doc_id) is not None
            except Exception as exc:  # noqa: BLE001  (recorded on the document too)
                failures.append(f"{doc_id}: {exc.__class__.__name__}: {exc}")
                continue
            squashed += done
            if not done:
                skipped.append(doc_id)
        if squashed or not (failures or skipped):
            self.message_user(request, f"Squashed {squashed} document(s).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"Nothing squashed for {', '.join(skipped)}: no pending batches, deleted, "
                "or no binding for the document's type in DOCSYNC['BINDINGS'].",
                messages.WARNING,
            )
        for failure in failures:
            self.message_user(request, f"Squash failed for {failure}", messages.ERROR)

    # The change page's "Squash now" button (change_form.html) posts here.

    def get_urls(self):
        opts = self.opts
        squash = path(
            "<path:object_id>/squash/",
            self.admin_site.admin_view(self.squash_view),
            name=f"{opts.app_label}_{opts.model_name}_squash",
        )
        state = path(
            "<path:object_id>/history/<int:clock>/",
            self.admin_site.admin_view(self.state_view),
            name=f"{opts.app_label}_{opts.model_name}_state",
        )
        restore = path(
            "<path:object_id>/restore/",
            self.admin_site.admin_view(self.restore_view),
            name=f"{opts.app_label}_{opts.model_name}_restore",
        )
        return [squash, state, restore, *super().get_urls()]

    def squash_view(self, request, object_id):
        doc = self.get_object(request, unquote(object_id))
        if doc is None:
            raise Http404("No such document.")
        if request.method != "POST" or not self.has_change_permission(request, doc):
            raise PermissionDenied
        self._squash(request, doc._state.db, [doc.doc_id])
        return HttpResponseRedirect(self._change_url(doc))

    def _change_url(self, doc: Document) -> str:
        opts = self.opts
        return reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change",
            args=[quote(doc.pk)],
            current_app=self.admin_site.name,
        )

    # History: the timeline under the change form, a state page, restore.

    def change_view(self, request, object_id, form_url="", extra_context=None):
        doc = self.get_object(request, unquote(object_id))
        if doc is not None and doc.deleted_at is None:
            extra_context = {**(extra_context or {}), **self._timeline(request, doc)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _timeline(self, request, doc: Document) -> dict[str, Any]:
        before = request.GET.get("history_before")
        before_clock = int(before) if before and before.isdigit() else None
        provider = orm_provider_for(doc._state.db)
        try:
            entries = document_history(
                provider, doc.doc_id, before_clock=before_clock, limit=TIMELINE_PAGE
            )
        except DocSyncError:
            return {}
        users = _users(doc._state.db, entries)
        rows = [(entry, users.get(entry.user_id)) for entry in entries]
        more = len(entries) == TIMELINE_PAGE and entries[-1].clock > 0
        return {
            "docsync_timeline": rows,
            "docsync_timeline_before": entries[-1].clock if more else None,
            "docsync_timeline_paged": before_clock is not None,
            "docsync_can_restore": self.has_change_permission(request, doc),
        }

    def state_view(self, request, object_id, clock):
        doc = self.get_object(request, unquote(object_id))
        if doc is None or doc.deleted_at is not None:
            raise Http404("No such document.")
        if not self.has_view_or_change_permission(request, doc):
            raise PermissionDenied
        provider = orm_provider_for(doc._state.db)
        try:
            state = state_at(provider, default_bindings(), doc.doc_id, clock)
        except DocSyncError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(self._change_url(doc))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": doc,
            "title": f"{doc} at clock {clock}",
            "clock": clock,
            "rendered": render_state(doc.doc_type, state),
            "change_url": self._change_url(doc),
            "docsync_can_restore": self.has_change_permission(request, doc),
        }
        return TemplateResponse(request, "admin/docsync/document/state.html", context)

    def restore_view(self, request, object_id):
        doc = self.get_object(request, unquote(object_id))
        if doc is None:
            raise Http404("No such document.")
        if request.method != "POST" or not self.has_change_permission(request, doc):
            raise PermissionDenied
        clock = request.POST.get("clock", "")
        if not clock.isdigit():
            self.message_user(request, f"Not a clock: {clock!r}.", messages.ERROR)
            return HttpResponseRedirect(self._change_url(doc))
        provider = orm_provider_for(doc._state.db)
        try:
            done = restore_document(
                provider, default_bindings(), doc.doc_id, int(clock), request.user
            )
        except DocSyncError as exc:
            self.message_user(request, f"Not restored: {exc.message}", messages.ERROR)
        else:
            self.message_user(
                request,
                f"Restored {doc} to its state at clock {done.clock}, as clock {done.new_clock}; "
                "connected clients receive it on their next sync.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(self._change_url(doc))

    @admin.action(description="Delete (leave tombstone)", permissions=["delete"])
    def delete_leaving_tombstone(self, request, queryset):
        deleted = self._tombstone(queryset.db, list(queryset.values_list("doc_id", flat=True)))
        self.message_user(request, f"Deleted {deleted} document(s); tombstones remain.")


def _users(using: str, entries: list[HistoryEntry]) -> dict[str | None, Any]:
    """The users named by ``entries``, by their pk as a string."""
    model = get_user_model()
    pks = set()
    for entry in entries:
        if entry.user_id is not None:
            try:
                pks.add(model._meta.pk.to_python(entry.user_id))
            except Exception:  # noqa: BLE001, S112  (a pk of another user model: shown as is)
                continue
    found = model._default_manager.db_manager(using).in_bulk(pks)
    return {str(pk): user for pk, user in found.items()}


@admin.register(OperationBatch)
class OperationBatchAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("document", "clock", "user", "device_id", "client_id", "created_at")
    list_select_related = ("document", "user")
    search_fields = ("document__doc_id", "device_id", "client_id")
    fields = (
        "document",
        "clock",
        "user",
        "device_id",
        "client_id",
        "created_at",
        "rendered_operations",
    )
    readonly_fields = fields
    ordering = ("-created_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("operations")

    @admin.display(description="operations")
    def rendered_operations(self, batch: OperationBatch) -> str:
        return _pre(_render_batch(batch, RENDER_LIMIT, RENDER_LIMIT))


from .webhooks import admin as _webhooks_admin  # noqa: E402, F401  (registers its models)
