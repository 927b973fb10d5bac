// Shared helpers of the Socket.IO load clients: opening socket.io-client sockets.
import { io } from 'socket.io-client';
import { readFileSync } from 'node:fs';
import { sleep } from './lib.mjs';

/** A function i -> token: line i (cycling) of `tokensFile`, or undefined without one. */
export function tokenMaker(tokensFile) {
  if (!tokensFile) return () => undefined;
  const tokens = readFileSync(tokensFile, 'utf8').split('\n').filter(Boolean);
  if (!tokens.length) throw new Error(`no tokens in ${tokensFile}`);
  return (i) => tokens[i % tokens.length];
}

/**
 * Open one socket.io-client socket (websocket transport only, no reconnection,
 * its own Engine.IO connection). Resolves with the socket once it is connected
 * to the namespace and, with `join`, once the ack of `room:join {room: join}`
 * has arrived. `on` maps event names to listeners, attached before connecting;
 * `localAddress` binds the socket's source address.
 */
export function openSio(url, { token, auth = {}, join = null, on = {}, timeoutMs = 30000,
  localAddress = undefined } = {}) {
  return new Promise((resolve, reject) => {
    const socket = io(url, {
      ...(localAddress ? { localAddress } : {}),
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      perMessageDeflate: false,
      timeout: timeoutMs,
      auth: token === undefined ? auth : { ...auth, token },
    });
    let state = 'connecting';
    const timer = setTimeout(() => fail(new Error(`not ready after ${timeoutMs} ms`)), timeoutMs);
    function ready() {
      if (state === 'ready' || state === 'failed') return;
      state = 'ready';
      clearTimeout(timer);
      resolve(socket);
    }
    function fail(err) {
      if (state === 'ready' || state === 'failed') return;
      state = 'failed';
      clearTimeout(timer);
      socket.close();
      reject(err);
    }
    for (const [event, listener] of Object.entries(on)) socket.on(event, listener);
    socket.on('connect_error', (err) => fail(new Error(`connect_error: ${err.message}`)));
    socket.on('disconnect', (reason) => fail(new Error(`disconnected (${reason}) before ready`)));
    socket.once('connect', () => {
      if (!join) return ready();
      state = 'join';
      socket.emit('room:join', { room: join }, (ack) => {
        if (ack && ack.error) fail(new Error(`join refused: ${JSON.stringify(ack.error)}`));
        else ready();
      });
      return undefined;
    });
  });
}

/**
 * Open `n` sockets in batches of `batch` (all of a batch ready before the next
 * starts, then a short pause). `url` is the server's base URL, or a function
 * i -> URL (sockets spread over nodes); `optsFor(i)` gives the options of socket i.
 */
export async function openManySio(n, url, optsFor, { batch = 200, pauseMs = 10 } = {}) {
  const sockets = [];
  for (let i = 0; i < n; i += batch) {
    const opening = [];
    for (let j = i; j < Math.min(n, i + batch); j++) opening.push(openSio(typeof url === 'function' ? url(j) : url, optsFor(j)));
    sockets.push(...(await Promise.all(opening)));
    if (pauseMs) await sleep(pauseMs);
  }
  return sockets;
}
