"""RedisState against a real Redis: shared members and presence, reaping."""

import asyncio
import uuid

import pytest

from docsync.redis_state import RedisState
from docsync.state import Member
from tests.services import require_redis

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]


@pytest.fixture
async def states():
    url = require_redis()
    prefix = f"docsync-test-{uuid.uuid4().hex[:8]}"
    made = []

    def make(**kw):
        state = RedisState(url=url, prefix=prefix, heartbeat=0.1, ttl=0.5, **kw)
        made.append(state)
        return state

    yield make
    for state in made:
        await state.close()


def member(n, user=None):
    return Member(f"chan-{n}", user or f"user-{n}", f"dev-{n}", f"cli-{n}")


async def test_members_and_presence_are_shared(states):
    a, b = states(), states()
    assert [m.channel for m in await a.join("doc", member(1))] == ["chan-1"]
    joined = await b.join("doc", member(2))
    assert {m.channel for m in joined} == {"chan-1", "chan-2"}
    await a.set_presence("doc", "cli-1", {"cursor": 3})
    assert await b.get_presence("doc") == {"cli-1": {"cursor": 3}}
    remaining = await a.leave("doc", member(1))
    assert [m.channel for m in remaining] == ["chan-2"]
    assert await b.get_presence("doc") == {}
    await b.set_presence("doc", "cli-2", "x")
    await b.set_presence("doc", "cli-2", None)
    assert await a.get_presence("doc") == {}


async def test_dead_process_is_reaped(states, settings):
    a, b = states(), states()
    await a.join("doc", member(1))
    await b.join("doc", member(2))
    await b.set_presence("doc", "cli-2", {"here": True})

    # b stops heartbeating (as if frozen or killed) and its alive key expires.
    async def frozen():
        pass

    b._beat = frozen
    await b.redis.delete(b._k("alive", b.process))
    deadline = asyncio.get_running_loop().time() + 3
    while asyncio.get_running_loop().time() < deadline:
        if [m.channel for m in await a.members("doc")] == ["chan-1"]:
            break
        await asyncio.sleep(0.05)
    assert [m.channel for m in await a.members("doc")] == ["chan-1"]
    assert await a.get_presence("doc") == {}


async def test_falls_back_to_local_state_when_redis_is_down(states):
    state = states()
    state.redis = type(state.redis).from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    assert [m.channel for m in await state.join("doc", member(1))] == ["chan-1"]
    await state.set_presence("doc", "cli-1", 1)
    assert await state.get_presence("doc") == {"cli-1": 1}
    assert not state._healthy


async def test_own_members_count_before_a_restarted_redis_has_them_back(states):
    """Redis restarted empty, this process's heartbeat has not restored it yet:
    its own members still count (a leaving client's presence is cleared for them)."""
    a = states()
    a.heartbeat = 60  # no restore during the test
    await a.join("doc", member(1))
    await a.join("doc", member(2))
    await a.redis.delete(a._k("m", "doc"))  # what a restart loses
    assert {m.channel for m in await a.members("doc")} == {"chan-1", "chan-2"}
    remaining = await a.leave("doc", member(1))
    assert [m.channel for m in remaining] == ["chan-2"]
    joined = await a.join("doc", member(3))
    assert {m.channel for m in joined} == {"chan-2", "chan-3"}
