"""docsync.fanout.frame_send: frames skip Channels' session wrapper, nothing else."""

from __future__ import annotations

import pytest
from channels.sessions import InstanceSessionWrapper

from docsync.fanout import frame_send

pytestmark = pytest.mark.asyncio


async def asgi_send(message):
    pass


def wrapped(send):
    return InstanceSessionWrapper({"cookies": {}}, send).send


async def test_frames_skip_session_wrappers():
    assert frame_send(wrapped(wrapped(asgi_send))) is asgi_send


async def test_other_sends_are_kept():
    assert frame_send(asgi_send) is asgi_send

    class Saving(InstanceSessionWrapper):
        pass

    subclass = Saving({"cookies": {}}, asgi_send).send
    assert frame_send(subclass) is subclass


async def test_a_wrapper_that_saves_on_frames_is_kept(monkeypatch):
    monkeypatch.setattr(InstanceSessionWrapper, "save_message_types", ["websocket.send"])
    send = wrapped(asgi_send)
    assert frame_send(send) is send
