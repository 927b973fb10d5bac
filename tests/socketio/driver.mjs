// Remote-controlled socket.io-client sockets, for the Python test suite.
//
// Commands arrive on stdin, one JSON object a line; everything that happens
// is reported on stdout, one JSON object a line. Binary values travel as
// {"$bytes": "<base64>"} both ways.
//
//   {"op": "connect", "client": "a", "url": "...", "opts": {...}, "answers": {"question": X},
//    "page": "https://app.example.test"}
//       io(url, {forceNew: true, ...opts}); an event that arrives with an ack
//       callback and has an entry in `answers` is answered with X ("$echo":
//       the event's first argument; {"$args": [...]}: those arguments).
//       With "page", the socket behaves as one of a browser page of that
//       origin: every request carries it as its Origin header, and a polling
//       response without CORS headers allowing it fails as a browser fails it
//       (polling through fetch, then the upgrade to WebSocket, as by default).
//   {"op": "emit", "client": "a", "event": "e", "args": [...], "ref": 1, "ack": true}
//       socket.emit; with "ack", the answer is reported as {"type": "ack", "ref"}.
//   {"op": "state", "client": "a", "ref": 2}
//       reports connected, id, recovered, transport and engine (the Engine.IO sid)
//   {"op": "open", "client": "a"} / {"op": "close", "client": "a"}
//       socket.connect() / socket.disconnect()
//   {"op": "exit"}                              closes every socket and exits
//
// Reports: {"client", "type": "connect" | "connect_error" | "disconnect" | "event"
// | "ack" | "state" | "upgrade" | "error", ...}.

import { createInterface } from "node:readline";
import { Fetch, NodeWebSocket, io } from "socket.io-client";

const sockets = new Map();

function report(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function toJson(value) {
  if (Buffer.isBuffer(value)) {
    return { $bytes: value.toString("base64"), $kind: "Buffer" };
  }
  if (value instanceof ArrayBuffer) {
    return { $bytes: Buffer.from(value).toString("base64"), $kind: "ArrayBuffer" };
  }
  if (ArrayBuffer.isView(value)) {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $bytes: bytes.toString("base64"), $kind: value.constructor.name };
  }
  if (typeof value === "function") {
    return { $function: true };
  }
  if (Array.isArray(value)) {
    return value.map(toJson);
  }
  if (value instanceof Error) {
    return { message: value.message, data: toJson(value.data ?? null) };
  }
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]));
  }
  return value;
}

function fromJson(value) {
  if (Array.isArray(value)) {
    return value.map(fromJson);
  }
  if (value && typeof value === "object") {
    if (typeof value.$bytes === "string") {
      return Buffer.from(value.$bytes, "base64");
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromJson(v)]));
  }
  return value;
}

// What a browser does with a cross-origin response: without an
// Access-Control-Allow-Origin for the page's origin, the script never sees it.
const nodeFetch = globalThis.fetch;
globalThis.fetch = async (resource, init = {}) => {
  const origin = new Headers(init.headers).get("origin");
  const response = await nodeFetch(resource, init);
  if (origin !== null) {
    const allowed = response.headers.get("access-control-allow-origin");
    const credentials = init.credentials === "include";
    const ok = credentials
      ? allowed === origin && response.headers.get("access-control-allow-credentials") === "true"
      : allowed === origin || allowed === "*";
    if (!ok) {
      throw new TypeError(`CORS: the response does not allow origin ${origin}`);
    }
  }
  return response;
};

function browserOpts(page, opts) {
  if (!page) {
    return opts;
  }
  return {
    ...opts,
    transports: [Fetch, NodeWebSocket],
    extraHeaders: { ...(opts.extraHeaders ?? {}), Origin: page },
  };
}

function answerOf(answer, args) {
  if (answer === "$echo") {
    return [args[0]];
  }
  if (answer && typeof answer === "object" && Array.isArray(answer.$args)) {
    return fromJson(answer.$args);
  }
  return [fromJson(answer)];
}

function transportOf(socket) {
  return socket.io.engine?.transport?.name ?? null;
}

function connect(command) {
  const name = command.client;
  const answers = command.answers ?? {};
  const opts = browserOpts(command.page, fromJson(command.opts ?? {}));
  const socket = io(command.url, { forceNew: true, ...opts });
  sockets.set(name, socket);
  socket.io.on("open", () => {
    socket.io.engine.on("upgrade", (transport) => {
      report({ client: name, type: "upgrade", transport: transport.name });
    });
  });
  socket.on("connect", () => {
    report({
      client: name, type: "connect", id: socket.id, recovered: socket.recovered,
      transport: transportOf(socket),
    });
  });
  socket.on("connect_error", (err) => {
    report({ client: name, type: "connect_error", message: err.message,
             data: toJson(err.data ?? null) });
  });
  socket.on("disconnect", (reason, description) => {
    const detail = description instanceof Error ? description.message
      : description?.description instanceof Error ? description.description.message
      : null;
    report({ client: name, type: "disconnect", reason, detail });
  });
  socket.onAny((event, ...args) => {
    let acked = false;
    if (args.length && typeof args[args.length - 1] === "function") {
      const callback = args.pop();
      acked = true;
      if (Object.hasOwn(answers, event)) {
        callback(...answerOf(answers[event], args));
      }
    }
    report({ client: name, type: "event", event, args: toJson(args), acked });
  });
}

function emit(command) {
  const socket = sockets.get(command.client);
  const args = fromJson(command.args ?? []);
  if (command.ack) {
    const timeout = command.timeout ?? 5000;
    socket.timeout(timeout).emit(command.event, ...args, (err, ...answer) => {
      report({ client: command.client, type: "ack", ref: command.ref,
               error: err ? err.message : null, args: toJson(answer) });
    });
  } else {
    socket.emit(command.event, ...args);
  }
}

function handle(command) {
  const socket = sockets.get(command.client);
  switch (command.op) {
    case "connect":
      connect(command);
      break;
    case "emit":
      emit(command);
      break;
    case "state":
      report({
        client: command.client, type: "state", ref: command.ref,
        connected: socket.connected, id: socket.id ?? null,
        recovered: socket.recovered, transport: transportOf(socket),
        engine: socket.io.engine?.id ?? null,
      });
      break;
    case "open":
      socket.connect();
      break;
    case "close":
      socket.disconnect();
      break;
    case "exit":
      shutdown();
      break;
    default:
      report({ type: "error", message: `unknown op ${command.op}` });
  }
}

function shutdown() {
  for (const socket of sockets.values()) {
    socket.disconnect();
  }
  sockets.clear();
  process.exitCode = 0;
  // Timers of closed managers may linger; nothing else keeps the process alive.
  setTimeout(() => process.exit(0), 200).unref();
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) {
    return;
  }
  try {
    handle(JSON.parse(line));
  } catch (err) {
    report({ type: "error", message: String(err?.stack ?? err) });
  }
});
lines.on("close", shutdown);
report({ type: "ready" });
