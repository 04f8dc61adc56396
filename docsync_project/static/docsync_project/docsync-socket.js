// A Socket.IO v5 client over Engine.IO v4, on the browser's WebSocket: what a
// DocSync client needs and no more (the default namespace, events, acks,
// binary attachments). See docs/protocol.md for the frames.
//
//   const socket = new DocSyncSocket("/socket.io/", () => ({deviceId, clientId}));
//   socket.on("connect_error", (message) => ...);   // the server's reason
//   socket.on("identity", ({userId}) => ...);
//   socket.open();
//   const ack = await socket.call("sync", {...});    // rejects after 5 s without an ack
//
// Packet types: Engine.IO 0 open, 1 close, 2 ping, 3 pong, 4 message;
// Socket.IO 0 connect, 1 disconnect, 2 event, 3 ack, 4 connect error,
// 5 binary event, 6 binary ack.

export class DocSyncSocket {
  constructor(path, auth, { ackTimeout = 5000 } = {}) {
    this.path = path;
    this.auth = auth; // a function: called for every connection attempt
    this.ackTimeout = ackTimeout;
    this.listeners = new Map();
    this.acks = new Map();
    this.nextAck = 0;
    this.ws = null;
    this.connected = false;
    this.binary = null; // a binary packet waiting for its attachments
  }

  on(event, listener) {
    if (!this.listeners.has(event)) this.listeners.set(event, []);
    this.listeners.get(event).push(listener);
    return this;
  }

  fire(event, ...args) {
    for (const listener of this.listeners.get(event) || []) listener(...args);
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${this.path}?EIO=4&transport=websocket`;
  }

  open() {
    const ws = new WebSocket(this.url());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onmessage = (message) => this.receive(message.data);
    ws.onclose = (close) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const was = this.connected;
      this.connected = false;
      this.failAcks("transport close");
      // Fired for every closed transport, even before a CONNECT completed.
      this.fire("disconnect", close.reason || "transport close", { wasConnected: was });
    };
  }

  close() {
    const ws = this.ws;
    this.ws = null;
    this.connected = false;
    this.failAcks("client disconnect");
    if (ws) {
      if (ws.readyState === WebSocket.OPEN) ws.send("41"); // Socket.IO DISCONNECT
      ws.close();
    }
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
  }

  // Emit an event and wait for its ack; rejects on timeout or disconnect.
  call(event, data) {
    if (!this.connected) return Promise.reject(new Error("not connected"));
    const id = this.nextAck++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.acks.delete(id);
        reject(new Error(`no ack for ${event} within ${this.ackTimeout} ms`));
      }, this.ackTimeout);
      this.acks.set(id, { resolve, reject, timer });
      this.send(`42${id}${JSON.stringify([event, data])}`);
    });
  }

  failAcks(reason) {
    for (const { reject, timer } of this.acks.values()) {
      clearTimeout(timer);
      reject(new Error(reason));
    }
    this.acks.clear();
  }

  receive(data) {
    if (typeof data !== "string") return this.attachment(new Uint8Array(data));
    const type = data[0];
    if (type === "0") {
      // Engine.IO OPEN: now join the default namespace with our auth payload.
      this.send(`40${JSON.stringify(this.auth())}`);
    } else if (type === "2") {
      this.send("3"); // pong
    } else if (type === "4") {
      this.packet(data.slice(1));
    } else if (type === "1") {
      this.ws && this.ws.close();
    }
  }

  packet(text) {
    const type = text[0];
    let rest = text.slice(1);
    let attachments = 0;
    if (type === "5" || type === "6") {
      const dash = rest.indexOf("-");
      attachments = Number(rest.slice(0, dash));
      rest = rest.slice(dash + 1);
    }
    if (rest.startsWith("/")) rest = rest.slice(rest.indexOf(",") + 1); // namespace
    const digits = /^\d*/.exec(rest)[0];
    const ackId = digits ? Number(digits) : null;
    const payload = rest.length > digits.length ? JSON.parse(rest.slice(digits.length)) : null;
    if (attachments) {
      this.binary = { type, ackId, payload, buffers: [], attachments };
      return;
    }
    this.dispatch(type, ackId, payload);
  }

  attachment(bytes) {
    const pending = this.binary;
    if (!pending) return;
    pending.buffers.push(bytes);
    if (pending.buffers.length < pending.attachments) return;
    this.binary = null;
    this.dispatch(pending.type === "5" ? "2" : "3", pending.ackId, fill(pending.payload, pending.buffers));
  }

  dispatch(type, ackId, payload) {
    if (type === "0") {
      this.connected = true;
      this.fire("connect", payload);
    } else if (type === "4") {
      this.fire("connect_error", (payload && payload.message) || "refused");
    } else if (type === "1") {
      // The server ended the session (revoked access, shutdown): no retry.
      this.connected = false;
      this.fire("server_disconnect");
    } else if (type === "2") {
      const [event, arg] = payload;
      this.fire(event, arg);
      if (ackId !== null) this.send(`43${ackId}[]`); // we answer nothing, but we answer
    } else if (type === "3") {
      const ack = this.acks.get(ackId);
      if (!ack) return; // timed out already
      this.acks.delete(ackId);
      clearTimeout(ack.timer);
      ack.resolve(payload[0]);
    }
  }
}

// Put the binary attachments in place of their {_placeholder, num} markers.
function fill(value, buffers) {
  if (Array.isArray(value)) return value.map((item) => fill(item, buffers));
  if (value && typeof value === "object") {
    if (value._placeholder === true && typeof value.num === "number") return buffers[value.num];
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, buffers)]));
  }
  return value;
}

// A random id that works on plain http too (crypto.randomUUID needs https or localhost).
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
