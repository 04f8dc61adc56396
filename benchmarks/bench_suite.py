"""The durability benchmark suite (issue 14): one JSON line per scenario.

    python benchmarks/bench_suite.py                                  # memory, ORM, PostgreSQL provider
    python benchmarks/bench_suite.py --configs memory:allow,postgres:default --repeat 3
    python benchmarks/bench_suite.py --only hot120,laggard --configs orm:default --squash-threshold 20
    python benchmarks/bench_suite.py --url http://127.0.0.1:8000/socket.io/ --permissions allow

By default the suite starts its servers. A *config* is
``<storage>:<permissions>``: storage ``memory`` (``InMemoryProvider``),
``orm`` (``ORMProvider`` on PostgreSQL) or ``postgres``
(``PostgresProvider``); permissions ``allow`` (``allow_all``) or ``default``
(DRF tokens and the default ``authorize``: each client is a real user,
shared documents are shared with a group as editors). Each config gets its
own uvicorn process (``tests.e2e_asgi``); with ``--repeat`` the configs run
interleaved (A B C A B C ...) and the last line is a table of medians. With
``--squash-threshold N`` the servers squash every N batches with a list
binding (``tests.bindings.ListBinding``) while the scenarios write.

With ``--url`` the scenarios run against a server that is already running
(docsync or any DocSync server, such as the reference), and none is started.
Client ``<name>``'s token is then ``valid-<name>`` (``--permissions allow``,
the default: docsync's test authentication), ``<prefix><name>``
(``--token-prefix``), the same for everyone (``--token``), the one a JSON
file maps ``<name>`` (or ``"*"``) to (``--tokens-file``), or a real user's
DRF token created in the server's database (``--permissions default
--database-url``, a docsync server; shared documents are shared as above).
Otherwise the server must let every client write the shared documents.

Scenarios (the table of issue 14, then more):

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
  view of each writer. ``hot20_whole`` (only with ``--only``): hot20 with
  the whole document in every sync.
* ``laggard``: hot20 plus ``--laggards`` clients that fall behind: each
  waits ``--lag-ms`` before every sync, stops reading its socket for
  ``--stall-ms`` once a second, and types an operation every 100 ms (so
  with a stale clock); ops/s, and the losses as for hot20, also counted in
  the laggards' views alone.
* ``connects``: 500 connections, total ms.

``benchmarks/node/loadgen.mjs`` runs the same scenarios (same client
behaviour and loss counting; document ids are lowercase ULIDs) with the real
Node ``socket.io-client`` v4 (websocket transport, one connection per client),
for numbers comparable with a checker that measures with a Node
socket.io-client load generator. Against a running server::

    (cd benchmarks/node && npm ci)
    node benchmarks/node/loadgen.mjs --url http://127.0.0.1:8000 --only solo,many,fanout,hot20,hot120,connects

or with the servers this suite starts (``--generator node``; one Node process
per scenario, so that each line carries the server's CPU seconds; with
default permissions the servers set ``OPEN_DOCUMENTS``, as the example
project does, because the Node generator shares no documents)::

    python benchmarks/bench_suite.py --generator node --configs memory:allow,postgres:default --repeat 3

It takes ``--seconds``, ``--clients``, ``--rounds``, ``--idle``, ``--repeat``,
``--token-prefix`` (default ``valid-``), ``--token`` and ``--tokens-file`` as
here, and prints the same JSON lines (plus the generator's own CPU seconds).

The load generator is one Python process (raw Engine.IO frames on aiohttp,
``bench_server.RawClient``; the scenarios are in ``suite_scenarios.py``) on
the same machine as the server and PostgreSQL; the first line states the
machine. A started server's CPU seconds are in each line (``server_cpu_s``,
and per operation or sync): they count less of the machine's load than wall
time (PostgreSQL's own CPU is not in them).
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

from bench_server import cpu_seconds, start_server  # noqa: E402
from suite_scenarios import DEFAULT, SCENARIOS, names_for  # noqa: E402

PROVIDERS = {
    "memory": "docsync.providers.memory.InMemoryProvider",
    "orm": "docsync.providers.orm.ORMProvider",
    "postgres": "docsync.providers.postgres.PostgresProvider",
}
AUTHORIZE = {"allow": "docsync.permissions.allow_all", "default": "docsync.permissions.authorize"}
AUTHENTICATE = {"allow": "tests.auth.token_authenticate", "default": "docsync.auth.authenticate"}
BENCH_DATABASE = "postgres://postgres@127.0.0.1:5432/docsync_bench"


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


class FixedTokens:
    """``name -> token`` by a rule (``--url`` mode); documents are not shared."""

    def __init__(self, rule):
        self.rule = rule

    def __call__(self, name: str) -> str:
        return self.rule(name)

    def share(self, doc_ids: list[str], owner: str) -> None:
        pass


def url_tokens(args):
    """The tokens of ``--url`` mode (see the module docstring)."""
    if args.tokens_file:
        table = json.loads(Path(args.tokens_file).read_text())
        return FixedTokens(lambda name: table.get(name) or table["*"])
    if args.token:
        return FixedTokens(lambda name: args.token)
    if args.token_prefix is not None:
        return FixedTokens(lambda name: args.token_prefix + name)
    if args.permissions == "default":
        if not args.database_url:
            sys.exit("--permissions default with --url needs the server's --database-url")
        tokens = Tokens("default", args.database_url)
        tokens.prepare(names_for(args))
        return tokens
    return FixedTokens(lambda name: f"valid-{name}")


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


# -- driver -----------------------------------------------------------------------


def machine(args, configs: list[str]) -> dict:
    info = {"scenario": "machine", "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
        with open("/proc/meminfo") as f:
            info["mem_mb"] = int(f.readline().split()[1]) // 1024
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    info["python"] = platform.python_version()
    info["os"] = f"{platform.system()} {platform.release()}"
    uses_db = any(not c.startswith("memory:") for c in configs) or bool(
        args.url and args.database_url
    )
    if uses_db:
        info["postgres"] = postgres_version(args.database_url or BENCH_DATABASE)
    if args.url:
        info["server"] = f"running at {args.url} (not started by the suite)"
    else:
        info["server"] = "uvicorn, one process per config (tests.e2e_asgi)"
        info["squash_threshold"] = args.squash_threshold
    info["note"] = "load generator, server and database share these cores"
    return info


def postgres_version(url: str) -> str | None:
    import psycopg

    from docsync.utils import database_from_url

    config = database_from_url(url)
    try:
        with psycopg.connect(
            host=config["HOST"],
            port=config["PORT"] or 5432,
            user=config["USER"],
            dbname="postgres",
            connect_timeout=5,
        ) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error:
        return None


def server_env(config: str, args) -> dict[str, str]:
    storage, permissions = config.split(":")
    env = django_env(None if storage == "memory" else args.database_url)
    if args.generator == "node" and permissions == "default":
        env["E2E_DOCSYNC"] = json.dumps({"OPEN_DOCUMENTS": True})
    env.update(
        E2E_PROVIDER=PROVIDERS[storage],
        E2E_AUTHORIZE=AUTHORIZE[permissions],
        E2E_AUTHENTICATE=AUTHENTICATE[permissions],
        E2E_SQUASH_THRESHOLD=str(args.squash_threshold),
    )
    if args.squash_threshold:  # squashing needs the document type's binding
        env["E2E_BINDINGS"] = json.dumps({"doc": "tests.bindings.ListBinding"})
    return env


async def run_scenarios(config: str, url: str, args, tokens, pid: int | None = None) -> list[dict]:
    results = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for name in args.only or DEFAULT:
            t0, cpu0 = time.perf_counter(), cpu_seconds(pid)
            try:
                result = await SCENARIOS[name](session, url, tokens, args)
            except Exception as exc:  # noqa: BLE001  (report and go on)
                result = {"value": None, "error": f"{exc.__class__.__name__}: {exc}"}
            line = {"config": config, "scenario": name, **result}
            line["took_s"] = round(time.perf_counter() - t0, 1)
            results.append(report(line, pid, cpu0))
    return results


def report(line: dict, pid: int | None, cpu0: float) -> dict:
    """Print ``line`` with the server's CPU seconds since ``cpu0`` (a started server's)."""
    if pid:
        cpu = cpu_seconds(pid) - cpu0
        line["server_cpu_s"] = round(cpu, 2)
        if line.get("count"):
            line["server_cpu_us_per_op"] = round(cpu / line["count"] * 1e6)
    print(json.dumps(line), flush=True)
    return line


NODE_LOADGEN = ROOT / "benchmarks" / "node" / "loadgen.mjs"


async def run_node(config: str, url: str, args, tokens, pid: int | None = None) -> list[dict]:
    """The scenarios driven by ``loadgen.mjs``, one Node process per scenario."""
    import tempfile

    if not (NODE_LOADGEN.parent / "node_modules").exists():
        sys.exit("--generator node: run `npm ci` in benchmarks/node first")
    results = []
    with tempfile.NamedTemporaryFile("w", suffix=".json") as table:
        json.dump({name: tokens(name) for name in names_for(args)}, table)
        table.flush()
        for name in args.only or list(SCENARIOS):  # loadgen.mjs has them all
            cmd = ["node", str(NODE_LOADGEN), "--url", url, "--only", name, "--label", config]
            cmd += ["--tokens-file", table.name, "--seconds", str(args.seconds)]
            cmd += ["--clients", str(args.clients), "--rounds", str(args.rounds)]
            cmd += ["--idle", str(args.idle), "--laggards", str(args.laggards)]
            cmd += ["--lag-ms", str(args.lag_ms), "--stall-ms", str(args.stall_ms)]
            cpu0 = cpu_seconds(pid)
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, cwd=ROOT
            )
            out, _ = await proc.communicate()
            lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
            line = next((x for x in lines if x.get("scenario") == name), None)
            if line is None:
                line = {"config": config, "scenario": name, "value": None}
                line["error"] = f"loadgen exited {proc.returncode} without a line"
            results.append(report(line, pid, cpu0))
    return results


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="memory:allow,orm:default,postgres:default")
    parser.add_argument("--only", type=lambda s: s.split(","), help=f"of {','.join(SCENARIOS)}")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--database-url", help=f"PostgreSQL for the servers (default {BENCH_DATABASE})"
    )
    parser.add_argument(
        "--port", type=int, help="first port of the started servers (default: free ports)"
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--laggards", type=int, default=1)
    parser.add_argument(
        "--lag-ms", type=float, default=200, help="a laggard's wait before each sync"
    )
    parser.add_argument(
        "--stall-ms", type=float, default=500, help="a laggard's read stall, once a second"
    )
    parser.add_argument("--squash-threshold", type=int, default=0)
    parser.add_argument(
        "--generator",
        choices=["python", "node"],
        default="python",
        help="the load: this process (raw frames) or benchmarks/node/loadgen.mjs (socket.io-client)",
    )
    remote = parser.add_argument_group("a running server (--url)")
    remote.add_argument("--url", help="http://host:port/socket.io/ of a running server")
    remote.add_argument("--label", default="url", help="the config name in the lines")
    remote.add_argument("--permissions", choices=["allow", "default"], default="allow")
    remote.add_argument("--token-prefix", help="client <name>'s token is <prefix><name>")
    remote.add_argument("--token", help="one token for every client")
    remote.add_argument("--tokens-file", help='JSON {"<name>": token, "*": token}')
    args = parser.parse_args()
    for name in args.only or []:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; scenarios: {', '.join(SCENARIOS)}")
    if args.laggards < 1:
        parser.error("--laggards must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    if args.url:
        print(json.dumps(machine(args, [])), flush=True)
        tokens = url_tokens(args)
        table: dict[tuple[str, str], list] = {}
        for _ in range(args.repeat):
            for line in asyncio.run(run_scenarios(args.label, args.url, args, tokens)):
                table.setdefault((line["scenario"], args.label), []).append(line["value"])
        print(json.dumps({"scenario": "medians", **summary(table)}), flush=True)
        return
    args.database_url = args.database_url or BENCH_DATABASE
    configs = args.configs.split(",")
    print(json.dumps(machine(args, configs)), flush=True)
    if any(not c.startswith("memory:") for c in configs):
        ensure_database(args.database_url)
    tokens = {}
    for config in configs:
        permissions = config.split(":")[1]
        if permissions not in tokens:
            tokens[permissions] = Tokens(permissions, args.database_url)
            tokens[permissions].prepare(names_for(args))
    from tests.liveserver import free_port

    table = {}
    for n in range(args.repeat * len(configs)):
        config = configs[n % len(configs)]
        port = args.port + n % 100 if args.port else free_port()
        proc = start_server("uvicorn", port, server_env(config, args))
        url = f"http://127.0.0.1:{port}/socket.io/"
        try:
            run = run_node if args.generator == "node" else run_scenarios
            results = asyncio.run(run(config, url, args, tokens[config.split(":")[1]], proc.pid))
        finally:
            proc.terminate()
            proc.wait()
        for line in results:
            table.setdefault((line["scenario"], config), []).append(line["value"])
    print(json.dumps({"scenario": "medians", **summary(table)}), flush=True)


def summary(table) -> dict:
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
