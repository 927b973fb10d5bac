// Fan-out: N clients, one HTTP trigger broadcasts M messages to all of them;
// time from the trigger until every client has received M "msg" events.
// The clients are spread over --procs worker processes so that parsing
// frames on the client side is less of a bottleneck than the server.
import { args, fanoutParent, isMsg, nowMs, openMany, urlMaker } from './lib.mjs';

const USAGE = `node fanout-ws.mjs [--clients N] [--messages M] [--procs P] [--tokens FILE]
    [--session] [--join ROOM] [--api-key KEY [--tenant T] [--room R]]
    [--header 'Name: value']... [--timeout SECONDS] [--server-pid PID] WSURL TRIGGER_URL

WSURL may hold {token} (replaced by a line of --tokens, one per client).
The trigger is GET TRIGGER_URL ({M} replaced by M), or with --api-key a POST of
a JSON list of M emit objects {event: "msg", tenant, room, data: "x" * 100}
with "Authorization: Bearer KEY". With --server-pid (Linux), also reports the
CPU time the server process used from the trigger until the last delivery.
Prints one JSON line.`;

const { values: o, positionals: [wsUrl, triggerUrl] } = args({
  clients: { type: 'string', default: '1000' },
  messages: { type: 'string', default: '200' },
  procs: { type: 'string', default: '2' },
  tokens: { type: 'string' },
  session: { type: 'boolean', default: false },
  join: { type: 'string' },
  'api-key': { type: 'string' },
  tenant: { type: 'string', default: 'bench' },
  room: { type: 'string' },
  header: { type: 'string', multiple: true, default: [] },
  timeout: { type: 'string', default: '60' },
  'server-pid': { type: 'string' },
}, USAGE);
if (o.help || !wsUrl || !triggerUrl) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}
const N = Number(o.clients);
const M = Number(o.messages);

if (process.env.FANOUT_WORKER) {
  // Worker: clients [offset, offset + count); tells the parent when all have M.
  const offset = Number(process.env.FANOUT_OFFSET);
  const count = Number(process.env.FANOUT_COUNT);
  const urlFor = urlMaker(wsUrl, o.tokens);
  const counts = new Uint32Array(count);
  let complete = 0;
  let received = 0;
  const clients = await openMany(count, (i) => urlFor(offset + i), (i) => ({
    session: o.session,
    room: o.join ?? null,
    onFrame: (data) => {
      if (!isMsg(data)) return;
      received++;
      if (++counts[i] === M && ++complete === count) process.send({ type: 'done', at: nowMs() });
    },
  })).catch((err) => {
    console.error(`opening clients: ${err.message ?? err}`);
    process.exit(1);
  });
  process.on('message', () => {
    process.send({ type: 'report', received, complete });
    for (const ws of clients) ws.terminate();
    process.exit(0);
  });
  process.send({ type: 'ready' });
} else {
  await fanoutParent(new URL(import.meta.url).pathname, o, N, M, triggerUrl);
}
