// Fan-out over Socket.IO: N socket.io-client sockets (websocket transport), one
// HTTP trigger broadcasts M events "msg" to a room they are all in; time from
// the trigger until every socket has received M of them. The sockets are spread
// over --procs worker processes, as in fanout-ws.mjs.
import { args, fanoutParent, nowMs } from './lib.mjs';
import { openManySio, tokenMaker } from './sio.mjs';

const USAGE = `node fanout-sio.mjs [--clients N] [--messages M] [--procs P] [--tokens FILE]
    [--join ROOM] [--api-key KEY [--tenant T] [--room R]]
    [--header 'Name: value']... [--timeout SECONDS] [--server-pid PID] URL TRIGGER_URL

URL is the server's base URL (http://HOST:PORT; Socket.IO's default path
/socket.io/), or several separated by commas (nodes of one cluster): socket i
connects to URL number i modulo their count. With --tokens, socket i sends line i of FILE as auth.token. With
--join ROOM, each socket emits "room:join" {room: ROOM} and waits for its ack
(servers that put every client in the room on connect need no --join).
The trigger is GET TRIGGER_URL ({M} replaced by M), or with --api-key a POST of
a JSON list of M emit objects {event: "msg", tenant, room, data: "x" * 100}
with "Authorization: Bearer KEY". With --server-pid (Linux), also reports the
CPU time the server process used from the trigger until the last delivery.
Prints one JSON line.`;

const { values: o, positionals: [url, triggerUrl] } = args({
  clients: { type: 'string', default: '1000' },
  messages: { type: 'string', default: '200' },
  procs: { type: 'string', default: '2' },
  tokens: { type: 'string' },
  join: { type: 'string' },
  'api-key': { type: 'string' },
  tenant: { type: 'string', default: 'bench' },
  room: { type: 'string' },
  header: { type: 'string', multiple: true, default: [] },
  timeout: { type: 'string', default: '60' },
  'server-pid': { type: 'string' },
}, USAGE);
if (o.help || !url || !triggerUrl) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}
const N = Number(o.clients);
const M = Number(o.messages);

if (process.env.FANOUT_WORKER) {
  // Worker: sockets [offset, offset + count); tells the parent when all have M.
  const offset = Number(process.env.FANOUT_OFFSET);
  const count = Number(process.env.FANOUT_COUNT);
  const tokenFor = tokenMaker(o.tokens);
  const counts = new Uint32Array(count);
  let complete = 0;
  let received = 0;
  const urls = url.split(',');
  const sockets = await openManySio(count, (i) => urls[(offset + i) % urls.length], (i) => ({
    token: tokenFor(offset + i),
    join: o.join ?? null,
    on: {
      msg: () => {
        received++;
        if (++counts[i] === M && ++complete === count) process.send({ type: 'done', at: nowMs() });
      },
    },
  })).catch((err) => {
    console.error(`opening sockets: ${err.message ?? err}`);
    process.exit(1);
  });
  process.on('message', () => {
    process.send({ type: 'report', received, complete });
    for (const socket of sockets) socket.close();
    process.exit(0);
  });
  process.send({ type: 'ready' });
} else {
  await fanoutParent(new URL(import.meta.url).pathname, o, N, M, triggerUrl);
}
