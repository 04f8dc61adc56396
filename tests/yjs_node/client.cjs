// A DocSync client for Yjs documents, driven over stdin/stdout (tests/test_yjs_e2e.py).
//
//   node client.cjs SERVER_URL
//
// Each stdin line is a JSON command {id, cmd, ...}; each answer is one stdout
// line {id, ok: true, result} or {id, ok: false, error}. Commands run one at a
// time, in order. Clients speak the DocSync protocol as the official client
// does: socket.io-client v4 over WebSocket only, auth {deviceId, clientId,
// claimedUserId: null, token}, nothing before `identity`, then `sync` with
// {type, docId, operations: [Yjs update...], serializedDoc, clock} via
// emitWithAck; the answer's serializedDoc and operations are applied to the
// client's Y.Doc and its clock kept; `dirty` makes it sync again; only one
// sync per document is in flight, edits made meanwhile go in a follow-up sync.
// Like the official client, it sends its whole stored snapshot with every
// sync (unless `sendSnapshot: false`).
//
// Commands:
//   connect {name, user, docId, type, device?, client?, sendSnapshot?} -> {userId}
//   edit    {name, text?: [op...], array?: [op...]}       one transaction, one update
//           text ops: ["insert", index, str] | ["append", str] | ["delete", index, length]
//           array ops: ["push", [items]] | ["insert", index, [items]] | ["delete", index, n]
//           both: ["insertAt", fraction, str | [items]] | ["deleteAt", fraction, length]
//           (the index is that fraction of the current length: random edits anywhere)
//   sync    {names: [name...]}   sync these clients concurrently, each until nothing is left
//   settle  {quietMs?}           wait until no sync is in flight and nothing happened for quietMs
//   content {name}               -> {content, items, clock, pending, syncs: [...], errors}
//   close   {name}
"use strict";

const readline = require("readline");
const Y = require("yjs");
const { io } = require("socket.io-client");

const url = process.argv[2];
const clients = new Map();
let lastActivity = Date.now();

const toBytes = (value, what) => {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new Error(`${what} is not binary: ${JSON.stringify(value).slice(0, 80)}`);
};

function get(name) {
  const c = clients.get(name);
  if (!c) throw new Error(`no client ${name}`);
  return c;
}

async function connect({ name, user, docId, type, device, client, sendSnapshot = true }) {
  const doc = new Y.Doc();
  const c = {
    name,
    doc,
    docId,
    type,
    sendSnapshot,
    pending: [], // local updates not acknowledged yet
    stored: null, // the stored snapshot (state as of the last sync)
    clock: 0,
    loop: null,
    again: false,
    syncs: [],
    errors: [],
    dirty: 0,
  };
  doc.on("update", (update, origin) => {
    if (origin !== "remote") c.pending.push(update);
  });
  const socket = io(url, {
    transports: ["websocket"],
    reconnection: false,
    auth: {
      deviceId: device || `device-${name}`,
      clientId: client || `client-${name}-${process.pid}`,
      claimedUserId: null,
      token: `valid-${user}`,
    },
  });
  c.socket = socket;
  const identity = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no identity within 5 s")), 5000);
    socket.once("identity", (data) => {
      clearTimeout(timer);
      resolve(data);
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      reject(new Error(`connect_error: ${err.message}`));
    });
  });
  socket.on("dirty", ({ docId: dirtyId }) => {
    lastActivity = Date.now();
    if (dirtyId !== c.docId) return;
    c.dirty += 1;
    requestSync(c).catch((err) => c.errors.push(`sync after dirty: ${err.message}`));
  });
  // The last frames received, to explain a disconnection.
  const recent = [];
  socket.io.engine.on("packet", (packet) => {
    const data = packet.data;
    recent.push(typeof data === "string" ? data.slice(0, 200) : `<${data && data.length} bytes>`);
    if (recent.length > 12) recent.shift();
  });
  socket.on("disconnect", (reason, description) => {
    const detail = description && description.message ? `: ${description.message}` : "";
    c.errors.push(`disconnected: ${reason}${detail}; last frames: ${JSON.stringify(recent)}`);
  });
  clients.set(name, c);
  return { userId: identity.userId };
}

// A position given as a fraction (0..1) of the current length.
const at = (fraction, length) => Math.min(length, Math.floor(fraction * (length + 1)));

function deleteAt(shared, fraction, length) {
  const index = at(fraction, shared.length);
  const count = Math.min(length, shared.length - index);
  if (count > 0) shared.delete(index, count);
}

function edit({ name, text = [], array = [] }) {
  const c = get(name);
  const ytext = c.doc.getText("content");
  const yarray = c.doc.getArray("items");
  c.doc.transact(() => {
    for (const [op, ...args] of text) {
      if (op === "insert") ytext.insert(args[0], args[1]);
      else if (op === "append") ytext.insert(ytext.length, args[0]);
      else if (op === "delete") ytext.delete(args[0], args[1]);
      else if (op === "insertAt") ytext.insert(at(args[0], ytext.length), args[1]);
      else if (op === "deleteAt") deleteAt(ytext, args[0], args[1]);
      else throw new Error(`unknown text op ${op}`);
    }
    for (const [op, ...args] of array) {
      if (op === "push") yarray.push(args[0]);
      else if (op === "insert") yarray.insert(args[0], args[1]);
      else if (op === "delete") yarray.delete(args[0], args[1]);
      else if (op === "insertAt") yarray.insert(at(args[0], yarray.length), args[1]);
      else if (op === "deleteAt") deleteAt(yarray, args[0], args[1]);
      else throw new Error(`unknown array op ${op}`);
    }
  }, "local");
  return { pending: c.pending.length };
}

// One sync in flight per client; a request while one runs makes one more.
function requestSync(c) {
  c.again = true;
  if (!c.loop) {
    c.loop = (async () => {
      try {
        while (c.again) {
          c.again = false;
          await syncOnce(c);
        }
      } finally {
        c.loop = null;
        lastActivity = Date.now();
      }
    })();
  }
  return c.loop;
}

async function syncOnce(c) {
  const operations = c.pending.splice(0);
  const req = {
    type: c.type,
    docId: c.docId,
    operations,
    serializedDoc: c.sendSnapshot ? c.stored : null,
    clock: c.clock,
  };
  let res;
  try {
    res = await c.socket.timeout(5000).emitWithAck("sync", req);
  } catch (err) {
    c.pending.unshift(...operations);
    throw err;
  }
  if (res.error) {
    c.pending.unshift(...operations);
    throw new Error(`sync refused: ${res.error.type}: ${res.error.message}`);
  }
  const data = res.data;
  const snapshot = data.serializedDoc == null ? null : toBytes(data.serializedDoc, "serializedDoc");
  const updates = data.operations.map((op, i) => toBytes(op, `operations[${i}]`));
  Y.transact(
    c.doc,
    () => {
      if (snapshot) Y.applyUpdate(c.doc, snapshot, "remote");
      for (const update of updates) Y.applyUpdate(c.doc, update, "remote");
    },
    "remote",
  );
  c.clock = data.clock;
  c.stored = Y.encodeStateAsUpdate(c.doc);
  c.syncs.push({
    sent: operations.length,
    sentSnapshot: req.serializedDoc ? req.serializedDoc.length : null,
    snapshotBytes: snapshot ? snapshot.length : null,
    operations: updates.length,
    clock: data.clock,
  });
}

async function settle({ quietMs = 300, timeoutMs = 10000 }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const busy = [...clients.values()].some((c) => c.loop);
    if (!busy && Date.now() - lastActivity >= quietMs) return {};
    if (Date.now() > deadline) throw new Error("clients did not settle");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function content({ name }) {
  const c = get(name);
  return {
    content: c.doc.getText("content").toString(),
    items: c.doc.getArray("items").toJSON(),
    clock: c.clock,
    pending: c.pending.length,
    dirty: c.dirty,
    syncs: c.syncs,
    errors: c.errors,
  };
}

const commands = {
  connect,
  edit,
  // Start syncs without waiting for them (as edits trigger them in a real client).
  kick: ({ names }) => {
    for (const name of names) {
      const c = get(name);
      requestSync(c).catch((err) => c.errors.push(`sync: ${err.message}`));
    }
    return {};
  },
  sync: async ({ names }) => {
    await Promise.all(names.map((name) => requestSync(get(name))));
    return names.map((name) => get(name).clock);
  },
  settle,
  content,
  close: ({ name }) => {
    get(name).socket.close();
    clients.delete(name);
    return {};
  },
};

async function main() {
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let id = null;
    try {
      const msg = JSON.parse(line);
      id = msg.id;
      const command = commands[msg.cmd];
      if (!command) throw new Error(`unknown command ${msg.cmd}`);
      const result = await command(msg);
      process.stdout.write(JSON.stringify({ id, ok: true, result }) + "\n");
    } catch (err) {
      process.stdout.write(JSON.stringify({ id, ok: false, error: String(err.stack || err) }) + "\n");
    }
  }
  for (const c of clients.values()) c.socket.close();
}

main();
