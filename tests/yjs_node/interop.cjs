// Node side of the Yjs interop test (tests/test_yjs_binding.py).
//
//   node interop.cjs produce  -> JSON {updates: [base64...], expected: {...}}
//   node interop.cjs load     <- JSON {snapshot: base64} on stdin, -> content JSON
//   node interop.cjs surrogate -> JSON {updates, expected}: issue 9 point 10, a text
//                                split inside a surrogate pair
//   node interop.cjs structs  -> JSON [{update, structs, deleted}]: varied updates
//                                (every content type) and how Yjs decodes them
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

function recorder(docs) {
  const updates = [];
  docs.forEach((doc, i) => {
    doc.clientID = [1, 2, 123456789012][i];
    doc.on("update", (update, origin) => {
      if (origin !== "sync") updates.push(update);
    });
  });
  const sync = (from, to) =>
    Y.applyUpdate(to, Y.encodeStateAsUpdate(from, Y.encodeStateVector(to)), "sync");
  return { updates, sync };
}

function surrogate() {
  const a = new Y.Doc();
  const b = new Y.Doc();
  const { updates, sync } = recorder([a, b]);
  a.getText("content").insert(0, "a😀b");
  sync(a, b);
  b.getText("content").delete(2, 1); // the emoji's second UTF-16 unit
  sync(b, a);
  a.getText("content").insert(3, "c");
  sync(a, b);
  const expected = content(a);
  const converged = JSON.stringify(expected) === JSON.stringify(content(b));
  const b64 = (u) => Buffer.from(u).toString("base64");
  process.stdout.write(
    JSON.stringify({ updates: updates.map(b64), state: b64(Y.encodeStateAsUpdate(a)), expected, converged })
  );
}

function structs() {
  const a = new Y.Doc();
  const b = new Y.Doc();
  const { updates, sync } = recorder([a, b]);
  a.clientID = 123456789012;
  const t = a.getText("content");
  t.insert(0, "héllo 😀 wörld 🌍🌍");
  t.format(1, 3, { bold: true, size: 12.5, n: null, arr: [1, "x", { y: -5 }] });
  t.insertEmbed(2, { image: "x.png" });
  const m = a.getMap("meta");
  m.set("num", 42);
  m.set("neg", -1234567);
  m.set("f", 1.5);
  m.set("big", 2 ** 40);
  m.set("s", "str😀");
  m.set("bin", new Uint8Array([1, 2, 3]));
  m.set("obj", { a: [1, { b: [true, false, null, undefined] }], c: "d" });
  const sub = new Y.Map();
  m.set("sub", sub);
  sub.set("k", "v");
  const items = a.getArray("items");
  items.push([1, "two", { three: 3 }]);
  items.insert(1, [new Y.Text("nested")]);
  const xml = a.getXmlFragment("xml");
  const el = new Y.XmlElement("p");
  xml.push([el]);
  el.setAttribute("class", "c");
  el.push([new Y.XmlText("hi")]);
  xml.push([new Y.XmlHook("h")]);
  m.set("doc", new Y.Doc({ guid: "subdoc-guid" }));
  sync(a, b);
  b.getText("content").delete(3, 4);
  b.getText("content").insert(5, "B😀");
  b.getArray("items").delete(0, 1);
  sync(b, a);
  updates.push(Y.encodeStateAsUpdate(a));
  const out = updates.map((update) => {
    const decoded = Y.decodeUpdate(update);
    return {
      update: Buffer.from(update).toString("base64"),
      structs: decoded.structs.map((s) => [
        s.id.client,
        s.id.clock,
        s.length,
        s.content && s.content.str !== undefined ? s.content.str : null,
      ]),
      deleted: [...decoded.ds.clients].map(([client, ranges]) => [
        client,
        ranges.map((r) => [r.clock, r.len]),
      ]),
    };
  });
  process.stdout.write(JSON.stringify(out));
}

function load(input) {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, Buffer.from(input.snapshot, "base64"));
  process.stdout.write(JSON.stringify(content(doc)));
}

const command = process.argv[2];
if (command === "produce") {
  produce();
} else if (command === "surrogate") {
  surrogate();
} else if (command === "structs") {
  structs();
} else if (command === "load") {
  let data = "";
  process.stdin.on("data", (chunk) => (data += chunk));
  process.stdin.on("end", () => load(JSON.parse(data)));
} else {
  process.stderr.write("usage: node interop.cjs produce|load|surrogate|structs\n");
  process.exit(2);
}
