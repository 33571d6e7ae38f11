//! The Lua scripts of the Redis engine and the key names they work on.
//!
//! Used only by [`super::RedisEngine`]. Invariant: every operation that reads and
//! writes more than one key (publish, position, a history read with recovery,
//! presence) is one script, so Redis runs it atomically: a publish assigns its
//! offset, stores it, caches its idempotency result and PUBLISHes it in one step,
//! and a history read sees epoch, top offset, oldest retained entry and the
//! publications of one instant.
//!
//! Keys of channel `ch` under prefix `p` (the `{ch}` hash tag keeps a channel's keys,
//! and its sharded PUB/SUB channel, in one slot of a Redis Cluster: every script names
//! keys of one channel only):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `p:meta:{ch}` | hash | `e` epoch, `s` top offset; TTL `engine.redis.meta_ttl_s` |
//! | `p:stream:{ch}` | stream | entry id `<offset>-0`, field `b` = payload body; TTL history TTL |
//! | `p:idem:{ch}:key` | string | `<offset>:<epoch>` of the first publish with that key |
//! | `p:presence:{ch}` | hash | client id -> presence entry ([`super::payload::client_info`]) |
//! | `p:presence.exp:{ch}` | sorted set | client id scored by its expiry (unix s) |
//! | `p:presence.users:{ch}` | hash | user -> number of its clients present |
//!
//! PUB/SUB channel: `p:ch:{ch}`. Stream ids are the offsets themselves, so a
//! recovery read is one `XRANGE` from `(since` and an evicted meta (new epoch)
//! deletes the stream before the first new entry.

use std::sync::LazyLock;

use redis::Script;

/// The key names of one channel.
pub struct Keys {
    pub stream: String,
    pub meta: String,
    pub presence: String,
    pub presence_exp: String,
    pub presence_users: String,
    pub pubsub: String,
    idem_prefix: String,
}

impl Keys {
    pub fn new(prefix: &str, channel: &str) -> Keys {
        let key = |kind: &str| format!("{prefix}:{kind}:{{{channel}}}");
        Keys {
            stream: key("stream"),
            meta: key("meta"),
            presence: key("presence"),
            presence_exp: key("presence.exp"),
            presence_users: key("presence.users"),
            pubsub: key("ch"),
            idem_prefix: key("idem"),
        }
    }

    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:{key}", self.idem_prefix)
    }
}

/// KEYS: stream, meta, idempotency key. ARGV: body, history size (0: not stored),
/// stream TTL s, meta TTL s, idempotency TTL s (0: no key), new epoch, PUB/SUB channel,
/// publish command (`PUBLISH`, or `SPUBLISH` on a Redis Cluster: the channel shares the
/// keys' slot).
/// Returns `{offset, epoch, repeated}` (`repeated` 1: the key's first result, nothing done).
pub static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local idem_ttl = tonumber(ARGV[5])
if idem_ttl > 0 then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    local sep = string.find(prev, ':', 1, true)
    return {string.sub(prev, 1, sep - 1), string.sub(prev, sep + 1), 1}
  end
end
local offset, epoch = 0, ''
local size = tonumber(ARGV[2])
if size > 0 then
  if redis.call('HSETNX', KEYS[2], 'e', ARGV[6]) == 1 then
    redis.call('DEL', KEYS[1])
  end
  epoch = redis.call('HGET', KEYS[2], 'e')
  offset = redis.call('HINCRBY', KEYS[2], 's', 1)
  redis.call('XADD', KEYS[1], 'MAXLEN', size, offset .. '-0', 'b', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
if idem_ttl > 0 then
  redis.call('SET', KEYS[3], offset .. ':' .. epoch, 'NX', 'EX', idem_ttl)
end
redis.call(ARGV[8], ARGV[7], 'P' .. offset .. ':' .. epoch .. ':' .. ARGV[1])
return {tostring(offset), epoch, 0}
"#,
    )
});

/// KEYS: stream, meta. ARGV: new epoch, meta TTL s. Creates the meta (a new epoch, and
/// drops a stream left from an older one) when missing. Returns `{top offset, epoch}`.
pub static POSITION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HSETNX', KEYS[2], 'e', ARGV[1]) == 1 then
  redis.call('DEL', KEYS[1])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
local m = redis.call('HMGET', KEYS[2], 's', 'e')
return {m[1] or '0', m[2]}
"#,
    )
});

/// KEYS: stream, meta. ARGV: after (an offset, or `-1` for the start), limit (`-1`: all),
/// reverse (`1`). Never creates anything. Returns `{top, epoch ('' when no stream), oldest
/// retained offset (0: none), {offset, body, offset, body, ...}}` with the publications
/// after `after` (the newest `limit` of them when reversed, newest first).
pub static HISTORY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local m = redis.call('HMGET', KEYS[2], 's', 'e')
if not m[2] then
  return {'0', '', '0', {}}
end
local top = m[1] or '0'
local oldest = '0'
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first > 0 then
  oldest = string.match(first[1][1], '^(%d+)')
end
local limit = tonumber(ARGV[2])
local out = {}
local after = tonumber(ARGV[1])
if limit ~= 0 and after < tonumber(top) then
  local from = '-'
  if after >= 0 then
    from = '(' .. ARGV[1] .. '-0'
  end
  local r
  if ARGV[3] == '1' then
    if limit > 0 then
      r = redis.call('XREVRANGE', KEYS[1], '+', from, 'COUNT', limit)
    else
      r = redis.call('XREVRANGE', KEYS[1], '+', from)
    end
  elseif limit > 0 then
    r = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', limit)
  else
    r = redis.call('XRANGE', KEYS[1], from, '+')
  end
  for _, e in ipairs(r) do
    table.insert(out, string.match(e[1], '^(%d+)'))
    table.insert(out, e[2][2])
  end
end
return {top, m[2], oldest, out}
"#,
    )
});

/// Shared head of the presence scripts. KEYS: entries hash, expiry sorted set, users hash;
/// ARGV[1]: now (unix s). Drops expired entries (and their users' counts) first.
const PRESENCE_HEAD: &str = r#"
local function user_of(v)
  local lu, _, _, _, at = string.match(v, '^(%d+):(%d+):(%d+):(%d+):()')
  return string.sub(v, at, at + tonumber(lu) - 1)
end
local function drop(c)
  local v = redis.call('HGET', KEYS[1], c)
  redis.call('ZREM', KEYS[2], c)
  if v then
    redis.call('HDEL', KEYS[1], c)
    local u = user_of(v)
    if redis.call('HINCRBY', KEYS[3], u, -1) <= 0 then
      redis.call('HDEL', KEYS[3], u)
    end
  end
end
for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
  drop(c)
end
"#;

fn presence_script(body: &str) -> Script {
    Script::new(&format!("{PRESENCE_HEAD}{body}"))
}

/// ARGV: now, client, entry, expires at (unix s), keys TTL s.
pub static PRESENCE_ADD: LazyLock<Script> = LazyLock::new(|| {
    presence_script(
        r#"
local old = redis.call('HGET', KEYS[1], ARGV[2])
if old and user_of(old) ~= user_of(ARGV[3]) then
  drop(ARGV[2])
  old = false
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if not old then
  redis.call('HINCRBY', KEYS[3], user_of(ARGV[3]), 1)
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
for i = 1, 3 do
  redis.call('EXPIRE', KEYS[i], ARGV[5])
end
return 1
"#,
    )
});

/// ARGV: now, client.
pub static PRESENCE_REMOVE: LazyLock<Script> =
    LazyLock::new(|| presence_script("drop(ARGV[2])\nreturn 1\n"));

/// ARGV: now. Returns every entry.
pub static PRESENCE_GET: LazyLock<Script> =
    LazyLock::new(|| presence_script("return redis.call('HVALS', KEYS[1])\n"));

/// ARGV: now. Returns `{clients, users}`.
pub static PRESENCE_STATS: LazyLock<Script> = LazyLock::new(|| {
    presence_script("return {redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[3])}\n")
});
