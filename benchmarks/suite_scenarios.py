"""The scenarios of ``bench_suite.py`` (issue 14): each is ``async (session, url, tokens, args)
-> dict`` with the figure in ``value`` and ``unit``.

``tokens(name)`` is the token of the client called ``name``;
``tokens.share(doc_ids, owner)`` makes documents every client may write (or
does nothing when every client may anyway). The clients speak raw Engine.IO
frames (``bench_server.RawClient``), so any DocSync server will do.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from bench_server import RawClient, pct

# The whole document of the ``*_whole`` scenarios: a list, so that a list
# binding (``tests.bindings.ListBinding``, set when squashing) accepts it.
WHOLE_DOC = ["benchmark"] + [f"paragraph {i}" for i in range(20)]


class Client(RawClient):
    """A raw client that can send the whole document and pull on ``dirty``."""

    on_dirty = None
    ended: str | None = None  # why the socket ended before close(), if it did

    async def request(self, doc: str, ops: list, clock: int, serialized=None) -> dict:
        self.ack += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiters[self.ack] = fut
        payload = {
            "type": "doc",
            "docId": doc,
            "operations": ops,
            "serializedDoc": serialized,
            "clock": clock,
        }
        await self.ws.send_str(f"42{self.ack}" + json.dumps(["sync", payload]))
        return json.loads(await asyncio.wait_for(fut, 30))[0]

    async def _read(self) -> None:
        async for msg in self.ws:
            await self.handle(msg)
            await self.after_frame()
        self.ended = f"{self.ws.close_code} {self.ws.exception() or ''}".strip()

    async def after_frame(self) -> None:
        pass

    async def handle(self, msg: aiohttp.WSMessage) -> None:
        if msg.type == aiohttp.WSMsgType.PING:  # uvicorn's, every 20 s (autoping is off)
            await self.ws.pong(msg.data)
            return
        data = msg.data
        if msg.type != aiohttp.WSMsgType.TEXT:
            return
        if data == "2":
            await self.ws.send_str("3")
        elif data.startswith("43"):
            i = 2
            while data[i].isdigit():
                i += 1
            fut = self.waiters.pop(int(data[2:i]), None)
            if fut is not None and not fut.done():
                fut.set_result(data[i:])
        elif data.startswith('42["dirty"'):
            self.dirty_at.append(time.perf_counter())
            if self.on_dirty is not None:
                self.on_dirty()


class StallingClient(Client):
    """Stops reading its socket for ``stall`` seconds once every ``every`` seconds
    (the server's frames queue meanwhile: acks, ``dirty``, pings)."""

    def __init__(self, *args, stall: float, every: float = 1.0):
        super().__init__(*args)
        self.stall, self.every = stall, every
        self.next_stall = time.perf_counter() + every

    async def after_frame(self) -> None:
        if self.stall and time.perf_counter() >= self.next_stall:
            await asyncio.sleep(self.stall)
            self.next_stall = time.perf_counter() + self.every


def doc_name(tag: str) -> str:
    return f"bench-{tag}-{time.time_ns()}"


def view_of(data: dict) -> list | None:
    """The document an ack describes when it carries a snapshot (else ``None``)."""
    snapshot = data.get("serializedDoc")
    if snapshot is None:
        return None
    return [*(snapshot if isinstance(snapshot, list) else []), *data["operations"]]


async def connect_all(session, url, tokens, names) -> list[Client]:
    clients = [Client(session, url, tokens(name), name) for name in names]
    await asyncio.gather(*(c.connect() for c in clients))
    return clients


async def close_all(clients) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def close_replicas(reps) -> None:
    for r in reps:
        r.closed = True
        r.client.on_dirty = None
    await close_all([r.client for r in reps])


# -- one document each ------------------------------------------------------------


async def closed_loop(session, url, tokens, names, seconds, whole: bool) -> dict:
    clients = await connect_all(session, url, tokens, names)
    counts = [0] * len(clients)
    gaps = 0
    start = asyncio.Event()

    async def loop(i: int, c: Client) -> None:
        nonlocal gaps
        doc = doc_name(f"own{i}")
        serialized = WHOLE_DOC if whole else None
        # A write creates the document (reading a missing one is refused).
        clock = (await c.request(doc, [["init"]], 0, serialized))["data"]["clock"]
        await start.wait()
        while time.perf_counter() < stop:
            res = (await c.request(doc, [["op", clock]], clock, serialized))["data"]
            # Nobody else writes: nothing to read, unless a squash sent the snapshot.
            others = res["operations"] if res.get("serializedDoc") is None else []
            gaps += res["clock"] != clock + 1 or bool(others)
            clock = res["clock"]
            counts[i] += 1

    tasks = [asyncio.ensure_future(loop(i, c)) for i, c in enumerate(clients)]
    await asyncio.sleep(0.5)  # every client has its document
    stop = time.perf_counter() + seconds
    start.set()
    await asyncio.gather(*tasks)
    await close_all(clients)
    total = sum(counts)
    return {
        "value": round(total / seconds),
        "unit": "syncs/s",
        "count": total,
        "clock_errors": gaps,
    }


async def solo(session, url, tokens, args) -> dict:
    c = Client(session, url, tokens("solo"), "solo")
    await c.connect()
    doc = doc_name("solo")
    clock = (await c.request(doc, [["init"]], 0))["data"]["clock"]
    latencies = []
    stop = time.perf_counter() + args.seconds
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        clock = (await c.request(doc, [["op", clock]], clock))["data"]["clock"]
        latencies.append(time.perf_counter() - t0)
    await c.close()
    return {
        "value": round(len(latencies) / args.seconds),
        "unit": "syncs/s",
        "count": len(latencies),
        "p50_ms": round(pct(latencies, 0.5) * 1e3, 2),
        "p99_ms": round(pct(latencies, 0.99) * 1e3, 2),
    }


async def many(session, url, tokens, args) -> dict:
    names = [f"m{i}" for i in range(args.clients)]
    return await closed_loop(session, url, tokens, names, args.seconds, whole=False)


async def many_whole(session, url, tokens, args) -> dict:
    names = [f"m{i}" for i in range(args.clients)]
    return await closed_loop(session, url, tokens, names, args.seconds, whole=True)


async def connects(session, url, tokens, args) -> dict:
    names = [f"c{i}" for i in range(args.idle)]
    clients = [Client(session, url, tokens(n), n) for n in names]
    t0 = time.perf_counter()
    for c in clients:
        await c.connect()
    elapsed = time.perf_counter() - t0
    await close_all(clients)
    return {"value": round(elapsed * 1e3), "unit": "ms"}


# -- one shared document ------------------------------------------------------------


class Replica:
    """A client's copy of a shared document, synced like the official client.

    At most one sync in flight; operations made meanwhile wait for the next
    one; a ``dirty`` during a sync makes another sync follow it. A laggard
    waits ``delay`` seconds before each sync (more ``dirty`` and operations
    pile up meanwhile). An ack that carries the server's snapshot (after a
    squash) replaces the view.
    """

    def __init__(self, client: Client, doc: str, serialized=None, delay: float = 0.0):
        self.client, self.doc = client, doc
        self.serialized, self.delay = serialized, delay
        self.clock = 0
        self.seen: list = []  # every operation value this replica holds, in order
        self.unsent: list = []
        self.acked: list = []
        self.busy = False
        self.again = False
        self.idle = asyncio.Event()
        self.idle.set()
        self.error: str | None = None
        self.timeouts = 0
        self.pulled_at: list[tuple[float, int]] = []
        self.closed = False
        self.dead: str | None = None
        self.snapshots = 0  # acks that carried the server's snapshot (after a squash)
        self.client.on_dirty = self.schedule

    def schedule(self) -> None:
        if self.closed or self.dead:
            return
        if self.busy:
            self.again = True
            return
        self.busy = True
        self.idle.clear()
        asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.closed:
                    break
                self.again = False
                ops, self.unsent = self.unsent, []
                try:
                    res = await self.client.request(self.doc, ops, self.clock, self.serialized)
                except TimeoutError:
                    res = {"error": "no ack within 30 s"}
                    self.timeouts += 1
                except ConnectionError as exc:
                    if not self.closed:  # the server dropped us: give up, keep the ops
                        self.error = self.dead = f"{exc.__class__.__name__}: {exc}"
                        self.unsent = ops + self.unsent
                    break
                if "error" in res:
                    self.error = json.dumps(res["error"])
                    self.unsent = ops + self.unsent
                    await asyncio.sleep(0.05)
                    self.again = True
                else:
                    data = res["data"]
                    view = view_of(data)
                    if view is None:
                        self.seen.extend(data["operations"])
                    else:
                        self.seen = view
                        self.snapshots += 1
                    self.seen.extend(ops)
                    self.acked.extend(ops)
                    self.clock = data["clock"]
                    self.pulled_at.append((time.perf_counter(), self.clock))
                if not (self.again or self.unsent):
                    break
        finally:
            self.busy = False
            self.idle.set()

    def write(self, op) -> None:
        self.unsent.append(op)
        self.schedule()


async def replicas(session, url, tokens, names, tag, serialized=None, make_client=None):
    doc = doc_name(tag)
    tokens.share([doc], names[0])
    make_client = make_client or (lambda n: Client(session, url, tokens(n), n))
    clients = [make_client(n) for n in names]
    await asyncio.gather(*(c.connect() for c in clients))
    reps = [Replica(c, doc, serialized) for c in clients]
    for r in reps:  # subscribe
        r.schedule()
    await asyncio.gather(*(r.idle.wait() for r in reps))
    return reps, doc


async def fanout(session, url, tokens, args) -> dict:
    names = ["writer"] + [f"r{i}" for i in range(args.clients)]
    reps, doc = await replicas(session, url, tokens, names, "fanout")
    writer, readers = reps[0], reps[1:]
    dirty, delivered = [], []
    for round_ in range(args.rounds):
        for r in readers:
            r.client.dirty_at.clear()
        writer.write(["w", round_])
        await writer.idle.wait()
        acked, target = time.perf_counter(), writer.clock
        deadline = acked + 30
        while any(r.clock < target for r in readers) and time.perf_counter() < deadline:
            await asyncio.sleep(0.001)
        for r in readers:
            if r.client.dirty_at:
                dirty.append(r.client.dirty_at[0] - acked)
            got = [t for t, clock in r.pulled_at if clock >= target]
            if got:
                delivered.append(got[0] - acked)
    await asyncio.gather(*(r.idle.wait() for r in reps))
    lost = sum(len([op for op in writer.acked if op not in r.seen]) for r in readers)
    await close_replicas(reps)
    return {
        "value": round(pct(delivered, 0.5) * 1e3, 1),
        "unit": "ms p50 to op delivered",
        "dirty_p50_ms": round(pct(dirty, 0.5) * 1e3, 1),
        "delivered_p99_ms": round(pct(delivered, 0.99) * 1e3, 1),
        "lost": lost,
    }


async def typist(i: int, r: Replica, ops: int) -> None:
    """Types ``ops`` operations, each as soon as the last one is acked."""
    for n in range(ops):
        r.write(f"{i}:{n}")
        await asyncio.sleep(0)  # type the next one while the sync is in flight
        while (r.unsent or r.busy) and not r.dead:
            await r.idle.wait()


async def final_log(session, url, tokens, name, doc) -> list:
    """What a fresh client reads of ``doc``: the snapshot's values, then the log."""
    fresh = Client(session, url, tokens(name), "fresh")
    await fresh.connect()
    data = (await fresh.request(doc, [], 0))["data"]
    await fresh.close()
    return view_of(data) or data["operations"]


def losses(reps: list[Replica], final: list) -> dict:
    """Acknowledged operations missing from, or twice in, the final log and the views."""
    acked = {op for r in reps for op in r.acked}
    in_log = set(final)
    return {
        "acked": sum(len(r.acked) for r in reps),
        "lost": len(acked - in_log),
        "duplicated": len(final) - len(in_log),
        "lost_in_views": sum(len(acked - set(r.seen)) for r in reps),
        "duplicated_in_views": sum(len(r.seen) - len(set(r.seen)) for r in reps),
        "clients_with_errors": sum(r.error is not None for r in reps),
        "timeouts": sum(r.timeouts for r in reps),
        "errors": sorted({r.error for r in reps if r.error})[:3],
        "connections_ended": sorted({r.client.ended for r in reps if r.client.ended}),
        "unsent_at_end": sum(len(r.unsent) for r in reps),
        "acks_with_snapshot": sum(r.snapshots for r in reps),
    }


async def catch_up(reps: list[Replica]) -> None:
    for r in reps:
        r.schedule()
    await asyncio.gather(*(r.idle.wait() for r in reps))


async def hot(session, url, tokens, writers: int, ops: int, whole: bool = False) -> dict:
    names = [f"h{i}" for i in range(writers)]
    tag = f"hot{writers}{'w' if whole else ''}"
    reps, doc = await replicas(session, url, tokens, names, tag, WHOLE_DOC if whole else None)
    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(typist(i, r, ops) for i, r in enumerate(reps))), 300)
    elapsed = time.perf_counter() - t0
    await catch_up(reps)
    final = await final_log(session, url, tokens, names[0], doc)
    result = losses(reps, final)
    await close_replicas(reps)
    return {
        "value": round(result["acked"] / elapsed),
        "unit": "ops/s",
        "count": result["acked"],
        "syncs_per_op": round(sum(len(r.pulled_at) for r in reps) / max(result["acked"], 1), 2),
        "dirty_per_op": round(
            sum(len(r.client.dirty_at) for r in reps) / max(result["acked"], 1), 2
        ),
        **result,
    }


async def hot20(session, url, tokens, args) -> dict:
    return await hot(session, url, tokens, 20, 40)


async def hot20_whole(session, url, tokens, args) -> dict:
    return await hot(session, url, tokens, 20, 40, whole=True)


async def hot120(session, url, tokens, args) -> dict:
    return await hot(session, url, tokens, 120, 5)


async def laggard(session, url, tokens, args) -> dict:
    """20 writers x 40 operations on one document and ``--laggards`` slow clients.

    A laggard waits ``--lag-ms`` before each of its syncs and stops reading
    its socket for ``--stall-ms`` once a second, so it syncs from clocks far
    behind; it also types (one operation every 100 ms while the writers
    write), so its operations go in with a stale clock. Lost and duplicated
    count in the final log, in every view and in the laggards' views.
    """
    writers, ops = 20, 40
    names = [f"h{i}" for i in range(writers)] + [f"lag{i}" for i in range(args.laggards)]

    def make_client(name: str) -> Client:
        if name.startswith("lag"):
            return StallingClient(session, url, tokens(name), name, stall=args.stall_ms / 1e3)
        return Client(session, url, tokens(name), name)

    reps, doc = await replicas(session, url, tokens, names, "laggard", make_client=make_client)
    fast, slow = reps[:writers], reps[writers:]
    for r in slow:
        r.delay = args.lag_ms / 1e3
    done = asyncio.Event()
    behind = [0]

    async def slow_typist(i: int, r: Replica) -> None:
        n = 0
        while not done.is_set():
            r.write(f"lag{i}:{n}")
            n += 1
            await asyncio.sleep(0.1)

    async def watch() -> None:  # how many clocks the laggards fall behind
        while not done.is_set():
            head = max(r.clock for r in fast)
            behind[0] = max([behind[0], *(head - r.clock for r in slow)])
            await asyncio.sleep(0.02)

    side = [
        asyncio.ensure_future(c)
        for c in [watch(), *(slow_typist(i, r) for i, r in enumerate(slow))]
    ]
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(typist(i, r, ops) for i, r in enumerate(fast))), 300
        )
    finally:
        done.set()
        await asyncio.gather(*side)
    elapsed = time.perf_counter() - t0
    await catch_up(reps)
    final = await final_log(session, url, tokens, names[0], doc)
    result = losses(reps, final)
    await close_replicas(reps)
    acked = {op for r in reps for op in r.acked}
    return {
        "value": round(result["acked"] / elapsed),
        "unit": "ops/s",
        "count": result["acked"],
        **result,
        "acked_by_laggards": sum(len(r.acked) for r in slow),
        "lost_in_laggard_views": sum(len(acked - set(r.seen)) for r in slow),
        "duplicated_in_laggard_views": sum(len(r.seen) - len(set(r.seen)) for r in slow),
        "laggards_max_behind": behind[0],
        "laggard_syncs": sum(len(r.pulled_at) for r in slow),
    }


SCENARIOS = {
    f.__name__: f
    for f in [solo, many, many_whole, fanout, hot20, hot20_whole, hot120, laggard, connects]
}
# What runs without --only: the table of issue 14, then the laggard.
DEFAULT = ["solo", "many", "many_whole", "fanout", "hot20", "hot120", "laggard", "connects"]


def names_for(args) -> list[str]:
    """Every client name the scenarios use (users to create for real tokens)."""
    names = ["solo", "writer", "fresh"]
    names += [f"m{i}" for i in range(args.clients)] + [f"r{i}" for i in range(args.clients)]
    names += [f"h{i}" for i in range(120)] + [f"c{i}" for i in range(args.idle)]
    return names + [f"lag{i}" for i in range(args.laggards)]
