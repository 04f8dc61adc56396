"""Request and response shapes of the REST API (and of its OpenAPI schema)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import fields, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.relations import PrimaryKeyRelatedField

from ..models import Document, DocumentShare, ShareRole
from ..requests import MAX_ID_LENGTH


def decode_values(values: list[Any]) -> list[Any]:
    """Operations values from JSON: ``{"base64": "..."}`` stands for bytes (Yjs updates)."""
    return [_decoded(value) for value in values]


def _decoded(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("base64 is not valid Base64.") from None
    return value


class DocumentSerializer(serializers.ModelSerializer):
    """A document's metadata, as listed."""

    id = fields.CharField(source="doc_id", read_only=True)
    type = fields.CharField(source="doc_type", read_only=True)
    owner = PrimaryKeyRelatedField(read_only=True)
    clock = fields.IntegerField(source="latest_clock", read_only=True)
    snapshot_clock = fields.IntegerField(read_only=True)
    private = fields.BooleanField(read_only=True)
    deleted = fields.SerializerMethodField()

    class Meta:
        model = Document
        fields = [
            "id",
            "type",
            "owner",
            "clock",
            "snapshot_clock",
            "private",
            "deleted",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_deleted(self, document: Document) -> bool:
        return document.deleted_at is not None


class DocumentDetailSerializer(DocumentSerializer):
    """A document's metadata, clock and current state (rendered by its binding as JSON)."""

    state = fields.JSONField(read_only=True, allow_null=True)
    folded = fields.BooleanField(
        read_only=True, help_text="Whether pending batches were folded into the state."
    )

    class Meta(DocumentSerializer.Meta):
        fields = [*DocumentSerializer.Meta.fields, "state", "folded"]
        read_only_fields = fields


class CreateDocumentSerializer(serializers.Serializer):
    """Create a document, as a client's first sync would."""

    id = fields.CharField(
        required=False,
        max_length=MAX_ID_LENGTH,
        help_text="The document id; a new lowercase ULID when left out.",
    )
    type = fields.CharField(max_length=MAX_ID_LENGTH)
    snapshot = fields.JSONField(
        required=False,
        allow_null=True,
        help_text="The first snapshot; the binding's empty document when left out.",
    )
    operations = fields.ListField(
        child=fields.JSONField(allow_null=True),
        required=False,
        help_text='Operations values stored as the first batch ({"base64": ...} for bytes).',
    )


class OperationsSerializer(serializers.Serializer):
    """Operations to store as one batch, as a client's ``sync`` sends them."""

    operations = fields.ListField(
        child=fields.JSONField(allow_null=True),
        allow_empty=False,
        help_text='Operations values, each as the binding takes it ({"base64": ...} for bytes).',
    )


class AppliedSerializer(serializers.Serializer):
    """What a write stored."""

    id = fields.CharField()
    type = fields.CharField()
    clock = fields.IntegerField(help_text="The clock of the stored batch.")


class ShareSerializer(serializers.ModelSerializer):
    """Access to a document for one user or one group."""

    user = PrimaryKeyRelatedField(
        queryset=get_user_model()._default_manager.all(), required=False, allow_null=True
    )
    group = PrimaryKeyRelatedField(queryset=Group.objects.all(), required=False, allow_null=True)
    role = fields.ChoiceField(choices=ShareRole.choices, default=ShareRole.VIEWER)

    class Meta:
        model = DocumentShare
        fields = ["id", "user", "group", "role", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators: list[Any] = []  # the view checks uniqueness (one share per user or group)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is not None:
            return attrs
        if (attrs.get("user") is None) == (attrs.get("group") is None):
            raise ValidationError({"user": ["Give a user or a group, not both."]})
        return attrs


class ShareRoleSerializer(serializers.Serializer):
    """A share's new role."""

    role = fields.ChoiceField(choices=ShareRole.choices)


class MemberSerializer(serializers.Serializer):
    """One connection subscribed to the document."""

    user_id = fields.CharField()
    device_id = fields.CharField()
    client_id = fields.CharField()


class PresenceSerializer(serializers.Serializer):
    """Who is connected to the document right now, on every process, and their presence."""

    members = MemberSerializer(many=True)
    presence = fields.DictField(child=fields.JSONField(), help_text="Presence values by client id.")


class HistoryEntrySerializer(serializers.Serializer):
    """One change in the document's timeline."""

    clock = fields.IntegerField()
    kind = fields.ChoiceField(
        choices=["batch", "restore", "snapshot", "squash"],
        help_text="batch: operations a client (or the server) sent; restore: an older state "
        "stored again; snapshot: a client's first snapshot; squash: a squash result.",
    )
    user_id = fields.CharField(allow_null=True)
    device_id = fields.CharField(allow_null=True, allow_blank=True)
    client_id = fields.CharField(allow_null=True, allow_blank=True)
    created_at = fields.DateTimeField(allow_null=True)
    operations = fields.IntegerField(help_text="How many operations values (batches).")
    restored_from = fields.IntegerField(allow_null=True)
    version = fields.BooleanField(help_text="Whether the whole state at this clock is kept.")


class HistorySerializer(serializers.Serializer):
    """A page of the timeline, newest first."""

    results = HistoryEntrySerializer(many=True)
    next_before_clock = fields.IntegerField(
        allow_null=True, help_text="Pass as before_clock for the next (older) page."
    )


class StateAtSerializer(serializers.Serializer):
    """The document's state at one clock, rendered by its binding as JSON."""

    clock = fields.IntegerField()
    state = fields.JSONField(allow_null=True)


class RestoreSerializer(serializers.Serializer):
    """Restore the state of ``clock`` as a new change."""

    clock = fields.IntegerField(min_value=0)


class RestoredSerializer(serializers.Serializer):
    """What a restore stored."""

    id = fields.CharField()
    clock = fields.IntegerField(help_text="The clock whose state was restored.")
    new_clock = fields.IntegerField(help_text="The clock the restored state was stored at.")
