// Reconnect storm: N socket.io-client sockets (websocket transport) with
// socket.io-client's own reconnection (its defaults: first delay 1 s, doubling
// up to 5 s, each delay randomized by +-50%), each in two rooms of Switchboard
// (`bench:g<i mod G>` and `bench:h<i div (N/G)>`, joined with `room:join` and
// its ack on every connect, the first and each reconnect), held by --procs
// worker processes over --addresses loopback source addresses. Prints
// "ready N" once every socket is in its rooms, then obeys lines on standard
// input:
//   confirm SEQ   -> when every socket has received event `msg` {seq: SEQ} in
//                    both its rooms: {"type":"confirmed","seq":SEQ,"at":ms}
//   report UP_MS  -> the counts since the start: {"type":"report", ...};
//                    failed connection attempts are split by the time they
//                    started, before or after UP_MS (the server's restart)
// and prints {"type":"back",...} by itself once every socket has connected and
// rejoined its rooms again after being disconnected (the server restarted).
// Times are wall-clock milliseconds (performance.timeOrigin + now).
import { createInterface } from 'node:readline';
import { io } from 'socket.io-client';
import { args, forkWorkers, loopbackAddress, nowMs, sleep } from './lib.mjs';
import { tokenMaker } from './sio.mjs';

const USAGE = `node storm.mjs [--procs P] [--addresses A] [--groups G] [--tokens FILE]
    [--timeout-ms T] BASE_URL N`;
const { values: o, positionals: [url, n] } = args({
  procs: { type: 'string', default: '4' },
  addresses: { type: 'string', default: '4' },
  groups: { type: 'string', default: '100' },
  tokens: { type: 'string' },
  'timeout-ms': { type: 'string', default: '20000' },
}, USAGE);
if (o.help || !url || !n) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}
const N = Number(n);
const G = Math.max(1, Math.min(Number(o.groups), N));

/** The two rooms of socket i. */
const roomsOf = (i) => [`bench:g${i % G}`, `bench:h${Math.floor(i / Math.ceil(N / G))}`];

if (process.env.STORM_WORKER) await worker();
else await parent();

async function worker() {
  const offset = Number(process.env.STORM_OFFSET);
  const count = Number(process.env.STORM_COUNT);
  const tokenFor = tokenMaker(o.tokens);
  const sockets = [];
  // per socket: completed joins (1 after the first connect, 2 after rejoining)
  const joins = new Uint8Array(count);
  const confirmed = new Map(); // seq -> Uint8Array of rooms seen per socket
  const confirmedCount = new Map();
  let readyCount = 0;
  let backCount = 0;
  let lastBack = 0;
  let disconnects = 0;
  let reconnects = 0;
  let joinErrors = 0;
  let firstJoinError = null;
  const connectTimes = []; // successful connects after the first
  // [start of the attempt, message] of failed connection attempts (the start:
  // a busy client may handle a refusal late, after the server came back)
  const errors = [];
  const attemptAt = new Float64Array(count);
  let onReady;
  const readyAll = new Promise((resolve) => { onReady = resolve; });

  function join(j, socket) {
    const rooms = roomsOf(offset + j);
    let acked = 0;
    for (const room of rooms) {
      socket.emit('room:join', { room }, (ack) => {
        if (ack && ack.error) {
          joinErrors++;
          firstJoinError ??= JSON.stringify(ack.error);
          return;
        }
        if (++acked < rooms.length) return;
        joins[j]++;
        if (joins[j] === 1 && ++readyCount === count) onReady();
        if (joins[j] === 2) {
          lastBack = nowMs();
          if (++backCount === count) process.send({ type: 'back', at: lastBack });
        }
      });
    }
  }

  function confirm(seq, j) {
    let seen = confirmed.get(seq);
    if (!seen) {
      seen = new Uint8Array(count);
      confirmed.set(seq, seen);
      confirmedCount.set(seq, 0);
    }
    if (++seen[j] !== 2) return; // both rooms
    const done = confirmedCount.get(seq) + 1;
    confirmedCount.set(seq, done);
    if (done === count) process.send({ type: 'confirmed', seq, at: nowMs() });
  }

  for (let j = 0; j < count; j++) {
    const i = offset + j;
    const socket = io(url, {
      transports: ['websocket'],
      forceNew: true,
      perMessageDeflate: false,
      timeout: Number(o['timeout-ms']),
      // socket.io-client's reconnection, its defaults spelled out
      reconnection: true,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 5000,
      randomizationFactor: 0.5,
      auth: { token: tokenFor(i) },
      ...(loopbackAddress(i, o.addresses) ? { localAddress: loopbackAddress(i, o.addresses) } : {}),
    });
    socket.on('connect', () => {
      if (joins[j] > 0) {
        reconnects++;
        connectTimes.push(nowMs());
      }
      join(j, socket);
    });
    socket.on('disconnect', () => { disconnects++; });
    socket.io.on('reconnect_attempt', () => { attemptAt[j] = nowMs(); });
    socket.on('connect_error', (err) => {
      const cause = err.description && (err.description.message ?? err.description.error?.message);
      errors.push([attemptAt[j] || nowMs(), `${err.message}${cause ? `: ${cause}` : ''}`]);
    });
    socket.on('msg', (data) => {
      if (data && typeof data.seq === 'number') confirm(data.seq, j);
    });
    sockets.push(socket);
    // open in batches of 200 (each in its rooms before the next), as the
    // other load clients do: the storm is the reconnection, not this
    if (j % 200 === 199) {
      while (readyCount < j + 1) await sleep(5);
    }
  }
  await readyAll;
  errors.length = 0; // those of the opening, not of the storm
  process.send({ type: 'ready' });

  process.on('message', (m) => {
    if (m.type === 'confirm') {
      if ((confirmedCount.get(m.seq) ?? 0) === count) {
        process.send({ type: 'confirmed', seq: m.seq, at: nowMs() });
      }
    } else if (m.type === 'report') {
      const before = {};
      const after = {};
      for (const [t, message] of errors) {
        const key = message.replace(/127\.0\.0\.1:\d+/, 'HOST:PORT');
        const into = t < m.up ? before : after;
        into[key] = (into[key] ?? 0) + 1;
      }
      process.send({ type: 'report', disconnects, reconnects, joinErrors, firstJoinError,
        backCount, lastBack, connectTimes, errorsBeforeUp: before, errorsAfterUp: after,
        connected: sockets.filter((s) => s.connected).length });
    } else if (m.type === 'release') {
      for (const socket of sockets) socket.close();
      setTimeout(() => process.exit(0), 100);
    }
  });
}

async function parent() {
  const workers = forkWorkers(new URL(import.meta.url).pathname, N, o.procs, 'STORM',
    'storm');
  const all = (type, filter = () => true) => Promise.all(workers.map((w) => new Promise((resolve) => {
    const on = (m) => {
      if (m.type === type && filter(m)) {
        w.off('message', on);
        resolve(m);
      }
    };
    w.on('message', on);
  })));
  await all('ready');
  console.log(`ready ${N}`);
  all('back').then((ms) => {
    console.log(JSON.stringify({ type: 'back', at: Math.max(...ms.map((m) => m.at)) }));
  });

  const lines = createInterface({ input: process.stdin });
  lines.on('line', async (line) => {
    const [command, arg] = line.trim().split(/\s+/);
    if (command === 'confirm') {
      const seq = Number(arg);
      const done = all('confirmed', (m) => m.seq === seq);
      for (const w of workers) w.send({ type: 'confirm', seq });
      const ms = await done;
      console.log(JSON.stringify({ type: 'confirmed', seq, at: Math.max(...ms.map((m) => m.at)) }));
    } else if (command === 'report') {
      const up = Number(arg);
      const reports = all('report');
      for (const w of workers) w.send({ type: 'report', up });
      console.log(JSON.stringify(summarize(await reports, up)));
    }
  });
  lines.on('close', () => {
    for (const w of workers) {
      w.releasing = true;
      w.send({ type: 'release' });
    }
    setTimeout(() => process.exit(0), 500);
  });
}

function summarize(reports, up) {
  const sum = (key) => reports.reduce((s, r) => s + r[key], 0);
  const merge = (key) => {
    const out = {};
    for (const r of reports) for (const [k, v] of Object.entries(r[key])) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  const times = reports.flatMap((r) => r.connectTimes).sort((a, b) => a - b);
  // connections accepted per second: the busiest second after the restart
  const perSecond = new Map();
  for (const t of times) {
    const s = Math.floor((t - up) / 1000);
    perSecond.set(s, (perSecond.get(s) ?? 0) + 1);
  }
  return {
    type: 'report', clients: N, procs: reports.length,
    disconnects: sum('disconnects'), reconnects: sum('reconnects'), back: sum('backCount'),
    connected: sum('connected'), join_errors: sum('joinErrors'),
    first_join_error: reports.map((r) => r.firstJoinError).find(Boolean) ?? null,
    first_reconnect: times.length ? times[0] : null,
    last_reconnect: times.length ? times[times.length - 1] : null,
    busiest_second_connects: Math.max(0, ...perSecond.values()),
    errors_before_up: merge('errorsBeforeUp'),
    errors_after_up: merge('errorsAfterUp'),
  };
}
