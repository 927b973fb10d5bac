// Idle connections: open N clients (in batches), print "ready N", hold them
// until standard input closes, then exit. Plain WebSocket clients (`ws`) by
// default; with --sio, socket.io-client sockets (websocket transport), ready
// once connected to the namespace, URL being the server's base URL and
// --tokens lines sent as auth.token.
import { args, openMany, urlMaker } from './lib.mjs';

const USAGE = 'node hold.mjs [--tokens FILE] [--session] [--sio] URL N';
const { values: o, positionals: [url, n] } = args({
  tokens: { type: 'string' },
  session: { type: 'boolean', default: false },
  sio: { type: 'boolean', default: false },
}, USAGE);
if (o.help || !url || !n) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}

const N = Number(n);
let frames = 0;
let closed = 0;
let release;
if (o.sio) {
  const { openManySio, tokenMaker } = await import('./sio.mjs');
  const tokenFor = tokenMaker(o.tokens);
  const sockets = await openManySio(N, url, (i) => ({ token: tokenFor(i) }));
  for (const socket of sockets) {
    socket.onAny(() => { frames++; });
    socket.on('disconnect', () => { closed++; });
  }
  release = () => { for (const socket of sockets) socket.close(); };
} else {
  const clients = await openMany(N, urlMaker(url, o.tokens), () => ({
    session: o.session,
    onFrame: () => { frames++; },
  }));
  for (const ws of clients) ws.on('close', () => { closed++; });
  release = () => { for (const ws of clients) ws.terminate(); };
}
console.log(`ready ${N}`);

process.stdin.resume();
process.stdin.on('end', () => {
  console.log(JSON.stringify({ held: N, frames_while_idle: frames, closed_by_server: closed }));
  release();
  process.exit(0);
});
