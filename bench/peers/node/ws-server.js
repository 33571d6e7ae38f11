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
// Environment: PORT, CORES, JWT_SECRET, API_KEY, REDIS_URL (see common.js).
'use strict';

const { WebSocketServer } = require('ws');
const { createClient } = require('redis');
const { env, startCluster, redisPair, verifyToken, checkChannels, httpServer } = require('./common');

const PING_INTERVAL_MS = 25_000;

function rejectUpgrade(socket, status, reason) {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
}

async function runWorker() {
  const [pub, sub] = await redisPair(createClient);

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

  // POST /publish/<channel>: one PUBLISH; every worker's subscriber fans it out.
  const server = httpServer((channel, body) => pub.publish(channel, body));

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname !== '/ws') return rejectUpgrade(socket, 404, 'Not Found');
    if (!verifyToken(url.searchParams.get('token'))) {
      return rejectUpgrade(socket, 401, 'Unauthorized');
    }
    const list = checkChannels((url.searchParams.get('channels') || '').split(','));
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

  server.listen(env.PORT, env.HOST);
}

startCluster('node-ws', runWorker);
