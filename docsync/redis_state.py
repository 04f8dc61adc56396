"""``RedisState``: subscribers and presence shared by every process, in Redis.

Layout (``prefix`` defaults to ``docsync``):

- ``{prefix}:m:{docId}``  hash channel -> member JSON (with its process id)
- ``{prefix}:p:{docId}``  hash clientId -> presence JSON
- ``{prefix}:pd:{proc}``  set of the docIds a process has members in
- ``{prefix}:alive:{proc}`` a key with a TTL, refreshed by the process's heartbeat
- ``{prefix}:procs``      set of the processes that ever registered

Every process heartbeats every ``heartbeat`` seconds and looks for processes
whose ``alive`` key expired (killed, crashed, cut off): one of the survivors
(elected with ``SET NX``) removes the dead process's members and presence and
tells the documents' remaining subscribers (``presence`` null and a new
``collaboration``) through the channel layer. A dead process is noticed within
``ttl + heartbeat`` seconds.

Each process also keeps a mirror of its own members and presence. When Redis
goes away, calls fall back to that mirror (syncing goes on; only cross-process
fan-out pauses) and the outage is logged once; when Redis is back, the
heartbeat writes the mirror back and re-adds every channel-layer group of
every connection of the process (documents, users, sessions), so fan-out and
revocation recover after a Redis restart that lost everything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import groups, metrics
from .state import BaseState, Member, has_collaborators

T = TypeVar("T")


def _text(raw: bytes | str) -> str:
    """A Redis reply (bytes without ``decode_responses``) as text."""
    return raw.decode() if isinstance(raw, bytes) else raw


logger = logging.getLogger(__name__)


def _redis_url_from_settings() -> str:
    from django.conf import settings

    layer = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {})
    hosts = layer.get("CONFIG", {}).get("hosts") or []
    if hosts:
        host = hosts[0]
        if isinstance(host, str):
            return host
        if isinstance(host, dict) and "address" in host:
            return str(host["address"])
        if isinstance(host, (tuple, list)):
            return f"redis://{host[0]}:{host[1]}/0"
    return getattr(settings, "REDIS_URL", None) or "redis://127.0.0.1:6379/0"


class RedisState(BaseState):
    """Shared state for several processes; see the module docstring."""

    def __init__(
        self,
        url: str | None = None,
        prefix: str = "docsync",
        heartbeat: float = 1.0,
        ttl: float = 4.0,
    ) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - redis comes with channels-redis
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                "RedisState needs redis: pip install channels-redis (or docsync[redis])."
            ) from exc
        self.url = url or _redis_url_from_settings()
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.redis = aioredis.from_url(
            self.url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=5
        )
        self._members: dict[str, dict[str, Member]] = {}
        self._presence: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._healthy = True
        self._needs_restore = False

    # -- keys and encoding ---------------------------------------------------

    def _k(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}:{kind}:{name}" if name else f"{self.prefix}:{kind}"

    def _encode(self, member: Member) -> str:
        return json.dumps(
            [member.user_id, member.device_id, member.client_id, self.process],
            separators=(",", ":"),
        )

    @staticmethod
    def _decode(channel: bytes | str, raw: bytes | str) -> tuple[Member, str]:
        user_id, device_id, client_id, process = json.loads(raw)
        channel = channel.decode() if isinstance(channel, bytes) else channel
        return Member(channel, user_id, device_id, client_id), process

    # -- health --------------------------------------------------------------

    def _failed(self, exc: Exception) -> None:
        metrics.REDIS_ERRORS.inc()
        if self._healthy:
            logger.error(
                "docsync: Redis at %s is unavailable (%s); syncing goes on, cross-process "
                "fan-out and presence pause until it is back.",
                self.url,
                exc,
            )
        self._healthy = False
        self._needs_restore = True

    def _recovered(self) -> None:
        if not self._healthy:
            logger.warning(
                "docsync: Redis at %s is back; restoring this process's state.", self.url
            )
        self._healthy = True

    async def _run(self, coro_factory: Callable[[], Awaitable[T]], fallback: Callable[[], T]) -> T:
        if not self._healthy and self._needs_restore:
            return fallback()
        try:
            result = await coro_factory()
        except Exception as exc:  # redis.exceptions.RedisError, OSError, TimeoutError
            self._failed(exc)
            return fallback()
        return result

    def _local_members(self, doc_id: str) -> list[Member]:
        return list(self._members.get(doc_id, {}).values())

    def _with_local(self, doc_id: str, members: dict[Any, Any]) -> list[Member]:
        """The members Redis holds (``channel -> encoded``) and this process's own.

        Right after a Redis restart this process's members are back only with
        its next heartbeat (``_restore``): until then Redis alone would say a
        document has no one left, and a leaving client's presence would not be
        cleared for the others here.
        """
        found = [self._decode(c, raw)[0] for c, raw in members.items()]
        channels = {m.channel for m in found}
        return found + [m for m in self._local_members(doc_id) if m.channel not in channels]

    # -- the BaseState interface ------------------------------------------------

    async def _start(self) -> None:
        """Start heartbeating (on the first join of this process, again after close)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._heartbeat_loop())

    async def join(self, doc_id: str, member: Member) -> list[Member]:
        await self._start()
        self._members.setdefault(doc_id, {})[member.channel] = member

        async def write() -> list[Member]:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(self._k("m", doc_id), member.channel, self._encode(member))
            pipe.sadd(self._k("pd", self.process), doc_id)
            pipe.set(self._k("alive", self.process), "1", px=int(self.ttl * 1000))
            pipe.sadd(self._k("procs"), self.process)
            pipe.hgetall(self._k("m", doc_id))
            *_, members = await pipe.execute()
            return self._with_local(doc_id, members)

        return await self._run(write, lambda: self._local_members(doc_id))

    async def leave(self, doc_id: str, member: Member) -> list[Member]:
        local = self._members.get(doc_id, {})
        local.pop(member.channel, None)
        if not local:
            self._members.pop(doc_id, None)
        presence = self._presence.get(doc_id, {})
        presence.pop(member.client_id, None)
        if not presence:
            self._presence.pop(doc_id, None)

        async def write() -> list[Member]:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hdel(self._k("m", doc_id), member.channel)
            pipe.hdel(self._k("p", doc_id), member.client_id)
            if doc_id not in self._members:
                pipe.srem(self._k("pd", self.process), doc_id)
            pipe.hgetall(self._k("m", doc_id))
            *_, members = await pipe.execute()
            return self._with_local(doc_id, members)

        return await self._run(write, lambda: self._local_members(doc_id))

    async def members(self, doc_id: str) -> list[Member]:
        async def read() -> list[Member]:
            return self._with_local(doc_id, await self.redis.hgetall(self._k("m", doc_id)))

        return await self._run(read, lambda: self._local_members(doc_id))

    async def set_presence(self, doc_id: str, client_id: str, value: Any) -> None:
        key = self._k("p", doc_id)
        if value is None:
            self._presence.get(doc_id, {}).pop(client_id, None)
            await self._run(lambda: self.redis.hdel(key, client_id), lambda: None)
        else:
            self._presence.setdefault(doc_id, {})[client_id] = value
            encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            await self._run(lambda: self.redis.hset(key, client_id, encoded), lambda: None)

    async def get_presence(self, doc_id: str) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            raw = await self.redis.hgetall(self._k("p", doc_id))
            return {_text(k): json.loads(v) for k, v in raw.items()}

        return await self._run(read, lambda: dict(self._presence.get(doc_id, {})))

    async def close(self) -> None:
        """Stop heartbeating and remove this process's members and presence."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        try:
            await self._reap(self.process, notify=False)
            await self.redis.delete(self._k("alive", self.process))
            await self.redis.aclose()
        except Exception as exc:
            logger.info("docsync: could not clean up Redis state on close: %s", exc)

    # -- heartbeat, restore and reaping ------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
            await asyncio.sleep(self.heartbeat)

    async def _beat(self) -> None:
        was_alive = await self.redis.set(
            self._k("alive", self.process), "1", px=int(self.ttl * 1000), get=True
        )
        await self.redis.sadd(self._k("procs"), self.process)
        if self._needs_restore or was_alive is None:
            await self._restore()
        self._recovered()
        await self._reap_dead()

    async def _restore(self) -> None:
        """Write this process's members and presence back, re-add its groups."""
        from .fanout import rejoin_groups

        pipe = self.redis.pipeline(transaction=False)
        for doc_id, members in self._members.items():
            pipe.sadd(self._k("pd", self.process), doc_id)
            for member in members.values():
                pipe.hset(self._k("m", doc_id), member.channel, self._encode(member))
        for doc_id, presence in self._presence.items():
            for client_id, value in presence.items():
                pipe.hset(self._k("p", doc_id), client_id, json.dumps(value, ensure_ascii=False))
        await pipe.execute()
        # Every group of every connection: documents, users and sessions.
        if await rejoin_groups():
            return  # the layer is not back yet: again on the next beat
        self._needs_restore = False

    async def _reap_dead(self) -> None:
        procs = await self.redis.smembers(self._k("procs"))
        for raw in procs:
            process = _text(raw)
            if process == self.process:
                continue
            if await self.redis.exists(self._k("alive", process)):
                continue
            # One survivor reaps each dead process.
            if await self.redis.set(self._k("reap", process), self.process, nx=True, ex=30):
                logger.warning(
                    "docsync: process %s stopped heartbeating; clearing its clients", process
                )
                await self._reap(process, notify=True)

    async def _reap(self, process: str, notify: bool) -> None:
        doc_ids = await self.redis.smembers(self._k("pd", process))
        for raw_doc in doc_ids:
            doc_id = _text(raw_doc)
            members = await self.redis.hgetall(self._k("m", doc_id))
            gone: list[Member] = []
            remaining: list[Member] = []
            for channel, raw in members.items():
                member, owner = self._decode(channel, raw)
                (gone if owner == process else remaining).append(member)
            if not gone:
                continue
            live_clients = {m.client_id for m in remaining}
            gone_clients = [m.client_id for m in gone if m.client_id not in live_clients]
            pipe = self.redis.pipeline(transaction=False)
            pipe.hdel(self._k("m", doc_id), *[m.channel for m in gone])
            if gone_clients:
                pipe.hdel(self._k("p", doc_id), *gone_clients)
            await pipe.execute()
            if notify and remaining:
                await self._notify(doc_id, gone_clients, remaining)
        await self.redis.delete(self._k("pd", process))
        await self.redis.srem(self._k("procs"), process)

    async def _notify(self, doc_id: str, gone_clients: list[str], remaining: list[Member]) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        group = groups.doc_group(doc_id)
        for client_id in gone_clients:
            await layer.group_send(group, groups.presence(doc_id, {client_id: None}))
        await layer.group_send(
            group, groups.collaboration(doc_id, has_collaborators(remaining), skip="")
        )
