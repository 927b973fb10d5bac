// Durable chat: N members of one conversation, each sending `message:send`
// events (each with its own clientId) for SECS seconds, over plain WebSocket
// (JSON envelopes, URL ws://...) or with --sio over socket.io-client (URL
// http://..., websocket transport, the event's ack callback). With --rate R
// the members together send R messages/s, paced; without it each keeps WINDOW
// messages in flight (as fast as the server stores them). A message counts as
// stored when its ack arrives; every other member must then get it as
// `message:new`. Latency: send -> ack (stored) and send -> receipt by the
// others (delivered). Prints one JSON line; `stored_per_s` counts the acks
// that arrived within the SECS seconds.
import { randomBytes } from 'node:crypto';
import { args, cpuSeconds, nowMs, openMany, sleep, urlMaker } from './lib.mjs';
import { openManySio, tokenMaker } from './sio.mjs';

const USAGE = `node chat.mjs [--sio] [--members 50] [--secs 10] [--rate R | --window 8]
    [--conversation bench] [--tokens FILE] [--server-pid PID] URL`;

const { values: o, positionals: [url] } = args({
  sio: { type: 'boolean', default: false },
  members: { type: 'string', default: '50' },
  secs: { type: 'string', default: '10' },
  rate: { type: 'string' },
  window: { type: 'string', default: '8' },
  conversation: { type: 'string', default: 'bench' },
  tokens: { type: 'string' },
  'server-pid': { type: 'string' },
}, USAGE);
if (o.help || !url) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}

const N = Number(o.members);
const secs = Number(o.secs);
const rate = o.rate ? Number(o.rate) : 0;
const windowSize = Number(o.window);
const conversationId = o.conversation;
const MESSAGE_NEW = Buffer.from('{"type":"message:new"');
const ACK = Buffer.from('{"type":"ack"');
// where a message's content starts: its text is the send time (read without
// parsing the whole frame, which would make this client the bottleneck)
const TEXT_KEY = Buffer.from('"text":"');
// clientIds unique to this run: a clientId stored by an earlier run on the same
// server would make the message a resend (acked, not stored or broadcast again)
const runId = randomBytes(6).toString('hex');

const ackLatency = [];
const deliveryLatency = [];
let delivered = 0;
let storedInWindow = 0;
let errors = 0;
let firstError = null;
let stopAt = Infinity;

// What a member's transport reports, whatever the transport: a delivery of
// `message:new`, the ack of its message n, or the error answering it.
function onDelivery(sentAt, now) {
  deliveryLatency.push(now - sentAt);
  delivered++;
}

function onAck(m, n, now) {
  const t = m.sentAt.get(n);
  m.sentAt.delete(n);
  ackLatency.push(now - t);
  m.acked++;
  if (now < stopAt) storedInWindow++;
  if (!rate && now < stopAt) send(m);
}

function onError(m, n, error) {
  errors++;
  firstError ??= error;
  m.sentAt.delete(n);
}

function message(m, n, t) {
  return { conversationId, clientId: `${runId}-m${m.i}-${n}`, type: 'text',
    content: { text: String(t) } };
}

async function openWs() {
  const clients = await openMany(N, urlMaker(url, o.tokens), () => ({ session: true }));
  const members = clients.map((ws, i) => ({ ws, i, sentAt: new Map(), next: 0, acked: 0 }));
  // join the conversation (through the chat plugin's authorization)
  await Promise.all(members.map((m) => new Promise((resolve, reject) => {
    m.ws.once('message', (data) => {
      const frame = JSON.parse(data);
      if (frame.type === 'ack' && frame.data.success) resolve();
      else reject(new Error(`join refused: ${data}`));
    });
    m.ws.send(JSON.stringify({ type: 'conversation:join', data: { conversationId }, id: 0 }));
  })));
  for (const m of members) {
    m.send = (n, t) => m.ws.send(JSON.stringify({ type: 'message:send', id: n,
      data: message(m, n, t) }));
    m.ws.on('message', (data) => {
      const now = nowMs();
      if (data.compare(MESSAGE_NEW, 0, MESSAGE_NEW.length, 0, MESSAGE_NEW.length) === 0) {
        const at = data.indexOf(TEXT_KEY) + TEXT_KEY.length;
        onDelivery(Number(data.toString('latin1', at, data.indexOf(34, at))), now);
      } else if (data.compare(ACK, 0, ACK.length, 0, ACK.length) === 0) {
        onAck(m, JSON.parse(data).id, now);
      } else {
        const frame = JSON.parse(data);
        if (frame.type === 'error') onError(m, frame.id, frame.data);
      }
    });
  }
  return members;
}

async function openSocketIo() {
  const tokenFor = tokenMaker(o.tokens);
  const sockets = await openManySio(N, url, (i) => ({
    token: tokenFor(i),
    on: { 'message:new': (msg) => onDelivery(Number(msg.content.text), nowMs()) },
  }));
  const members = sockets.map((socket, i) => ({ socket, i, sentAt: new Map(), next: 0,
    acked: 0 }));
  await Promise.all(members.map((m) => new Promise((resolve, reject) => {
    m.socket.emit('conversation:join', { conversationId }, (ack) => {
      if (ack && ack.success) resolve();
      else reject(new Error(`join refused: ${JSON.stringify(ack)}`));
    });
  })));
  for (const m of members) {
    m.send = (n, t) => m.socket.emit('message:send', message(m, n, t), (ack) => {
      const now = nowMs();
      if (ack && ack.error) onError(m, n, ack.error);
      else onAck(m, n, now);
    });
    m.socket.on('error', (error) => { errors++; firstError ??= error; });
  }
  return members;
}

const members = o.sio ? await openSocketIo() : await openWs();

function send(m) {
  const n = ++m.next;
  const t = nowMs();
  m.sentAt.set(n, t);
  m.send(n, t);
}

const pid = o['server-pid'] ? Number(o['server-pid']) : 0;
const cpu0 = cpuSeconds(pid);
const clientCpu0 = process.cpuUsage();
const t0 = nowMs();
stopAt = t0 + secs * 1000;
if (rate) {
  // pace: every 5 ms, send what is due, round robin over the members
  let sent = 0;
  let k = 0;
  while (nowMs() < stopAt) {
    const due = Math.floor(((nowMs() - t0) / 1000) * rate);
    while (sent < due) { send(members[k++ % N]); sent++; }
    await sleep(5);
  }
} else {
  for (const m of members) for (let w = 0; w < windowSize; w++) send(m);
  await sleep(secs * 1000);
}
// let the last acks and deliveries arrive (bounded)
const drainUntil = nowMs() + 15000;
while (members.some((m) => m.sentAt.size) && nowMs() < drainUntil) await sleep(20);
const expectedDeliveries = ackLatency.length * (N - 1);
while (delivered < expectedDeliveries && nowMs() < drainUntil) await sleep(20);
const elapsed = (nowMs() - t0) / 1000;
const cpu1 = cpuSeconds(pid);
const clientCpu = process.cpuUsage(clientCpu0);

const pct = (xs, p) => {
  if (!xs.length) return null;
  const s = Float64Array.from(xs).sort();
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2);
};
const stored = ackLatency.length;
console.log(JSON.stringify({
  ok: errors === 0 && delivered >= expectedDeliveries,
  members: N,
  transport: o.sio ? 'socket.io' : 'websocket',
  mode: rate ? `paced ${rate}/s` : `window ${windowSize}`,
  secs,
  stored,
  stored_per_s: Math.round(storedInWindow / secs),
  deliveries: delivered,
  expected_deliveries: expectedDeliveries,
  deliveries_per_s: Math.round(delivered / elapsed),
  ack_p50_ms: pct(ackLatency, 50),
  ack_p99_ms: pct(ackLatency, 99),
  delivery_p50_ms: pct(deliveryLatency, 50),
  delivery_p99_ms: pct(deliveryLatency, 99),
  delivery_max_ms: pct(deliveryLatency, 100),
  server_cpu: cpu0 != null && cpu1 != null ? +((cpu1 - cpu0) / elapsed).toFixed(2) : null,
  server_cpu_s: cpu0 != null && cpu1 != null ? +(cpu1 - cpu0).toFixed(3) : null,
  // this load client's own CPU (one process: past 1.0 it is the limit)
  elapsed_s: +elapsed.toFixed(3),
  client_cpu: +((clientCpu.user + clientCpu.system) / 1e6 / elapsed).toFixed(2),
  errors,
  first_error: firstError,
}));
for (const m of members) {
  if (m.ws) m.ws.terminate();
  else m.socket.close();
}
process.exit(0);
