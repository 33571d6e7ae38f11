// The official SDK follows a 4009 redirect (driven by tests/regions.rs): a client connects to
// FIRST_URL (a region where DOCUMENT is not pinned, the document in the URL), must be closed
// with 4009 and reason `REDIRECT:<url>` = EXPECT_URL; it then disconnects (the SDK would
// otherwise reconnect to the same URL: 4009 is reconnect-class), connects to that URL, must
// be subscribed to DOCUMENT server-side (connect `subs`, the SDK's `subscribed` event) and
// receive, through `centrifuge.on('publication')`, a publication made with the HTTP API at
// API_URL (another node of the pinned region).
//
// First (step 0) a client on PLAIN_URL (the same region, no document in the URL) subscribes to
// DOCUMENT with a client-side subscription and must be closed with the same 4009 and reason.
//
// Env: DOCUMENT, PLAIN_URL, FIRST_URL, EXPECT_URL, REGION_CODE, DB_CODE, API_URL, API_KEY, SECRET.
// Lines: `ok: <step>`, then `ok: done`; `FAIL: <reason>` on stderr otherwise.

import { Centrifuge } from 'centrifuge';
import { start, fail, ok, finish, env, waitFor, mintToken, nowS, apiPublish, WebSocket, DEBUG } from './lib.mjs';

start(35_000);

const DOC = env('DOCUMENT');
const token = mintToken({
  sub: 'js-user',
  exp: nowS() + 600,
  regionCode: env('REGION_CODE'),
  dbCode: env('DB_CODE'),
});

const client = (url) => new Centrifuge(url, { websocket: WebSocket, token, debug: DEBUG, timeout: 5000 });

// 0. a client-side subscription to the document in the wrong region: the connection is closed
// with 4009 and the same reason (the SDK reports `connecting` with them)
const plain = client(env('PLAIN_URL'));
plain.newSubscription(DOC).subscribe();
const subReason = await waitFor('a 4009 redirect on subscribe', (done) => {
  plain.on('connecting', (ctx) => {
    if (ctx.code === 4009) done(ctx.reason);
  });
  plain.connect();
});
plain.disconnect();
if (subReason !== `REDIRECT:${env('EXPECT_URL')}`) fail(`subscribe redirect reason ${subReason}`);
ok('subscribe redirected');

// 1. the wrong region: connected, then closed with 4009 and the pinned region's URL (the SDK
// reports a reconnect-class close after `connected` as `connecting` with the code and reason)
const first = client(env('FIRST_URL'));
const reason = await waitFor('a 4009 redirect', (done) => {
  const seen = (ctx) => {
    if (ctx.code === 4009) done(ctx.reason);
  };
  first.on('connecting', seen);
  first.on('disconnected', seen);
  first.on('subscribed', (ctx) => fail(`subscribed to ${ctx.channel} in the wrong region`));
  first.connect();
});
first.disconnect();
if (!reason.startsWith('REDIRECT:')) fail(`4009 reason ${reason}`);
const url = reason.slice('REDIRECT:'.length);
if (url !== env('EXPECT_URL')) fail(`redirected to ${url}, expected ${env('EXPECT_URL')}`);
ok(`redirected to ${url}`);

// 2. follow it: connected, subscribed server-side, publications arrive
const second = client(url);
const pubs = [];
second.on('publication', (ctx) => {
  if (ctx.channel === DOC) pubs.push(ctx.data);
});
let done = false;
second.on('disconnected', (ctx) => done || fail(`disconnected in the pinned region: ${JSON.stringify(ctx)}`));
second.on('connecting', (ctx) => done || ctx.code === 0 || fail(`lost the pinned region: ${JSON.stringify(ctx)}`));
const subscribed = waitFor(`server-side subscription to ${DOC}`, (done) => {
  second.on('subscribed', (ctx) => {
    if (ctx.channel === DOC) done(ctx);
  });
});
await waitFor('connected in the pinned region', (done) => {
  second.once('connected', done);
  second.connect();
});
await subscribed;
ok('connected and subscribed in the pinned region');

await apiPublish(DOC, { n: 1, from: 'api' });
await waitFor('the publication', (done) => {
  const check = () => (pubs.some((d) => d && d.n === 1) ? done() : setTimeout(check, 20));
  check();
});
ok('publication received');
done = true;
second.disconnect();
finish();
