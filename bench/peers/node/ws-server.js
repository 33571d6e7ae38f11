// ws-server.js — benchmark peer "node-ws": the classic Node.js realtime stack that
// wiresocket replaces. node:cluster with CORES workers; each worker is a plain `http`
// server plus a `ws` WebSocketServer({ noServer: true }); fan-out between workers goes
// through Redis pub/sub (one publisher and one subscriber connection per worker).
//
// Wire contract (see ../README.md):
//   GET  /health                                   -> 200
//   POST /publish/<channel>  (X-API-Key)           -> 200 {"ok":true}  | 401
//   GET  /ws?token=<JWT>&channels=c1,c2,...        -> WebSocket        | 401 / 400
//     first frame {"ready":true} once every channel is SUBSCRIBEd (Redis acked),
//     then one text frame per publication, body verbatim.
//
// Environment: PORT, CORES, JWT_SECRET, API_KEY, REDIS_URL (redis://... or unix:///path).
'use strict';

const cluster = require('node:cluster');
const http = require('node:http');
const { WebSocketServer } = require('ws');
const jwt = require('jsonwebtoken');
const { createClient } = require('redis');

const PORT = Number(process.env.PORT || 8080);
const HOST = '127.0.0.1';
const CORES = Math.max(1, Number(process.env.CORES || 1));
const JWT_SECRET = process.env.JWT_SECRET;
const API_KEY = process.env.API_KEY;
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const MAX_CHANNELS = 64;
const PING_INTERVAL_MS = 25_000;
const MAX_PUBLISH_BYTES = 1 << 20;

if (!JWT_SECRET || !API_KEY) {
  console.error('JWT_SECRET and API_KEY must be set');
  process.exit(2);
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker().catch((err) => {
    console.error(`worker ${process.pid}: fatal:`, err);
    process.exit(1);
  });
}

function runPrimary() {
  console.log(`node-ws primary ${process.pid}: forking ${CORES} workers on ${HOST}:${PORT}`);
  let shuttingDown = false;
  for (let i = 0; i < CORES; i++) cluster.fork();
  cluster.on('listening', (w) => console.log(`worker ${w.process.pid} listening`));
  // A dead worker would silently skew the benchmark (and change the PID set), so the
  // whole system under test goes down instead of respawning.
  cluster.on('exit', (w, code, signal) => {
    if (shuttingDown) return;
    console.error(`worker ${w.process.pid} exited (code ${code}, signal ${signal}); stopping`);
    shutdown(1);
  });
  const shutdown = (code) => {
    if (shuttingDown) return;
    shuttingDown = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(code), 200).unref();
  };
  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));
}

function redisOptions() {
  if (REDIS_URL.startsWith('unix://')) {
    return { socket: { path: REDIS_URL.slice('unix://'.length) } };
  }
  return { url: REDIS_URL };
}

/** Returns the JWT claims, or null when the token is missing, forged or expired. */
function verifyToken(token) {
  if (!token) return null;
  try {
    const claims = jwt.verify(token, JWT_SECRET, { algorithms: ['HS256'] });
    if (typeof claims !== 'object' || typeof claims.exp !== 'number' || !claims.sub) return null;
    return claims;
  } catch {
    return null;
  }
}

function parseChannels(raw) {
  if (!raw) return null;
  const list = [...new Set(raw.split(','))];
  if (list.length < 1 || list.length > MAX_CHANNELS || list.some((c) => c.length === 0)) return null;
  return list;
}

function reply(res, status, body) {
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

function rejectUpgrade(socket, status, reason) {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
}

async function runWorker() {
  const pub = createClient(redisOptions());
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on('error', (err) => console.error(`redis error: ${err.message}`));
  await Promise.all([pub.connect(), sub.connect()]);

  /** channel -> { clients: Set<WebSocket>, subscribed: Promise<void> } */
  const channels = new Map();

  // Buffer mode: the payload arrives as a Buffer and goes out as a text frame untouched.
  const onMessage = (message, channel) => {
    const entry = channels.get(channel.toString());
    if (!entry) return;
    for (const ws of entry.clients) {
      if (ws.readyState === ws.OPEN) ws.send(message, { binary: false });
    }
  };

  function join(ws, channel) {
    let entry = channels.get(channel);
    if (!entry) {
      entry = { clients: new Set(), subscribed: sub.subscribe(channel, onMessage, true) };
      channels.set(channel, entry);
    }
    entry.clients.add(ws);
    return entry.subscribed;
  }

  function leave(ws, channel) {
    const entry = channels.get(channel);
    if (!entry || !entry.clients.delete(ws) || entry.clients.size > 0) return;
    channels.delete(channel);
    sub.unsubscribe(channel).catch((err) => console.error(`unsubscribe ${channel}: ${err.message}`));
  }

  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/health') return reply(res, 200, '{"ok":true}');
    if (req.method === 'POST' && req.url.startsWith('/publish/')) return publish(req, res);
    reply(res, 404, '{"error":"not found"}');
  });
  server.keepAliveTimeout = 60_000;

  function publish(req, res) {
    if (req.headers['x-api-key'] !== API_KEY) {
      req.resume();
      return reply(res, 401, '{"error":"unauthorized"}');
    }
    const channel = decodeURIComponent(req.url.slice('/publish/'.length));
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size <= MAX_PUBLISH_BYTES) chunks.push(c);
    });
    req.on('end', () => {
      if (!channel || size > MAX_PUBLISH_BYTES) return reply(res, 400, '{"error":"bad request"}');
      pub.publish(channel, Buffer.concat(chunks)).then(
        () => reply(res, 200, '{"ok":true}'),
        (err) => reply(res, 500, JSON.stringify({ error: err.message })),
      );
    });
  }

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname !== '/ws') return rejectUpgrade(socket, 404, 'Not Found');
    if (!verifyToken(url.searchParams.get('token'))) {
      return rejectUpgrade(socket, 401, 'Unauthorized');
    }
    const list = parseChannels(url.searchParams.get('channels'));
    if (!list) return rejectUpgrade(socket, 400, 'Bad Request');
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, list));
  });

  function onConnection(ws, list) {
    ws.isAlive = true;
    ws.on('pong', () => {
      ws.isAlive = true;
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      for (const c of list) leave(ws, c);
    });
    Promise.all(list.map((c) => join(ws, c))).then(
      () => {
        if (ws.readyState === ws.OPEN) ws.send('{"ready":true}');
      },
      (err) => {
        console.error(`subscribe failed: ${err.message}`);
        ws.close(1011, 'subscribe failed');
      },
    );
  }

  // The standard `ws` heartbeat: ping everyone, drop whoever did not pong since last time.
  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
      if (!ws.isAlive) {
        ws.terminate();
        continue;
      }
      ws.isAlive = false;
      ws.ping();
    }
  }, PING_INTERVAL_MS);

  process.on('SIGTERM', () => {
    clearInterval(heartbeat);
    process.exit(0);
  });

  server.listen(PORT, HOST);
}
