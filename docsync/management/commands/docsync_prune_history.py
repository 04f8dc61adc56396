"""``manage.py docsync_prune_history [doc_id ...] [--all]``: forget old history.

Keeps what ``DOCSYNC["HISTORY_RETENTION"]`` says (``docsync.history``);
safe while the server runs (each document in its own short transaction).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from docsync.conf import docsync_settings
from docsync.default import default_provider
from docsync.history import prune_document
from docsync.models import Document
from docsync.providers.base import BaseProvider
from docsync.providers.orm import ORMProvider

from ._progress import ProgressBar


class Command(BaseCommand):
    help = (
        "Delete the history (versions and folded batches) that "
        "DOCSYNC['HISTORY_RETENTION'] does not keep. Safe while the server runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("doc_ids", nargs="*", metavar="doc_id", help="Documents to prune.")
        parser.add_argument(
            "--all", action="store_true", help="Prune every live document (ORMProvider only)."
        )

    def handle(  # noqa: A002
        self, *args: Any, doc_ids: list[str], all: bool, verbosity: int, **options: Any
    ) -> None:
        if bool(doc_ids) == all:
            raise CommandError("Name the documents to prune, or pass --all (not both).")
        retention = docsync_settings.HISTORY_RETENTION
        if retention is None:
            if verbosity:
                self.stdout.write("DOCSYNC['HISTORY_RETENTION'] is None: all history is kept.")
            return
        provider = default_provider()
        if all:
            doc_ids = self.live_documents(provider)
        progress = ProgressBar(self.stdout, len(doc_ids)) if verbosity else None
        versions = batches = pruned = 0
        for done, doc_id in enumerate(doc_ids, 1):
            removed = prune_document(provider, doc_id, retention)
            versions, batches = versions + removed[0], batches + removed[1]
            pruned += any(removed)
            if progress:
                progress.update(done)
        if verbosity:
            self.stdout.write(
                f"Pruned {versions} version(s) and {batches} batch(es) of history from "
                f"{pruned} of {len(doc_ids)} document(s) (retention {retention!r})."
            )

    def live_documents(self, provider: BaseProvider) -> list[str]:
        if not isinstance(provider, ORMProvider):
            raise CommandError(
                f"--all needs docsync's ORMProvider, but DOCSYNC['PROVIDER'] is "
                f"{type(provider).__name__}; name the documents instead."
            )
        documents = Document.objects.using(provider.using).filter(deleted_at__isnull=True)
        return list(documents.order_by("pk").values_list("doc_id", flat=True))
