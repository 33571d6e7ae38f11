// smoke.mjs — checks that a running peer server honours the benchmark's wire contract.
//
//   JWT_SECRET=... API_KEY=... node bench/peers/smoke.mjs NAME PORT [--many N]
//
// NAME: node-ws | socketio | nchan | tokio-ws. Connects 3 clients (2 on channel `a`, 1 on
// `a,b`), waits until they are subscribed, publishes 5 messages to `a` and 2 to `b` over
// one keep-alive HTTP connection (rejecting chunked or Content-Length-less responses) and
// checks every client got exactly its messages; then does the same for one client on 64
// channels (the contract's maximum); then checks that a bad token is refused
// (nchan: skipped, it has no JWT) and that a bad API key gets 401. With `--many N` it also
// opens N connections on one channel, publishes once and checks all N receive it.
// Exits non-zero on any mismatch.

import { createRequire } from 'node:module';
import net from 'node:net';

const require = createRequire(new URL('./node/', import.meta.url));
const WebSocket = require('ws');
const jwt = require('jsonwebtoken');

const [NAME, PORT_ARG, ...rest] = process.argv.slice(2);
const PORT = Number(PORT_ARG);
const MANY = rest[0] === '--many' ? Number(rest[1]) : 0;
const { JWT_SECRET, API_KEY } = process.env;
const NAMES = ['node-ws', 'socketio', 'nchan', 'tokio-ws'];
if (!NAMES.includes(NAME) || !PORT || !JWT_SECRET || !API_KEY) {
  console.error('usage: JWT_SECRET=... API_KEY=... node smoke.mjs NAME PORT [--many N]');
  process.exit(2);
}

const failures = [];
let passed = 0;
function check(ok, what) {
  if (ok) {
    passed++;
    console.log(`  ok   ${what}`);
  } else {
    failures.push(what);
    console.log(`  FAIL ${what}`);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function token(secret = JWT_SECRET) {
  return jwt.sign({ sub: 'smoke' }, secret, { algorithm: 'HS256', expiresIn: 3600 });
}

/**
 * Opens one subscriber. Resolves to { messages, ws } once it is subscribed; `messages`
 * collects each publication as the text the publisher sent (for socketio: re-serialised
 * from the `pub` event's object). Rejects with { status } / { connectError } on refusal.
 */
function subscribe(channels, tok = token()) {
  const base = `ws://127.0.0.1:${PORT}`;
  const q = encodeURIComponent(tok);
  const url = {
    'node-ws': `${base}/ws?token=${q}&channels=${channels.join(',')}`,
    'tokio-ws': `${base}/ws?token=${q}&channels=${channels.join(',')}`,
    nchan: `${base}/sub/${channels.join(',')}?token=${q}`,
    socketio: `${base}/socket.io/?EIO=4&transport=websocket`,
  }[NAME];
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const messages = [];
    let ready = false;
    const done = () => {
      ready = true;
      resolve({ messages, ws });
    };
    ws.on('unexpected-response', (_req, res) => {
      reject({ status: res.statusCode });
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => {
      if (!ready) reject(err);
    });
    ws.on('close', () => {
      if (!ready) reject(new Error('closed before ready'));
    });
    if (NAME === 'nchan') ws.on('open', done);
    ws.on('message', (data, isBinary) => {
      const text = data.toString('utf8');
      if (isBinary) {
        messages.push(`<binary frame> ${text}`);
        return;
      }
      if (NAME === 'socketio') {
        if (text === '2') return ws.send('3'); // Engine.IO ping -> pong
        if (text.startsWith('0{')) {
          return ws.send(`40${JSON.stringify({ token: tok, channels })}`);
        }
        if (text.startsWith('40')) return; // CONNECT ack
        if (text.startsWith('44')) {
          reject({ connectError: text });
          return ws.terminate();
        }
        if (text === '42["ready"]' && !ready) return done();
        if (text.startsWith('42')) {
          const [event, payload] = JSON.parse(text.slice(2));
          messages.push(event === 'pub' ? JSON.stringify(payload) : `<event ${event}> ${text}`);
          return;
        }
        messages.push(`<unexpected> ${text}`);
        return;
      }
      if (!ready && (NAME === 'node-ws' || NAME === 'tokio-ws')) {
        if (text === '{"ready":true}') return done();
      }
      messages.push(text);
    });
  });
}

/** One keep-alive HTTP/1.1 connection; `post` resolves to { status, headers, body }. */
class Publisher {
  constructor() {
    this.buf = Buffer.alloc(0);
    this.waiting = [];
    this.sock = net.connect(PORT, '127.0.0.1');
    this.sock.setNoDelay(true);
    this.sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.drain();
    });
    this.sock.on('error', (err) => this.waiting.splice(0).forEach((w) => w.reject(err)));
    this.sock.on('close', () =>
      this.waiting.splice(0).forEach((w) => w.reject(new Error('publisher connection closed'))),
    );
  }
  drain() {
    while (this.waiting.length) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(lines[0].split(' ')[1]);
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      if (headers['transfer-encoding']) {
        this.waiting.shift().reject(new Error(`chunked response (${headers['transfer-encoding']})`));
        this.sock.destroy();
        return;
      }
      if (headers['content-length'] === undefined) {
        this.waiting.shift().reject(new Error('response without Content-Length'));
        this.sock.destroy();
        return;
      }
      const len = Number(headers['content-length']);
      if (this.buf.length < end + 4 + len) return;
      const body = this.buf.subarray(end + 4, end + 4 + len).toString('utf8');
      this.buf = this.buf.subarray(end + 4 + len);
      this.waiting.shift().resolve({ status, headers, body });
    }
  }
  post(channel, body, key = API_KEY) {
    const b = Buffer.from(body);
    const head =
      `POST /publish/${channel} HTTP/1.1\r\nHost: 127.0.0.1:${PORT}\r\n` +
      `X-API-Key: ${key}\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n`;
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.sock.write(Buffer.concat([Buffer.from(head), b]));
    });
  }
  close() {
    this.sock.end();
  }
}

function publishOk(res) {
  if (NAME === 'nchan') return res.status >= 200 && res.status < 300;
  return res.status === 200 && res.body === '{"ok":true}';
}

async function waitFor(cond, ms) {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await sleep(20);
}

async function contract() {
  console.log(`smoke ${NAME} on 127.0.0.1:${PORT}`);
  const subs = await withTimeout(
    Promise.all([subscribe(['a']), subscribe(['a']), subscribe(['a', 'b'])]),
    10_000,
    'three subscribers ready',
  );
  check(true, '3 subscribers connected and subscribed');

  const pub = new Publisher();
  const sent = { a: [], b: [] };
  const plan = ['a', 'a', 'b', 'a', 'a', 'b', 'a'];
  let allOk = true;
  let statuses = [];
  for (const [seq, ch] of plan.entries()) {
    const body = JSON.stringify({ ph: 0, seq, ts: Date.now() * 1000, ch });
    const res = await withTimeout(pub.post(ch, body), 5000, 'publish response');
    statuses.push(res.status);
    if (!publishOk(res)) allOk = false;
    sent[ch].push(body);
  }
  check(allOk, `7 publishes on one keep-alive connection answered (${[...new Set(statuses)]}, Content-Length framing)`);

  const expect = [sent.a, sent.a, plan.map((ch, i) => sent[ch][plan.slice(0, i + 1).filter((c) => c === ch).length - 1])];
  await waitFor(() => subs.every((s, i) => s.messages.length >= expect[i].length), 5000);
  await sleep(300); // catch duplicates
  subs.forEach((s, i) => {
    const got = s.messages;
    const same = got.length === expect[i].length && got.every((m, j) => m === expect[i][j]);
    check(same, `client ${i + 1} (${i < 2 ? 'a' : 'a,b'}) got exactly its ${expect[i].length} messages in order`);
    if (!same) console.log(`       expected ${JSON.stringify(expect[i])}\n       got      ${JSON.stringify(got)}`);
  });

  // The largest subscription the contract allows: 64 channels on one connection.
  const wide = Array.from({ length: 64 }, (_, i) => `w${i}`);
  const wideSub = await withTimeout(subscribe(wide), 10_000, '64-channel subscriber ready');
  const wideSent = [];
  for (const [seq, ch] of [...wide].reverse().entries()) {
    const body = JSON.stringify({ ph: 2, seq, ch });
    const res = await withTimeout(pub.post(ch, body), 5000, 'publish response');
    if (publishOk(res)) wideSent.push(body);
  }
  await waitFor(() => wideSub.messages.length >= wideSent.length, 5000);
  await sleep(200);
  const wideOk =
    wideSent.length === 64 &&
    wideSub.messages.length === 64 &&
    wideSub.messages.every((m, j) => m === wideSent[j]);
  check(wideOk, `64-channel client got one message per channel, in order (${wideSub.messages.length}/64)`);
  wideSub.ws.close();

  const bad = await pub.post('a', '{"x":1}', `${API_KEY}-wrong`);
  check(bad.status === 401, `bad API key -> ${bad.status}`);
  pub.close();

  if (NAME === 'nchan') {
    console.log('  skip bad token (nchan accepts and ignores ?token=)');
  } else {
    const forged = token(`${JWT_SECRET}-wrong`);
    const expired = jwt.sign({ sub: 'smoke', exp: Math.floor(Date.now() / 1000) - 3600 }, JWT_SECRET);
    for (const [what, tok] of [['forged', forged], ['expired', expired], ['garbage', 'x.y.z']]) {
      const outcome = await withTimeout(
        subscribe(['a'], tok).then(
          (s) => {
            s.ws.terminate();
            return 'accepted';
          },
          (e) => e,
        ),
        5000,
        'bad token outcome',
      );
      const ok =
        NAME === 'socketio'
          ? outcome.connectError === '44{"message":"unauthorized"}'
          : outcome.status === 401;
      check(ok, `${what} token refused (${outcome.connectError || outcome.status || outcome})`);
    }
  }
  for (const s of subs) s.ws.close();
}

async function many(n) {
  console.log(`opening ${n} connections`);
  const t0 = Date.now();
  const subs = [];
  for (let i = 0; i < n; i += 200) {
    const batch = Array.from({ length: Math.min(200, n - i) }, () => subscribe(['m']));
    subs.push(...(await withTimeout(Promise.all(batch), 30_000, `connections ${i}..`)));
  }
  check(subs.length === n, `${n} connections subscribed in ${Date.now() - t0} ms`);
  const pub = new Publisher();
  const body = JSON.stringify({ ph: 1, seq: 0, ts: Date.now() * 1000 });
  const res = await pub.post('m', body);
  check(publishOk(res), `publish to ${n} subscribers answered ${res.status}`);
  await waitFor(() => subs.every((s) => s.messages.length >= 1), 10_000);
  const got = subs.filter((s) => s.messages.length === 1 && s.messages[0] === body).length;
  check(got === n, `${got}/${n} subscribers received the publication`);
  pub.close();
  for (const s of subs) s.ws.terminate();
}

try {
  await contract();
  if (MANY) await many(MANY);
} catch (err) {
  failures.push(String(err && err.message ? err.message : JSON.stringify(err)));
  console.log(`  FAIL ${failures.at(-1)}`);
}
console.log(`${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
