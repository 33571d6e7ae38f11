// common.js — what the two Node peers (ws-server.js, socketio-server.js) share: the
// environment, the node:cluster primary, the Redis connection options, JWT checks and the
// HTTP side of the wire contract (/health, POST /publish/<channel> with X-API-Key).
'use strict';

const cluster = require('node:cluster');
const http = require('node:http');
const jwt = require('jsonwebtoken');

const env = {
  PORT: Number(process.env.PORT || 8080),
  HOST: '127.0.0.1',
  CORES: Math.max(1, Number(process.env.CORES || 1)),
  JWT_SECRET: process.env.JWT_SECRET,
  API_KEY: process.env.API_KEY,
  REDIS_URL: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
  MAX_CHANNELS: 64,
  MAX_PUBLISH_BYTES: 1 << 20,
};

/** Runs the primary (forks CORES workers) or, in a worker, `runWorker()`. */
function startCluster(name, runWorker) {
  if (!env.JWT_SECRET || !env.API_KEY) {
    console.error('JWT_SECRET and API_KEY must be set');
    process.exit(2);
  }
  if (!cluster.isPrimary) {
    runWorker().catch((err) => {
      console.error(`worker ${process.pid}: fatal:`, err);
      process.exit(1);
    });
    return;
  }
  console.log(`${name} primary ${process.pid}: forking ${env.CORES} workers on ${env.HOST}:${env.PORT}`);
  let shuttingDown = false;
  const shutdown = (code) => {
    if (shuttingDown) return;
    shuttingDown = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(code), 200).unref();
  };
  for (let i = 0; i < env.CORES; i++) cluster.fork();
  cluster.on('listening', (w) => console.log(`worker ${w.process.pid} listening`));
  // A dead worker would silently skew the benchmark (and change the PID set), so the
  // whole system under test goes down instead of respawning.
  cluster.on('exit', (w, code, signal) => {
    if (shuttingDown) return;
    console.error(`worker ${w.process.pid} exited (code ${code}, signal ${signal}); stopping`);
    shutdown(1);
  });
  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));
}

/** node-redis options for REDIS_URL (redis://... or unix:///path). */
function redisOptions() {
  if (env.REDIS_URL.startsWith('unix://')) {
    return { socket: { path: env.REDIS_URL.slice('unix://'.length) } };
  }
  return { url: env.REDIS_URL };
}

/** Connects a publisher and a subscriber client to Redis. */
async function redisPair(createClient) {
  const pub = createClient(redisOptions());
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on('error', (err) => console.error(`redis error: ${err.message}`));
  await Promise.all([pub.connect(), sub.connect()]);
  return [pub, sub];
}

/** True when the token is a valid HS256 JWT with `sub` and `exp`, not expired. */
function verifyToken(token) {
  if (!token) return false;
  try {
    const claims = jwt.verify(token, env.JWT_SECRET, { algorithms: ['HS256'] });
    return typeof claims === 'object' && typeof claims.exp === 'number' && Boolean(claims.sub);
  } catch {
    return false;
  }
}

/** A valid channel list (array of 1..MAX_CHANNELS non-empty strings), or null. */
function checkChannels(list) {
  if (!Array.isArray(list)) return null;
  const uniq = [...new Set(list)];
  const ok =
    uniq.length >= 1 &&
    uniq.length <= env.MAX_CHANNELS &&
    uniq.every((c) => typeof c === 'string' && c.length > 0);
  return ok ? uniq : null;
}

function reply(res, status, body) {
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

/**
 * The HTTP server of a worker: /health, and POST /publish/<channel> (X-API-Key) whose body
 * goes to `onPublish(channel, body Buffer)` (a promise, or a value); 200 {"ok":true} when it
 * resolves. Keep-alive for the benchmark's publisher.
 */
function httpServer(onPublish) {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/health') return reply(res, 200, '{"ok":true}');
    if (req.method !== 'POST' || !req.url.startsWith('/publish/')) {
      return reply(res, 404, '{"error":"not found"}');
    }
    if (req.headers['x-api-key'] !== env.API_KEY) {
      req.resume();
      return reply(res, 401, '{"error":"unauthorized"}');
    }
    const channel = decodeURIComponent(req.url.slice('/publish/'.length));
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size <= env.MAX_PUBLISH_BYTES) chunks.push(c);
    });
    req.on('end', () => {
      if (!channel || size > env.MAX_PUBLISH_BYTES) return reply(res, 400, '{"error":"bad request"}');
      Promise.resolve()
        .then(() => onPublish(channel, Buffer.concat(chunks)))
        .then(
          () => reply(res, 200, '{"ok":true}'),
          (err) => reply(res, err.status || 500, JSON.stringify({ error: err.message })),
        );
    });
  });
  server.keepAliveTimeout = 60_000;
  return server;
}

module.exports = { env, startCluster, redisPair, verifyToken, checkChannels, reply, httpServer };
