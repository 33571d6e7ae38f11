// Regression tests with the official JavaScript SDK (npm `centrifuge`, pinned in package.json,
// unmodified) for stream positions, recovery and subscription-token expiry, as Centrifugo
// behaves and as the SDK relies on. Driven by tests/interop_js.rs (one #[test] per scenario,
// each on its own server), or by hand (see README.md). Inputs (env):
//   WS_URL, API_URL, API_KEY   as for interop.mjs
//   SECRET     the server's auth.hmac_secret: the script mints connection and subscription tokens
//   SCENARIO   all (default) or a comma list of:
//     node       the connect reply names the node (`node`, a non-empty string)
//     getstate   a subscription with getState: an unrecoverable position (offset behind history,
//                or a wrong epoch) is answered with error 112, the SDK calls getState again and
//                subscribes from the fresh position (server: history_size 3)
//     serversub  a server-side subscription (token `channels`) is recoverable and, after the
//                transport is cut, recovers the publication made during the gap via connect.subs
//     subexpiry  a private `$doc` subscription token expiring in 3 s: the reply carries
//                expires/ttl, the SDK refreshes it with sub_refresh and keeps receiving; a client
//                that refuses to refresh unsubscribes itself; one that cannot refresh is
//                unsubscribed by the server with 2501 "subscription expired"
//   CENTRIFUGE_DEBUG=1 turns on the SDK's debug log and a dump of every frame.
//
// Output: `ok: <step>` lines on stdout, `FAIL: <reason>` on stderr and exit 1 on a failure;
// a 60 s global timeout bounds the whole run, every wait has its own bound.

import {
  apiPublish,
  connectClient,
  describe,
  fail,
  finish,
  mintToken,
  newClient,
  nowS,
  ok,
  scenarios,
  sleep,
  sniffer,
  start,
  waitFor,
} from './lib.mjs';

start(60_000);
const wanted = scenarios(['node', 'getstate', 'serversub', 'subexpiry']);

const connToken = (user, extra = {}) => mintToken({ sub: user, exp: nowS() + 3600, ...extra });

// ---------------------------------------------------------------------------------------

async function node() {
  const sn = sniffer('N');
  const c = newClient('N', { token: connToken('nadia'), websocket: sn.WebSocket });
  await connectClient(c);
  const reply = await sn.replyTo('connect', (v) => v.connect !== undefined);
  if (!reply.connect) fail(`connect failed: ${JSON.stringify(reply)}`);
  const n = reply.connect.node;
  if (typeof n !== 'string' || n === '') {
    fail(`connect result has no node name (want a non-empty string "node", default host:port): ${JSON.stringify(reply.connect)}`);
  }
  ok(`connect result names the node: "${n}"`);
}

/** Publishes `count` publications to `channel`; returns the last `{offset, epoch}`. */
async function publishMany(channel, count) {
  let last;
  for (let i = 1; i <= count; i++) last = await apiPublish(channel, { n: i });
  return last;
}

/** One getState subscription whose first getState answers `stale(current)`, the second `current`. */
async function getStateCase(c, sn, channel, current, stale, what) {
  const calls = [];
  const pubs = [];
  let onPub = () => {};
  const sub = c.newSubscription(channel, {
    getState: async () => {
      calls.push(Date.now());
      const pos = calls.length === 1 ? stale : current;
      return { offset: pos.offset, epoch: pos.epoch };
    },
  });
  sub.on('publication', (ctx) => {
    pubs.push(ctx);
    onPub();
  });
  sub.on('error', (ctx) => fail(`${channel}: subscription error ${JSON.stringify(ctx)}`));
  sub.on('unsubscribed', (ctx) => fail(`${channel}: unsubscribed ${JSON.stringify(ctx)}`));
  const subscribed = waitFor(`${channel} subscribed`, (done) => sub.once('subscribed', done), 15_000);
  sub.subscribe();
  const ctx = await subscribed;

  const cmds = sn.out.filter((v) => v.subscribe && v.subscribe.channel === channel);
  const replies = cmds.map((cmd) => sn.in.find((v) => v.id === cmd.id));
  const trace = JSON.stringify(cmds.map((cmd, i) => ({ sent: cmd.subscribe, got: replies[i] })));
  const first = cmds[0].subscribe;
  if (!((first.flag & 2) === 2 && first.recover === true && first.epoch === stale.epoch)) {
    fail(`${channel}: the SDK's first subscribe is not a rejectUnrecovered recovery from the getState position: ${trace}`);
  }
  if (calls.length !== 2) {
    fail(
      `${channel} (${what}): getState was called ${calls.length} time(s), want 2: the server must answer ` +
        `error 112 (unrecoverable position) to a subscribe with flag rejectUnrecovered (2) from a lost ` +
        `position, and the SDK then reloads the state. Wire: ${trace}`,
    );
  }
  if (!replies[0] || !replies[0].error || replies[0].error.code !== 112) {
    fail(`${channel}: the first subscribe was not answered with error 112: ${trace}`);
  }
  ok(`${channel} (${what}): first subscribe answered ${JSON.stringify(replies[0].error)}, getState called again`);
  const last = replies[replies.length - 1].subscribe;
  if (!last || !ctx.recoverable || ctx.streamPosition.epoch !== current.epoch || ctx.streamPosition.offset !== current.offset) {
    fail(`${channel}: subscribed at ${JSON.stringify(ctx)}, want the current position ${JSON.stringify(current)}; wire: ${trace}`);
  }
  ok(`${channel}: subscribed from the fresh position (${JSON.stringify(ctx)})`);

  const next = await apiPublish(channel, { n: 'after' });
  await waitFor(`${channel}: the publication made after subscribing`, (done) => {
    onPub = () => pubs.length >= 1 && done();
    onPub();
  });
  if (pubs.length !== 1 || pubs[0].offset !== next.offset || pubs[0].data.n !== 'after') {
    fail(`${channel}: received ${JSON.stringify(pubs)}, want exactly the publication at offset ${next.offset}`);
  }
  ok(`${channel}: live publication received at offset ${next.offset}`);
}

async function getState() {
  const sn = sniffer('G');
  const c = newClient('G', { token: connToken('gina'), websocket: sn.WebSocket });
  await connectClient(c);
  // history_size is 3: ten publications leave offsets 8..10, so offset 2 is lost
  const behind = await publishMany('gs-behind', 10);
  await getStateCase(c, sn, 'gs-behind', behind, { offset: 2, epoch: behind.epoch }, 'offset behind history');
  const epoch = await publishMany('gs-epoch', 2);
  await getStateCase(c, sn, 'gs-epoch', epoch, { offset: epoch.offset, epoch: 'not-the-epoch' }, 'wrong epoch');
}

async function serverSub() {
  const sn = sniffer('S');
  const c = newClient('S', {
    token: connToken('sam', { channels: ['news'] }),
    websocket: sn.WebSocket,
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
  });
  const subscribedEvents = [];
  let onSubscribed = () => {};
  c.on('subscribed', (ctx) => {
    subscribedEvents.push(ctx);
    onSubscribed();
  });
  c.on('unsubscribed', (ctx) => fail(`server-side subscription ended: ${JSON.stringify(ctx)}`));
  const pubs = [];
  let onPub = () => {};
  c.on('publication', (ctx) => {
    pubs.push(ctx);
    onPub();
  });
  const nthSubscribed = (n) =>
    waitFor(`subscribed event #${n} for news`, (done) => {
      onSubscribed = () => subscribedEvents.length >= n && done(subscribedEvents[n - 1]);
      onSubscribed();
    });
  const nthPub = (n) =>
    waitFor(`publication #${n} on news (got ${pubs.length})`, (done) => {
      onPub = () => pubs.length >= n && done(pubs[n - 1]);
      onPub();
    });

  await connectClient(c);
  const s1 = await nthSubscribed(1);
  if (s1.channel !== 'news' || !s1.recoverable || !s1.streamPosition || typeof s1.streamPosition.epoch !== 'string') {
    fail(`server-side subscription to news is not recoverable (want recoverable with epoch/offset, as for a history-enabled channel): ${JSON.stringify(s1)}`);
  }
  ok(`server-side subscription: ${JSON.stringify(s1)}`);
  const p1 = await apiPublish('news', { n: 1 });
  const got1 = await nthPub(1);
  if (got1.offset !== p1.offset) fail(`live publication offset ${got1.offset}, want ${p1.offset}`);
  ok(`live publication on the server-side channel at offset ${p1.offset}`);

  // cut the transport and keep the client out while a publication is made
  c.expectLoss = true;
  const lost = waitFor('S to notice the cut transport', (done) => c.once('connecting', done));
  sn.gate(false);
  sn.cut();
  const lostCtx = await lost;
  ok(`transport cut: connecting ${JSON.stringify(lostCtx)}`);
  const p2 = await apiPublish('news', { n: 2 });
  const p3 = await apiPublish('news', { n: 3 });
  ok(`published offsets ${p2.offset}, ${p3.offset} during the gap`);
  await sleep(300); // at least one refused reconnect attempt
  sn.gate(true);
  const reconnected = waitFor('S reconnected', (done) => c.once('connected', done));
  const s2 = await nthSubscribed(2);
  await reconnected;
  const connects = sn.out.filter((v) => v.connect);
  const again = connects[connects.length - 1].connect;
  const want = { recover: true, epoch: p1.epoch, offset: p1.offset };
  const sent = again.subs && again.subs.news;
  if (!sent || sent.recover !== true || sent.epoch !== want.epoch || sent.offset !== want.offset) {
    fail(`the reconnect's connect.subs.news is ${JSON.stringify(sent)}, want ${JSON.stringify(want)}`);
  }
  if (!(s2.wasRecovering && s2.recovered)) {
    fail(`after the gap: subscribed ${JSON.stringify(s2)}, want wasRecovering and recovered true`);
  }
  ok(`recovered via connect.subs: ${JSON.stringify(s2)}`);
  await nthPub(3);
  const missed = pubs.slice(1, 3).map((p) => ({ offset: p.offset, n: p.data.n }));
  const wantMissed = [
    { offset: p2.offset, n: 2 },
    { offset: p3.offset, n: 3 },
  ];
  if (JSON.stringify(missed) !== JSON.stringify(wantMissed)) {
    fail(`missed publications delivered as ${JSON.stringify(missed)}, want ${JSON.stringify(wantMissed)}`);
  }
  ok(`missed publications delivered in order: offsets ${p2.offset}, ${p3.offset}`);
  c.expectLoss = false;
  const p4 = await apiPublish('news', { n: 4 });
  const got4 = await nthPub(4);
  if (got4.offset !== p4.offset || pubs.length !== 4) fail(`after recovery: ${JSON.stringify(pubs)}`);
  ok('live delivery continues after recovery without duplicates');
}

/** A `$doc` subscriber whose getToken answers the first call with a token expiring in 3 s
 * and later calls with `later(n)`. */
function docSubscriber(name, user, later) {
  const sn = sniffer(name);
  const c = newClient(name, { token: connToken(user), websocket: sn.WebSocket });
  const st = { c, sn, tokenCalls: 0, pubs: [], events: [], exp: 0 };
  st.sub = c.newSubscription('$doc', {
    getToken: async (ctx) => {
      st.tokenCalls += 1;
      if (ctx.channel !== '$doc') fail(`${name}: getToken for ${ctx.channel}`);
      if (st.tokenCalls === 1) {
        st.exp = nowS() + 3;
        return mintToken({ sub: user, channel: '$doc', exp: st.exp });
      }
      return later(st.tokenCalls);
    },
  });
  st.sub.on('publication', (ctx) => st.pubs.push(ctx.data.n));
  for (const ev of ['subscribing', 'subscribed', 'unsubscribed', 'error']) {
    st.sub.on(ev, (ctx) => st.events.push({ ev, ...ctx }));
  }
  return st;
}

async function subExpiry() {
  // R refreshes; U's getToken refuses ('' = unauthorized); H's getToken never answers.
  const r = docSubscriber('R', 'rita', () => mintToken({ sub: 'rita', channel: '$doc', exp: nowS() + 60 }));
  const u = docSubscriber('U', 'ugo', () => '');
  const h = docSubscriber('H', 'hugo', () => new Promise(() => {}));
  h.c.expectLoss = true; // its subscription errors (109 on resubscribe) are expected
  for (const s of [r, u, h]) {
    const subscribed = waitFor(`${s.c.name} subscribed to $doc`, (done) => s.sub.once('subscribed', done));
    s.sub.subscribe();
    await connectClient(s.c);
    await subscribed;
    const reply = await s.sn.replyTo('subscribe $doc', (v) => v.subscribe && v.subscribe.channel === '$doc');
    const res = reply.subscribe || {};
    if (res.expires !== true || typeof res.ttl !== 'number' || res.ttl < 1 || res.ttl > 3) {
      fail(`${s.c.name}: the subscribe reply for a token expiring in 3 s must carry expires: true and ttl in 1..3, got ${JSON.stringify(reply)}`);
    }
  }
  ok('subscribe replies carry expires: true and the ttl of the subscription token');

  await apiPublish('$doc', { n: 1 });
  await waitFor('R, U and H to receive publication 1', (done) => {
    const t = setInterval(() => [r, u, h].every((s) => s.pubs.includes(1)) && (clearInterval(t), done()), 20);
  });
  ok('publication 1 reached every subscriber before expiry');

  // R refreshes before expiry: getToken again, then sub_refresh answered with the new ttl
  const refreshReply = await r.sn.replyTo('sub_refresh $doc', (v) => v.sub_refresh && v.sub_refresh.channel === '$doc', 6_000);
  if (!refreshReply.sub_refresh || refreshReply.sub_refresh.expires !== true || !(refreshReply.sub_refresh.ttl > 30)) {
    fail(`R: sub_refresh reply ${JSON.stringify(refreshReply)}, want {expires: true, ttl: ~60}`);
  }
  ok(`R refreshed its subscription token (getToken calls: ${r.tokenCalls}, reply ${JSON.stringify(refreshReply.sub_refresh)})`);

  // U's refusal makes the SDK unsubscribe it (code 1, unauthorized)
  const uEnd = await waitFor('U unsubscribed after its getToken refused', (done) => {
    const t = setInterval(() => {
      const e = u.events.find((x) => x.ev === 'unsubscribed');
      if (e) {
        clearInterval(t);
        done(e);
      }
    }, 20);
  });
  if (uEnd.code !== 1) fail(`U: unsubscribed ${JSON.stringify(uEnd)}, want code 1 (unauthorized)`);
  ok(`U unsubscribed itself: ${JSON.stringify(uEnd)}`);

  // H cannot refresh: the server must unsubscribe it with 2501 once the token expires. The SDK
  // refreshes exactly `ttl` s after the reply (ttl in whole seconds), so the server needs a grace
  // after exp (Centrifugo: 25 s by default); this wait allows up to ~12 s of it: configure the
  // test server's grace below that.
  const hLost = await waitFor(
    'H to be unsubscribed by the server with 2501 (subscription expired)',
    (done) => {
      const t = setInterval(() => {
        const e = h.events.find((x) => x.ev === 'subscribing' && x.code !== 0);
        if (e) {
          clearInterval(t);
          done(e);
        }
      }, 20);
    },
    15_000,
  );
  const push = h.sn.in.find((v) => v.push && v.push.channel === '$doc' && v.push.unsubscribe);
  if (hLost.code !== 2501 || !push || push.push.unsubscribe.code !== 2501) {
    fail(`H: lost its subscription with ${JSON.stringify(hLost)} (push ${JSON.stringify(push)}), want an unsubscribe push with code 2501 "subscription expired"`);
  }
  if (nowS() < h.exp) fail(`H was unsubscribed before its token's exp (${h.exp}, now ${nowS()})`);
  ok(`H unsubscribed by the server after exp: ${JSON.stringify(push.push.unsubscribe)}`);

  // after the original exp: only R still receives
  if (nowS() <= r.exp) await sleep((r.exp + 1 - nowS()) * 1000);
  await apiPublish('$doc', { n: 2 });
  await waitFor('R to receive publication 2 (after the original exp)', (done) => {
    const t = setInterval(() => r.pubs.includes(2) && (clearInterval(t), done()), 20);
  });
  await sleep(500); // same server, already delivered to R: give U and H's copies time to show up
  if (u.pubs.includes(2) || h.pubs.includes(2)) {
    fail(`publication 2 reached a subscriber without a valid token: U ${JSON.stringify(u.pubs)}, H ${JSON.stringify(h.pubs)}`);
  }
  if (r.events.some((e) => e.ev === 'unsubscribed' || e.ev === 'error' || (e.ev === 'subscribing' && e.code !== 0))) {
    fail(`R's subscription was disturbed: ${JSON.stringify(r.events)}`);
  }
  ok(`after exp R still receives (pubs ${JSON.stringify(r.pubs)}); U and H do not`);
}

async function main() {
  if (wanted.has('node')) await node();
  if (wanted.has('getstate')) await getState();
  if (wanted.has('serversub')) await serverSub();
  if (wanted.has('subexpiry')) await subExpiry();
  finish();
}

main().catch((e) => fail(describe(e)));
