// Reference server: the Node `ws` WebSocket server on `node:http`, with the
// token check a gateway does at the handshake.
//
//     node node_ws.cjs PORT [--secret SECRET] [--heartbeat SECONDS]
//
// Clients connect to /ws (?token=JWT). With --secret, the token is verified
// (HS256, jsonwebtoken) before the upgrade, refused with 401 if invalid; then
// the server sends a first frame {"type":"session",...} as Switchboard does.
// With --heartbeat, every SECONDS one timer pings every client and drops those
// that did not answer the previous ping (the pattern of the `ws` README).
// `GET /blast/M` sends M frames of the ~100-byte fan-out envelope to every
// client and answers a small JSON object.
'use strict';

const http = require('node:http');
const { WebSocketServer } = require('ws');
const jwt = require('jsonwebtoken');

const port = Number(process.argv[2]);
const option = (name) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
};
const secret = option('--secret');
const heartbeat = Number(option('--heartbeat') ?? 0);
if (!port) {
  console.error('usage: node node_ws.cjs PORT [--secret SECRET]');
  process.exit(2);
}

const FRAME = JSON.stringify({ type: 'msg', room: 'bench:all', data: 'x'.repeat(100) });

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json',
    'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

const server = http.createServer((req, res) => {
  const blast = /^\/blast\/(\d+)$/.exec(new URL(req.url, 'http://localhost').pathname);
  if (req.method === 'GET' && blast) {
    const count = Number(blast[1]);
    for (const ws of wss.clients) for (let i = 0; i < count; i++) ws.send(FRAME);
    return answer(res, 200, { clients: wss.clients.size, messages: count });
  }
  return answer(res, 404, { error: 'not found' });
});

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname !== '/ws') {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
    return;
  }
  let user = null;
  if (secret) {
    try {
      user = String(jwt.verify(url.searchParams.get('token') ?? '', secret,
        { algorithms: ['HS256'] }).sub);
    } catch {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n');
      return;
    }
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.isAlive = true;
    ws.on('pong', () => { ws.isAlive = true; });
    ws.send(JSON.stringify({ type: 'session', data: { user } }));
  });
});

if (heartbeat > 0) {
  setInterval(() => {
    for (const ws of wss.clients) {
      if (!ws.isAlive) {
        ws.terminate();
      } else {
        ws.isAlive = false;
        ws.ping();
      }
    }
  }, heartbeat * 1000);
}

server.listen(port, '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
