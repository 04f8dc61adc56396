"""The durability benchmark suite (issue 14): one JSON line per scenario.

    python benchmarks/bench_suite.py                                  # memory, ORM, PostgreSQL provider
    python benchmarks/bench_suite.py --configs memory:allow,postgres:default --repeat 3
    python benchmarks/bench_suite.py --only hot120 --configs orm:default

A *config* is ``<storage>:<permissions>``: storage ``memory``
(``InMemoryProvider``), ``orm`` (``ORMProvider`` on PostgreSQL) or
``postgres`` (``PostgresProvider``); permissions ``allow`` (``allow_all``)
or ``default`` (DRF tokens and the default ``authorize``: each client is a
real user, shared documents are shared with a group as editors). Each config
gets its own uvicorn process; with ``--repeat`` the configs run interleaved
(A B C A B C ...) and the last line is a table of medians.

Scenarios (the table of issue 14):

* ``solo``: 1 client, sequential syncs with one operation each, syncs/s.
* ``many``: 50 clients, each on its own document, closed loop, syncs/s.
* ``many_whole``: the same with the whole document (``serializedDoc``) in
  every sync, as the official client sends it.
* ``fanout``: 1 writer, 50 readers that pull on ``dirty`` (as the official
  client does); p50 from the writer's ack to each reader's ``dirty`` and to
  the reader holding the operation.
* ``hot20`` / ``hot120``: 20 writers x 40 operations / 120 writers x 5 on
  one document; every client pulls on ``dirty`` with at most one sync in
  flight (a sync carries all its unsent operations, like the official
  client); ops/s, and ``lost`` / ``duplicated``: acknowledged operations
  missing from, or twice in, the log a fresh client reads at the end and the
  view of each writer.
* ``connects``: 500 connections, total seconds.

The load generator is one Python process (raw Engine.IO frames on aiohttp,
``bench_server.RawClient``) on the same machine as the server and
PostgreSQL; the first line states the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_server import RawClient, pct, start_server  # noqa: E402

PROVIDERS = {
    "memory": "docsync.providers.memory.InMemoryProvider",
    "orm": "docsync.providers.orm.ORMProvider",
    "postgres": "docsync.providers.postgres.PostgresProvider",
}
AUTHORIZE = {"allow": "docsync.permissions.allow_all", "default": "docsync.permissions.authorize"}
AUTHENTICATE = {"allow": "tests.auth.token_authenticate", "default": "docsync.auth.authenticate"}
SCENARIOS = ["solo", "many", "many_whole", "fanout", "hot20", "hot120", "connects"]
WHOLE_DOC = {"title": "benchmark", "body": [f"paragraph {i}" for i in range(20)]}


class Client(RawClient):
    """A raw client that can send the whole document and pull on ``dirty``."""

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


class Tokens:
    """``name -> token``: test tokens (allow) or real users' DRF tokens (default)."""

    def __init__(self, permissions: str, database_url: str | None):
        self.permissions = permissions
        self.database_url = database_url
        self.keys: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if self.permissions == "allow":
            return f"valid-{name}"
        return self.keys[name]

    def prepare(self, names: list[str]) -> None:
        """Create the users and their tokens (default permissions) in one process."""
        if self.permissions == "allow":
            return
        script = (
            "import json, sys\n"
            "from django.contrib.auth import get_user_model\n"
            "from django.contrib.auth.models import Group\n"
            "from rest_framework.authtoken.models import Token\n"
            "names = json.loads(sys.stdin.read())\n"
            "group, _ = Group.objects.get_or_create(name='bench')\n"
            "User = get_user_model()\n"
            "existing = {u.username: u for u in User.objects.filter(username__in=names)}\n"
            "new = [User(username=n) for n in names if n not in existing]\n"
            "User.objects.bulk_create(new)\n"
            "users = list(User.objects.filter(username__in=names))\n"
            "group.user_set.add(*users)\n"
            "Token.objects.filter(user__in=users, key='').delete()\n"
            "new = [Token(user=u, key=Token.generate_key()) for u in users]\n"
            "Token.objects.bulk_create(new, ignore_conflicts=True)\n"
            "keys = dict(Token.objects.filter(user__in=users).values_list('user__username', 'key'))\n"
            "print(json.dumps(keys))\n"
        )
        out = django_shell(script, self.database_url, json.dumps(names))
        self.keys.update(json.loads(out.strip().splitlines()[-1]))

    def share(self, doc_ids: list[str], owner: str) -> None:
        """Create ``doc_ids`` owned by ``owner``, shared with the bench group as editors."""
        if self.permissions == "allow":
            return
        script = (
            "import json, sys\n"
            "from django.contrib.auth import get_user_model\n"
            "from django.contrib.auth.models import Group\n"
            "from docsync.models import Document, DocumentShare\n"
            "doc_ids, owner = json.loads(sys.stdin.read())\n"
            "owner = get_user_model().objects.get(username=owner)\n"
            "group = Group.objects.get(name='bench')\n"
            "for doc_id in doc_ids:\n"
            "    doc = Document.objects.create(doc_id=doc_id, doc_type='doc', owner=owner)\n"
            "    DocumentShare.objects.create(document=doc, group=group, role='editor')\n"
        )
        django_shell(script, self.database_url, json.dumps([doc_ids, owner]))


def django_env(database_url: str | None) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.e2e_settings"}
    if database_url:
        env["E2E_DATABASE_URL"] = database_url
    return env


def django_shell(script: str, database_url: str | None, stdin: str = "") -> str:
    cmd = [sys.executable, "-c", "import django; django.setup()\n" + script]
    result = subprocess.run(
        cmd, cwd=ROOT, env=django_env(database_url), input=stdin, text=True, capture_output=True
    )
    if result.returncode:
        raise RuntimeError(result.stderr)
    return result.stdout


def doc_name(tag: str) -> str:
    return f"bench-{tag}-{time.time_ns()}"


# -- scenarios ------------------------------------------------------------------


async def connect_all(session, url, tokens, names) -> list[Client]:
    clients = [Client(session, url, tokens(name), name) for name in names]
    await asyncio.gather(*(c.connect() for c in clients))
    return clients


async def close_all(clients) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


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
            gaps += res["clock"] != clock + 1 or bool(res["operations"])
            clock = res["clock"]
            counts[i] += 1

    tasks = [asyncio.ensure_future(loop(i, c)) for i, c in enumerate(clients)]
    await asyncio.sleep(0.5)  # every client has its document
    stop = time.perf_counter() + seconds
    start.set()
    await asyncio.gather(*tasks)
    await close_all(clients)
    return {"value": round(sum(counts) / seconds), "unit": "syncs/s", "clock_errors": gaps}


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
        "p50_ms": round(pct(latencies, 0.5) * 1e3, 2),
        "p99_ms": round(pct(latencies, 0.99) * 1e3, 2),
    }


async def many(session, url, tokens, args) -> dict:
    names = [f"m{i}" for i in range(args.clients)]
    return await closed_loop(session, url, tokens, names, args.seconds, whole=False)


async def many_whole(session, url, tokens, args) -> dict:
    names = [f"m{i}" for i in range(args.clients)]
    return await closed_loop(session, url, tokens, names, args.seconds, whole=True)


class Replica:
    """A client's copy of a shared document, synced like the official client.

    At most one sync in flight; operations made meanwhile wait for the next
    one; a ``dirty`` during a sync makes another sync follow it.
    """

    def __init__(self, client: Client, doc: str):
        self.client, self.doc = client, doc
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
        self.client.on_dirty = self.schedule

    def schedule(self) -> None:
        if self.busy:
            self.again = True
            return
        self.busy = True
        self.idle.clear()
        asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self.again = False
                ops, self.unsent = self.unsent, []
                try:
                    res = await self.client.request(self.doc, ops, self.clock)
                except TimeoutError:
                    res = {"error": "no ack within 30 s"}
                    self.timeouts += 1
                if "error" in res:
                    self.error = json.dumps(res["error"])
                    self.unsent = ops + self.unsent
                    await asyncio.sleep(0.05)
                    self.again = True
                else:
                    data = res["data"]
                    self.seen.extend(data["operations"])
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


class DirtyClient(Client):
    """Calls ``on_dirty`` on each ``dirty``."""

    on_dirty = None

    async def _read(self) -> None:
        async for msg in self.ws:
            data = msg.data
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


async def replicas(session, url, tokens, names, tag) -> tuple[list[Replica], str]:
    doc = doc_name(tag)
    tokens.share([doc], names[0])
    clients = [DirtyClient(session, url, tokens(n), n) for n in names]
    await asyncio.gather(*(c.connect() for c in clients))
    reps = [Replica(c, doc) for c in clients]
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
    await close_all([r.client for r in reps])
    return {
        "value": round(pct(delivered, 0.5) * 1e3, 1),
        "unit": "ms p50 to op delivered",
        "dirty_p50_ms": round(pct(dirty, 0.5) * 1e3, 1),
        "delivered_p99_ms": round(pct(delivered, 0.99) * 1e3, 1),
        "lost": lost,
    }


async def hot(session, url, tokens, writers: int, ops: int) -> dict:
    names = [f"h{i}" for i in range(writers)]
    reps, doc = await replicas(session, url, tokens, names, f"hot{writers}")
    t0 = time.perf_counter()

    async def typist(i: int, r: Replica) -> None:
        for n in range(ops):
            r.write(f"{i}:{n}")
            await asyncio.sleep(0)  # type the next one while the sync is in flight
            while r.unsent or r.busy:
                await r.idle.wait()

    await asyncio.wait_for(asyncio.gather(*(typist(i, r) for i, r in enumerate(reps))), 300)
    elapsed = time.perf_counter() - t0
    for r in reps:  # everyone catches up
        r.schedule()
    await asyncio.gather(*(r.idle.wait() for r in reps))
    acked = [op for r in reps for op in r.acked]
    fresh = DirtyClient(session, url, tokens(names[0]), "fresh")
    await fresh.connect()
    final = (await fresh.request(doc, [], 0))["data"]["operations"]
    await close_all([fresh, *(r.client for r in reps)])
    in_log = set(final)
    views_lost = sum(len(set(acked) - set(r.seen)) for r in reps)
    views_dup = sum(len(r.seen) - len(set(r.seen)) for r in reps)
    return {
        "value": round(len(acked) / elapsed),
        "unit": "ops/s",
        "acked": len(acked),
        "lost": len(set(acked) - in_log),
        "duplicated": len(final) - len(in_log),
        "lost_in_views": views_lost,
        "duplicated_in_views": views_dup,
        "clients_with_errors": sum(r.error is not None for r in reps),
        "timeouts": sum(r.timeouts for r in reps),
    }


async def hot20(session, url, tokens, args) -> dict:
    return await hot(session, url, tokens, 20, 40)


async def hot120(session, url, tokens, args) -> dict:
    return await hot(session, url, tokens, 120, 5)


async def connects(session, url, tokens, args) -> dict:
    names = [f"c{i}" for i in range(args.idle)]
    clients = [Client(session, url, tokens(n), n) for n in names]
    t0 = time.perf_counter()
    for c in clients:
        await c.connect()
    elapsed = time.perf_counter() - t0
    await close_all(clients)
    return {"value": round(elapsed * 1e3), "unit": "ms"}


def names_for(args) -> list[str]:
    names = ["solo", "writer", "fresh"]
    names += [f"m{i}" for i in range(args.clients)] + [f"r{i}" for i in range(args.clients)]
    names += [f"h{i}" for i in range(120)] + [f"c{i}" for i in range(args.idle)]
    return names


# -- driver -----------------------------------------------------------------------


def machine() -> dict:
    info = {"scenario": "machine", "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    info["loadavg"] = os.getloadavg()
    info["note"] = "load generator, server and database share these cores"
    return info


def server_env(config: str, args) -> dict[str, str]:
    storage, permissions = config.split(":")
    env = django_env(None if storage == "memory" else args.database_url)
    env.update(
        E2E_PROVIDER=PROVIDERS[storage],
        E2E_AUTHORIZE=AUTHORIZE[permissions],
        E2E_AUTHENTICATE=AUTHENTICATE[permissions],
        E2E_SQUASH_THRESHOLD=str(args.squash_threshold),
    )
    return env


async def run_config(config: str, args, tokens: Tokens, port: int) -> list[dict]:
    url = f"http://127.0.0.1:{port}/socket.io/"
    results = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for name in args.only or SCENARIOS:
            t0 = time.perf_counter()
            try:
                result = await globals()[name](session, url, tokens, args)
            except Exception as exc:  # noqa: BLE001  (report and go on)
                result = {"value": None, "error": f"{exc.__class__.__name__}: {exc}"}
            line = {"config": config, "scenario": name, **result}
            line["took_s"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(line), flush=True)
            results.append(line)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="memory:allow,orm:default,postgres:default")
    parser.add_argument("--only", type=lambda s: s.split(","), help=f"of {','.join(SCENARIOS)}")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/docsync_bench"
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--squash-threshold", type=int, default=0)
    args = parser.parse_args()
    configs = args.configs.split(",")
    print(json.dumps(machine()), flush=True)
    if any(not c.startswith("memory:") for c in configs):
        ensure_database(args.database_url)
    tokens = {}
    for config in configs:
        permissions = config.split(":")[1]
        if permissions not in tokens:
            tokens[permissions] = Tokens(permissions, args.database_url)
            tokens[permissions].prepare(names_for(args))
    from tests.liveserver import free_port

    table: dict[tuple[str, str], list] = {}
    for _ in range(args.repeat):
        for config in configs:
            port = free_port()
            proc = start_server("uvicorn", port, server_env(config, args))
            try:
                results = asyncio.run(run_config(config, args, tokens[config.split(":")[1]], port))
            finally:
                proc.terminate()
                proc.wait()
            for line in results:
                table.setdefault((line["scenario"], config), []).append(line["value"])
    print(json.dumps({"scenario": "medians", **summary(table, configs)}), flush=True)


def summary(table, configs) -> dict:
    out = {}
    for (scenario, config), values in table.items():
        values = [v for v in values if v is not None]
        out.setdefault(scenario, {})[config] = statistics.median(values) if values else None
    return out


def ensure_database(url: str) -> None:
    """Create the benchmark database if needed and migrate it."""
    import psycopg

    from docsync.utils import database_from_url

    config = database_from_url(url)
    admin = dict(
        host=config["HOST"], port=config["PORT"] or 5432, user=config["USER"], dbname="postgres"
    )
    with psycopg.connect(**admin, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (config["NAME"],)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{config["NAME"]}"')
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"],
        cwd=ROOT,
        env=django_env(url),
        check=True,
    )


if __name__ == "__main__":
    # Stop the servers we started (finally blocks) when killed by timeout(1).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
