// Lead pipeline: N consultants with the same kanban board open (plain
// WebSocket, `pipeline:join`), moving leads at R moves per second for SECS
// seconds, spread round robin over the consultants. Each lead is moved by one
// consultant at a time, to the next stage, with the version it has (so none
// is refused `conflict`); a move is identified by (lead, version it makes).
// Latency: send of `lead:move` -> arrival of its `lead:moved` on each board
// (every consultant, the mover included). Prints one JSON line with p50 / p99
// over all deliveries and the worst board's p99.
//
// The consultants are held by --procs worker processes (this process only
// coordinates): one Node event loop reading 100 boards' copies of 500 moves/s
// (50,000 frames/s) is itself the bottleneck of the measurement. Each worker
// moves its own share of the leads with its own consultants (its share of the
// rate), stamps its sends and every arrival on its boards with
// `performance.timeOrigin + performance.now()` (one wall clock, comparable
// across processes of one machine), and reports them; this process joins sends
// and arrivals, so every delivery is counted whichever process sent its move.
import { fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { args, cpuSeconds, nowMs, openMany, settle, sleep, urlMaker } from './lib.mjs';

const USAGE = `node pipeline.mjs [--consultants 100] [--rate 500] [--secs 10] [--procs 1]
    --leads FILE --stages a,b,c [--tokens FILE] [--server-pid PID] URL`;

const { values: o, positionals: [url] } = args({
  consultants: { type: 'string', default: '100' },
  rate: { type: 'string', default: '500' },
  secs: { type: 'string', default: '10' },
  procs: { type: 'string', default: '1' },
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
// [{id, stage}] made by the benchmark over HTTP, each at version 1
const allLeads = JSON.parse(readFileSync(o.leads, 'utf8'));

if (process.env.PIPELINE_WORKER) await worker();
else await coordinator();

// -- a worker: consultants FIRST..FIRST+COUNT-1 and leads LEAD_FIRST..+LEAD_COUNT-1

async function worker() {
  const first = Number(process.env.PIPELINE_FIRST);
  const count = Number(process.env.PIPELINE_COUNT);
  const leadFirst = Number(process.env.PIPELINE_LEAD_FIRST);
  const leadCount = Number(process.env.PIPELINE_LEAD_COUNT);
  const myRate = (rate * count) / N;
  const leads = allLeads.slice(leadFirst, leadFirst + leadCount).map((l) => ({
    id: l.id, stage: stages.indexOf(l.stageId), version: 1, busy: false }));
  const MOVED = Buffer.from('{"type":"lead:moved"');
  const sends = [];      // [key, time] of every move sent here
  const arrivals = [];   // per board: [key, time] of every `lead:moved`
  for (let b = 0; b < count; b++) arrivals.push([]);
  let delivered = 0;
  let moves = 0;
  let acked = 0;
  let errors = 0;
  let firstError = null;
  let skipped = 0;

  const urlFor = urlMaker(url, o.tokens);
  const clients = await openMany(count, (i) => urlFor(first + i), () => ({ session: true }));
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
        arrivals[board].push(`${moved.leadId}:${moved.version}`, now);
        delivered++;
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
    sends.push(`${lead.id}:${lead.version + 1}`, nowMs());
    clients[board].send(JSON.stringify({ type: 'lead:move', id, data: {
      leadId: lead.id, stageId: stage, version: lead.version } }));
    moves++;
    return true;
  }

  const ask = (type) => new Promise((resolve) => {
    const on = (m) => {
      if (m.type !== type) return;
      process.off('message', on);
      resolve(m);
    };
    process.on('message', on);
  });
  process.send({ type: 'ready' });
  const { t0 } = await ask('start');
  while (nowMs() < t0) await sleep(1);
  const cpu0 = process.cpuUsage();
  const stopAt = t0 + secs * 1000;
  let sent = 0;
  let k = 0;
  while (nowMs() < stopAt) {
    const due = Math.floor(((nowMs() - t0) / 1000) * myRate);
    while (sent < due) {
      if (!move(k++ % count)) skipped++;
      sent++;
    }
    await sleep(2);
  }
  const drainUntil = nowMs() + 15000;
  while (pending.size && nowMs() < drainUntil) await sleep(20);
  process.send({ type: 'sent', sends, moves, acked, skipped, errors, firstError });
  // every board's copy of every acknowledged move, whoever sent it
  const { expected } = await ask('expect');
  while (delivered < expected * count && nowMs() < drainUntil) await sleep(20);
  const cpu = process.cpuUsage(cpu0);
  const busy = (cpu.user + cpu.system) / 1e6 / ((nowMs() - t0) / 1000);
  process.send({ type: 'arrivals', arrivals, delivered, first, busy: +busy.toFixed(2) });
  await ask('exit');
  for (const ws of clients) ws.terminate();
  process.exit(0);
}

// -- the coordinator: starts the workers, joins their sends and arrivals

async function coordinator() {
  const procs = Math.max(1, Math.min(Number(o.procs), N));
  const workers = [];
  for (let p = 0; p < procs; p++) {
    const first = Math.floor((p * N) / procs);
    const count = Math.floor(((p + 1) * N) / procs) - first;
    const leadFirst = Math.floor((p * allLeads.length) / procs);
    const leadCount = Math.floor(((p + 1) * allLeads.length) / procs) - leadFirst;
    const child = fork(process.argv[1], process.argv.slice(2), {
      env: { ...process.env, PIPELINE_WORKER: '1', PIPELINE_FIRST: String(first),
        PIPELINE_COUNT: String(count), PIPELINE_LEAD_FIRST: String(leadFirst),
        PIPELINE_LEAD_COUNT: String(leadCount) },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    const inbox = new Map();
    const waiting = new Map();
    child.on('message', (m) => {
      const resolve = waiting.get(m.type);
      if (resolve) {
        waiting.delete(m.type);
        resolve(m);
      } else inbox.set(m.type, m);
    });
    child.on('exit', (code) => {
      if (code) {
        console.error(`pipeline worker ${p} exited with ${code}`);
        process.exit(1);
      }
    });
    const next = (type) => {
      if (inbox.has(type)) {
        const m = inbox.get(type);
        inbox.delete(type);
        return Promise.resolve(m);
      }
      return new Promise((resolve) => waiting.set(type, resolve));
    };
    workers.push({ child, next });
  }
  await Promise.all(workers.map((w) => w.next('ready')));

  const pid = o['server-pid'] ? Number(o['server-pid']) : 0;
  // what the consultants' connecting set off (their arrival announced) is
  // done before the moves start
  const settledMs = await settle(pid);
  const t0 = nowMs() + 100;
  for (const w of workers) w.child.send({ type: 'start', t0 });
  while (nowMs() < t0) await sleep(1);
  const cpu0 = cpuSeconds(pid);
  const sched0 = schedSeconds(pid);
  const clientCpu0 = workers.map((w) => cpuSeconds(w.child.pid));
  const clientSched0 = workers.map((w) => schedSeconds(w.child.pid));
  const sent = await Promise.all(workers.map((w) => w.next('sent')));
  const sum = (key) => sent.reduce((s, m) => s + m[key], 0);
  const acked = sum('acked');
  for (const w of workers) w.child.send({ type: 'expect', expected: acked });
  const got = await Promise.all(workers.map((w) => w.next('arrivals')));
  const elapsed = (nowMs() - t0) / 1000;
  const cpu1 = cpuSeconds(pid);
  const sched1 = schedSeconds(pid);
  const clientCpu1 = workers.map((w) => cpuSeconds(w.child.pid));
  const clientSched1 = workers.map((w) => schedSeconds(w.child.pid));
  const waited = (a, b) => (a && b ? +((b.waiting - a.waiting) / elapsed).toFixed(2) : null);
  for (const w of workers) w.child.send({ type: 'exit' });

  const sentAt = new Map();
  for (const m of sent) for (let i = 0; i < m.sends.length; i += 2) sentAt.set(m.sends[i], m.sends[i + 1]);
  const latencies = [];
  const boardP99 = [];
  let delivered = 0;
  for (const m of got) {
    for (const board of m.arrivals) {
      const xs = [];
      for (let i = 0; i < board.length; i += 2) {
        const t = sentAt.get(board[i]);
        if (t !== undefined) xs.push(board[i + 1] - t);
      }
      delivered += xs.length;
      latencies.push(...xs);
      boardP99.push(pct(xs, 99) ?? Infinity);
    }
  }
  const clientCpu = clientCpu0.every((x) => x != null) && clientCpu1.every((x) => x != null)
    ? clientCpu1.reduce((s, x, i) => s + x - clientCpu0[i], 0) / elapsed : null;
  const errors = sum('errors');
  const skipped = sum('skipped');
  console.log(JSON.stringify({
    ok: errors === 0 && skipped === 0 && delivered >= acked * N,
    consultants: N,
    procs,
    settled_ms: settledMs,
    leads: allLeads.length,
    secs,
    moves: sum('moves'),
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
    // Node's own CPU: all workers together (in cores), and the busiest one
    client_cpu: clientCpu != null ? +clientCpu.toFixed(2) : null,
    client_busiest_proc_cpu: Math.max(...got.map((m) => m.busy)),
    // seconds per second that the threads were ready to run but waited for a
    // CPU (the machine's other work): the server's, and the workers' together
    server_runqueue_wait: waited(sched0, sched1),
    client_runqueue_wait: Number(clientSched0.reduce(
      (total, a, i) => total + (waited(a, clientSched1[i]) ?? 0), 0).toFixed(2)),
    errors,
    first_error: sent.map((m) => m.firstError).find((e) => e != null) ?? null,
  }));
  await sleep(50);
  for (const w of workers) w.child.kill();
  process.exit(0);
}

/** Seconds on a CPU and waiting for one (run queue), all threads of `pid` (Linux). */
function schedSeconds(pid) {
  if (!pid) return null;
  try {
    let running = 0;
    let waiting = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const [run, wait] = readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ');
      running += Number(run) / 1e9;
      waiting += Number(wait) / 1e9;
    }
    return { running, waiting };
  } catch {
    return null;
  }
}

function pct(xs, p) {
  if (!xs.length) return null;
  const s = Float64Array.from(xs).sort();
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2);
}
