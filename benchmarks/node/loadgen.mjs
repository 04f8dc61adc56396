/**
 * The scenarios of benchmarks/bench_suite.py driven by the real
 * `socket.io-client` (v4, `transports: ["websocket"]`), one socket (and one
 * Manager, `forceNew`) per client, so that a server's numbers can be set
 * beside those of a checker that measures with a Node socket.io-client load
 * generator.
 *
 *     cd benchmarks/node && npm ci          # once: installs socket.io-client (package-lock.json)
 *     node benchmarks/node/loadgen.mjs --url http://127.0.0.1:8000 \
 *         --only solo,many,fanout,hot20,hot120,connects [--seconds 5] [--token-prefix valid-]
 *
 * The server must be running already (this script starts none), e.g. docsync's
 * test server, in memory, every client may write:
 *
 *     DJANGO_SETTINGS_MODULE=tests.e2e_settings python -m uvicorn tests.e2e_asgi:application \
 *         --port 8000 --log-level warning --ws-per-message-deflate false
 *
 * `--url` is `http://host:port` (path `/socket.io/`) or names the path
 * (`http://host:port/socket.io/`, as bench_suite.py takes it). Client
 * `<name>`'s token is `<prefix><name>` (`--token-prefix`, default `valid-`:
 * docsync's test authentication, tests.auth.token_authenticate), one token for
 * everyone (`--token`), or the one a JSON file maps `<name>` (or `"*"`) to
 * (`--tokens-file`). The server must let every client write the shared
 * documents. Each client connects with `{deviceId: "dev-<name>", clientId:
 * "cli-<name>", claimedUserId: null, token}` and counts as connected once
 * `identity` arrives.
 *
 * Output: a `machine` line, then one JSON line per scenario (`config` is
 * `--label`, default `node`) with `value` and `unit` and the same fields as
 * the Python suite's lines (loss counts for fanout/hot*), `took_s`, and
 * `loadgen_cpu_s` (this process's CPU seconds: on a small machine the
 * generator competes with the server for the cores); hot* lines also carry
 * `syncs_per_op` and `dirty_per_op`; with
 * `--repeat N` the scenarios run N times and a last line holds the medians.
 *
 * Scenarios (the same as suite_scenarios.py, same client behaviour):
 *
 * - solo: 1 client, sequential syncs with one operation each; syncs/s, p50/p99.
 * - many / many_whole: `--clients` (50) clients, each on its own document,
 *   closed loop for `--seconds`; many_whole sends the whole document
 *   (`serializedDoc`) in every sync as the official client does; syncs/s.
 * - fanout: 1 writer, `--clients` readers that pull on `dirty`; `--rounds`
 *   (30) writes; p50 ms from the writer's ack to the reader holding the
 *   operation (and to its `dirty`); `lost` in the readers' views.
 * - hot20 / hot120 (/ hot20_whole, only with --only): 20 writers x 40 /
 *   120 writers x 5 operations on one document. Every client keeps at most
 *   one sync in flight per document, a sync carries all its unsent
 *   operations, a `dirty` makes it pull, and dirties that arrive while a sync
 *   is in flight coalesce into one follow-up sync; an `{error}` answer keeps
 *   the operations and retries after 50 ms. ops/s, and `lost` / `duplicated`:
 *   acknowledged operations missing from, or twice in, the log a fresh client
 *   reads at the end, and the same in every writer's view.
 * - laggard: hot20 plus `--laggards` clients that wait `--lag-ms` before each
 *   sync, stop reading their socket for `--stall-ms` once a second (the ws
 *   socket is paused) and type an operation every 100 ms.
 * - connects: `--idle` (500) connections one after the other; total ms.
 *
 * Document ids are lowercase 26-character ULIDs (`^[0-7][0-9a-hjkmnp-tv-z]{25}$`),
 * as the official client makes them.
 */

import { readFileSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { createRequire } from "node:module";
import { io } from "socket.io-client";

const require = createRequire(import.meta.url);
const now = () => performance.now() / 1e3; // seconds, like time.perf_counter()
const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1e3));
const ACK_TIMEOUT_MS = 30_000;

// The whole document of the *_whole scenarios (the same list as the Python suite's).
const WHOLE_DOC = ["benchmark", ...Array.from({ length: 20 }, (_, i) => `paragraph ${i}`)];

// -- arguments ------------------------------------------------------------------

const SCENARIOS = {};
const DEFAULT = ["solo", "many", "many_whole", "fanout", "hot20", "hot120", "laggard", "connects"];

function parseArgs(argv) {
  const args = {
    url: null,
    only: null,
    seconds: 5,
    clients: 50,
    rounds: 30,
    idle: 500,
    laggards: 1,
    lagMs: 200,
    stallMs: 500,
    repeat: 1,
    label: "node",
    tokenPrefix: "valid-",
    token: null,
    tokensFile: null,
  };
  const flags = {
    "--url": ["url", String],
    "--only": ["only", (s) => s.split(",").filter(Boolean)],
    "--seconds": ["seconds", Number],
    "--clients": ["clients", (s) => parseInt(s, 10)],
    "--rounds": ["rounds", (s) => parseInt(s, 10)],
    "--idle": ["idle", (s) => parseInt(s, 10)],
    "--laggards": ["laggards", (s) => parseInt(s, 10)],
    "--lag-ms": ["lagMs", Number],
    "--stall-ms": ["stallMs", Number],
    "--repeat": ["repeat", (s) => parseInt(s, 10)],
    "--label": ["label", String],
    "--token-prefix": ["tokenPrefix", String],
    "--token": ["token", String],
    "--tokens-file": ["tokensFile", String],
  };
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s, 2);
    if (flag === "-h" || flag === "--help") {
      console.log(usage());
      process.exit(0);
    }
    if (!(flag in flags)) die(`unknown option ${flag}\n${usage()}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) die(`${flag} needs a value`);
      value = argv[++i];
    }
    const [key, parse] = flags[flag];
    args[key] = parse(value);
  }
  if (!args.url) die(`--url is required\n${usage()}`);
  for (const name of args.only || []) {
    if (!(name in SCENARIOS)) die(`unknown scenario ${name}; scenarios: ${Object.keys(SCENARIOS).join(", ")}`);
  }
  if (!(args.laggards >= 1)) die("--laggards must be at least 1");
  const url = new URL(args.url);
  args.path = url.pathname === "/" ? "/socket.io/" : url.pathname;
  args.origin = url.origin;
  args.tokens = tokenRule(args);
  return args;
}

function usage() {
  return (
    "usage: node loadgen.mjs --url http://HOST:PORT[/socket.io/] [--only a,b,...] [--seconds 5]\n" +
    "       [--clients 50] [--rounds 30] [--idle 500] [--laggards 1] [--lag-ms 200] [--stall-ms 500]\n" +
    "       [--repeat 1] [--label node] [--token-prefix valid-] [--token T] [--tokens-file FILE]\n" +
    `scenarios: ${Object.keys(SCENARIOS).join(", ")} (default: ${DEFAULT.join(",")})`
  );
}

function die(message) {
  console.error(message);
  process.exit(2);
}

function tokenRule(args) {
  if (args.tokensFile) {
    const table = JSON.parse(readFileSync(args.tokensFile, "utf8"));
    return (name) => table[name] ?? table["*"];
  }
  if (args.token !== null) return () => args.token;
  return (name) => args.tokenPrefix + name;
}

// -- helpers --------------------------------------------------------------------

const CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz";

/** A lowercase ULID: 10 characters of milliseconds, 16 random (first one 0-7). */
function docName() {
  let ms = Date.now();
  let time = "";
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[ms % 32] + time;
    ms = Math.floor(ms / 32);
  }
  let rand = "";
  for (let i = 0; i < 16; i++) rand += CROCKFORD[Math.floor(Math.random() * 32)];
  return time + rand;
}

function pct(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const round = (x, digits = 0) => (x === undefined || Number.isNaN(x) ? null : Number(x.toFixed(digits)));

/** asyncio.Event */
class Event {
  constructor(set = false) {
    this.value = set;
    this.waiters = [];
  }
  set() {
    this.value = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
  clear() {
    this.value = false;
  }
  wait() {
    return this.value ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}

class AckTimeout extends Error {}
class ConnectionLost extends Error {}

function withTimeout(promise, seconds, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new AckTimeout(`${what}: not done within ${seconds} s`)), seconds * 1e3);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// -- a client -------------------------------------------------------------------

class Client {
  constructor(args, token, name, { stall = 0, every = 1 } = {}) {
    this.args = args;
    this.token = token;
    this.name = name;
    this.dirtyAt = [];
    this.onDirty = null;
    this.ended = null; // why the socket ended before close(), if it did
    this.closing = false;
    this.stall = stall;
    this.every = every;
    this.nextStall = now() + every;
    this.stalled = false;
  }

  connect() {
    const socket = io(this.args.origin, {
      path: this.args.path,
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: 30_000,
      auth: {
        deviceId: `dev-${this.name}`,
        clientId: `cli-${this.name}`,
        claimedUserId: null,
        token: this.token,
      },
    });
    this.socket = socket;
    socket.on("dirty", () => {
      this.dirtyAt.push(now());
      if (this.onDirty) this.onDirty();
    });
    socket.on("disconnect", (reason, details) => {
      if (!this.closing) {
        const more = details?.description?.message || details?.message || "";
        this.ended = `${reason}${more ? " " + more : ""}`;
      }
    });
    if (this.stall) socket.io.on("packet", () => this.afterFrame());
    return new Promise((resolve, reject) => {
      socket.once("identity", () => resolve());
      socket.once("connect_error", (err) => {
        socket.close();
        reject(new Error(`connect_error ${this.name}: ${err.message}`));
      });
    });
  }

  /** Stops reading the socket for `stall` seconds once every `every` seconds. */
  afterFrame() {
    if (this.stalled || now() < this.nextStall) return;
    const ws = this.socket.io.engine?.transport?.ws;
    if (!ws || typeof ws.pause !== "function") return;
    this.stalled = true;
    ws.pause();
    setTimeout(() => {
      ws.resume();
      this.stalled = false;
      this.nextStall = now() + this.every;
    }, this.stall * 1e3);
  }

  async request(docId, operations, clock, serializedDoc = null) {
    if (!this.socket.connected) throw new ConnectionLost(this.ended || "not connected");
    const payload = { type: "doc", docId, operations, serializedDoc, clock };
    try {
      return await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck("sync", payload);
    } catch (err) {
      if (err.message === "operation has timed out") throw new AckTimeout(err.message);
      throw new ConnectionLost(err.message);
    }
  }

  close() {
    this.closing = true;
    this.socket?.disconnect();
  }
}

/** The document an ack describes when it carries a snapshot (else null). */
function viewOf(data) {
  const snapshot = data.serializedDoc;
  if (snapshot === null || snapshot === undefined) return null;
  return [...(Array.isArray(snapshot) ? snapshot : []), ...data.operations];
}

async function connectAll(args, names) {
  const clients = names.map((n) => new Client(args, args.tokens(n), n));
  await Promise.all(clients.map((c) => c.connect()));
  return clients;
}

function closeAll(clients) {
  for (const c of clients) {
    try {
      c.close();
    } catch {}
  }
}

function closeReplicas(reps) {
  for (const r of reps) {
    r.closed = true;
    r.client.onDirty = null;
  }
  closeAll(reps.map((r) => r.client));
}

// -- one document each ----------------------------------------------------------

async function closedLoop(args, names, seconds, whole) {
  const clients = await connectAll(args, names);
  const counts = new Array(clients.length).fill(0);
  let gaps = 0;
  const start = new Event();
  let stop = Infinity;

  async function loop(i, c) {
    const doc = docName();
    const serialized = whole ? WHOLE_DOC : null;
    // A write creates the document (reading a missing one is refused).
    let clock = (await c.request(doc, [["init"]], 0, serialized)).data.clock;
    await start.wait();
    while (now() < stop) {
      const res = (await c.request(doc, [["op", clock]], clock, serialized)).data;
      // Nobody else writes: nothing to read, unless a squash sent the snapshot.
      const others = res.serializedDoc === null || res.serializedDoc === undefined ? res.operations : [];
      gaps += res.clock !== clock + 1 || others.length > 0 ? 1 : 0;
      clock = res.clock;
      counts[i] += 1;
    }
  }

  const tasks = clients.map((c, i) => loop(i, c));
  await sleep(0.5); // every client has its document
  stop = now() + seconds;
  start.set();
  await Promise.all(tasks);
  closeAll(clients);
  const total = counts.reduce((a, b) => a + b, 0);
  return { value: Math.round(total / seconds), unit: "syncs/s", count: total, clock_errors: gaps };
}

SCENARIOS.solo = async function solo(args) {
  const c = new Client(args, args.tokens("solo"), "solo");
  await c.connect();
  const doc = docName();
  let clock = (await c.request(doc, [["init"]], 0)).data.clock;
  const latencies = [];
  const stop = now() + args.seconds;
  while (now() < stop) {
    const t0 = now();
    clock = (await c.request(doc, [["op", clock]], clock)).data.clock;
    latencies.push(now() - t0);
  }
  c.close();
  return {
    value: Math.round(latencies.length / args.seconds),
    unit: "syncs/s",
    count: latencies.length,
    p50_ms: round(pct(latencies, 0.5) * 1e3, 2),
    p99_ms: round(pct(latencies, 0.99) * 1e3, 2),
  };
};

SCENARIOS.many = (args) =>
  closedLoop(args, Array.from({ length: args.clients }, (_, i) => `m${i}`), args.seconds, false);

SCENARIOS.many_whole = (args) =>
  closedLoop(args, Array.from({ length: args.clients }, (_, i) => `m${i}`), args.seconds, true);

// -- one shared document --------------------------------------------------------

const key = (op) => JSON.stringify(op);

/**
 * A client's copy of a shared document, synced like the official client.
 *
 * At most one sync in flight; operations made meanwhile wait for the next
 * one; a `dirty` during a sync makes another sync follow it. A laggard waits
 * `delay` seconds before each sync. An ack that carries the server's snapshot
 * (after a squash) replaces the view.
 */
class Replica {
  constructor(client, doc, serialized = null, delay = 0) {
    this.client = client;
    this.doc = doc;
    this.serialized = serialized;
    this.delay = delay;
    this.clock = 0;
    this.seen = []; // every operation value this replica holds, in order
    this.unsent = [];
    this.acked = [];
    this.busy = false;
    this.again = false;
    this.idle = new Event(true);
    this.error = null;
    this.timeouts = 0;
    this.pulledAt = []; // [seconds, clock]
    this.closed = false;
    this.dead = null;
    this.snapshots = 0; // acks that carried the server's snapshot (after a squash)
    this.client.onDirty = () => this.schedule();
  }

  schedule() {
    if (this.closed || this.dead) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    this.idle.clear();
    // Like asyncio.ensure_future: the sync starts once the current handler is done.
    queueMicrotask(() => this.run());
  }

  async run() {
    try {
      while (true) {
        if (this.delay) await sleep(this.delay);
        if (this.closed) break;
        this.again = false;
        const ops = this.unsent;
        this.unsent = [];
        let res;
        try {
          res = await this.client.request(this.doc, ops, this.clock, this.serialized);
        } catch (err) {
          if (err instanceof AckTimeout) {
            res = { error: "no ack within 30 s" };
            this.timeouts += 1;
          } else {
            if (!this.closed) {
              // the server dropped us: give up, keep the ops
              this.error = this.dead = `${err.constructor.name}: ${err.message}`;
              this.unsent = ops.concat(this.unsent);
            }
            break;
          }
        }
        if ("error" in res) {
          this.error = JSON.stringify(res.error);
          this.unsent = ops.concat(this.unsent);
          await sleep(0.05);
          this.again = true;
        } else {
          const data = res.data;
          const view = viewOf(data);
          if (view === null) {
            this.seen.push(...data.operations);
          } else {
            this.seen = view;
            this.snapshots += 1;
          }
          this.seen.push(...ops);
          this.acked.push(...ops);
          this.clock = data.clock;
          this.pulledAt.push([now(), this.clock]);
        }
        if (!(this.again || this.unsent.length)) break;
      }
    } finally {
      this.busy = false;
      this.idle.set();
    }
  }

  write(op) {
    this.unsent.push(op);
    this.schedule();
  }
}

async function replicas(args, names, serialized = null, makeClient = null) {
  const doc = docName();
  makeClient = makeClient || ((n) => new Client(args, args.tokens(n), n));
  const clients = names.map(makeClient);
  await Promise.all(clients.map((c) => c.connect()));
  // The first client makes the document (one operation, outside the counted
  // ones), as a client that creates a document does: a server may refuse to
  // let anyone read a document that does not exist yet (docsync's default
  // permissions do).
  const made = await clients[0].request(doc, [["created"]], 0);
  if ("error" in made) throw new Error(`creating the document: ${JSON.stringify(made.error)}`);
  const reps = clients.map((c) => new Replica(c, doc, serialized));
  for (const r of reps) r.schedule(); // subscribe
  await Promise.all(reps.map((r) => r.idle.wait()));
  return [reps, doc];
}

SCENARIOS.fanout = async function fanout(args) {
  const names = ["writer", ...Array.from({ length: args.clients }, (_, i) => `r${i}`)];
  const [reps] = await replicas(args, names);
  const [writer, ...readers] = reps;
  const dirty = [];
  const delivered = [];
  for (let n = 0; n < args.rounds; n++) {
    for (const r of readers) r.client.dirtyAt.length = 0;
    writer.write(["w", n]);
    await writer.idle.wait();
    const acked = now();
    const target = writer.clock;
    const deadline = acked + 30;
    while (readers.some((r) => r.clock < target) && now() < deadline) await sleep(0.001);
    for (const r of readers) {
      if (r.client.dirtyAt.length) dirty.push(r.client.dirtyAt[0] - acked);
      const got = r.pulledAt.filter(([, clock]) => clock >= target);
      if (got.length) delivered.push(got[0][0] - acked);
    }
  }
  await Promise.all(reps.map((r) => r.idle.wait()));
  let lost = 0;
  for (const r of readers) {
    const seen = new Set(r.seen.map(key));
    lost += writer.acked.filter((op) => !seen.has(key(op))).length;
  }
  closeReplicas(reps);
  return {
    value: round(pct(delivered, 0.5) * 1e3, 1),
    unit: "ms p50 to op delivered",
    dirty_p50_ms: round(pct(dirty, 0.5) * 1e3, 1),
    delivered_p99_ms: round(pct(delivered, 0.99) * 1e3, 1),
    lost,
  };
};

/** Types `ops` operations, each as soon as the last one is acked. */
async function typist(i, r, ops) {
  for (let n = 0; n < ops; n++) {
    r.write(`${i}:${n}`);
    await null; // type the next one while the sync is in flight
    while ((r.unsent.length || r.busy) && !r.dead) await r.idle.wait();
  }
}

/** What a fresh client reads of `doc`: the snapshot's values, then the log. */
async function finalLog(args, name, doc) {
  const fresh = new Client(args, args.tokens(name), "fresh");
  await fresh.connect();
  const data = (await fresh.request(doc, [], 0)).data;
  fresh.close();
  return viewOf(data) || data.operations;
}

/** Acknowledged operations missing from, or twice in, the final log and the views. */
function losses(reps, final) {
  const acked = new Set(reps.flatMap((r) => r.acked.map(key)));
  const inLog = new Set(final.map(key));
  const missing = (set) => [...acked].filter((op) => !set.has(op)).length;
  return {
    acked: reps.reduce((a, r) => a + r.acked.length, 0),
    lost: missing(inLog),
    duplicated: final.length - inLog.size,
    lost_in_views: reps.reduce((a, r) => a + missing(new Set(r.seen.map(key))), 0),
    duplicated_in_views: reps.reduce((a, r) => a + r.seen.length - new Set(r.seen.map(key)).size, 0),
    clients_with_errors: reps.filter((r) => r.error !== null).length,
    timeouts: reps.reduce((a, r) => a + r.timeouts, 0),
    errors: [...new Set(reps.filter((r) => r.error).map((r) => r.error))].sort().slice(0, 3),
    connections_ended: [...new Set(reps.filter((r) => r.client.ended).map((r) => r.client.ended))].sort(),
    unsent_at_end: reps.reduce((a, r) => a + r.unsent.length, 0),
    acks_with_snapshot: reps.reduce((a, r) => a + r.snapshots, 0),
  };
}

async function catchUp(reps) {
  for (const r of reps) r.schedule();
  await Promise.all(reps.map((r) => r.idle.wait()));
}

async function hot(args, writers, ops, whole = false) {
  const names = Array.from({ length: writers }, (_, i) => `h${i}`);
  const [reps, doc] = await replicas(args, names, whole ? WHOLE_DOC : null);
  const t0 = now();
  await withTimeout(Promise.all(reps.map((r, i) => typist(i, r, ops))), 300, "typists");
  const elapsed = now() - t0;
  await catchUp(reps);
  const final = await finalLog(args, names[0], doc);
  const result = losses(reps, final);
  const perOp = (n) => round(n / Math.max(result.acked, 1), 2);
  closeReplicas(reps);
  return {
    value: Math.round(result.acked / elapsed),
    unit: "ops/s",
    count: result.acked,
    syncs_per_op: perOp(reps.reduce((a, r) => a + r.pulledAt.length, 0)),
    dirty_per_op: perOp(reps.reduce((a, r) => a + r.client.dirtyAt.length, 0)),
    ...result,
  };
}

SCENARIOS.hot20 = (args) => hot(args, 20, 40);
SCENARIOS.hot20_whole = (args) => hot(args, 20, 40, true);
SCENARIOS.hot120 = (args) => hot(args, 120, 5);

SCENARIOS.laggard = async function laggard(args) {
  const writers = 20;
  const ops = 40;
  const names = [
    ...Array.from({ length: writers }, (_, i) => `h${i}`),
    ...Array.from({ length: args.laggards }, (_, i) => `lag${i}`),
  ];
  const makeClient = (n) =>
    n.startsWith("lag")
      ? new Client(args, args.tokens(n), n, { stall: args.stallMs / 1e3 })
      : new Client(args, args.tokens(n), n);
  const [reps, doc] = await replicas(args, names, null, makeClient);
  const fast = reps.slice(0, writers);
  const slow = reps.slice(writers);
  for (const r of slow) r.delay = args.lagMs / 1e3;
  let done = false;
  let behind = 0;

  async function slowTypist(i, r) {
    let n = 0;
    while (!done) {
      r.write(`lag${i}:${n}`);
      n += 1;
      await sleep(0.1);
    }
  }

  async function watch() {
    // how many clocks the laggards fall behind
    while (!done) {
      const head = Math.max(...fast.map((r) => r.clock));
      behind = Math.max(behind, ...slow.map((r) => head - r.clock));
      await sleep(0.02);
    }
  }

  const side = [watch(), ...slow.map((r, i) => slowTypist(i, r))];
  const t0 = now();
  try {
    await withTimeout(Promise.all(fast.map((r, i) => typist(i, r, ops))), 300, "typists");
  } finally {
    done = true;
    await Promise.all(side);
  }
  const elapsed = now() - t0;
  await catchUp(reps);
  const final = await finalLog(args, names[0], doc);
  const result = losses(reps, final);
  closeReplicas(reps);
  const acked = new Set(reps.flatMap((r) => r.acked.map(key)));
  const seenSets = slow.map((r) => new Set(r.seen.map(key)));
  return {
    value: Math.round(result.acked / elapsed),
    unit: "ops/s",
    count: result.acked,
    ...result,
    acked_by_laggards: slow.reduce((a, r) => a + r.acked.length, 0),
    lost_in_laggard_views: seenSets.reduce((a, s) => a + [...acked].filter((op) => !s.has(op)).length, 0),
    duplicated_in_laggard_views: slow.reduce((a, r, i) => a + r.seen.length - seenSets[i].size, 0),
    laggards_max_behind: behind,
    laggard_syncs: slow.reduce((a, r) => a + r.pulledAt.length, 0),
  };
};

SCENARIOS.connects = async function connects(args) {
  const clients = Array.from({ length: args.idle }, (_, i) => new Client(args, args.tokens(`c${i}`), `c${i}`));
  const t0 = now();
  for (const c of clients) await c.connect();
  const elapsed = now() - t0;
  closeAll(clients);
  return { value: Math.round(elapsed * 1e3), unit: "ms" };
};

// -- driver ---------------------------------------------------------------------

function machine(args) {
  const cpus = os.cpus();
  return {
    scenario: "machine",
    cpus: cpus.length,
    cpu: cpus[0]?.model,
    mem_mb: Math.floor(os.totalmem() / 2 ** 20),
    loadavg: os.loadavg().map((x) => round(x, 2)),
    node: process.versions.node,
    "socket.io-client": require("socket.io-client/package.json").version,
    os: `${os.type()} ${os.release()}`,
    server: `running at ${args.origin}${args.path} (not started by the load generator)`,
    generator: "node socket.io-client, transports websocket, one Manager per client",
    note: "load generator and server share these cores",
  };
}

async function runScenarios(args) {
  const lines = [];
  for (const name of args.only || DEFAULT) {
    const t0 = now();
    const cpu0 = process.cpuUsage();
    let result;
    try {
      result = await SCENARIOS[name](args);
    } catch (err) {
      result = { value: null, error: `${err.constructor.name}: ${err.message}` };
    }
    const cpu = process.cpuUsage(cpu0);
    const line = { config: args.label, scenario: name, ...result, took_s: round(now() - t0, 1) };
    line.loadgen_cpu_s = round((cpu.user + cpu.system) / 1e6, 2); // this process's own CPU
    console.log(JSON.stringify(line));
    lines.push(line);
    await sleep(0.2); // let the closed sockets go before the next scenario
  }
  return lines;
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  if (!v.length) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  console.log(JSON.stringify(machine(args)));
  const table = {};
  for (let n = 0; n < args.repeat; n++) {
    for (const line of await runScenarios(args)) {
      (table[line.scenario] ||= []).push(line.value);
    }
  }
  const medians = {};
  for (const [scenario, values] of Object.entries(table)) {
    medians[scenario] = { [args.label]: median(values.filter((v) => v !== null)) };
  }
  console.log(JSON.stringify({ scenario: "medians", ...medians }));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
