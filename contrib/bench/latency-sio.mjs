// Emit-to-receive latency over Socket.IO, on one server or spread over the
// nodes of a cluster: N socket.io-client sockets in N/size rooms of `size`,
// socket i on URL number i modulo their count (so each room's members are split
// over the nodes); a publisher POSTs RATE events/s for SECS seconds to the
// first node (one event per request, round robin over the rooms), each
// carrying its send time; every socket computes receive time minus send time.
// Prints one JSON line.
import http from 'node:http';
import { args, nowMs, request, sleep } from './lib.mjs';
import { openManySio, tokenMaker } from './sio.mjs';

const USAGE = `node latency-sio.mjs [--clients N] [--room-size 10] [--rate R] [--secs S]
    [--tokens FILE] [--tenant bench] [--max-sockets 32]
    (--api-key KEY | --reference) URLS EMIT_URL

URLS: the nodes' base URLs separated by commas. Switchboard (--api-key): each
socket joins bench:r<k> with room:join, events are POSTed to EMIT_URL
(/api/v1/emit) as {event: "msg", tenant, room, data: {t}}. A reference server
(--reference): each socket sends auth {room: k} and the server joins it to
"r<k>"; events are POSTed as {t} to EMIT_URL/r<k>.`;

const { values: o, positionals: [urlList, emitUrl] } = args({
  clients: { type: 'string', default: '1000' },
  'room-size': { type: 'string', default: '10' },
  rate: { type: 'string', default: '1000' },
  secs: { type: 'string', default: '10' },
  tokens: { type: 'string' },
  tenant: { type: 'string', default: 'bench' },
  'api-key': { type: 'string' },
  reference: { type: 'boolean', default: false },
  'max-sockets': { type: 'string', default: '32' },
}, USAGE);
if (o.help || !urlList || !emitUrl || (!o['api-key'] && !o.reference)) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}

const N = Number(o.clients);
const size = Number(o['room-size']);
const rooms = Math.ceil(N / size);
const rate = Number(o.rate);
const total = Math.round(rate * Number(o.secs));
const roomSize = Array.from({ length: rooms }, (_, k) => Math.min(size, N - k * size));
let expected = 0;
for (let i = 0; i < total; i++) expected += roomSize[i % rooms];

const samples = new Float64Array(expected + N);
let received = 0;
let finish = null;
const finished = new Promise((resolve) => { finish = resolve; });
const urls = urlList.split(',');
// the same samples by the node the receiving socket is on (node 0 gets the POSTs)
const byNode = urls.map(() => []);
const tokenFor = tokenMaker(o.tokens);
// the same samples by the second of the run they were sent in: whether a run's
// tail is a few bad seconds (a stall) or spread over all of them
const bySecond = Array.from({ length: Math.ceil(Number(o.secs)) + 1 }, () => []);
let sendStartMs = 0;
const onMsg = (data, node) => {
  const latency = nowMs() - data.t;
  if (received < samples.length) samples[received] = latency;
  byNode[node].push(latency);
  bySecond[Math.max(0, Math.min(bySecond.length - 1,
    Math.floor((data.t - sendStartMs) / 1000)))].push(latency);
  if (++received === expected) finish();
};
const sockets = await openManySio(N, (i) => urls[i % urls.length], (i) => {
  const k = Math.floor(i / size);
  const msg = (data) => onMsg(data, i % urls.length);
  return o.reference
    ? { auth: { room: k }, on: { msg } }
    : { token: tokenFor(i), join: `bench:r${k}`, on: { msg } };
});
await sleep(1000);

const agent = new http.Agent({ keepAlive: true, maxSockets: Number(o['max-sockets']) });
const headers = { 'Content-Type': 'application/json',
  ...(o['api-key'] ? { Authorization: `Bearer ${o['api-key']}` } : {}) };
let requests = 0;
let httpErrors = 0;
let firstError = null;
const pending = new Set();

function post(i) {
  const k = i % rooms;
  const target = o.reference ? `${emitUrl}/r${k}` : emitUrl;
  const body = JSON.stringify(o.reference ? { t: nowMs() }
    : { event: 'msg', tenant: o.tenant, room: `bench:r${k}`, data: { t: nowMs() } });
  requests++;
  const p = request(target, { method: 'POST', headers, body, agent }).then((res) => {
    if (res.status !== 202) { httpErrors++; firstError ??= `${res.status} ${res.body}`; }
  }, (err) => { httpErrors++; firstError ??= String(err.message ?? err); });
  pending.add(p);
  p.finally(() => pending.delete(p));
}

let sent = 0;
const start = performance.now() + 20;
sendStartMs = nowMs() + 20;
await new Promise((resolve) => {
  function tick() {
    const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
    while (sent < due) post(sent++);
    if (sent >= total) return resolve();
    setTimeout(tick, Math.max(0, start + (sent * 1000) / rate - performance.now()));
  }
  setTimeout(tick, 20);
});
const sendSeconds = (performance.now() - start) / 1000;
await Promise.race([Promise.all([...pending]), sleep(10000)]);
await Promise.race([finished, sleep(5000)]);

const got = samples.subarray(0, Math.min(received, samples.length)).sort();
const pctOf = (sorted, p) => (sorted.length
  ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN);
const pct = (p) => pctOf(got, p);
const r3 = (x) => Number(x.toFixed(3));
const nodes = byNode.map((list) => {
  const sorted = Float64Array.from(list).sort();
  return { received: sorted.length, p50_ms: r3(pctOf(sorted, 0.5)),
    p99_ms: r3(pctOf(sorted, 0.99)), max_ms: r3(sorted.length ? sorted[sorted.length - 1] : NaN) };
});
const ok = received === expected && httpErrors === 0;
console.log(JSON.stringify({
  ok, N, nodes: urls.length, rooms, room_size: size, rate, secs: Number(o.secs), events: total,
  requests, send_rate: Math.round(total / sendSeconds), received, expected,
  http_errors: httpErrors,
  p50_ms: r3(pct(0.5)), p99_ms: r3(pct(0.99)), max_ms: r3(got.length ? got[got.length - 1] : NaN),
  by_node: nodes,
  p99_by_second_ms: bySecond.filter((list) => list.length)
    .map((list) => r3(pctOf(Float64Array.from(list).sort(), 0.99))),
  ...(firstError ? { error: firstError.slice(0, 300) } : {}),
}));
for (const socket of sockets) socket.close();
agent.destroy();
process.exit(ok ? 0 : 1);
