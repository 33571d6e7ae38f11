// The official centrifuge-js SDK (5.7.4, its browser bundle `dist/centrifuge.js`) in a real
// browser: headless Chromium (Debian package `chromium`) driven by puppeteer-core, against a
// real wiresocket server. Driven by tests/interop_browser.rs.
//
// A page served from PAGE_ORIGIN (allowed by the server's `allowed_origins`) connects with a
// token, subscribes to CHANNEL (history on), receives three API publications in order with
// their offsets, disconnects, misses two publications, reconnects and recovers them
// (`recovered: true`), none twice. A page from OTHER_ORIGIN (not allowed) cannot open a
// WebSocket: the browser's `Origin` is refused (HTTP 403), the socket closes with 1006.
// Prints `ok: <step>` per step and `ok: done`; any failure exits 1.
//
// Env: WS_URL, API_URL, API_KEY, SECRET, CHANNEL, PAGE_PORT, CHROMIUM (default
// /usr/bin/chromium).

import http from 'node:http';
import { readFileSync } from 'node:fs';
import puppeteer from 'puppeteer-core';
import { apiPublish, env, fail, mintToken, nowS, ok, start, describe } from './lib.mjs';

start(60_000);

const bundle = readFileSync(new URL('./node_modules/centrifuge/dist/centrifuge.js', import.meta.url), 'utf8');
const page = `<!doctype html><meta charset="utf-8"><title>wiresocket</title><script>${bundle}</script>`;
const port = Number(env('PAGE_PORT'));
const site = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(page);
});
await new Promise((r) => site.listen(port, '127.0.0.1', r));

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const closeAll = async () => {
  await browser.close().catch(() => {});
  site.close();
};
process.on('exit', () => browser.process()?.kill('SIGKILL'));

try {
  const tab = await browser.newPage();
  tab.on('console', (m) => process.stdout.write(`[page] ${m.text()}\n`));
  await tab.exposeFunction('apiPublish', (channel, data) => apiPublish(channel, data));
  await tab.goto(`http://127.0.0.1:${port}/`);
  ok(`page served from http://127.0.0.1:${port}`);

  const token = mintToken({ sub: 'browser-user', exp: nowS() + 3600 });
  const result = await tab.evaluate(
    async ({ wsUrl, token, channel }) => {
      const wait = (what, cond, ms = 10_000) =>
        new Promise((resolve, reject) => {
          const t0 = Date.now();
          const tick = () => {
            if (cond()) return resolve();
            if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${what}`));
            setTimeout(tick, 20);
          };
          tick();
        });
      const got = [];
      const subscribed = [];
      const c = new Centrifuge(wsUrl, { token });
      const sub = c.newSubscription(channel, { recoverable: true });
      sub.on('publication', (ctx) => got.push({ n: ctx.data.n, offset: ctx.offset }));
      sub.on('subscribed', (ctx) => subscribed.push({ recovered: ctx.recovered, wasRecovering: ctx.wasRecovering }));
      sub.subscribe();
      c.connect();
      await wait('subscribed', () => subscribed.length === 1);
      for (const n of [1, 2, 3]) await window.apiPublish(channel, { n });
      await wait('three publications', () => got.length === 3);
      c.disconnect();
      for (const n of [4, 5]) await window.apiPublish(channel, { n });
      c.connect();
      await wait('resubscribed', () => subscribed.length === 2);
      await wait('recovered publications', () => got.length >= 5);
      await new Promise((r) => setTimeout(r, 300)); // a duplicate would arrive now
      c.disconnect();
      return { got, subscribed, userAgent: navigator.userAgent };
    },
    { wsUrl: env('WS_URL'), token, channel: env('CHANNEL') },
  );
  if (!/HeadlessChrome|Chrome/.test(result.userAgent)) fail(`not a browser: ${result.userAgent}`);
  const ns = result.got.map((p) => p.n).join(',');
  if (ns !== '1,2,3,4,5') fail(`publications ${ns}, wanted 1,2,3,4,5 once each in order`);
  if (result.got.some((p, i) => p.offset !== i + 1)) fail(`offsets ${JSON.stringify(result.got)}`);
  ok('publications in order with their offsets');
  const again = result.subscribed[1];
  if (!(again.wasRecovering && again.recovered)) fail(`resubscribe did not recover: ${JSON.stringify(again)}`);
  ok(`recovered after a disconnect in ${result.userAgent.match(/Chrome\/[\d.]+/)?.[0]}`);

  // the same page from a site the server does not allow: its Origin is refused
  const other = await browser.newPage();
  await other.goto(`http://localhost:${port}/`);
  const refused = await other.evaluate(
    (wsUrl) =>
      new Promise((resolve) => {
        const ws = new WebSocket(wsUrl);
        ws.onopen = () => resolve({ opened: true });
        ws.onclose = (e) => resolve({ opened: false, code: e.code });
      }),
    env('WS_URL'),
  );
  if (refused.opened || refused.code !== 1006) fail(`a foreign origin got ${JSON.stringify(refused)}`);
  ok('a foreign origin is refused (1006 in the browser)');
  await closeAll();
} catch (e) {
  await closeAll();
  fail(describe(e));
}
ok("done");
process.exit(0);
