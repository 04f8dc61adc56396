"""A rolling deploy under load: processes restarted one at a time, writers syncing throughout.

Used by ``tests/test_drain.py`` and ``benchmarks/bench_drain.py``. Several
uvicorn (or daphne) processes serve ``tests.e2e_asgi_drain`` (the test
application wrapped in ``GracefulDrain``) on PostgreSQL and one Redis; a
:class:`Balancer` hands each (re)connecting client a live port, as a load
balancer would once the draining process fails its readiness probe. Each
:class:`Writer` types into its document and syncs like the official client
(its unconfirmed operations, with the last acknowledged clock, one sync in
flight); when its transport drops it waits what the official client waits
(0.5-1.5 s, then a doubling back-off up to 5 s) and reconnects to another
process. :func:`rolling_restart` SIGTERMs each process in turn, waits for it
to exit, starts it again, and waits for every writer to be back.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from tests.liveserver import LiveServer, free_port
from tests.rawws import RawLiveClient
from tests.wsclient import auth

APP = "tests.e2e_asgi_drain:application"


class Balancer:
    """Live ports, handed out round-robin; a port being restarted is skipped."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.down: set[int] = set()
        self._next = 0

    def pick(self, avoid: int | None = None) -> int:
        live = [p for p in self.ports if p not in self.down and p != avoid] or [
            p for p in self.ports if p not in self.down
        ]
        self._next += 1
        return live[self._next % len(live)]


@dataclass
class Writer:
    """Syncs its typing continuously, as the official client does, through the balancer."""

    balancer: Balancer
    doc: str
    name: str
    pace: float = 0.05  # seconds between two edits
    queue: list[list[Any]] = field(default_factory=list)
    typed: int = 0
    clock: int = 0
    acked: set[tuple[str, int]] = field(default_factory=set)
    echoed: list[Any] = field(default_factory=list)
    port: int | None = None
    client: RawLiveClient | None = None
    dropped_at: float | None = None
    #: (port, seconds from the drop to the next ``identity``) for each drop.
    reconnects: list[tuple[int, float]] = field(default_factory=list)
    drops: list[tuple[int, float]] = field(default_factory=list)  # (port, monotonic time)

    @property
    def connected(self) -> bool:
        return self.client is not None and not self.client.closed.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set() or self.queue:
            if not stop.is_set():
                self.queue.append([self.name, self.typed])
                self.typed += 1
            try:
                await self._sync_once()
                attempt = 0
            except (ConnectionError, TimeoutError, OSError):
                self._lost()
                # Counted from the drop, as the client's timer starts at the close.
                since = time.monotonic() - (self.dropped_at or time.monotonic())
                await asyncio.sleep(max(0.0, _reconnect_delay(attempt) - since))
                attempt += 1
                continue
            await asyncio.sleep(self.pace)
        client, self.client = self.client, None  # not a drop: we close it
        if client is not None:
            await client.close()

    def _lost(self) -> None:
        if self.client is not None and self.dropped_at is None:
            self.dropped_at = time.monotonic()
            self.drops.append((self.port or 0, self.dropped_at))
        self.client = None

    async def _watch(self, client: RawLiveClient, port: int) -> None:
        await client.closed.wait()
        if self.client is client and self.dropped_at is None:
            self.dropped_at = time.monotonic()
            self.drops.append((port, self.dropped_at))

    async def _connect(self) -> None:
        port = self.balancer.pick(avoid=self.port if self.dropped_at is not None else None)
        client = RawLiveClient(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
        await client.connect(auth(self.name, client=f"tab-{self.name}"))
        if self.dropped_at is not None:
            self.reconnects.append((self.port or 0, time.monotonic() - self.dropped_at))
            self.dropped_at = None
        self.client, self.port = client, port
        asyncio.get_running_loop().create_task(self._watch(client, port))

    async def _sync_once(self) -> None:
        if self.client is not None and not self.connected:
            raise ConnectionError("dropped while idle")  # noticed now: wait, reconnect
        if self.client is None:
            await self._connect()
        assert self.client is not None
        sent = list(self.queue)
        request = {
            "type": "doc",
            "docId": self.doc,
            "operations": sent,
            "serializedDoc": None,
            "clock": self.clock,
        }
        res = await self.client.call("sync", request, timeout=5)
        if "data" not in res:
            return  # refused: the official client retries
        data = res["data"]
        self.echoed += [op for op in data["operations"] if op in sent]
        self.clock = data["clock"]
        del self.queue[: len(sent)]
        self.acked.update((name, n) for name, n in sent)


def _reconnect_delay(attempt: int) -> float:
    """What socket.io-client waits: 1 s +-50 %, doubling up to 5 s."""
    base = min(1.0 * 2**attempt, 5.0)
    return base * random.uniform(0.5, 1.5)


async def read_all(port: int, doc: str) -> list[tuple[str, int]]:
    reader = RawLiveClient(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
    await reader.connect(auth("reader"))
    res = await reader.call(
        "sync", {"type": "doc", "docId": doc, "operations": [], "serializedDoc": None, "clock": 0}
    )
    await reader.close()
    data = res["data"]
    return [tuple(op) for op in list(data["serializedDoc"] or []) + data["operations"]]


@dataclass
class Cluster:
    """``n`` server processes (``GracefulDrain`` on SIGTERM) on one set of ports."""

    env: dict[str, str]
    n: int = 3
    server: str = "uvicorn"
    app: str = APP
    servers: list[LiveServer] = field(default_factory=list)
    retired: list[LiveServer] = field(default_factory=list)

    def start(self) -> Cluster:
        for _ in range(self.n):
            self.servers.append(self._start(free_port()))
        return self

    def _start(self, port: int) -> LiveServer:
        try:
            return LiveServer(env=self.env, server=self.server, app=self.app, port=port).start()
        except RuntimeError:  # a loaded machine: not listening within 20 s; once more
            return LiveServer(env=self.env, server=self.server, app=self.app, port=port).start()

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    async def restart(self, i: int, bound: float) -> tuple[float, int | None]:
        """SIGTERM process ``i``, wait (up to ``bound`` s) for it to exit, start it again.

        Returns the seconds it took to exit and its exit status (``None``: it
        did not exit within ``bound`` and was killed).
        """
        old = self.servers[i]
        assert old.proc is not None
        started = time.monotonic()
        old.proc.send_signal(signal.SIGTERM)
        try:
            status: int | None = await asyncio.to_thread(old.proc.wait, bound)
        except Exception:  # subprocess.TimeoutExpired
            old.proc.kill()
            old.proc.wait()
            status = None
        took = time.monotonic() - started
        self.retired.append(old)
        self.servers[i] = await asyncio.to_thread(self._start, old.port)
        return took, status

    def stop(self) -> None:
        for s in self.servers:
            s.stop(timeout=30)

    def output(self, retired_only: bool = False) -> str:
        """The logs of every process (``retired_only``: of those restarted)."""
        chosen = self.retired if retired_only else self.retired + self.servers
        return "".join(_output(s) for s in chosen)


def _output(server: LiveServer) -> str:
    try:
        return server.output()
    except FileNotFoundError:  # a shared /tmp cleaned meanwhile
        return ""


@dataclass
class Rolled:
    """What a rolling restart did, for the test's assertions and the benchmark's JSON."""

    drain_seconds: list[float]
    exit_status: list[int | None]
    sigterm_at: list[float]
    writers: list[Writer]
    stored: dict[str, list[tuple[str, int]]]

    def acked(self) -> set[tuple[str, int]]:
        return {op for w in self.writers for op in w.acked}

    def lost(self) -> set[tuple[str, int]]:
        """Acknowledged operations that no reader finds."""
        return self.acked() - {op for ops in self.stored.values() for op in ops}

    def duplicated(self) -> int:
        return sum(len(ops) - len(set(ops)) for ops in self.stored.values())

    def reconnect_seconds(self) -> list[float]:
        return sorted(s for w in self.writers for _, s in w.reconnects)

    def back_after_sigterm(self) -> list[float]:
        """For each restart: seconds from its SIGTERM until its last client was back."""
        result = []
        for n, at in enumerate(self.sigterm_at):
            end = self.sigterm_at[n + 1] if n + 1 < len(self.sigterm_at) else float("inf")
            back = [
                drop + seconds
                for w in self.writers
                for (_, drop), (_, seconds) in zip(w.drops, w.reconnects, strict=False)
                if at <= drop < end
            ]
            result.append(max(back) - at if back else 0.0)
        return result

    def drop_offsets(self) -> list[float]:
        """Seconds from each SIGTERM to each drop it caused."""
        offsets = []
        for n, at in enumerate(self.sigterm_at):
            end = self.sigterm_at[n + 1] if n + 1 < len(self.sigterm_at) else float("inf")
            offsets += [drop - at for w in self.writers for _, drop in w.drops if at <= drop < end]
        return sorted(offsets)


async def rolling_restart(
    cluster: Cluster,
    *,
    writers_n: int,
    docs_n: int,
    window: float,
    settle: float = 1.0,
    bound: float = 30.0,
) -> Rolled:
    """Restart each process of ``cluster`` in turn while ``writers_n`` writers sync."""
    balancer = Balancer(cluster.ports)
    tag = f"{random.getrandbits(32):08x}"
    docs = [f"01k{tag}{n:015d}" for n in range(docs_n)]
    writers = [Writer(balancer, docs[n % docs_n], f"w{n}") for n in range(writers_n)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in writers]
    drains, statuses, sigterms = [], [], []
    try:
        await _until(lambda: all(w.connected and w.acked for w in writers), 30)
        await asyncio.sleep(settle)
        for i, port in enumerate(cluster.ports):
            balancer.down.add(port)  # the load balancer saw readiness fail
            sigterms.append(time.monotonic())
            took, status = await cluster.restart(i, bound)
            drains.append(took)
            statuses.append(status)
            balancer.down.discard(port)
            await _until(lambda: all(w.connected for w in writers), window + 30)
            await asyncio.sleep(settle)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        stored = {doc: await read_all(cluster.ports[0], doc) for doc in docs}
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
    return Rolled(drains, statuses, sigterms, writers, stored)


async def _until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout} s")
        await asyncio.sleep(0.05)
