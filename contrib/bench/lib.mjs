// Shared helpers of the load clients: arguments, tokens, opening clients, HTTP.
import { execFileSync } from 'node:child_process';
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
 */
export function openClient(url, { session = false, room = null, onFrame = null,
  timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true });
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
