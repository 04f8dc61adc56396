"""Where a plain callable runs: a database thread, or the event loop when marked."""

from __future__ import annotations

import threading

import pytest

from docsync.hops import call_sync_or_async, nonblocking

pytestmark = pytest.mark.asyncio


def where(request):
    return threading.get_ident()


@nonblocking
def where_nonblocking(request):
    return threading.get_ident()


@pytest.mark.django_db(transaction=True)  # the thread closes its old connections
async def test_a_plain_callable_runs_in_a_database_thread():
    assert await call_sync_or_async(where, {}) != threading.get_ident()


async def test_a_nonblocking_callable_runs_on_the_event_loop():
    assert await call_sync_or_async(where_nonblocking, {}) == threading.get_ident()


async def test_a_nonblocking_callable_raises_to_its_caller():
    @nonblocking
    def explode(request):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await call_sync_or_async(explode, {})
