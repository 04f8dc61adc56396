// The official client (socket.io-client v4) holding a connection across its
// token's expiry (tests/test_tokens_e2e.py).
//
//   node refresh.cjs SERVER_URL RUN_MS TOKEN...
//
// Its auth is a callback, called on every connection attempt, that hands out
// the next token (the last one again once they run out). Each event is one
// stdout line {t (Unix seconds), event, data}: auth (the token's index),
// identity, disconnect (the reason), connect_error (the message), and
// synced (the clock of a sync sent after each identity).
"use strict";

const { io } = require("socket.io-client");

const [url, runMs, ...tokens] = process.argv.slice(2);
let asked = 0;
const log = (event, data) =>
  process.stdout.write(JSON.stringify({ t: Date.now() / 1000, event, data }) + "\n");

const socket = io(url, {
  transports: ["websocket"],
  reconnectionDelay: 200,
  reconnectionDelayMax: 1000,
  auth: (cb) => {
    const index = Math.min(asked++, tokens.length - 1);
    log("auth", index);
    cb({ deviceId: "dev-js", clientId: "cli-js", claimedUserId: null, token: tokens[index] });
  },
});
socket.on("identity", async (data) => {
  log("identity", data);
  const answer = await socket.emitWithAck("sync", {
    type: "doc",
    docId: "js",
    operations: ["op"],
    serializedDoc: null,
    clock: 0,
  });
  log("synced", answer.data ? answer.data.clock : answer);
});
socket.on("disconnect", (reason) => log("disconnect", reason));
socket.on("connect_error", (err) => log("connect_error", err.message));
setTimeout(() => {
  socket.close();
  process.exit(0);
}, Number(runMs));
