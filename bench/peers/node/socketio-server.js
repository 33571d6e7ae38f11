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
// Environment: PORT, CORES, JWT_SECRET, API_KEY, REDIS_URL (see common.js).
'use strict';

const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');
const { env, startCluster, redisPair, verifyToken, checkChannels, httpServer } = require('./common');

async function runWorker() {
  const [pubClient, subClient] = await redisPair(createClient);

  // POST /publish/<channel>: the body is emitted as an object (42["pub",{...}]); the Redis
  // adapter carries it to the other workers.
  const server = httpServer((channel, body) => {
    let payload;
    try {
      payload = JSON.parse(body.toString('utf8'));
    } catch {
      throw Object.assign(new Error('body is not JSON'), { status: 400 });
    }
    io.to(channel).emit('pub', payload);
  });

  // Socket.IO attaches to the server: it answers /socket.io/ itself and passes the rest on.
  const io = new Server(server, {
    transports: ['websocket'],
    adapter: createAdapter(pubClient, subClient),
  });

  io.use((socket, next) => {
    const { token, channels } = socket.handshake.auth || {};
    if (!verifyToken(token)) return next(new Error('unauthorized'));
    const list = checkChannels(channels);
    if (!list) return next(new Error('bad channels'));
    socket.data.channels = list;
    next();
  });

  io.on('connection', async (socket) => {
    await socket.join(socket.data.channels);
    socket.emit('ready');
  });

  process.on('SIGTERM', () => process.exit(0));

  server.listen(env.PORT, env.HOST);
}

startCluster('socketio', runWorker);
