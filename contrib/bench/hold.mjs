// Idle connections: open N WebSocket clients (in batches), print "ready N",
// hold them until standard input closes, then exit.
import { args, openMany, urlMaker } from './lib.mjs';

const USAGE = 'node hold.mjs [--tokens FILE] [--session] URL N';
const { values: o, positionals: [url, n] } = args({
  tokens: { type: 'string' },
  session: { type: 'boolean', default: false },
}, USAGE);
if (o.help || !url || !n) {
  console.error(`usage: ${USAGE}`);
  process.exit(o.help ? 0 : 2);
}

const N = Number(n);
let frames = 0;
const clients = await openMany(N, urlMaker(url, o.tokens), () => ({
  session: o.session,
  onFrame: () => { frames++; },
}));
let closed = 0;
for (const ws of clients) ws.on('close', () => { closed++; });
console.log(`ready ${clients.length}`);

process.stdin.resume();
process.stdin.on('end', () => {
  console.log(JSON.stringify({ held: N, frames_while_idle: frames, closed_by_server: closed }));
  for (const ws of clients) ws.terminate();
  process.exit(0);
});
