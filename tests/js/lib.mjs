// Shared by the JS SDK test scripts (interop.mjs, recovery.mjs): env inputs, `ok:`/`FAIL:`
// reporting with a global timeout, bounded waits, clients with an event journal, the HTTP API,
// HS256 tokens, and a wire-sniffing WebSocket for the SDK's `websocket` option.
//
// Contract of every script: `ok: <step>` per step on stdout, `FAIL: <reason>` on stderr and
// exit 1 on any failure; the global timeout guarantees the script never hangs. The SDK itself
// (npm `centrifuge`, pinned in package.json) is used unmodified: the sniffer only observes
// frames and, for the transport-loss steps, can cut its own socket or refuse to connect.

import { Centrifuge } from 'centrifuge';
import WsWebSocket from 'ws';
import { createHmac } from 'node:crypto';

/**
 * `ws` with `allowSynchronousEvents: false`: each message event in its own tick, as browsers
 * deliver them. With ws's default (true), the frames of one socket read are emitted in the same
 * tick, and centrifuge-js 5.7.4 then dispatches them concurrently (`_dataReceived` chains the
 * next frame on the outer promise, not on the previous frame's dispatch), so a live
 * publication in a later frame can overtake the publications recovered in the reply before it.
 * The server sends them in order; this is how a Node application should configure `ws` for the
 * SDK (docs/PROTOCOL.md, "Node.js clients").
 */
export class WebSocket extends WsWebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, { allowSynchronousEvents: false, ...options });
  }
}

export const STEP_TIMEOUT_MS = 10_000;
export const DEBUG = process.env.CENTRIFUGE_DEBUG === '1';

const clients = [];
// Set once the script is finishing (pass or fail): the clients' own disconnect() then
// fires events that must not count as failures.
let closing = false;

export function describe(e) {
  if (e instanceof Error) return e.stack || e.message;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

export function fail(reason) {
  if (closing) return;
  closing = true;
  process.stderr.write(`FAIL: ${reason}\n`);
  for (const c of clients) {
    try {
      c.disconnect();
    } catch {
      // exiting anyway
    }
  }
  process.exit(1);
}

export function ok(step) {
  process.stdout.write(`ok: ${step}\n`);
}

/** Installs the failure handlers and the global timeout. Call once, first. */
export function start(globalTimeoutMs) {
  process.on('unhandledRejection', (e) => fail(`unhandled rejection: ${describe(e)}`));
  process.on('uncaughtException', (e) => fail(`uncaught exception: ${describe(e)}`));
  setTimeout(() => fail(`global timeout ${globalTimeoutMs} ms exceeded`), globalTimeoutMs);
}

/** Disconnects every client, prints `ok: done` and exits 0. */
export function finish() {
  closing = true;
  for (const c of clients) c.disconnect();
  ok('done');
  process.exit(0);
}

export function isClosing() {
  return closing;
}

export const env = (name, fallback) => {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback !== undefined) return fallback;
    fail(`missing env ${name}`);
  }
  return v;
};

/** The scenarios named by env SCENARIO (`all` or a comma list), checked against `known`. */
export function scenarios(known) {
  const s = env('SCENARIO', 'all');
  const wanted = new Set(s === 'all' ? known : s.split(','));
  for (const w of wanted) if (!known.includes(w)) fail(`unknown scenario ${w} (known: ${known.join(', ')})`);
  return wanted;
}

/** Resolves with the first value `register(resolve)` produces, or fails the script after `ms`. */
export function waitFor(what, register, ms = STEP_TIMEOUT_MS) {
  return new Promise((resolve) => {
    const t = setTimeout(() => fail(`timeout after ${ms} ms waiting for ${what}`), ms);
    register((v) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A client with an event journal (`c.journal`); `opts` go to the SDK. */
export function newClient(name, opts) {
  const c = new Centrifuge(env('WS_URL'), { websocket: WebSocket, debug: DEBUG, timeout: 5000, ...opts });
  c.name = name;
  c.journal = [];
  c.expectLoss = false; // set once a server-initiated disconnect is expected
  for (const ev of ['connecting', 'connected', 'disconnected']) {
    c.on(ev, (ctx) => {
      c.journal.push({ ev, ...ctx });
      if (DEBUG) console.error(`[${name}] ${ev} ${JSON.stringify(ctx)}`);
    });
  }
  c.on('error', (ctx) => {
    c.journal.push({ ev: 'error', ...ctx });
    if (DEBUG || !c.expectLoss) console.error(`[${name}] error ${JSON.stringify(ctx)}`);
  });
  clients.push(c);
  return c;
}

/** Connects `c` and waits for `connected`; any `disconnected` or a reconnect is a failure
 * unless `c.expectLoss` is set. */
export async function connectClient(c) {
  const p = waitFor(`${c.name} connected`, (done) => {
    c.once('connected', done);
    c.on('disconnected', (ctx) => {
      if (!c.expectLoss) fail(`${c.name} disconnected: ${JSON.stringify(ctx)}`);
    });
    c.on('connecting', (ctx) => {
      // code 0 = "connect called" (our own connect()); anything else is an unexpected drop.
      if (ctx.code !== 0 && !c.expectLoss) fail(`${c.name} lost its connection: ${JSON.stringify(ctx)}`);
    });
  });
  c.connect();
  return p;
}

/** `POST /api/publish`; returns the result `{offset, epoch}` or fails the script. */
export async function apiPublish(channel, data) {
  let res;
  try {
    res = await fetch(`${env('API_URL')}/api/publish`, {
      method: 'POST',
      headers: { 'X-API-Key': env('API_KEY'), 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel, data }),
      signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
    });
  } catch (e) {
    fail(`HTTP API publish request failed: ${describe(e)}`);
  }
  const text = await res.text();
  if (res.status !== 200) fail(`HTTP API publish: status ${res.status}, body ${text}`);
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    fail(`HTTP API publish: body is not JSON: ${text}`);
  }
  if (body.error) fail(`HTTP API publish: error reply ${text}`);
  if (!body.result || typeof body.result !== 'object') fail(`HTTP API publish: no {result: {...}} in ${text}`);
  if (typeof body.result.offset !== 'number') fail(`HTTP API publish: result.offset is not a number in ${text}`);
  return body.result;
}

const b64url = (s) => Buffer.from(s).toString('base64url');

/** An HS256 JWT signed with env SECRET (the test server's `auth.hmac_secret`). */
export function mintToken(claims) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', env('SECRET')).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

export const nowS = () => Math.floor(Date.now() / 1000);

/**
 * A `websocket` implementation for the SDK that records every JSON object it sends (`out`) and
 * receives (`in`), and can cut the transport like a network failure would:
 *   sn.cut()      terminates the current socket (the SDK sees close 1006 and reconnects);
 *   sn.gate(false) makes new connections fail (they go to a closed port) until sn.gate(true).
 */
export function sniffer(name) {
  const sn = { in: [], out: [], current: null, open: true, watchers: [] };
  const record = (dir, text) => {
    for (const line of String(text).split('\n')) {
      if (!line.trim()) continue;
      let v;
      try {
        v = JSON.parse(line);
      } catch {
        fail(`${name}: non-JSON line on the wire (${dir}): ${line}`);
      }
      sn[dir].push(v);
      if (DEBUG) console.error(`[${name} wire ${dir}] ${line}`);
      sn.watchers = sn.watchers.filter((w) => !(w.dir === dir && w.pred(v) && (w.done(v), true)));
    }
  };
  class SniffingWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(sn.open ? url : 'ws://127.0.0.1:1/connection/websocket', protocols);
      sn.current = this;
      this.on('message', (data) => record('in', data));
    }
    send(data, ...rest) {
      record('out', data);
      return super.send(data, ...rest);
    }
  }
  sn.WebSocket = SniffingWebSocket;
  sn.cut = () => sn.current && sn.current.terminate();
  sn.gate = (open) => {
    sn.open = open;
  };
  /** The first object sent (`dir` 'out') or received ('in') matching `pred`, seen or future. */
  sn.next = (dir, what, pred, ms) => {
    const seen = sn[dir].find(pred);
    if (seen) return Promise.resolve(seen);
    return waitFor(`${name}: ${what}`, (done) => sn.watchers.push({ dir, pred, done }), ms);
  };
  /** The reply received for the first sent command matching `pred` (same id). */
  sn.replyTo = async (what, pred, ms) => {
    const cmd = await sn.next('out', `${what} sent`, pred, ms);
    return sn.next('in', `reply to ${what}`, (v) => v.id === cmd.id, ms);
  };
  return sn;
}
