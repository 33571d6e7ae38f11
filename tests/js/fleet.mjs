// Stateless nodes under the official SDK (driven by tests/redis_fleet.rs): CLIENTS clients of
// the unmodified centrifuge SDK subscribe to CHANNEL (history on) on a fleet of nodes sharing
// one Redis, odd ones through a server-side subscription (token `channels`), even ones with a
// client-side one; the Rust side publishes, kills one node with SIGKILL, and the SDK must
// reconnect to a live node and recover by itself (`connect.subs` or `subscribe` with
// recover/epoch/offset).
//
// MODE=haproxy: every client connects to WS_URL (an HAProxy in front of the nodes).
// MODE=rotate: the node URLs are given directly (WS_URLS, comma separated). centrifuge-js
//   5.7.4 accepts an array of transport endpoints, but only as a transport *fallback* for the
//   first connect: once a transport opened it reconnects to that same endpoint forever, so a
//   dead node would be retried forever. The application picks the node instead: the SDK's
//   `websocket` option gets a constructor that starts at node `i % n` for client i and moves
//   to the next URL on every new connection.
//
// Lines for the Rust side (stdout):
//   READY {"<client>": "<node name>", ...}      all subscribed (node = connect result's `node`)
//   RECOVERED <client> <node> <n>               resubscribed after a loss with recovered: true,
//                                               n publications came back in the reply
//   LOST <client> <code> <reason>               with ONLY_CODE set: a connection lost (a
//                                               code other than ONLY_CODE fails the script)
//   OFFSETS <client> <offsets> <ns>            every publication received, in order: its offset
//                                               and data.n, each list as ranges (`1-3,5,0`)
// then `ok: done`. The publication with data {n: 0} is the last one: each client stops after it.
// A resubscribe that is not `recovered`, a subscription error or a terminal disconnect fails.

import { start, fail, ok, finish, env, waitFor, newClient, mintToken, nowS, isClosing, describe, WebSocket } from './lib.mjs';

start(90_000);

const MODE = env('MODE');
const CHANNEL = env('CHANNEL');
const CLIENTS = Number(env('CLIENTS'));
const URLS = MODE === 'rotate' ? env('WS_URLS').split(',') : null;
// optional: the only disconnect code a client may see (tests/rolling_restart.rs: 3001)
const ONLY_CODE = process.env.ONLY_CODE || null;
if (!['haproxy', 'rotate'].includes(MODE)) fail(`unknown MODE ${MODE}`);

/** A `websocket` constructor for the SDK that records the connect result's `node` and the
 * publications carried by subscribe replies; in rotate mode it also picks the node URL. */
function transport(st, first) {
  let next = first;
  return class FleetWebSocket extends WebSocket {
    constructor(url, protocols) {
      const target = URLS ? URLS[next++ % URLS.length] : url;
      super(target, protocols);
      this.on('message', (data) => {
        for (const line of String(data).split('\n')) {
          if (!line.trim()) continue;
          const v = JSON.parse(line);
          if (v.connect && v.connect.node) st.node = v.connect.node;
          const res = v.subscribe || (v.connect && v.connect.subs && v.connect.subs[CHANNEL]);
          if (res && res.was_recovering) st.fromHistory = (res.publications || []).length;
        }
      });
    }
  };
}

/** Client i: odd ones hold a server-side subscription (token `channels`, recovered through
 * `connect.subs`), even ones a client-side one (recovered by `subscribe`). */
function fleetClient(i) {
  const name = `js${i}`;
  const serverSide = i % 2 === 1;
  const st = { name, node: null, pubs: [], subscribed: 0, fromHistory: 0 };
  const claims = { sub: `user${i}`, exp: nowS() + 3600 };
  if (serverSide) claims.channels = [CHANNEL];
  st.c = newClient(name, {
    token: mintToken(claims),
    websocket: transport(st, i),
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
  });
  st.c.expectLoss = true; // a reconnect is what this script is about
  if (ONLY_CODE) {
    // a rolling restart: every loss must be the server's reconnect-allowed close ONLY_CODE
    st.c.on('connecting', (ctx) => {
      if (ctx.code === 0) return; // our own connect()
      process.stdout.write(`LOST ${name} ${ctx.code} ${ctx.reason}\n`);
      if (String(ctx.code) !== ONLY_CODE) fail(`${name} lost its connection with ${JSON.stringify(ctx)}`);
    });
  }
  st.c.on('disconnected', (ctx) => {
    if (!isClosing()) fail(`${name} disconnected for good: ${JSON.stringify(ctx)}`);
  });
  // events of the channel: from the Subscription, or from the client for a server-side one
  const events = serverSide ? st.c : st.c.newSubscription(CHANNEL);
  const mine = (ctx) => !serverSide || ctx.channel === CHANNEL;
  st.done = waitFor(
    `${name} to receive the last publication`,
    (resolve) => {
      events.on('publication', (ctx) => {
        if (!mine(ctx)) return;
        st.pubs.push([ctx.offset, ctx.data.n]);
        if (ctx.data.n === 0) resolve();
      });
    },
    85_000,
  );
  if (!serverSide) events.on('error', (ctx) => fail(`${name}: subscription error ${JSON.stringify(ctx)}`));
  events.on('unsubscribed', (ctx) => {
    if (mine(ctx) && !isClosing()) fail(`${name}: unsubscribed ${JSON.stringify(ctx)}`);
  });
  st.first = waitFor(`${name} subscribed`, (resolve) => {
    events.on('subscribed', (ctx) => {
      if (!mine(ctx)) return;
      st.subscribed += 1;
      if (st.subscribed === 1) {
        if (!ctx.recoverable) fail(`${name}: subscription is not recoverable: ${JSON.stringify(ctx)}`);
        resolve();
        return;
      }
      if (!(ctx.wasRecovering && ctx.recovered)) {
        fail(`${name}: resubscribed on ${st.node} without recovering: ${JSON.stringify(ctx)}`);
      }
      process.stdout.write(`RECOVERED ${name} ${st.node} ${st.fromHistory}\n`);
    });
  });
  if (!serverSide) events.subscribe();
  st.c.connect();
  return st;
}

/** `[1,2,3,5,0]` as `1-3,5,0`: runs of +1 steps as ranges, in order. */
function ranges(list) {
  const out = [];
  let i = 0;
  while (i < list.length) {
    let j = i;
    while (j + 1 < list.length && list[j + 1] === list[j] + 1) j++;
    out.push(j > i ? `${list[i]}-${list[j]}` : `${list[i]}`);
    i = j + 1;
  }
  return out.join(',') || '-';
}

async function main() {
  const all = [];
  for (let i = 0; i < CLIENTS; i++) all.push(fleetClient(i));
  await Promise.all(all.map((st) => st.first));
  const nodes = Object.fromEntries(all.map((st) => [st.name, st.node]));
  ok(`${CLIENTS} clients subscribed to ${CHANNEL} (${MODE})`);
  process.stdout.write(`READY ${JSON.stringify(nodes)}\n`);
  await Promise.all(all.map((st) => st.done));
  for (const st of all) {
    const offsets = ranges(st.pubs.map((p) => p[0]));
    const ns = ranges(st.pubs.map((p) => p[1]));
    process.stdout.write(`OFFSETS ${st.name} ${offsets} ${ns}\n`);
  }
  finish();
}

main().catch((e) => fail(describe(e)));
