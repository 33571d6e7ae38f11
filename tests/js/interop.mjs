// Interop test: the official JavaScript SDK (npm `centrifuge`, pinned in package.json),
// unmodified, against a running wiresocket server.
//
// Driven by tests/interop_js.rs, or by hand (see README.md). Inputs (env):
//   WS_URL    ws://host:port/connection/websocket
//   API_URL   http://host:port            (server HTTP API base)
//   API_KEY   server API key
//   TOKEN_A   connection JWT for the subscriber (client A)
//   TOKEN_B   connection JWT for the publisher  (client B)
//   SCENARIO  all (default) or a comma list of: pubsub, badtoken, shutdown
//   CENTRIFUGE_DEBUG=1 turns on the SDK's own debug log (stdout).
//
// Output: `ok: <step>` per step on stdout; `READY_FOR_SHUTDOWN` when the driver should
// SIGTERM the server (shutdown scenario); `FAIL: <reason>` on stderr and exit 1 on any
// failure. A global timeout guarantees the script never hangs.

import { isDeepStrictEqual } from 'node:util';
import { apiPublish, connectClient, describe, env, fail, finish, newClient, ok, scenarios, start, waitFor } from './lib.mjs';

start(30_000);

const TOKEN_A = env('TOKEN_A');
const TOKEN_B = env('TOKEN_B');
const wanted = scenarios(['pubsub', 'badtoken', 'shutdown']);
if (wanted.has('shutdown') && !wanted.has('pubsub')) fail('scenario shutdown needs pubsub');

// ---------------------------------------------------------------------------------------

async function pubsub() {
  const a = newClient('A', { token: TOKEN_A });
  const pubs = [];
  let onPub = () => {};
  const sub = a.newSubscription('news');
  sub.on('publication', (ctx) => {
    pubs.push(ctx);
    onPub();
  });
  sub.on('error', (ctx) => console.error(`[A news] error ${JSON.stringify(ctx)}`));
  sub.on('unsubscribed', (ctx) => {
    if (!a.expectLoss) fail(`A: subscription to news ended: ${JSON.stringify(ctx)}`);
  });
  sub.on('subscribing', (ctx) => {
    // code 0 = "subscribe called"; anything else means the subscription was lost.
    if (ctx.code !== 0 && !a.expectLoss) fail(`A: subscription to news lost: ${JSON.stringify(ctx)}`);
  });
  const subscribed = waitFor('A subscribed to news', (done) => sub.once('subscribed', done));
  // subscribe() before connect(): the SDK then sends `connect` and `subscribe` batched in
  // one WebSocket frame (newline-separated), as real applications do.
  sub.subscribe();
  await connectClient(a);
  ok('A connected');
  const subCtx = await subscribed;
  ok(`A subscribed to news (${JSON.stringify(subCtx)})`);

  const b = newClient('B', { token: TOKEN_B });
  await connectClient(b);
  ok('B connected');

  const fromB = { from: 'B', n: 1 };
  try {
    await b.publish('news', fromB);
  } catch (e) {
    fail(`B publish to news failed: ${describe(e)}`);
  }
  ok('B published to news');

  const fromApi = { from: 'api', n: 2 };
  const apiResult = await apiPublish('news', fromApi);
  ok(`HTTP API published to news (${JSON.stringify(apiResult)})`);

  await waitFor(`A to receive 2 publications on news (got ${pubs.length})`, (done) => {
    onPub = () => pubs.length >= 2 && done();
    onPub();
  });
  const got = pubs.map((p) => ({ data: p.data, offset: p.offset, channel: p.channel }));
  if (pubs.length !== 2) fail(`A received ${pubs.length} publications, want 2: ${JSON.stringify(got)}`);
  if (!isDeepStrictEqual(pubs[0].data, fromB)) fail(`first publication: data ${JSON.stringify(pubs[0].data)}, want ${JSON.stringify(fromB)}`);
  if (!isDeepStrictEqual(pubs[1].data, fromApi)) fail(`second publication: data ${JSON.stringify(pubs[1].data)}, want ${JSON.stringify(fromApi)}`);
  for (const p of pubs) {
    if (p.channel !== 'news') fail(`publication on channel ${p.channel}, want news`);
    if (typeof p.offset !== 'number' || p.offset <= 0) fail(`publication without a positive numeric offset: ${JSON.stringify(got)}`);
  }
  if (!(pubs[1].offset > pubs[0].offset)) fail(`offsets not increasing: ${JSON.stringify(got)}`);
  if (pubs[1].offset !== apiResult.offset) fail(`API publish returned offset ${apiResult.offset} but A received offset ${pubs[1].offset}`);
  ok(`A received both publications in order (offsets ${pubs[0].offset}, ${pubs[1].offset})`);
  return { a, b, sub };
}

async function badToken() {
  const c = newClient('bad', { token: 'garbage' });
  const states = [];
  c.on('connected', (ctx) => fail(`client with token "garbage" got connected: ${JSON.stringify(ctx)}`));
  c.on('connecting', (ctx) => {
    states.push({ ev: 'connecting', ...ctx });
    if (ctx.code !== 0) fail(`client with token "garbage" was told to reconnect (want terminal 3500): ${JSON.stringify(ctx)}`);
  });
  const ended = waitFor('client with token "garbage" to end disconnected', (done) => c.once('disconnected', done));
  c.connect();
  const ctx = await ended;
  if (ctx.code !== 3500) {
    const hint = ctx.code === 101 ? ' (the server replied to connect with error 101; the SDK maps that to disconnected 101 — a close/disconnect 3500 "invalid token" is expected)' : '';
    fail(`client with token "garbage" ended with code ${ctx.code} (${ctx.reason}), want 3500${hint}`);
  }
  if (c.state !== 'disconnected') fail(`client with token "garbage" is in state ${c.state}, want disconnected`);
  // Terminal: the SDK must not schedule a reconnect. Give it a moment to prove it.
  await new Promise((r) => setTimeout(r, 300));
  if (c.state !== 'disconnected') fail(`client with token "garbage" left disconnected state: ${c.state}`);
  ok(`invalid token refused: disconnected code ${ctx.code} reason "${ctx.reason}"`);
}

async function shutdown({ a, b, sub }) {
  a.expectLoss = true;
  b.expectLoss = true;
  const seen = (c) =>
    waitFor(`${c.name} to observe the server shutdown (connecting with code 3001)`, (done) => {
      c.on('connecting', (ctx) => {
        if (ctx.code === 3001) done(ctx);
        else if (ctx.code !== 0) fail(`${c.name}: server shutdown surfaced as connecting code ${ctx.code} (${ctx.reason}), want 3001`);
      });
      c.on('disconnected', (ctx) => fail(`${c.name}: server shutdown surfaced as terminal disconnected ${JSON.stringify(ctx)}, want connecting 3001 (reconnect allowed)`));
    }, 20_000);
  const pa = seen(a);
  const pb = seen(b);
  const subLost = waitFor('A news subscription to go back to subscribing', (done) => sub.once('subscribing', done), 20_000);
  process.stdout.write('READY_FOR_SHUTDOWN\n');
  const ca = await pa;
  ok(`A observed shutdown: connecting code ${ca.code} reason "${ca.reason}"`);
  const cb = await pb;
  ok(`B observed shutdown: connecting code ${cb.code} reason "${cb.reason}"`);
  const sctx = await subLost;
  ok(`A news subscription back to subscribing (code ${sctx.code})`);
}

async function main() {
  let st = null;
  if (wanted.has('pubsub')) st = await pubsub();
  if (wanted.has('badtoken')) await badToken();
  if (wanted.has('shutdown')) await shutdown(st);
  finish();
}

main().catch((e) => fail(describe(e)));
