// socketio-server.js — benchmark peer "socketio": a stock Socket.IO v4 deployment.
// node:cluster with CORES workers, each an `http` server with a Socket.IO Server
// (transports: ['websocket'], default ping settings) and @socket.io/redis-adapter for
// fan-out between workers.
//
// Wire contract (see ../README.md):
//   GET  /health                                   -> 200
//   POST /publish/<channel>  (X-API-Key)           -> 200 {"ok":true}  | 401
//   /socket.io/?EIO=4&transport=websocket
//     client: 40{"token":"<JWT>","channels":["c1","c2"]}
//     bad token -> 44{"message":"unauthorized"}
//     ok -> 40{"sid":...} then 42["ready"], then 42["pub",<body as JSON>] per publication.
//
// Environment: PORT, CORES, JWT_SECRET, API_KEY, REDIS_URL (redis://... or unix:///path).
'use strict';

const cluster = require('node:cluster');
const http = require('node:http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const jwt = require('jsonwebtoken');
const { createClient } = require('redis');

const PORT = Number(process.env.PORT || 8080);
const HOST = '127.0.0.1';
const CORES = Math.max(1, Number(process.env.CORES || 1));
const JWT_SECRET = process.env.JWT_SECRET;
const API_KEY = process.env.API_KEY;
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const MAX_CHANNELS = 64;
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
  console.log(`socketio primary ${process.pid}: forking ${CORES} workers on ${HOST}:${PORT}`);
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

function reply(res, status, body) {
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

async function runWorker() {
  const pubClient = createClient(redisOptions());
  const subClient = pubClient.duplicate();
  for (const c of [pubClient, subClient]) {
    c.on('error', (err) => console.error(`redis error: ${err.message}`));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);

  // Socket.IO wraps this handler: it answers /socket.io/ itself and passes the rest on.
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/health') return reply(res, 200, '{"ok":true}');
    if (req.method === 'POST' && req.url.startsWith('/publish/')) return publish(req, res);
    reply(res, 404, '{"error":"not found"}');
  });
  server.keepAliveTimeout = 60_000;

  const io = new Server(server, {
    transports: ['websocket'],
    adapter: createAdapter(pubClient, subClient),
  });

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
      let payload;
      try {
        payload = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return reply(res, 400, '{"error":"body is not JSON"}');
      }
      io.to(channel).emit('pub', payload);
      reply(res, 200, '{"ok":true}');
    });
  }

  io.use((socket, next) => {
    const { token, channels } = socket.handshake.auth || {};
    try {
      const claims = jwt.verify(token, JWT_SECRET, { algorithms: ['HS256'] });
      if (typeof claims !== 'object' || typeof claims.exp !== 'number' || !claims.sub) {
        throw new Error('claims');
      }
    } catch {
      return next(new Error('unauthorized'));
    }
    if (
      !Array.isArray(channels) ||
      channels.length < 1 ||
      channels.length > MAX_CHANNELS ||
      !channels.every((c) => typeof c === 'string' && c.length > 0)
    ) {
      return next(new Error('bad channels'));
    }
    socket.data.channels = channels;
    next();
  });

  io.on('connection', async (socket) => {
    await socket.join(socket.data.channels);
    socket.emit('ready');
  });

  process.on('SIGTERM', () => process.exit(0));

  server.listen(PORT, HOST);
}
