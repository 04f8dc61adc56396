// Node side of the Yjs interop test (tests/test_yjs_binding.py).
//
//   node interop.cjs produce  -> JSON {updates: [base64...], expected: {...}}
//   node interop.cjs load     <- JSON {snapshot: base64} on stdin, -> content JSON
//
// Updates come from two docs editing text, an array and a map concurrently,
// one update per transaction, in the order the edits happened.
"use strict";

const Y = require("yjs");

function content(doc) {
  return {
    content: doc.getText("content").toString(),
    items: doc.getArray("items").toJSON(),
    meta: doc.getMap("meta").toJSON(),
  };
}

function produce() {
  const updates = [];
  const a = new Y.Doc();
  const b = new Y.Doc();
  a.clientID = 101;
  b.clientID = 202;
  // Updates a doc receives by syncing are emitted again: keep only local edits.
  for (const doc of [a, b]) {
    doc.on("update", (update, origin) => {
      if (origin !== "sync") updates.push(Buffer.from(update).toString("base64"));
    });
  }
  const sync = (from, to) =>
    Y.applyUpdate(to, Y.encodeStateAsUpdate(from, Y.encodeStateVector(to)), "sync");
  a.getText("content").insert(0, "héllo wörld 🌍");
  b.getText("content").insert(0, "Bob says: ");
  a.getArray("items").push([1, "two", { three: 3 }]);
  b.getArray("items").push([true, null, [4, 5]]);
  a.getMap("meta").set("title", "from A");
  b.getMap("meta").set("title", "from B");
  b.getMap("meta").set("tags", ["x", "y"]);
  sync(a, b);
  sync(b, a);
  a.getText("content").delete(0, 4);
  b.getText("content").insert(b.getText("content").length, "!");
  b.getArray("items").delete(0, 1);
  a.getMap("meta").delete("tags");
  a.getMap("meta").set("count", 42);
  sync(a, b);
  sync(b, a);
  const converged = JSON.stringify(content(a)) === JSON.stringify(content(b));
  process.stdout.write(JSON.stringify({ updates, expected: content(a), converged }));
}

function load(input) {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, Buffer.from(input.snapshot, "base64"));
  process.stdout.write(JSON.stringify(content(doc)));
}

const command = process.argv[2];
if (command === "produce") {
  produce();
} else if (command === "load") {
  let data = "";
  process.stdin.on("data", (chunk) => (data += chunk));
  process.stdin.on("end", () => load(JSON.parse(data)));
} else {
  process.stderr.write("usage: node interop.cjs produce|load\n");
  process.exit(2);
}
