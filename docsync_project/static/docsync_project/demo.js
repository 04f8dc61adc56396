// The landing page's live demo: one DocNode document (type "doc", see BINDINGS
// in settings.py) holding one paragraph "p" whose `text` state is the text.
//
// Every edit is one DocNode operations value that sets that state,
// [[], {"demo-text": {"text": "\"…\""}}]; the server orders the batches with
// its clock, so the last write wins, as DocNode's string states do. Other
// windows get `dirty` and sync; carets travel as `presence`.
import { DocSyncSocket, randomId } from "./docsync-socket.js";

const root = document.querySelector("[data-docsync-demo]");
const DOC_ID = root.dataset.docId;
const DOC_TYPE = root.dataset.docType;
const NODE = "demo-text";
const COLORS = ["#d9480f", "#1971c2", "#2b8a3e", "#9c36b5", "#e67700", "#0c8599"];

const textarea = root.querySelector("[data-text]");
const mirror = root.querySelector("[data-mirror]");
const statusEl = root.querySelector("[data-status]");
const clockEl = root.querySelector("[data-clock]");
const peersEl = root.querySelector("[data-peers]");
const savedEl = root.querySelector("[data-saved]");
document.getElementById("endpoint").textContent =
  `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/socket.io/`;

// One device per tab (kept across reloads): the server sends `dirty` only to
// other devices, and this small client has no channel between its tabs.
const deviceId = sessionStorage.getItem("docsync-demo-device") || randomId();
sessionStorage.setItem("docsync-demo-device", deviceId);
const clientId = randomId();
const name = root.dataset.user || "anonymous";
const color = COLORS[parseInt(deviceId.slice(0, 6), 16) % COLORS.length];

let clock = 0; // the server clock our confirmed text is at
let confirmed = ""; // the text at `clock`
let unsent = null; // a local edit not sent yet (only the last one matters)
let inflight = false;
let again = false; // sync once more when the one in flight returns
let subscribed = false;
let retryDelay = 500;
let syncTimer = null;
const peers = new Map(); // clientId -> presence

const socket = new DocSyncSocket("/socket.io/", () => ({
  deviceId,
  clientId,
  claimedUserId: null,
}));

// -- the document ---------------------------------------------------------

function snapshot(text) {
  const state = text ? { text: JSON.stringify(text) } : {};
  return [DOC_ID, DOC_TYPE, {}, [[NODE, "p", state]]];
}

function textOf(serialized) {
  const stack = [serialized];
  while (stack.length) {
    const [id, , state, children = []] = stack.pop();
    if (id === NODE) return state.text === undefined ? "" : JSON.parse(state.text);
    stack.push(...children);
  }
  return "";
}

function applied(text, operations) {
  for (const value of operations) {
    const patch = Array.isArray(value) && value[1] && value[1][NODE];
    if (patch && patch.text !== undefined) text = JSON.parse(patch.text);
  }
  return text;
}

// "saving…" while an edit is not yet acknowledged, "saved" once it is.
function showSaved() {
  const saved = unsent === null && !inflight;
  root.dataset.syncState = saved ? "saved" : "saving";
  savedEl.textContent = saved ? "saved" : "saving…";
}

function syncSoon(delay = 120) {
  clearTimeout(syncTimer);
  syncTimer = setTimeout(sync, delay);
}

async function sync() {
  if (!socket.connected) return;
  if (inflight) {
    again = true;
    return;
  }
  const sending = unsent;
  unsent = null;
  inflight = true;
  const operations = sending === null ? [] : [[[], { [NODE]: { text: JSON.stringify(sending) } }]];
  let answer;
  try {
    answer = await socket.call("sync", {
      type: DOC_TYPE,
      docId: DOC_ID,
      operations,
      serializedDoc: snapshot(confirmed), // stored only if the server has none yet
      clock,
    });
  } catch (error) {
    answer = { error: { type: "Timeout", message: error.message } };
  }
  inflight = false;
  if (answer.error) {
    if (sending !== null && unsent === null) unsent = sending; // keep the edit
    setStatus(`sync refused: ${answer.error.type}: ${answer.error.message}`, "error");
    syncSoon(retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000); // the server slows retry storms too
    return;
  }
  retryDelay = 500;
  const { serializedDoc, operations: others, clock: newClock } = answer.data;
  let text = serializedDoc !== null ? textOf(serializedDoc) : confirmed;
  text = applied(text, others); // batches before ours, in clock order
  if (sending !== null) text = sending; // ours is the newest batch
  confirmed = text;
  clock = newClock;
  clockEl.textContent = String(clock);
  if (!subscribed) {
    subscribed = true; // the first sync subscribed us: presence is allowed now
    textarea.disabled = false;
    sendPresence();
  }
  if (unsent === null) show(confirmed);
  showSaved();
  if (again || unsent !== null) {
    again = false;
    syncSoon(0);
  }
}

// Put remote text into the textarea, keeping the caret where the user had it.
function show(text) {
  const old = textarea.value;
  if (old === text) return renderMirror();
  const { selectionStart: start, selectionEnd: end } = textarea;
  let prefix = 0;
  while (prefix < old.length && prefix < text.length && old[prefix] === text[prefix]) prefix++;
  const shift = (pos) => (pos <= prefix ? pos : Math.max(prefix, pos + text.length - old.length));
  textarea.value = text;
  if (document.activeElement === textarea) textarea.setSelectionRange(shift(start), shift(end));
  renderMirror();
}

textarea.addEventListener("input", () => {
  unsent = textarea.value;
  showSaved();
  syncSoon();
  sendPresenceSoon();
  renderMirror();
});

// -- presence -------------------------------------------------------------

let presenceTimer = null;

function sendPresence() {
  if (!subscribed || !socket.connected) return;
  const focused = document.activeElement === textarea;
  const cursor = focused ? [textarea.selectionStart, textarea.selectionEnd] : null;
  socket.call("presence", { docId: DOC_ID, presence: { name, color, cursor } }).catch(() => {});
}

function sendPresenceSoon() {
  clearTimeout(presenceTimer);
  presenceTimer = setTimeout(sendPresence, 80);
}

document.addEventListener("selectionchange", () => {
  if (document.activeElement === textarea) sendPresenceSoon();
});
textarea.addEventListener("focus", sendPresenceSoon);
textarea.addEventListener("blur", sendPresenceSoon);

function renderPeers() {
  if (!peersEl) return renderMirror(); // not signed in
  peersEl.replaceChildren();
  const me = document.createElement("li");
  me.innerHTML = `<span class="dot"></span><strong></strong> (you, this window)`;
  me.querySelector(".dot").style.background = color;
  me.querySelector("strong").textContent = name;
  peersEl.append(me);
  for (const [id, peer] of peers) {
    const item = document.createElement("li");
    item.dataset.peer = id;
    item.innerHTML = `<span class="dot"></span><strong></strong> <span class="where"></span>`;
    item.querySelector(".dot").style.background = peer.color || "#868e96";
    item.querySelector("strong").textContent = peer.name || "someone";
    item.querySelector(".where").textContent = peer.cursor
      ? `is editing at character ${peer.cursor[0]}`
      : "is looking";
    peersEl.append(item);
  }
  renderMirror();
}

// The textarea is transparent over a mirror of its text that shows the
// other windows' carets (a textarea cannot style parts of its text).
function renderMirror() {
  const text = textarea.value;
  const marks = [...peers.values()]
    .filter((peer) => peer.cursor)
    .map((peer) => ({ at: Math.min(peer.cursor[0], text.length), peer }))
    .sort((a, b) => a.at - b.at);
  mirror.replaceChildren();
  let pos = 0;
  for (const { at, peer } of marks) {
    mirror.append(document.createTextNode(text.slice(pos, at)));
    const caret = document.createElement("span");
    caret.className = "caret";
    caret.style.borderColor = peer.color || "#868e96";
    const label = document.createElement("span");
    label.className = "label";
    label.style.background = peer.color || "#868e96";
    label.textContent = peer.name || "someone";
    caret.append(label);
    mirror.append(caret);
    pos = at;
  }
  mirror.append(document.createTextNode(text.slice(pos) + "\n"));
  mirror.scrollTop = textarea.scrollTop;
}
textarea.addEventListener("scroll", () => (mirror.scrollTop = textarea.scrollTop));

// -- the connection -------------------------------------------------------

function setStatus(text, kind = "") {
  statusEl.textContent = text;
  statusEl.dataset.kind = kind;
}

let ended = false; // the server ended the session or refused it: do not retry
let reconnectDelay = 1000;

socket.on("identity", ({ userId }) => {
  setStatus(`connected as ${name} (user ${userId})`, "ok");
  reconnectDelay = 1000;
  subscribed = false;
  sync();
});
socket.on("connect_error", (message) => {
  // The server's reason, e.g. "Authentication failed: invalid credentials".
  ended = true;
  setStatus(`connection refused: ${message}`, "error");
  socket.close();
});
socket.on("server_disconnect", () => {
  ended = true;
  setStatus("the server ended this session (access revoked, or signed out)", "error");
});
socket.on("disconnect", (reason) => {
  textarea.disabled = true;
  peers.clear();
  renderPeers();
  if (ended) return;
  setStatus(`disconnected (${reason}); reconnecting…`, "warn");
  setTimeout(() => socket.open(), reconnectDelay);
  reconnectDelay = Math.min(reconnectDelay * 2, 10000);
});
socket.on("dirty", ({ docId }) => docId === DOC_ID && sync());
socket.on("presence", ({ docId, presence }) => {
  if (docId !== DOC_ID) return;
  for (const [id, value] of Object.entries(presence)) {
    if (id === clientId) continue;
    if (value === null) peers.delete(id);
    else peers.set(id, value);
  }
  renderPeers();
});
socket.on("collaboration", ({ docId, hasCollaborators }) => {
  if (docId === DOC_ID) root.dataset.collaborators = String(hasCollaborators);
});

renderPeers();
socket.open();
