"""No acknowledged operation is ever missing from history, whatever runs at once.

Writers sync through ``docsync.sync.sync_document`` (PostgresProvider answers
them with its one-statement function) while other threads squash and
restore the same document, each thread on its own connection to a real
PostgreSQL (and MariaDB). Afterwards every batch a writer was acknowledged
is in history with its operations and origin, every clock is a batch or a
restore, and the state at the last clock is the fold of it all.
"""

from __future__ import annotations

import random
import time

import pytest

from docsync.bindings import BindingRegistry
from docsync.history import document_history, restore_document, state_at
from docsync.providers.base import BaseProvider, Origin
from docsync.providers.orm import ORMProvider
from docsync.providers.postgres import PostgresProvider
from docsync.requests import SyncRequest
from docsync.squash import squash_document
from docsync.sync import sync_document
from tests.bindings import ListBinding
from tests.conftest_db import db_param, require_database
from tests.test_orm_concurrency import run_threads

WRITERS = 6
SYNCS = 40
SQUASHERS = 2
RESTORES = 5

PROVIDERS = [
    db_param("postgres", "postgres", id="orm-postgres"),
    db_param("postgres-provider", "postgres", id="postgres"),
    db_param("mariadb", "mariadb", id="orm-mariadb"),
]


@pytest.fixture(params=PROVIDERS)
def provider(request) -> BaseProvider:
    if request.param == "postgres-provider":
        require_database("postgres")
        return PostgresProvider(using="postgres")
    require_database(request.param)
    return ORMProvider(using=request.param)


def bindings() -> BindingRegistry:
    registry = BindingRegistry()
    registry.register("list", ListBinding())
    return registry


def test_history_keeps_every_acknowledged_batch_through_squashes_and_restores(provider):
    acked: dict[int, tuple[list, Origin]] = {}
    restores: list[int] = []
    finished: list[int] = []  # writers done (list.append is atomic)

    def write(thread: int) -> None:
        origin = Origin(device_id=f"device-{thread}", client_id=f"client-{thread}")
        clock = 0
        for i in range(SYNCS):
            ops = [f"{thread}.{i}", f"{thread}.{i}+"]
            req = SyncRequest("list", "doc", ops, None, clock)
            outcome = sync_document(provider, req, origin, bindings())
            acked[outcome.clock] = (ops, origin)
            clock = outcome.clock

    def squash(thread: int) -> None:
        while len(finished) < WRITERS:
            squash_document(provider, bindings(), "doc")

    def restore(thread: int) -> None:
        rng = random.Random(thread)
        total = WRITERS * SYNCS
        for n in range(1, RESTORES + 1):
            while len(acked) < n * total // (RESTORES + 1) and len(finished) < WRITERS:
                time.sleep(0.005)  # spread the restores over the writes
            entries = document_history(provider, "doc", limit=20)
            clock = rng.choice(entries).clock
            restores.append(restore_document(provider, bindings(), "doc", clock).new_clock)

    def work(thread: int) -> None:
        if thread < WRITERS:
            try:
                write(thread)
            finally:
                finished.append(thread)
        elif thread < WRITERS + SQUASHERS:
            squash(thread)
        else:
            restore(thread)

    run_threads(WRITERS + SQUASHERS + 1, work)
    squash_document(provider, bindings(), "doc")

    assert len(acked) == WRITERS * SYNCS
    with provider.transaction("readonly", "doc") as tx:
        record = tx.get_serialized_doc()
        history = {batch.clock: batch for batch in tx.get_history()}
        versions = {version.clock: version for version in tx.get_versions()}
    for clock, (ops, origin) in acked.items():
        assert clock in history, f"acknowledged batch {clock} is missing from history"
        assert (history[clock].operations, history[clock].origin) == (ops, origin)
    assert sorted([*history, *restores]) == list(range(1, record.latest_clock + 1))
    assert len(restores) == RESTORES
    assert all(versions[clock].kind == "restore" for clock in restores)
    assert any(version.kind == "squash" for version in versions.values())
    # The last state is the last restore's (or nothing) plus every batch after it.
    start = max(restores, default=0)
    expected = state_at(provider, bindings(), "doc", start) if start else []
    expected += [
        op for clock in sorted(history) if clock > start for op in history[clock].operations
    ]
    assert record.serialized_doc == expected
    assert state_at(provider, bindings(), "doc", record.latest_clock) == expected
