// Fan-out: N clients, one HTTP trigger broadcasts M messages to all of them;
// time from the trigger until every client has received M "msg" events.
// The clients are spread over --procs worker processes so that parsing
// frames on the client side is less of a bottleneck than the server.
import { fork } from 'node:child_process';
import { args, cpuSeconds, headerObject, isMsg, nowMs, openMany, request, urlMaker }
  from './lib.mjs';

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
  await parent();
}

async function parent() {
  const procs = Math.max(1, Math.min(Number(o.procs), N));
  const workers = [];
  const ready = [];
  const done = [];
  const reports = [];
  let failure = null;
  for (let p = 0; p < procs; p++) {
    const offset = Math.floor((p * N) / procs);
    const count = Math.floor(((p + 1) * N) / procs) - offset;
    const worker = fork(new URL(import.meta.url).pathname, process.argv.slice(2), {
      env: { ...process.env, FANOUT_WORKER: '1', FANOUT_OFFSET: String(offset),
        FANOUT_COUNT: String(count) },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    let stderr = '';
    worker.stderr.on('data', (c) => { stderr += c; });
    const box = {};
    ready.push(new Promise((resolve) => { box.ready = resolve; }));
    done.push(new Promise((resolve) => { box.done = resolve; }));
    reports.push(new Promise((resolve) => { box.report = resolve; }));
    worker.on('message', (m) => box[m.type](m));
    worker.on('exit', (code) => {
      if (code) failure ??= `worker exited with ${code}: ${stderr.trim().slice(-400)}`;
      for (const key of ['ready', 'done', 'report']) box[key]({ failed: true });
    });
    workers.push(worker);
  }
  const openTimeout = new Promise((resolve) => setTimeout(resolve, 120000, 'timeout'));
  const opened = await Promise.race([Promise.all(ready), openTimeout]);
  if (opened === 'timeout' || failure) return finish(false, 0, { error: failure ?? 'open timeout' });

  const headers = headerObject(o.header);
  let method = 'GET';
  let body = null;
  if (o['api-key']) {
    method = 'POST';
    headers.Authorization = `Bearer ${o['api-key']}`;
    headers['Content-Type'] = 'application/json';
    const item = { event: 'msg', tenant: o.tenant, room: o.room ?? o.join ?? 'bench:all',
      data: 'x'.repeat(100) };
    body = JSON.stringify(Array.from({ length: M }, () => item));
  }

  const cpu0 = cpuSeconds(o['server-pid']);
  const t0 = nowMs();
  const trigger = request(triggerUrl.replace('{M}', String(M)), { method, headers, body })
    .catch((err) => ({ status: 0, body: String(err) }));
  const timeout = new Promise((resolve) => setTimeout(resolve, Number(o.timeout) * 1000, 'timeout'));
  const outcome = await Promise.race([Promise.all(done), timeout]);
  const cpu1 = cpuSeconds(o['server-pid']);
  const res = await Promise.race([trigger, timeout.then(() => ({ status: 0, body: 'timeout' }))]);
  const finished = outcome !== 'timeout' && outcome.every((m) => !m.failed);
  const seconds = finished ? (Math.max(...outcome.map((m) => m.at)) - t0) / 1000
    : Number(o.timeout);
  for (const w of workers) if (w.connected) w.send('report');
  const got = await Promise.race([Promise.all(reports), new Promise((r) => setTimeout(r, 5000, []))]);
  const received = got.reduce((sum, m) => sum + (m.received ?? 0), 0);
  const ok = finished && !failure && res.status >= 200 && res.status < 300;
  const cpu = cpu0 === null || cpu1 === null ? {} : {
    server_cpu_s: Number((cpu1 - cpu0).toFixed(3)),
    server_cpu_us_per_delivery: Number((((cpu1 - cpu0) * 1e6) / (N * M)).toFixed(3)) };
  return finish(ok, seconds, { received, trigger_status: res.status, ...cpu,
    ...(ok ? {} : { error: failure ?? String(res.body ?? '').slice(0, 300) }) });

  function finish(success, secs, extra) {
    console.log(JSON.stringify({
      ok: success, N, M, procs, seconds: Number(secs.toFixed(4)),
      deliveries_per_s: success ? Math.round((N * M) / secs) : 0, expected: N * M, ...extra,
    }));
    for (const w of workers) w.kill();
    process.exit(success ? 0 : 1);
  }
}
