// Reference server: the Node socket.io server (v4), websocket transport only.
//
//     node node_socketio.cjs PORT [--redis URL [--key PREFIX]]
//
// With --redis, the server is one node of several sharing rooms through the
// Socket.IO Redis adapter (@socket.io/redis-adapter, Pub/Sub), channels
// prefixed with PREFIX (default "socket.io").
//
// Every client joins room "room" on connect, and also "r" + auth.room when its
// handshake `auth` carries a `room`. `GET /blast/M` emits M events "msg" (a
// 100-byte string) to room "room"; `POST /emit/ROOM` emits the JSON body as
// "msg" to ROOM. Both answer a small JSON object.
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');

const port = Number(process.argv[2]);
const option = (name) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
};
const redisUrl = option('--redis');
if (!port) {
  console.error('usage: node node_socketio.cjs PORT');
  process.exit(2);
}

const PAYLOAD = 'x'.repeat(100);

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json',
    'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const blast = /^\/blast\/(\d+)$/.exec(url.pathname);
  if (req.method === 'GET' && blast) {
    const count = Number(blast[1]);
    const room = io.to('room');
    for (let i = 0; i < count; i++) room.emit('msg', PAYLOAD);
    return answer(res, 200, { clients: io.engine.clientsCount, messages: count });
  }
  const emit = /^\/emit\/([^/]+)$/.exec(url.pathname);
  if (req.method === 'POST' && emit) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let data;
      try {
        data = JSON.parse(Buffer.concat(chunks).toString() || 'null');
      } catch {
        return answer(res, 400, { error: 'invalid JSON' });
      }
      io.to(decodeURIComponent(emit[1])).emit('msg', data);
      return answer(res, 202, { published: 1 });
    });
    return undefined;
  }
  // socket.io answers its own path before this handler; anything else is unknown
  if (!url.pathname.startsWith('/socket.io/')) answer(res, 404, { error: 'not found' });
  return undefined;
});

const io = new Server(server, {
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
});

async function listen() {
  if (redisUrl) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub, { key: option('--key') ?? 'socket.io' }));
  }
  server.listen(port, '127.0.0.1');
}

io.on('connection', (socket) => {
  socket.join('room');
  const room = socket.handshake.auth && socket.handshake.auth.room;
  if (room !== undefined && room !== null) socket.join(`r${room}`);
});

listen().catch((err) => {
  console.error(`start failed: ${err.message ?? err}`);
  process.exit(1);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
