// Reference server for durable chat: what a team starting out would write with
// Node socket.io 4 and node-postgres (`pg`): every message is INSERTed on its
// own, broadcast to the conversation's room, then acked.
//
//     node node_socketio_pg.cjs PORT --database URL --secret SECRET
//
// URL is a libpq connection string (postgresql://user@host:port/db); the
// server creates its two tables there if they are missing. SECRET is the HS256
// secret of the clients' tokens: each socket presents its token as
// `auth.token` and is refused without a valid one (jsonwebtoken), its user
// being the token's `sub`.
//
// HTTP: `POST /conversations` {id, participants: [{userId}]} creates a
// conversation; `GET /blast/0` answers when the server is up.
// Socket.IO (websocket transport), the same events and answers as
// Switchboard's chat plugin, as far as the benchmark's client uses them:
//   - `conversation:join` {conversationId}, ack {success: true}: the member
//     (checked in the database) joins room `conversation:<id>`;
//   - `message:send` {conversationId, clientId, type, content}: INSERT ...
//     RETURNING, then `message:new` (the stored message) to the room's other
//     sockets, then the ack {message}; {error: {code, message}} if refused.
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');
const { Pool } = require('pg');
const jwt = require('jsonwebtoken');

const port = Number(process.argv[2]);
const option = (name) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
};
const database = option('--database');
const secret = option('--secret');
if (!port || !database || !secret) {
  console.error('usage: node node_socketio_pg.cjs PORT --database URL --secret SECRET');
  process.exit(2);
}

// pg's default pool size (10 connections)
const pool = new Pool({ connectionString: database });

const SCHEMA = `
CREATE TABLE IF NOT EXISTS conversation_participants (
  conversation_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  PRIMARY KEY (conversation_id, user_id)
);
CREATE TABLE IF NOT EXISTS messages (
  id BIGSERIAL PRIMARY KEY,
  conversation_id TEXT NOT NULL,
  sender_id TEXT NOT NULL,
  client_id TEXT,
  type TEXT NOT NULL,
  content JSONB NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, id);
`;

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json',
    'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function createConversation(body) {
  const users = (body.participants ?? []).map((p) => String(p.userId));
  await pool.query(
    `INSERT INTO conversation_participants (conversation_id, user_id)
     SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, [String(body.id), users]);
  return { id: String(body.id), participants: users.length };
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (req.method === 'GET' && url.pathname.startsWith('/blast/')) {
    return answer(res, 200, { clients: io.engine.clientsCount });
  }
  if (req.method === 'POST' && url.pathname === '/conversations') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString());
      } catch {
        return answer(res, 400, { error: 'invalid JSON' });
      }
      createConversation(body).then((made) => answer(res, 201, made),
        (err) => answer(res, 500, { error: err.message }));
      return undefined;
    });
    return undefined;
  }
  if (!url.pathname.startsWith('/socket.io/')) answer(res, 404, { error: 'not found' });
  return undefined;
});

const io = new Server(server, {
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
});

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  try {
    const claims = jwt.verify(String(token), secret, { algorithms: ['HS256'] });
    socket.data.user = String(claims.sub);
    next();
  } catch (err) {
    next(new Error(`unauthorized: ${err.message}`));
  }
});

const roomOf = (conversationId) => `conversation:${conversationId}`;
const refuse = (code, message) => ({ error: { code, message } });

io.on('connection', (socket) => {
  socket.on('conversation:join', async (data, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    const conversationId = data && data.conversationId;
    if (typeof conversationId !== 'string') return reply(refuse('invalid_payload', 'conversationId'));
    try {
      const { rowCount } = await pool.query(
        'SELECT 1 FROM conversation_participants WHERE conversation_id = $1 AND user_id = $2',
        [conversationId, socket.data.user]);
      if (!rowCount) return reply(refuse('forbidden', 'not a participant'));
      socket.join(roomOf(conversationId));
      return reply({ success: true });
    } catch (err) {
      return reply(refuse('internal', err.message));
    }
  });

  socket.on('message:send', async (data, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    if (!data || typeof data.conversationId !== 'string' || !data.content) {
      return reply(refuse('invalid_payload', 'conversationId and content'));
    }
    const room = roomOf(data.conversationId);
    if (!socket.rooms.has(room)) return reply(refuse('forbidden', 'join the conversation first'));
    try {
      const { rows: [row] } = await pool.query(
        `INSERT INTO messages (conversation_id, sender_id, client_id, type, content)
         VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at`,
        [data.conversationId, socket.data.user, data.clientId ?? null,
          String(data.type ?? 'text'), data.content]);
      const message = {
        id: String(row.id), conversationId: data.conversationId, senderId: socket.data.user,
        clientId: data.clientId ?? null, type: String(data.type ?? 'text'),
        content: data.content, createdAt: row.created_at.toISOString(),
      };
      socket.to(room).emit('message:new', message);
      return reply({ message });
    } catch (err) {
      return reply(refuse('internal', err.message));
    }
  });
});

async function start() {
  await pool.query(SCHEMA);
  server.listen(port, '127.0.0.1');
}

start().catch((err) => {
  console.error(`start failed: ${err.message ?? err}`);
  process.exit(1);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    io.close();
    pool.end().finally(() => process.exit(0));
  });
}
