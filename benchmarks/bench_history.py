"""What keeping history costs a squash, and what reading it costs.

    python benchmarks/bench_history.py [--database-url postgres://postgres@127.0.0.1:5432/bench]
        [--batches 10000] [--every 100] [--rounds 30]

On the given database (migrated; the benchmark's three documents are
replaced) with ``ORMProvider``, prints:

- squash: the write of a squash of ``--every`` batches (the fold itself is a
  list binding's, nearly free), p50 / p99 over ``--rounds`` squashes, with
  history (batches moved to ``docsync_historybatch``, a version stored) and
  without (a provider whose history methods are the base defaults: the
  batches deleted, as before history);
- for a document of ``--batches`` batches squashed every ``--every``: the
  newest timeline page (50 entries), a page in the middle, ``state_at`` of
  random clocks (version + up to ``--every`` batches, folded), and a restore.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(url: str) -> None:
    import django
    from django.conf import settings
    from django.core.management import call_command

    from docsync.utils import database_from_url

    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "docsync"],
        DATABASES={"default": database_from_url(url)},
        USE_TZ=True,
    )
    django.setup()
    call_command("migrate", verbosity=0)


def timed(func: Any) -> float:
    started = time.perf_counter()
    func()
    return (time.perf_counter() - started) * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(name: str, values: list[float]) -> None:
    print(
        f"{name:<44} p50 {statistics.median(values):8.2f} ms  p99 {pct(values, 0.99):8.2f} ms  "
        f"(n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    setup(args.database_url)
    from docsync.models import Document

    Document.objects.filter(doc_id__in=["squash-history", "squash-none", "big"]).delete()
    run(args)


def run(args: argparse.Namespace) -> None:
    from django.db import transaction as db_transaction

    from docsync.bindings import BindingRegistry
    from docsync.history import document_history, restore_document, state_at
    from docsync.providers.base import Origin, ProviderTransaction
    from docsync.providers.orm import ORMProvider, ORMTransaction
    from docsync.squash import squash_document
    from tests.bindings import ListBinding

    class NoHistoryTransaction(ORMTransaction):
        archive_operations = ProviderTransaction.archive_operations
        save_version = ProviderTransaction.save_version

    class NoHistoryProvider(ORMProvider):
        """ORMProvider's transaction with the base class's history methods."""

        @contextmanager
        def transaction(self, mode, doc_id, *, doc_type=None):  # type: ignore[override]
            tx = NoHistoryTransaction(doc_id, mode, doc_type, self.using)
            with db_transaction.atomic(using=self.using):
                tx.lock()
                yield tx
                tx.flush()

    registry = BindingRegistry()
    registry.register("list", ListBinding())
    origin = Origin(None, "bench-device", "bench-client")
    ops = [[[0, [["n", "p"]], 0, 0, 0]], {"n": {"text": '"' + "x" * 200 + '"'}}]

    def append(provider: ORMProvider, doc_id: str, count: int) -> None:
        with provider.transaction("readwrite", doc_id, doc_type="list") as tx:
            for _ in range(count):
                tx.save_operations([ops], origin)

    def squash_time(provider: ORMProvider, doc_id: str) -> float:
        append(provider, doc_id, args.every)
        return timed(lambda: squash_document(provider, registry, doc_id))

    print("PostgreSQL, ORMProvider; batches of one ~250-byte operations value")
    history, plain = ORMProvider(using="default"), NoHistoryProvider(using="default")
    with_history, without = [], []
    for _ in range(args.rounds):  # interleaved: both see the same load
        without.append(squash_time(plain, "squash-none"))
        with_history.append(squash_time(history, "squash-history"))
    line(f"squash of {args.every} batches, no history (before)", without)
    line(f"squash of {args.every} batches, with history", with_history)

    provider = ORMProvider(using="default")
    started = time.perf_counter()
    for _ in range(0, args.batches, args.every):
        append(provider, "big", args.every)
        squash_document(provider, registry, "big")
    print(f"built a document of {args.batches} batches in {time.perf_counter() - started:.1f} s")
    rng = random.Random(1)
    line(
        "timeline: newest page (50 entries)",
        [timed(lambda: document_history(provider, "big")) for _ in range(args.rounds)],
    )
    middle = args.batches // 2
    line(
        "timeline: a page in the middle",
        [
            timed(lambda: document_history(provider, "big", before_clock=middle))
            for _ in range(args.rounds)
        ],
    )
    clocks = [rng.randint(1, args.batches) for _ in range(args.rounds)]
    line(
        "state_at a random clock (version + batches)",
        [timed(lambda c=c: state_at(provider, registry, "big", c)) for c in clocks],
    )
    line(
        "state_at the oldest clock (1)",
        [timed(lambda: state_at(provider, registry, "big", 1)) for _ in range(args.rounds)],
    )
    line(
        "restore a random clock",
        [timed(lambda c=c: restore_document(provider, registry, "big", c)) for c in clocks[:10]],
    )


if __name__ == "__main__":
    main()
