"""docsync.channel_layer.InProcessChannelLayer: Channels' in-memory layer's behaviour."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull

from docsync import channel_layer
from docsync.channel_layer import InProcessChannelLayer

pytestmark = pytest.mark.asyncio


async def test_send_and_receive_a_copy():
    layer = InProcessChannelLayer()
    channel = await layer.new_channel()
    message = {"type": "x.y", "items": [1, 2]}
    await layer.send(channel, message)
    message["items"].append(3)
    assert await layer.receive(channel) == {"type": "x.y", "items": [1, 2]}


async def test_a_full_channel_refuses_sends_and_misses_group_sends():
    layer = InProcessChannelLayer(capacity=2)
    full, other = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", full)
    await layer.group_add("g", other)
    await layer.send(full, {"type": "a"})
    await layer.send(full, {"type": "b"})
    with pytest.raises(ChannelFull):
        await layer.send(full, {"type": "c"})
    await layer.group_send("g", {"type": "d", "doc": "x"})
    assert [(await layer.receive(full))["type"] for _ in range(2)] == ["a", "b"]
    assert await layer.receive(other) == {"type": "d", "doc": "x"}


async def test_group_send_reaches_each_member_once_in_order():
    layer = InProcessChannelLayer()
    channels = [await layer.new_channel() for _ in range(3)]
    for channel in channels:
        await layer.group_add("doc", channel)
    await layer.group_discard("doc", channels[2])
    for n in range(3):
        await layer.group_send("doc", {"type": "dirty", "n": n})
    for channel in channels[:2]:
        assert [(await layer.receive(channel))["n"] for _ in range(3)] == [0, 1, 2]
    assert channels[2] not in layer.channels


async def test_a_receiver_waits_for_a_message():
    layer = InProcessChannelLayer()
    channel = await layer.new_channel()
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    await layer.group_add("g", channel)
    await layer.group_send("g", {"type": "late"})
    assert await asyncio.wait_for(waiting, 5) == {"type": "late"}


async def test_a_receiver_that_goes_away_leaves_no_queue():
    layer = InProcessChannelLayer()
    channel = await layer.new_channel()
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    assert channel in layer.channels
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert channel not in layer.channels


async def test_expired_messages_and_memberships_go(monkeypatch):
    monkeypatch.setattr(channel_layer, "EXPIRY_SCAN", 0.0)
    layer = InProcessChannelLayer(expiry=-1, group_expiry=-10)
    stale, fresh = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", stale)
    await layer.send(stale, {"type": "old"})  # already past its expiry
    await layer.group_send("g", {"type": "any"})  # expires it: stale leaves every group
    assert "g" not in layer.groups or stale not in layer.groups["g"]
    layer = InProcessChannelLayer(group_expiry=-10)  # every membership is too old
    await layer.group_add("g", fresh)
    await layer.group_send("g", {"type": "x"})
    assert fresh not in layer.channels


async def test_flush_forgets_everything():
    layer = InProcessChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    await layer.send(channel, {"type": "a"})
    await layer.flush()
    assert layer.channels == {} and layer.groups == {}
