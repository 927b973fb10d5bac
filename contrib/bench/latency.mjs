// Emit-to-receive latency with the receiving clients spread over several Node
// processes: N clients in N/size rooms of `size` (client i in room i div size),
// held by --procs worker processes; this process publishes RATE events/s for
// SECS seconds (one HTTP request per event, round robin over the rooms, or the
// events of each --batch-ms window in one request), each carrying its send time
// (performance.timeOrigin + performance.now(): one clock for every process of
// the machine); every client computes receive time minus send time. Each
// process measures its own event-loop delay (perf_hooks.monitorEventLoopDelay)
// while the events flow, so what the load clients add is stated beside the
// figure. Prints one JSON line.
//
// --kind ws: Switchboard, plain WebSocket (WSURL with {token}); room:join.
// --kind sio: Switchboard, socket.io-client (BASE_URL); room:join over Socket.IO.
// --kind reference: a Socket.IO reference server of designs/ (BASE_URL): each
//   socket sends auth {room: k}, the server joins it to "r<k>"; events are
//   POSTed as {t} to EMIT_URL/r<k>.
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { args, cpuSeconds, forkWorkers, isMsg, nowMs, openMany, request, sleep,
  urlMaker } from './lib.mjs';
import { openManySio, tokenMaker } from './sio.mjs';

const USAGE = `node latency.mjs [--kind ws|sio|reference] [--clients N] [--room-size 10]
    [--rate R] [--secs S] [--procs 4] [--batch-ms B] [--tokens FILE] [--tenant bench]
    [--max-sockets 32] [--server-pid PID] [--api-key KEY] URL EMIT_URL`;

const { values: o, positionals: [url, emitUrl] } = args({
  kind: { type: 'string', default: 'ws' },
  clients: { type: 'string', default: '1000' },
  'room-size': { type: 'string', default: '10' },
  rate: { type: 'string', default: '1000' },
  secs: { type: 'string', default: '10' },
  procs: { type: 'string', default: '4' },
  'batch-ms': { type: 'string', default: '0' },
  tokens: { type: 'string' },
  tenant: { type: 'string', default: 'bench' },
  'api-key': { type: 'string' },
  'max-sockets': { type: 'string', default: '32' },
  'server-pid': { type: 'string' },
}, USAGE);
const kinds = ['ws', 'sio', 'reference'];
if (o.help || !url || !emitUrl || !kinds.includes(o.kind)
    || (o.kind !== 'reference' && !o['api-key'])) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}

const N = Number(o.clients);
const size = Number(o['room-size']);
const rooms = Math.ceil(N / size);
const rate = Number(o.rate);
const total = Math.round(rate * Number(o.secs));
const r3 = (x) => Number(x.toFixed(3));

/** Event-loop delay percentiles in ms of a monitorEventLoopDelay histogram. */
function loopReport(h) {
  return { p50: r3(h.percentile(50) / 1e6), p99: r3(h.percentile(99) / 1e6),
    max: r3(h.max / 1e6) };
}

if (process.env.LATENCY_WORKER) await worker();
else await parent();

/** Hold clients offset..offset+count-1, record every delivery's latency. */
async function worker() {
  const offset = Number(process.env.LATENCY_OFFSET);
  const count = Number(process.env.LATENCY_COUNT);
  // Deliveries this worker's clients should get: members of each room it holds.
  const mine = new Array(rooms).fill(0);
  for (let i = offset; i < offset + count; i++) mine[Math.floor(i / size)]++;
  let expected = 0;
  for (let i = 0; i < total; i++) expected += mine[i % rooms];
  const samples = new Float64Array(expected + count);
  let received = 0;
  const record = (t) => {
    const latency = nowMs() - t;
    if (received < samples.length) samples[received] = latency;
    if (++received === expected) process.send({ type: 'done' });
  };
  let clients;
  if (o.kind === 'ws') {
    const urlFor = urlMaker(url, o.tokens);
    clients = await openMany(count, (j) => urlFor(offset + j), (j) => ({
      session: true,
      room: `bench:r${Math.floor((offset + j) / size)}`,
      onFrame: (data) => { if (isMsg(data)) record(JSON.parse(data).data.t); },
    }));
  } else {
    const tokenFor = tokenMaker(o.tokens);
    const on = { msg: (data) => record(data.t) };
    clients = await openManySio(count, url, (j) => {
      const k = Math.floor((offset + j) / size);
      return o.kind === 'reference' ? { auth: { room: k }, on }
        : { token: tokenFor(offset + j), join: `bench:r${k}`, on };
    });
  }
  const loop = monitorEventLoopDelay({ resolution: 1 });
  process.on('message', (m) => {
    if (m === 'go') {
      loop.enable();
    } else if (m === 'report') {
      loop.disable();
      process.send({ type: 'report', received, expected,
        samples: Array.from(samples.subarray(0, Math.min(received, samples.length))),
        loop: loopReport(loop) }, () => {
        for (const c of clients) (o.kind === 'ws' ? c.terminate() : c.close());
        process.exit(0);
      });
    }
  });
  process.send({ type: 'ready', expected });
}

/** Fork the workers, publish, gather the samples, print the result. */
async function parent() {
  const workers = forkWorkers(new URL(import.meta.url).pathname, N, o.procs, 'LATENCY',
    'latency');
  const boxes = workers.map((w) => {
    const box = {};
    box.ready = new Promise((resolve) => { box.onReady = resolve; });
    box.done = new Promise((resolve) => { box.onDone = resolve; });
    box.report = new Promise((resolve) => { box.onReport = resolve; });
    w.on('message', (m) => {
      if (m.type === 'ready') box.onReady(m);
      else if (m.type === 'done') box.onDone(m);
      else if (m.type === 'report') box.onReport(m);
    });
    return box;
  });
  const opened = await Promise.race([Promise.all(boxes.map((b) => b.ready)),
    sleep(180000).then(() => null)]);
  if (!opened) {
    console.log(JSON.stringify({ ok: false, N, error: 'clients not open within 180 s' }));
    for (const w of workers) { w.releasing = true; w.kill(); }
    process.exit(1);
  }
  const expected = opened.reduce((sum, m) => sum + m.expected, 0);
  await sleep(1000);

  const agent = new http.Agent({ keepAlive: true, maxSockets: Number(o['max-sockets']) });
  const headers = { 'Content-Type': 'application/json',
    ...(o['api-key'] ? { Authorization: `Bearer ${o['api-key']}` } : {}) };
  const batchMs = Number(o['batch-ms']);
  const reference = o.kind === 'reference';
  let sent = 0;
  let requests = 0;
  let httpErrors = 0;
  let firstError = null;
  const pending = new Set();
  const emit = (i) => ({ event: 'msg', tenant: o.tenant, room: `bench:r${i % rooms}`,
    data: { t: nowMs() } });

  function post(from, to) {
    let target = emitUrl;
    let body;
    if (reference) {
      target = `${emitUrl}/r${from % rooms}`;
      body = JSON.stringify({ t: nowMs() });
    } else {
      body = JSON.stringify(to - from === 1 && !batchMs ? emit(from)
        : Array.from({ length: to - from }, (_, k) => emit(from + k)));
    }
    requests++;
    const p = request(target, { method: 'POST', headers, body, agent }).then((res) => {
      if (res.status !== 202) { httpErrors++; firstError ??= `${res.status} ${res.body}`; }
    }, (err) => { httpErrors++; firstError ??= String(err.message ?? err); });
    pending.add(p);
    p.finally(() => pending.delete(p));
  }

  for (const w of workers) w.send('go');
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const cpu0 = cpuSeconds(o['server-pid']);
  // Event i is due at start + i / rate; a late timer sends everything that is
  // due (one request per event, or one per --batch-ms window; the reference
  // server takes one event per request).
  const start = performance.now() + 20;
  await new Promise((resolve) => {
    function tick() {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      if (batchMs && !reference) {
        if (due > sent) post(sent, due);
        sent = due;
      } else {
        while (sent < due) { post(sent, sent + 1); sent++; }
      }
      if (sent >= total) return resolve();
      const next = start + (sent * 1000) / rate + (batchMs ? batchMs - 1000 / rate : 0);
      setTimeout(tick, Math.max(0, next - performance.now()));
      return undefined;
    }
    setTimeout(tick, 20);
  });
  const sendSeconds = (performance.now() - start) / 1000;
  await Promise.race([Promise.all([...pending]), sleep(10000)]);
  await Promise.race([Promise.all(boxes.map((b) => b.done)), sleep(5000)]);
  const cpu1 = cpuSeconds(o['server-pid']);
  loop.disable();
  const wall = (performance.now() - start) / 1000;
  for (const w of workers) { w.releasing = true; w.send('report'); }
  const reports = await Promise.race([Promise.all(boxes.map((b) => b.report)),
    sleep(30000).then(() => null)]);
  if (!reports) {
    console.log(JSON.stringify({ ok: false, N, error: 'workers did not report within 30 s' }));
    for (const w of workers) w.kill();
    process.exit(1);
  }
  const received = reports.reduce((sum, m) => sum + m.received, 0);
  const got = Float64Array.from(reports.flatMap((m) => m.samples)).sort();
  const pct = (p) => (got.length ? got[Math.min(got.length - 1, Math.floor(p * got.length))]
    : NaN);
  const ok = received === expected && httpErrors === 0;
  console.log(JSON.stringify({
    ok, kind: o.kind, N, procs: workers.length, rooms, room_size: size, rate,
    secs: Number(o.secs), events: total, requests, batch_ms: reference ? 0 : batchMs,
    send_rate: Math.round(total / sendSeconds), received, expected, http_errors: httpErrors,
    ...(cpu0 === null || cpu1 === null ? {} : { server_cpu_busy: r3((cpu1 - cpu0) / wall) }),
    p50_ms: r3(pct(0.5)), p99_ms: r3(pct(0.99)), max_ms: r3(got.length ? got[got.length - 1]
      : NaN),
    mean_ms: r3(got.reduce((a, b) => a + b, 0) / (got.length || 1)),
    // event-loop delay (ms) of each receiving process, and of the publisher
    client_loop_delay: reports.map((m) => m.loop),
    publisher_loop_delay: loopReport(loop),
    ...(firstError ? { error: firstError.slice(0, 300) } : {}),
  }));
  agent.destroy();
  await sleep(200);
  process.exit(ok ? 0 : 1);
}
