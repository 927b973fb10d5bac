// Emit-to-receive latency: N clients in N/size rooms of `size` (room
// bench:r<k>); a publisher POSTs RATE events/s for SECS seconds to the emit API
// (one event per request, round robin over the rooms), each carrying its send
// time; every client computes receive time minus send time. With --batch-ms B,
// the events due in each B ms window go out as one request (a JSON list).
// Prints one JSON line.
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { args, cpuSeconds, isMsg, nowMs, openMany, request, sleep, urlMaker } from './lib.mjs';

const USAGE = `node latency-ws.mjs [--clients N] [--room-size 10] [--rate R] [--secs S]
    [--tokens FILE] [--tenant bench] [--max-sockets 32] [--batch-ms B] [--server-pid PID]
    --api-key KEY WSURL EMIT_URL`;

const { values: o, positionals: [wsUrl, emitUrl] } = args({
  clients: { type: 'string', default: '1000' },
  'room-size': { type: 'string', default: '10' },
  rate: { type: 'string', default: '1000' },
  secs: { type: 'string', default: '10' },
  tokens: { type: 'string' },
  tenant: { type: 'string', default: 'bench' },
  'api-key': { type: 'string' },
  'max-sockets': { type: 'string', default: '32' },
  'batch-ms': { type: 'string', default: '0' },
  'server-pid': { type: 'string' },
}, USAGE);
if (o.help || !wsUrl || !emitUrl || !o['api-key']) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}

const N = Number(o.clients);
const size = Number(o['room-size']);
const rooms = Math.ceil(N / size);
const rate = Number(o.rate);
const total = Math.round(rate * Number(o.secs));
// Members of each room, to know how many deliveries each event should make.
const roomSize = Array.from({ length: rooms }, (_, k) => Math.min(size, N - k * size));
let expected = 0;
for (let i = 0; i < total; i++) expected += roomSize[i % rooms];

const samples = new Float64Array(expected + N);
let received = 0;
let finish = null;
const finished = new Promise((resolve) => { finish = resolve; });

const clients = await openMany(N, urlMaker(wsUrl, o.tokens), (i) => ({
  session: true,
  room: `bench:r${Math.floor(i / size)}`,
  onFrame: (data) => {
    if (!isMsg(data)) return;
    const latency = nowMs() - JSON.parse(data).data.t;
    if (received < samples.length) samples[received] = latency;
    if (++received === expected) finish();
  },
}));

const agent = new http.Agent({ keepAlive: true, maxSockets: Number(o['max-sockets']) });
const headers = { Authorization: `Bearer ${o['api-key']}`, 'Content-Type': 'application/json' };
const batchMs = Number(o['batch-ms']);
let sent = 0;
let requests = 0;
let httpErrors = 0;
let firstError = null;
const pending = new Set();

const emit = (i) => ({ event: 'msg', tenant: o.tenant, room: `bench:r${i % rooms}`,
  data: { t: nowMs() } });

function post(from, to) {
  const body = JSON.stringify(to - from === 1 && !batchMs ? emit(from)
    : Array.from({ length: to - from }, (_, k) => emit(from + k)));
  requests++;
  const p = request(emitUrl, { method: 'POST', headers, body, agent }).then((res) => {
    if (res.status !== 202) { httpErrors++; firstError ??= `${res.status} ${res.body}`; }
  }, (err) => { httpErrors++; firstError ??= String(err.message ?? err); });
  pending.add(p);
  p.finally(() => pending.delete(p));
}

// Event i is due at start + i / rate; a late timer sends everything that is due
// (one request per event, or one per --batch-ms window).
const cpu0 = cpuSeconds(o['server-pid']);
const loopDelay = monitorEventLoopDelay({ resolution: 5 });
loopDelay.enable();
const start = performance.now() + 20;
await new Promise((resolve) => {
  function tick() {
    const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
    if (batchMs) {
      if (due > sent) post(sent, due);
      sent = due;
    } else {
      while (sent < due) { post(sent, sent + 1); sent++; }
    }
    if (sent >= total) return resolve();
    const next = start + (sent * 1000) / rate + (batchMs ? batchMs - 1000 / rate : 0);
    setTimeout(tick, Math.max(0, next - performance.now()));
  }
  setTimeout(tick, 20);
});
const sendSeconds = (performance.now() - start) / 1000;
await Promise.race([Promise.all([...pending]), sleep(10000)]);
await Promise.race([finished, sleep(5000)]);
const cpu1 = cpuSeconds(o['server-pid']);
loopDelay.disable();
const wall = (performance.now() - start) / 1000;

const got = samples.subarray(0, Math.min(received, samples.length)).sort();
const pct = (p) => (got.length ? got[Math.min(got.length - 1, Math.floor(p * got.length))] : NaN);
const r3 = (x) => Number(x.toFixed(3));
const ok = received === expected && httpErrors === 0;
console.log(JSON.stringify({
  ok, N, rooms, room_size: size, rate, secs: Number(o.secs), events: total, requests,
  batch_ms: batchMs, send_rate: Math.round(total / sendSeconds), received, expected,
  http_errors: httpErrors,
  ...(cpu0 === null || cpu1 === null ? {} : { server_cpu_busy: r3((cpu1 - cpu0) / wall) }),
  p50_ms: r3(pct(0.5)), p99_ms: r3(pct(0.99)), max_ms: r3(got.length ? got[got.length - 1] : NaN),
  mean_ms: r3(got.reduce((a, b) => a + b, 0) / (got.length || 1)),
  client_loop_delay_p99_ms: r3(loopDelay.percentile(99) / 1e6),
  client_loop_delay_max_ms: r3(loopDelay.max / 1e6),
  ...(firstError ? { error: firstError.slice(0, 300) } : {}),
}));
for (const ws of clients) ws.terminate();
agent.destroy();
process.exit(ok ? 0 : 1);
