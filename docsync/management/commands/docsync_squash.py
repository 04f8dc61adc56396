"""``manage.py docsync_squash [doc_id ...] [--all]``: squash documents now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import F

from docsync.default import default_bindings, default_provider
from docsync.models import Document
from docsync.providers.base import BaseProvider
from docsync.providers.orm import ORMProvider
from docsync.squash import squash_document

from ._progress import ProgressBar


class Command(BaseCommand):
    help = (
        "Fold documents' operation logs into their snapshots with the configured "
        "provider and bindings. Safe while the server runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("doc_ids", nargs="*", metavar="doc_id", help="Documents to squash.")
        parser.add_argument(
            "--all",
            action="store_true",
            help="Squash every document with pending batches (ORMProvider only).",
        )

    def handle(  # noqa: A002
        self, *args: Any, doc_ids: list[str], all: bool, verbosity: int, **options: Any
    ) -> None:
        if bool(doc_ids) == all:
            raise CommandError("Name the documents to squash, or pass --all (not both).")
        provider = default_provider()
        if all:
            doc_ids = self.pending_documents(provider)
        registry = default_bindings()
        progress = ProgressBar(self.stdout, len(doc_ids)) if verbosity else None
        squashed = folded = failed = 0
        for done, doc_id in enumerate(doc_ids, 1):
            try:
                result = squash_document(provider, registry, doc_id)
            except Exception as exc:  # noqa: BLE001  (reported; the others go on)
                failed += 1
                self.stderr.write(f"{doc_id}: {exc.__class__.__name__}: {exc}")
            else:
                if result is not None:
                    squashed, folded = squashed + 1, folded + result.batches
            if progress:
                progress.update(done)
        untouched = len(doc_ids) - squashed - failed
        if verbosity:
            self.stdout.write(
                f"Squashed {squashed} document(s), folding {folded} batch(es); "
                f"{untouched} had nothing to squash or no binding; {failed} failed."
            )
        if failed:
            raise CommandError(f"{failed} document(s) could not be squashed; see above.")

    def pending_documents(self, provider: BaseProvider) -> list[str]:
        if not isinstance(provider, ORMProvider):
            raise CommandError(
                f"--all needs docsync's ORMProvider, but DOCSYNC['PROVIDER'] is "
                f"{type(provider).__name__}; name the documents instead."
            )
        documents = Document.objects.using(provider.using).filter(
            deleted_at__isnull=True, latest_clock__gt=F("snapshot_clock")
        )
        return list(documents.order_by("pk").values_list("doc_id", flat=True))
