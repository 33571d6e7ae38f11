//! The pin of one document in its license-region Redis, and the atomic scripts that keep it.
//!
//! Keys (one hash slot per document, so it works on a Redis Cluster too):
//! - `<prefix>{<document>}`: the pin, a string `"<region>\n<region url>"`, with a TTL;
//! - `<prefix>{<document>}:h`: the holders, a sorted set of `<node id>:<core>` scored by the
//!   Unix millisecond at which that holder's lease ends.
//!
//! [`OPEN`] checks and takes the pin in one step: pinned to another region → that region;
//! else (free, or ours) the caller becomes a holder until now + lease and the pin's TTL is
//! set to the lease — the first connection anywhere pins the document (`SET` of an absent
//! key inside the script: no two regions can both win). A core renews the documents it
//! serves by running the same script for each, pipelined ([`renew`]). [`RELEASE`] removes a
//! holder and prunes lapsed ones; when none is left the pin's TTL becomes the grace, so the
//! document stays in its region for `pin_grace_ms` and is then free. A node that dies simply
//! stops renewing: its hold lapses and the pin expires after at most one lease.
//! Time is Redis's own (`TIME`), so node clocks do not matter.

use std::sync::LazyLock;

use redis::Script;

use crate::engine::redis::RedisNode;
use crate::engine::EngineError;

/// Who holds a document: its region and that region's public URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub region: String,
    pub url: String,
}

impl Owner {
    fn encode(&self) -> String {
        format!("{}\n{}", self.region, self.url)
    }

    fn decode(v: &str) -> Owner {
        let (region, url) = v.split_once('\n').unwrap_or((v, ""));
        Owner {
            region: region.to_owned(),
            url: url.to_owned(),
        }
    }
}

/// The answer of [`open`] (and of each document of [`renew`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Pinned here; `acquired`: this call pinned it (it was free).
    Here { acquired: bool },
    /// Pinned to another region.
    Elsewhere(Owner),
}

/// Where a pin store lives and who is asking.
#[derive(Debug, Clone)]
pub struct PinCtx {
    pub prefix: String,
    pub me: Owner,
    /// This core's holder id, `<node id>:<core>`.
    pub holder: String,
    pub lease_ms: u64,
    pub grace_ms: u64,
}

impl PinCtx {
    fn keys(&self, document: &str) -> [String; 2] {
        let pin = format!("{}{{{document}}}", self.prefix);
        let holders = format!("{pin}:h");
        [pin, holders]
    }
}

const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// KEYS: pin, holders. ARGV: value, region, holder, lease ms.
/// Returns `{0, value}` pinned elsewhere, `{1, value}` ours (renewed), `{2, value}` pinned now.
static OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "local v = redis.call('GET', KEYS[1])
if v and string.match(v, '^[^\\n]*') ~= ARGV[2] then return {{0, v}} end
{NOW}local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[2], lease)
redis.call('SET', KEYS[1], ARGV[1], 'PX', lease)
if v then return {{1, v}} end
return {{2, ARGV[1]}}"
    ))
});

/// KEYS: pin, holders. ARGV: region, holder, grace ms.
/// Returns 1 when this was the last holder (the grace started), else 0.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "redis.call('ZREM', KEYS[2], ARGV[2])
{NOW}redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
local v = redis.call('GET', KEYS[1])
if not v or string.match(v, '^[^\\n]*') ~= ARGV[1] then return 0 end
local grace = tonumber(ARGV[3])
if grace > 0 then redis.call('PEXPIRE', KEYS[1], grace) else redis.call('DEL', KEYS[1]) end
return 1"
    ))
});

fn opened((code, value): (i64, String)) -> Opened {
    match code {
        0 => Opened::Elsewhere(Owner::decode(&value)),
        c => Opened::Here { acquired: c == 2 },
    }
}

/// Checks `document`'s pin and, unless another region holds it, holds it for this core.
pub async fn open(node: &RedisNode, ctx: &PinCtx, document: &str) -> Result<Opened, EngineError> {
    let keys = ctx.keys(document);
    let args = (
        ctx.me.encode(),
        ctx.me.region.clone(),
        ctx.holder.clone(),
        ctx.lease_ms,
    );
    node.run(move |mut conn| async move {
        OPEN.key(&keys[0])
            .key(&keys[1])
            .arg(args.0)
            .arg(args.1)
            .arg(args.2)
            .arg(args.3)
            .invoke_async::<(i64, String)>(&mut conn)
            .await
    })
    .await
    .map(opened)
}

/// Renews this core's hold on every document of `documents` in one pipeline (re-pinning any
/// whose pin lapsed); answers each document's state in order.
pub async fn renew(
    node: &RedisNode,
    ctx: &PinCtx,
    documents: Vec<String>,
) -> Result<Vec<Opened>, EngineError> {
    let ctx = ctx.clone();
    node.run(move |mut conn| async move {
        let script = &*OPEN;
        script.prepare_invoke().load_async(&mut conn).await?;
        let mut pipe = redis::pipe();
        for doc in &documents {
            let [pin, holders] = ctx.keys(doc);
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(2)
                .arg(pin)
                .arg(holders)
                .arg(ctx.me.encode())
                .arg(&ctx.me.region)
                .arg(&ctx.holder)
                .arg(ctx.lease_ms);
        }
        pipe.query_async::<Vec<(i64, String)>>(&mut conn).await
    })
    .await
    .map(|v| v.into_iter().map(opened).collect())
}

/// Drops this core's hold on `document`; true when it was the last (the grace started).
pub async fn release(node: &RedisNode, ctx: &PinCtx, document: &str) -> Result<bool, EngineError> {
    let keys = ctx.keys(document);
    let args = (ctx.me.region.clone(), ctx.holder.clone(), ctx.grace_ms);
    node.run(move |mut conn| async move {
        RELEASE
            .key(&keys[0])
            .key(&keys[1])
            .arg(args.0)
            .arg(args.1)
            .arg(args.2)
            .invoke_async::<i64>(&mut conn)
            .await
    })
    .await
    .map(|n| n == 1)
}

/// Who holds `document` now, if anyone (discovery).
pub async fn read(
    node: &RedisNode,
    prefix: &str,
    document: &str,
) -> Result<Option<Owner>, EngineError> {
    let key = format!("{prefix}{{{document}}}");
    node.run(move |mut conn| async move {
        redis::cmd("GET")
            .arg(key)
            .query_async::<Option<String>>(&mut conn)
            .await
    })
    .await
    .map(|v| v.as_deref().map(Owner::decode))
}
