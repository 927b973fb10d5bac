// Lead pipeline: N consultants with the same kanban board open (plain
// WebSocket, `pipeline:join`), moving leads at R moves per second for SECS
// seconds, spread round robin over the consultants. Each lead is moved by one
// consultant at a time, to the next stage, with the version it has (so none
// is refused `conflict`); a move is identified by (lead, version it makes).
// Latency: send of `lead:move` -> arrival of its `lead:moved` on each board
// (every consultant, the mover included). Prints one JSON line with p50 / p99
// over all deliveries and the worst board's p99.
import { args, cpuSeconds, nowMs, openMany, sleep, urlMaker } from './lib.mjs';

const USAGE = `node pipeline.mjs [--consultants 100] [--rate 500] [--secs 10]
    --leads FILE --stages a,b,c [--tokens FILE] [--server-pid PID] URL`;

const { values: o, positionals: [url] } = args({
  consultants: { type: 'string', default: '100' },
  rate: { type: 'string', default: '500' },
  secs: { type: 'string', default: '10' },
  leads: { type: 'string' },
  stages: { type: 'string' },
  tokens: { type: 'string' },
  'server-pid': { type: 'string' },
}, USAGE);
if (o.help || !url || !o.leads || !o.stages) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}

const N = Number(o.consultants);
const rate = Number(o.rate);
const secs = Number(o.secs);
const stages = o.stages.split(',');
const { readFileSync } = await import('node:fs');
// [{id, stage}] made by the benchmark over HTTP, each at version 1
const leads = JSON.parse(readFileSync(o.leads, 'utf8')).map((l) => ({
  id: l.id, stage: stages.indexOf(l.stageId), version: 1, busy: false }));
const MOVED = Buffer.from('{"type":"lead:moved"');

const sentAt = new Map(); // `${leadId}:${version}` -> send time
const latencies = [];      // every delivery
const perBoard = Array.from({ length: N }, () => []);
let moves = 0;
let acked = 0;
let errors = 0;
let firstError = null;
let delivered = 0;

const clients = await openMany(N, urlMaker(url, o.tokens), () => ({ session: true }));
await Promise.all(clients.map((ws) => new Promise((resolve, reject) => {
  ws.once('message', (data) => {
    const frame = JSON.parse(data);
    if (frame.type === 'ack' && frame.data && frame.data.stages) resolve();
    else reject(new Error(`pipeline:join refused: ${data}`));
  });
  ws.send(JSON.stringify({ type: 'pipeline:join', data: {}, id: 0 }));
})));

const pending = new Map(); // ack id -> lead
let nextId = 1;
clients.forEach((ws, board) => {
  ws.on('message', (data) => {
    const now = nowMs();
    if (data.compare(MOVED, 0, MOVED.length, 0, MOVED.length) === 0) {
      const { data: moved } = JSON.parse(data);
      const t = sentAt.get(`${moved.leadId}:${moved.version}`);
      if (t !== undefined) {
        latencies.push(now - t);
        perBoard[board].push(now - t);
        delivered++;
      }
      return;
    }
    const frame = JSON.parse(data);
    const lead = pending.get(frame.id);
    if (lead === undefined) return;
    pending.delete(frame.id);
    if (frame.type === 'ack') {
      acked++;
      lead.version = frame.data.version;
      lead.stage = stages.indexOf(frame.data.stageId);
    } else {
      errors++;
      firstError ??= frame.data;
    }
    lead.busy = false;
  });
});

function move(board) {
  const lead = leads.find((l) => !l.busy);
  if (lead === undefined) return false; // every lead in flight: the server is behind
  // rotate so that the next search starts elsewhere
  leads.push(leads.splice(leads.indexOf(lead), 1)[0]);
  lead.busy = true;
  const id = nextId++;
  pending.set(id, lead);
  const stage = stages[(lead.stage + 1) % stages.length];
  sentAt.set(`${lead.id}:${lead.version + 1}`, nowMs());
  clients[board].send(JSON.stringify({ type: 'lead:move', id, data: {
    leadId: lead.id, stageId: stage, version: lead.version } }));
  moves++;
  return true;
}

const pid = o['server-pid'] ? Number(o['server-pid']) : 0;
const cpu0 = cpuSeconds(pid);
const t0 = nowMs();
const stopAt = t0 + secs * 1000;
let sent = 0;
let skipped = 0;
let k = 0;
while (nowMs() < stopAt) {
  const due = Math.floor(((nowMs() - t0) / 1000) * rate);
  while (sent < due) {
    if (!move(k++ % N)) skipped++;
    sent++;
  }
  await sleep(2);
}
const drainUntil = nowMs() + 15000;
while ((pending.size || delivered < acked * N) && nowMs() < drainUntil) await sleep(20);
const elapsed = (nowMs() - t0) / 1000;
const cpu1 = cpuSeconds(pid);

const pct = (xs, p) => {
  if (!xs.length) return null;
  const s = Float64Array.from(xs).sort();
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2);
};
const boardP99 = perBoard.map((xs) => pct(xs, 99) ?? Infinity);
console.log(JSON.stringify({
  ok: errors === 0 && skipped === 0 && delivered >= acked * N,
  consultants: N,
  leads: leads.length,
  secs,
  moves,
  moves_per_s: Math.round(acked / secs),
  skipped,
  acked,
  deliveries: delivered,
  expected_deliveries: acked * N,
  p50_ms: pct(latencies, 50),
  p99_ms: pct(latencies, 99),
  max_ms: pct(latencies, 100),
  worst_board_p99_ms: Math.max(...boardP99),
  server_cpu: cpu0 != null && cpu1 != null ? +((cpu1 - cpu0) / elapsed).toFixed(2) : null,
  errors,
  first_error: firstError,
}));
for (const ws of clients) ws.terminate();
process.exit(0);
