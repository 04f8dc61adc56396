"""A document's ``dirty`` at most once per ``DIRTY_INTERVAL`` (docsync.fanout, docsync.groups)."""

from __future__ import annotations

import asyncio

import pytest

from docsync import groups
from docsync.channel_layer import InProcessChannelLayer
from docsync.fanout import throttled_group_send


class FailingLayer:
    async def group_send(self, group, message):
        raise ConnectionError("layer down")


async def members_of(layer: InProcessChannelLayer, group: str, n: int) -> list[str]:
    channels = [await layer.new_channel() for _ in range(n)]
    for channel in channels:
        await layer.group_add(group, channel)
    return channels


def pending(layer: InProcessChannelLayer, channel: str) -> list[dict]:
    queue = layer.channels.get(channel)
    out = []
    while queue is not None and not queue.empty():
        out.append(queue.get_nowait()[1])
    return out


async def call(c, payload: dict) -> dict:
    """The answer to ``payload``, skipping the events before it."""
    ack_id = await c.emit("sync", payload)
    while True:
        prefix, body = await c.recv_json()
        if prefix == f"43{ack_id}":
            return body[0]


async def settled() -> None:
    """Let the callbacks and tasks ready now run (a window's first message goes then)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_first_goes_at_once_and_the_rest_merged_at_the_window_end():
    layer = InProcessChannelLayer()
    (reader,) = await members_of(layer, "g", 1)
    send = lambda message: throttled_group_send(  # noqa: E731
        layer, "g", message, groups.merge_dirty, 0.05
    )
    await send(groups.dirty("d", "dev-a", 1))
    await settled()
    assert pending(layer, reader) == [groups.dirty("d", "dev-a", 1)]
    await send(groups.dirty("d", "dev-b", 2))
    await send(groups.dirty("d", "dev-a", 4))
    await send(groups.dirty("d", "dev-c", 3))  # answered before clock 4: dev-a had it
    assert pending(layer, reader) == []
    await asyncio.sleep(0.08)
    assert pending(layer, reader) == [groups.dirty("d", "dev-a", 4)]
    # The next window: nothing was sent in it, so it closes...
    await asyncio.sleep(0.08)
    assert pending(layer, reader) == []
    # ... and the next write goes at once again.
    await send(groups.dirty("d", "dev-b", 5))
    await settled()
    assert pending(layer, reader) == [groups.dirty("d", "dev-b", 5)]


async def test_what_one_turn_of_the_loop_sends_goes_with_the_first():
    """The writes of one group commit are acknowledged in one turn of the
    event loop: their dirties go out as one, not as a first and a merged
    second that would make every subscriber pull twice for one commit."""
    layer = InProcessChannelLayer()
    (reader,) = await members_of(layer, "g", 1)

    async def send(device, clock):
        await throttled_group_send(
            layer, "g", groups.dirty("d", device, clock), groups.merge_dirty, 0.05
        )

    await asyncio.gather(*(send(f"dev-{clock}", clock) for clock in range(1, 31)))
    await settled()
    assert pending(layer, reader) == [groups.dirty("d", "dev-30", 30)]
    await asyncio.sleep(0.08)
    assert pending(layer, reader) == []  # nothing left for the window's end


async def test_groups_and_layers_have_windows_of_their_own():
    layer, other = InProcessChannelLayer(), InProcessChannelLayer()
    (a,) = await members_of(layer, "a", 1)
    (b,) = await members_of(layer, "b", 1)
    (c,) = await members_of(other, "a", 1)
    for lay, group in ((layer, "a"), (layer, "b"), (other, "a")):
        await throttled_group_send(lay, group, groups.dirty(group, "x", 1), groups.merge_dirty, 1)
    await settled()
    assert [len(pending(layer, a)), len(pending(layer, b)), len(pending(other, c))] == [1, 1, 1]


async def test_interval_zero_sends_every_message():
    layer = InProcessChannelLayer()
    (reader,) = await members_of(layer, "g", 1)
    for clock in range(1, 4):
        await throttled_group_send(layer, "g", groups.dirty("d", "x", clock), groups.merge_dirty, 0)
    assert [m["clock"] for m in pending(layer, reader)] == [1, 2, 3]


async def test_a_failing_layer_is_logged_not_raised(caplog):
    layer = FailingLayer()
    await throttled_group_send(layer, "g", groups.dirty("d", "x", 1), groups.merge_dirty, 0.02)
    await throttled_group_send(layer, "g", groups.dirty("d", "x", 2), groups.merge_dirty, 0.02)
    await asyncio.sleep(0.05)  # the merged one fails in its own task: logged too
    assert "the channel layer failed" in caplog.text


@pytest.mark.parametrize(
    ("older", "newer", "merged"),
    [
        (groups.dirty("d", "a", 1), groups.dirty("d", "b", 2), groups.dirty("d", "b", 2)),
        (groups.dirty("d", "a", 3), groups.dirty("d", "b", 2), groups.dirty("d", "a", 3)),
        # A change made on the server (no clock): every device hears it.
        (groups.dirty("d", "a", 1), groups.dirty("d"), groups.dirty("d", "", None)),
        (groups.dirty("d"), groups.dirty("d", "b", 2), groups.dirty("d", "", None)),
    ],
)
def test_merge_dirty_keeps_the_device_of_the_newest_write(older, newer, merged):
    assert groups.merge_dirty(older, newer) == merged


@pytest.mark.django_db(transaction=True)
async def test_a_reader_hears_fewer_dirties_than_writes_and_misses_none(app, settings):
    """Four writers write five times each, as fast as they are answered; a reader
    that only listens hears at least one dirty after the last write, and
    fewer than the twenty writes (with ``DIRTY_INTERVAL`` 0 it hears twenty)."""
    from tests.test_consumer import DOC, connected

    def sync(ops=(), clock=0) -> dict:
        return {
            "type": "doc",
            "docId": DOC,
            "operations": list(ops),
            "serializedDoc": None,
            "clock": clock,
        }

    settings.DOCSYNC = {**settings.DOCSYNC, "DIRTY_INTERVAL": 0.05}

    reader = await connected(app, "reader")
    writers = [await connected(app, f"w{i}") for i in range(4)]
    try:
        for c in [reader, *writers]:
            assert "data" in await call(c, sync())
        while not await reader.nothing(0.1):  # collaboration frames
            await reader.recv()

        async def write(i: int, w) -> int:
            clock = 0
            for n in range(5):
                payload = sync([f"{i}:{n}"], clock)
                body = await call(w, payload)
                clock = body["data"]["clock"]
            return clock

        clocks = await asyncio.gather(*(write(i, w) for i, w in enumerate(writers)))
        heard = []
        while not await reader.nothing(0.2):
            heard.append(await reader.recv())
        assert heard and set(heard) == {f'42["dirty",{{"docId":"{DOC}"}}]'}
        assert len(heard) < 20
        everything = await reader.call("sync", sync())
        assert everything["data"]["clock"] == max(clocks) == 20
        assert sorted(everything["data"]["operations"]) == sorted(
            f"{i}:{n}" for i in range(4) for n in range(5)
        )
    finally:
        for c in [reader, *writers]:
            await c.close()


async def test_the_sender_does_not_wait_for_the_send():
    """A writer's answer is not held up by its dirty (a slow layer included)."""
    sent = asyncio.Event()

    class SlowLayer:
        async def group_send(self, group, message):
            await asyncio.sleep(0.05)
            sent.set()

    loop = asyncio.get_running_loop()
    started = loop.time()
    await throttled_group_send(SlowLayer(), "g", groups.dirty("d", "x", 1), groups.merge_dirty, 0.1)
    assert loop.time() - started < 0.02 and not sent.is_set()
    await asyncio.wait_for(sent.wait(), 1)


async def test_what_the_sender_sends_next_to_the_group_comes_after_its_first():
    """A write's dirty, then the writer's presence (or its leaving): the group
    hears them in that order, though the dirty waits for its turn."""
    from docsync.fanout import group_send_in_order

    layer = InProcessChannelLayer()
    (reader,) = await members_of(layer, "g", 1)
    await throttled_group_send(layer, "g", groups.dirty("d", "x", 1), groups.merge_dirty, 0.05)
    await group_send_in_order(layer, "g", groups.presence("d", {"x": None}))
    await settled()
    assert [m["type"] for m in pending(layer, reader)] == ["docsync.dirty", "docsync.presence"]
    # Also when the dirty's send has started but not finished.
    await asyncio.sleep(0.08)
    await throttled_group_send(layer, "g", groups.dirty("d", "x", 2), groups.merge_dirty, 0.05)
    await asyncio.sleep(0)  # its send is a task now
    await group_send_in_order(layer, "g", groups.presence("d", {"x": 1}))
    await settled()
    assert [m["type"] for m in pending(layer, reader)] == ["docsync.dirty", "docsync.presence"]


@pytest.mark.django_db(transaction=True)
async def test_no_dirty_for_what_a_client_was_answered_already(app, settings):
    """A client that pulled after a write (its answer holds the write) is not
    told about that write again when the merged dirty of the window comes;
    a client that did not pull is."""
    from tests.test_consumer import DOC, connected

    settings.DOCSYNC = {**settings.DOCSYNC, "DIRTY_INTERVAL": 0.3}

    def sync(ops=(), clock=0) -> dict:
        return {"type": "doc", "docId": DOC, "operations": list(ops), "serializedDoc": None,
                "clock": clock}  # fmt: skip

    writer, puller, listener = [await connected(app, name) for name in ("w", "p", "l")]
    dirty = f'42["dirty",{{"docId":"{DOC}"}}]'
    try:
        assert (await call(writer, sync(["0"])))["data"]["clock"] == 1
        for c in (puller, listener):
            assert (await call(c, sync()))["data"]["clock"] == 1
        for c in (writer, puller, listener):
            while not await c.nothing(0.1):  # collaboration frames
                await c.recv()
        assert (await call(writer, sync(["1"], 1)))["data"]["clock"] == 2  # opens a window
        assert await puller.recv() == dirty and await listener.recv() == dirty
        assert (await call(writer, sync(["2"], 2)))["data"]["clock"] == 3  # merged, held
        pulled = await call(puller, sync(clock=1))  # before the window ends
        assert pulled["data"]["clock"] == 3 and pulled["data"]["operations"] == ["1", "2"]
        assert await listener.recv() == dirty  # the window's end: clock 3
        assert await puller.nothing(0.4)  # it holds clock 3 already
    finally:
        for c in (writer, puller, listener):
            await c.close()
