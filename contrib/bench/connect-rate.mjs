// Connection rate: open N WebSocket clients as fast as possible (at most
// --concurrency handshakes in flight) until every one is ready (with
// --session: has its first server frame). Prints one JSON line.
import { args, openClient, urlMaker } from './lib.mjs';

const USAGE = `node connect-rate.mjs [--clients N] [--concurrency C] [--tokens FILE] [--session]
    [--timeout SECONDS] WSURL`;

const { values: o, positionals: [wsUrl] } = args({
  clients: { type: 'string', default: '1000' },
  concurrency: { type: 'string', default: '200' },
  tokens: { type: 'string' },
  session: { type: 'boolean', default: false },
  timeout: { type: 'string', default: '60' },
}, USAGE);
if (o.help || !wsUrl) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}

const N = Number(o.clients);
const urlFor = urlMaker(wsUrl, o.tokens);
const clients = [];
let next = 0;
let failed = 0;
let firstError = null;

async function lane() {
  while (next < N) {
    const i = next++;
    try {
      clients.push(await openClient(urlFor(i), { session: o.session, timeoutMs: 20000 }));
    } catch (err) {
      failed++;
      firstError ??= String(err.message ?? err);
    }
  }
}

const t0 = performance.now();
const lanes = Array.from({ length: Math.min(N, Number(o.concurrency)) }, lane);
const timeout = new Promise((resolve) => setTimeout(resolve, Number(o.timeout) * 1000, 'timeout'));
const outcome = await Promise.race([Promise.all(lanes).then(() => 'done'), timeout]);
const seconds = (performance.now() - t0) / 1000;
const ok = outcome === 'done' && failed === 0;
console.log(JSON.stringify({
  ok, N, concurrency: Number(o.concurrency), seconds: Number(seconds.toFixed(4)),
  connections_per_s: ok ? Math.round(N / seconds) : 0, opened: clients.length, failed,
  ...(firstError ? { error: firstError } : {}),
}));
for (const ws of clients) ws.terminate();
process.exit(ok ? 0 : 1);
