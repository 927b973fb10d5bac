// Idle connections: open N clients (in batches), print "ready N", hold them
// until standard input closes, then print one JSON line and exit. Plain
// WebSocket clients (`ws`) by default; with --sio, socket.io-client sockets
// (websocket transport), ready once connected to the namespace, URL being the
// server's base URL and --tokens lines sent as auth.token.
//
// The clients are held by --procs worker processes (each its share), bound to
// --addresses loopback source addresses in turn (127.0.0.1, 127.0.0.2, ...:
// each address has its own ephemeral ports). With --join ROOM each client
// joins ROOM once connected (Switchboard's `room:join`, acked).
//
// A line `blast` on standard input sends one event to every client: a POST of
// one emit to ROOM with --api-key (Switchboard's /api/v1/emit), else GET
// --trigger with {M} replaced by 1; it prints one JSON line with the time until
// the last client has it (and the server's CPU with --server-pid).
import { createInterface } from 'node:readline';
import { args, forkWorkers, cpuSeconds, isMsg, loopbackAddress, nowMs, openMany, request,
  urlMaker } from './lib.mjs';

const USAGE = `node hold.mjs [--tokens FILE] [--session] [--sio] [--procs P] [--addresses A]
    [--join ROOM] [--trigger URL [--api-key KEY --tenant T]] [--server-pid PID] URL N`;
const { values: o, positionals: [url, n] } = args({
  tokens: { type: 'string' },
  session: { type: 'boolean', default: false },
  sio: { type: 'boolean', default: false },
  procs: { type: 'string', default: '1' },
  addresses: { type: 'string', default: '1' },
  join: { type: 'string' },
  trigger: { type: 'string' },
  'api-key': { type: 'string' },
  tenant: { type: 'string' },
  'server-pid': { type: 'string' },
}, USAGE);
if (o.help || !url || !n) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}

const N = Number(n);

if (process.env.HOLD_WORKER) await worker();
else await parent();

async function worker() {
  const offset = Number(process.env.HOLD_OFFSET);
  const count = Number(process.env.HOLD_COUNT);
  const got = new Uint32Array(count);
  let frames = 0;
  let closed = 0;
  let watching = Infinity;
  let reached = 0;
  const arrived = (j) => {
    if (++got[j] === watching && ++reached === count) {
      process.send({ type: 'got', at: nowMs() });
    }
  };
  let release;
  if (o.sio) {
    const { openManySio, tokenMaker } = await import('./sio.mjs');
    const tokenFor = tokenMaker(o.tokens);
    const sockets = await openManySio(count, url, (j) => ({
      token: tokenFor(offset + j),
      join: o.join ?? null,
      localAddress: loopbackAddress(offset + j, o.addresses),
      on: { msg: () => arrived(j) },
    }));
    for (const socket of sockets) {
      socket.onAny(() => { frames++; });
      socket.on('disconnect', () => { closed++; });
    }
    release = () => { for (const socket of sockets) socket.close(); };
  } else {
    const urlFor = urlMaker(url, o.tokens);
    const clients = await openMany(count, (j) => urlFor(offset + j), (j) => ({
      session: o.session || Boolean(o.join),
      room: o.join ?? null,
      localAddress: loopbackAddress(offset + j, o.addresses),
      onFrame: (data) => {
        frames++;
        if (isMsg(data)) arrived(j);
      },
    }));
    for (const ws of clients) ws.on('close', () => { closed++; });
    release = () => { for (const ws of clients) ws.terminate(); };
  }
  process.on('message', (m) => {
    if (m.type === 'watch') {
      watching = m.k;
      reached = 0;
      for (let j = 0; j < count; j++) if (got[j] >= watching) reached++;
      if (reached === count) process.send({ type: 'got', at: nowMs() });
    } else if (m.type === 'release') {
      process.send({ type: 'released', frames, closed });
      release();
      setTimeout(() => process.exit(0), 100);
    }
  });
  process.send({ type: 'ready' });
}

async function parent() {
  const workers = forkWorkers(new URL(import.meta.url).pathname, N, o.procs, 'HOLD',
    'hold');
  const next = (type) => Promise.all(workers.map((w) => new Promise((resolve) => {
    const on = (m) => {
      if (m.type === type) {
        w.off('message', on);
        resolve(m);
      }
    };
    w.on('message', on);
  })));
  await next('ready');
  console.log(`ready ${N}`);

  let watched = 0;
  let busy = Promise.resolve();
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line.trim() === 'blast') busy = busy.then(blast);
  });
  lines.on('close', async () => {
    await busy;
    const released = next('released');
    for (const w of workers) {
      w.releasing = true;
      w.send({ type: 'release' });
    }
    const reports = await released;
    console.log(JSON.stringify({
      held: N, procs: workers.length,
      frames_while_idle: reports.reduce((s, r) => s + r.frames, 0),
      closed_by_server: reports.reduce((s, r) => s + r.closed, 0),
    }));
    process.exit(0);
  });

  async function blast() {
    watched += 1;
    const arrived = next('got');
    for (const w of workers) w.send({ type: 'watch', k: watched });
    const headers = {};
    let method = 'GET';
    let body = null;
    if (o['api-key']) {
      method = 'POST';
      headers.Authorization = `Bearer ${o['api-key']}`;
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify([{ event: 'msg', tenant: o.tenant, room: o.join,
        data: 'x'.repeat(100) }]);
    }
    const cpu0 = cpuSeconds(o['server-pid']);
    const t0 = nowMs();
    const trigger = request(o.trigger.replace('{M}', '1'), { method, headers, body, timeoutMs: 120000 })
      .catch((err) => ({ status: 0, body: String(err) }));
    const timeout = new Promise((resolve) => setTimeout(resolve, 120000, 'timeout'));
    const outcome = await Promise.race([arrived, timeout]);
    const cpu1 = cpuSeconds(o['server-pid']);
    const res = await trigger;
    const ok = outcome !== 'timeout' && res.status >= 200 && res.status < 300;
    const seconds = ok ? (Math.max(...outcome.map((m) => m.at)) - t0) / 1000 : null;
    console.log(JSON.stringify({
      ok, blast: watched, clients: N, trigger_status: res.status,
      seconds: seconds === null ? null : Number(seconds.toFixed(4)),
      deliveries_per_s: ok ? Math.round(N / seconds) : 0,
      ...(cpu0 !== null && cpu1 !== null ? { server_cpu_s: Number((cpu1 - cpu0).toFixed(3)) } : {}),
      ...(ok ? {} : { error: String(res.body ?? '').slice(0, 300) }),
    }));
  }
}
