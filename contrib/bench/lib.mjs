// Shared helpers of the load clients: arguments, tokens, opening clients, HTTP.
import { execFileSync, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wall-clock milliseconds with sub-millisecond precision. */
export const nowMs = () => performance.timeOrigin + performance.now();

/** Parse `--name value` options (all strings or booleans) and positionals. */
export function args(options, usage) {
  try {
    return parseArgs({ options: { help: { type: 'boolean' }, ...options }, allowPositionals: true });
  } catch (err) {
    console.error(`${err.message}\nusage: ${usage}`);
    process.exit(2);
  }
}

/** A function i -> URL: `{token}` in `url` is replaced by line i (cycling) of `tokensFile`. */
export function urlMaker(url, tokensFile) {
  if (!tokensFile) return () => url;
  const tokens = readFileSync(tokensFile, 'utf8').split('\n').filter(Boolean);
  if (!tokens.length) throw new Error(`no tokens in ${tokensFile}`);
  return (i) => url.replace('{token}', tokens[i % tokens.length]);
}

// `{"type":"msg"` as bytes: cheap test of a frame's type without parsing it.
const MSG_PREFIX = Buffer.from('{"type":"msg"');

/** True if the frame is an event of type "msg". */
export function isMsg(data) {
  return data.length > MSG_PREFIX.length && data.compare(MSG_PREFIX, 0, MSG_PREFIX.length,
    0, MSG_PREFIX.length) === 0;
}

/**
 * Open one client. Resolves with the socket once it is ready: open; with
 * `session`, after the first server frame (which must be `session`); with
 * `room`, after the ack of joining it. Later frames go to `onFrame(buffer)`.
 * `localAddress` binds the client's end (e.g. 127.0.0.2: another source
 * address has its own ephemeral ports).
 */
export function openClient(url, { session = false, room = null, onFrame = null,
  timeoutMs = 30000, localAddress = undefined } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true,
      ...(localAddress ? { localAddress } : {}) });
    let state = 'connecting';
    const timer = setTimeout(() => fail(new Error(`not ready after ${timeoutMs} ms`)), timeoutMs);
    function ready() {
      state = 'ready';
      clearTimeout(timer);
      resolve(ws);
    }
    function fail(err) {
      if (state === 'ready' || state === 'failed') return;
      state = 'failed';
      clearTimeout(timer);
      ws.terminate();
      reject(err);
    }
    ws.on('open', () => {
      if (session) state = 'session';
      else ready();
    });
    ws.on('message', (data) => {
      if (state === 'ready') {
        if (onFrame) onFrame(data);
      } else if (state === 'session') {
        const frame = JSON.parse(data);
        if (frame.type !== 'session') return fail(new Error(`first frame ${frame.type}`));
        if (!room) return ready();
        state = 'join';
        ws.send(JSON.stringify({ type: 'room:join', data: { room }, id: 1 }));
      } else if (state === 'join') {
        const frame = JSON.parse(data);
        if (frame.type === 'ack' && frame.id === 1) ready();
        else if (frame.type === 'error') fail(new Error(`join refused: ${data}`));
      }
    });
    ws.on('unexpected-response', (_req, res) => fail(new Error(`handshake: HTTP ${res.statusCode}`)));
    ws.on('error', fail);
    ws.on('close', (code) => fail(new Error(`closed (${code}) before ready`)));
  });
}

/**
 * Open `n` clients in batches of `batch` (all of a batch ready before the
 * next starts, then a short pause so the server's accept queue keeps up).
 * `optsFor(i)` gives the options of client i.
 */
export async function openMany(n, urlFor, optsFor, { batch = 200, pauseMs = 10 } = {}) {
  const clients = [];
  for (let i = 0; i < n; i += batch) {
    const opening = [];
    for (let j = i; j < Math.min(n, i + batch); j++) opening.push(openClient(urlFor(j), optsFor(j)));
    clients.push(...(await Promise.all(opening)));
    if (pauseMs) await sleep(pauseMs);
  }
  return clients;
}

/**
 * Source address of client i when the clients are spread over `count`
 * loopback addresses (127.0.0.1, 127.0.0.2, ...), or undefined for one.
 */
export function loopbackAddress(i, count) {
  const n = Number(count) || 1;
  return n > 1 ? `127.0.0.${1 + (i % n)}` : undefined;
}

/** One HTTP request; resolves with {status, body}. */
export function request(url, { method = 'GET', headers = {}, body = null, agent = undefined,
  timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Parse repeated `Name: value` strings into a headers object. */
export function headerObject(list = []) {
  const out = {};
  for (const h of list) {
    const at = h.indexOf(':');
    if (at > 0) out[h.slice(0, at).trim()] = h.slice(at + 1).trim();
  }
  return out;
}

let clockTicks = null;

/** CPU seconds (user + system) used so far by process `pid` (Linux), or null. */
export function cpuSeconds(pid) {
  if (!pid) return null;
  try {
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks; // utime, stime
  } catch {
    return null;
  }
}

/**
 * Wait until process `pid` is idle: a `windowMs` window in which it used at
 * most `busyShare` of a core (the server has finished what the load client's
 * connecting set off, e.g. every agent's arrival announced to the others).
 * Gives up after `maxMs`. Resolves to the milliseconds waited (0 without a pid).
 */
export async function settle(pid, { windowMs = 200, busyShare = 0.1, maxMs = 15000 } = {}) {
  const start = nowMs();
  let before = cpuSeconds(pid);
  if (before == null) return 0;
  while (nowMs() - start < maxMs) {
    await sleep(windowMs);
    const now = cpuSeconds(pid);
    if (now == null || (now - before) * 1000 <= windowMs * busyShare) break;
    before = now;
  }
  return Math.round(nowMs() - start);
}

/**
 * The parent of a fan-out run: fork `--procs` workers of `script` (each opens
 * its share of the N clients, reports `ready`, then `done` with the time its
 * last client had M messages), send the trigger, and print one JSON line.
 * The trigger is GET `triggerUrl` ({M} replaced), or with `o['api-key']` a POST
 * of a JSON list of M emits to room `o.room ?? o.join ?? 'bench:all'`.
 */
export async function fanoutParent(script, o, N, M, triggerUrl) {
  const procs = Math.max(1, Math.min(Number(o.procs), N));
  const workers = [];
  const ready = [];
  const done = [];
  const reports = [];
  let failure = null;
  for (let p = 0; p < procs; p++) {
    const offset = Math.floor((p * N) / procs);
    const count = Math.floor(((p + 1) * N) / procs) - offset;
    const worker = fork(script, process.argv.slice(2), {
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

/**
 * Fork `procs` workers of `script` (at most one per client), worker p told
 * its share of the `N` clients in `${prefix}_OFFSET` / `${prefix}_COUNT`
 * (and `${prefix}_WORKER=1`). A worker that exits with an error, unless it
 * was told to release (`worker.releasing`), ends the run with its stderr.
 */
export function forkWorkers(script, N, procs, prefix, label) {
  const workers = [];
  const count = Math.max(1, Math.min(Number(procs), N));
  for (let p = 0; p < count; p++) {
    const offset = Math.floor((p * N) / count);
    const share = Math.floor(((p + 1) * N) / count) - offset;
    const child = fork(script, process.argv.slice(2), {
      env: { ...process.env, [`${prefix}_WORKER`]: '1', [`${prefix}_OFFSET`]: String(offset),
        [`${prefix}_COUNT`]: String(share) },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr.on('data', (c) => { stderr += c; });
    child.on('exit', (code) => {
      if (code && !child.releasing) {
        console.error(`${label} worker ${p} exited with ${code}: ${stderr.trim().slice(-600)}`);
        process.exit(1);
      }
    });
    workers.push(child);
  }
  return workers;
}
