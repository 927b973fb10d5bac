// Service desk: AGENTS agents (plain WebSocket, role agent, so all in the
// tenant's agents room) are the members of QUEUES queues created beforehand
// (see bench.py); this script creates tickets through POST /api/v1/tickets
// (or, with --bulk N, N per request through POST /api/v1/tickets/bulk),
// RATE per second for WARMUP seconds (not timed) and then SECS seconds,
// round robin over the queues, and times each ticket of the SECS from its request to the `ticket:assigned` (auto-assignment)
// that the first agent receives (every agent receives it: they all hold the
// agents room). Prints one JSON line.
import { fork } from 'node:child_process';
import http from 'node:http';
import { args, cpuSeconds, nowMs, openMany, request, settle, sleep, urlMaker } from './lib.mjs';

const USAGE = `node desk.mjs [--agents 200] [--queues 20] [--rate 1000] [--secs 10] [--warmup 2] [--bulk 1] [--sockets 256]
    --tokens FILE --api-key KEY --tenant T [--server-pid PID] WS_URL HTTP_BASE`;

const { values: o, positionals: [wsUrl, httpBase] } = args({
  agents: { type: 'string', default: '200' },
  queues: { type: 'string', default: '20' },
  rate: { type: 'string', default: '1000' },
  secs: { type: 'string', default: '10' },
  warmup: { type: 'string', default: '2' },
  bulk: { type: 'string', default: '1' },
  tokens: { type: 'string' },
  'api-key': { type: 'string' },
  tenant: { type: 'string', default: 'bench' },
  holders: { type: 'string', default: '2' },
  'server-pid': { type: 'string' },
  sockets: { type: 'string', default: '256' },
}, USAGE);
if (o.help || !wsUrl || !httpBase) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}

const A = Number(o.agents);
const Q = Number(o.queues);
const rate = Number(o.rate);
const secs = Number(o.secs);
const warmup = Number(o.warmup);
const bulk = Math.max(1, Number(o.bulk));
const ASSIGNED = Buffer.from('{"type":"ticket:assigned"');
const sentAt = new Map();
const latency = [];
const latencySentAt = []; // (the send time of each latency, for its second)
let created = 0;
let inflight = 0;
let createdInWindow = 0;
let errors = 0;
let firstError = null;
let stopAt = Infinity;

function onFrame(data) {
  if (data.length <= ASSIGNED.length || data.compare(ASSIGNED, 0, ASSIGNED.length, 0,
    ASSIGNED.length) !== 0) return;
  const frame = JSON.parse(data);
  const subject = frame.data?.ticket?.subject ?? '';
  const n = Number(subject.slice(2));
  const t = sentAt.get(n);
  if (t !== undefined && frame.data.ticket.assigneeId) {
    latency.push(nowMs() - t);
    latencySentAt.push(t);
    sentAt.delete(n);
  }
}

// Agents 1..A-1 are held by child processes (--holders of them), which only
// read their frames: this process, which sends the requests and times them,
// must not spend its event loop on every agent's copy of every event.
const urlFor = urlMaker(wsUrl, o.tokens);
if (process.env.DESK_HOLDER) {
  const first = Number(process.env.DESK_FIRST);
  const count = Number(process.env.DESK_COUNT);
  const held = await openMany(count, (i) => urlFor(first + i), () => ({ session: true }));
  process.send('ready');
  process.on('message', () => {
    for (const ws of held) ws.terminate();
    process.exit(0);
  });
} else {
  await main();
}

async function main() {
const holders = [];
const procs = Math.max(1, Number(o.holders));
const others = A - 1;
for (let p = 0; p < procs && others > 0; p++) {
  const first = 1 + Math.floor((p * others) / procs);
  const count = 1 + Math.floor(((p + 1) * others) / procs) - first;
  const child = fork(process.argv[1], process.argv.slice(2), {
    env: { ...process.env, DESK_HOLDER: '1', DESK_FIRST: String(first),
      DESK_COUNT: String(count) },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  holders.push(new Promise((resolve, reject) => {
    child.once('message', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`holder exited with ${code}`)));
  }));
}
const children = await Promise.all(holders);
const agents = await openMany(1, urlFor, () => ({ session: true, onFrame }));
// FIFO: every kept-alive socket is reused in turn, none left idle past the
// server's keep-alive timeout (5 s), which it closes: a request sent on one
// just as it closes fails ("socket hang up"; Node's agent reads the server's
// keep-alive hint only when given a timeout of its own)
// maxSockets: requests in flight at most; one that finds none free waits in
// the client (and its latency counts from when it was due)
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(o.sockets),
  scheduling: 'fifo' });
const headers = { Authorization: `Bearer ${o['api-key']}`, 'Content-Type': 'application/json' };

function ticket(n) {
  return { tenant: o.tenant, subject: `b-${n}`, customerId: `c${n % 5000}`,
    channel: 'whatsapp', queueId: `q${n % Q}` };
}

// tickets first..first+count-1: one request (the bulk route when --bulk > 1);
// a ticket of the warm-up is neither timed nor counted
function create(first, count, timed) {
  const body = JSON.stringify(bulk > 1
    ? { tickets: Array.from({ length: count }, (_, i) => ticket(first + i)) } : ticket(first));
  const path = bulk > 1 ? '/api/v1/tickets/bulk' : '/api/v1/tickets';
  const now = nowMs();
  if (timed) for (let i = 0; i < count; i++) sentAt.set(first + i, now);
  const forget = () => { for (let i = 0; i < count; i++) sentAt.delete(first + i); };
  inflight++;
  request(`${httpBase}${path}`, { method: 'POST', headers, body, agent })
    .then((res) => {
      inflight--;
      if (res.status === 201) {
        if (!timed) return;
        created += count;
        if (nowMs() <= stopAt) createdInWindow += count;
      } else {
        errors++;
        firstError ??= `HTTP ${res.status}: ${res.body.slice(0, 200)}`;
        forget();
      }
    })
    .catch((err) => {
      inflight--;
      errors++;
      firstError ??= String(err);
      forget();
    });
}

const pid = o['server-pid'] ? Number(o['server-pid']) : 0;
// Every agent's arrival is announced to the agents room (agent:online and its
// status to the others: 200 x 200 frames) and keeps the server busy for a
// while after the last socket opened; the creating starts once that is done.
const settledMs = await settle(pid);
// the CPU time of the load client's processes: this one and the holders
function clientSeconds() {
  const own = process.cpuUsage();
  return (own.user + own.system) / 1e6
    + children.reduce((sum, child) => sum + (cpuSeconds(child.pid) ?? 0), 0);
}
// The same load runs for --warmup seconds before the timed --secs (the
// server's first batches compile its statements, its first transactions
// start cold): what is measured is the rate it sustains.
const start = nowMs();
const t0 = start + warmup * 1000;
stopAt = t0 + secs * 1000;
let cpu0 = null;
let clientCpu0 = 0;
let offered = 0; // tickets sent, warm-up included
let sent = 0; // timed tickets sent
while (nowMs() < stopAt) {
  const now = nowMs();
  const timed = now >= t0;
  if (timed && cpu0 === null) {
    cpu0 = cpuSeconds(pid);
    clientCpu0 = clientSeconds();
  }
  const due = Math.floor(((now - start) / 1000) * rate);
  while (offered + bulk <= due) {
    create(offered, bulk, timed);
    offered += bulk;
    if (timed) sent += bulk;
  }
  await sleep(5);
}
const drainUntil = nowMs() + 20000;
while ((sentAt.size || inflight) && nowMs() < drainUntil) await sleep(20);
const elapsed = (nowMs() - t0) / 1000;
const cpu1 = cpuSeconds(pid);
const clientCpu = clientSeconds() - clientCpu0;

const pct = (xs, p) => {
  if (!xs.length) return null;
  const s = Float64Array.from(xs).sort();
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2);
};
console.log(JSON.stringify({
  ok: errors === 0 && latency.length === sent,
  agents: A,
  queues: Q,
  rate,
  secs,
  warmup_secs: warmup,
  // the timed window's start (wall-clock ms): to find its seconds in the
  // server's and the database's logs
  window_start_ms: Math.round(t0),
  bulk,
  settled_ms: settledMs,
  sent,
  created,
  // the window's tickets created (answered 201, the last ones after its end)
  // per second of the window, and those answered within it
  created_per_s: Math.round(created / secs),
  answered_in_window_per_s: Math.round(createdInWindow / secs),
  assigned: latency.length,
  assign_p50_ms: pct(latency, 50),
  assign_p99_ms: pct(latency, 99),
  assign_max_ms: pct(latency, 100),
  // p99 of the tickets sent in each second of the timed window: a tail that
  // comes in bursts (a pause) or everywhere (a queue)
  assign_p99_by_second: Array.from({ length: secs }, (_, k) => pct(latency.filter(
    (_, i) => latencySentAt[i] >= t0 + k * 1000 && latencySentAt[i] < t0 + (k + 1) * 1000), 99)),
  server_cpu: cpu0 != null && cpu1 != null ? +((cpu1 - cpu0) / elapsed).toFixed(2) : null,
  // the server's CPU time (all its threads) per ticket created: the figure
  // that depends least on how busy the machine is
  client_cpu: +(clientCpu / elapsed).toFixed(2),
  server_cpu_ms_per_ticket: cpu0 != null && cpu1 != null && created
    ? +(((cpu1 - cpu0) * 1000) / created).toFixed(3) : null,
  errors,
  first_error: firstError,
}));
for (const ws of agents) ws.terminate();
for (const child of children) child.send('exit');
agent.destroy();
process.exit(0);
}
