//! A client's way from TCP connect to "subscribed", per dialect: WebSocket upgrade with the
//! token and channels in the path where the dialect wants them, then the application handshake
//! (Centrifugo `connect` + one `subscribe` per channel; Socket.IO open → `40{auth}` →
//! `42["ready"]`; plain `{"ready":true}`; Nchan is subscribed at `101`).
//!
//! Publications and heartbeats that arrive mid-handshake are handled like in a session, so
//! nothing is lost or left unanswered.

use crate::client::ClientCfg;
use crate::dialect::{Dialect, Incoming};
use crate::proto::subscribe_cmd;
use crate::stats::Stats;
use crate::ws::{encode_text, Outcome, WsConn};
use anyhow::{bail, Result};
use std::net::Ipv4Addr;

/// Receive buffer of a slow consumer's socket, bytes.
const SLOW_RCVBUF: u32 = 4096;

/// Handshake progress of one client.
struct Progress<'a> {
    dialect: Dialect,
    token: &'a str,
    channels: &'a [String],
    /// Centrifugo subscribe replies still expected (None until `connect` succeeded).
    subs_pending: Option<usize>,
    ready: bool,
    error: Option<String>,
}

impl Progress<'_> {
    fn step(&mut self, inc: Incoming, out: &mut Vec<u8>, stats: &Stats) {
        match inc {
            Incoming::Pub { phase, ts } => stats.delivered(phase, ts),
            Incoming::Heartbeat { reply } => {
                encode_text(out, reply);
                stats.ping();
            }
            Incoming::Ready => self.ready = true,
            Incoming::SioOpen if self.dialect == Dialect::Socketio => {
                encode_text(
                    out,
                    Dialect::sio_connect(self.token, self.channels).as_bytes(),
                );
            }
            Incoming::Reply { error: Some(e), id } => {
                self.error = Some(format!("reply {id} error {e}"))
            }
            Incoming::Reply { id: 1, error: None } if self.subs_pending.is_none() => {
                for (i, ch) in self.channels.iter().enumerate() {
                    encode_text(out, subscribe_cmd(2 + i as u32, ch).as_bytes());
                }
                self.subs_pending = Some(self.channels.len());
            }
            Incoming::Reply { id, error: None } if id >= 2 => {
                if let Some(n) = self.subs_pending.as_mut() {
                    *n = n.saturating_sub(1);
                    self.ready = *n == 0;
                }
            }
            Incoming::Refused(why) => self.error = Some(format!("refused: {why}")),
            _ => {}
        }
    }

    fn stage(&self) -> &'static str {
        match (self.dialect, self.subs_pending) {
            (Dialect::Centrifugo, None) => "connect",
            (Dialect::Centrifugo, Some(_)) => "subscribe",
            _ => "ready",
        }
    }
}

/// Opens client `g`'s connection and completes the dialect handshake.
pub async fn handshake(
    cfg: &ClientCfg,
    g: u64,
    src: Option<Ipv4Addr>,
    stats: &Stats,
) -> Result<WsConn> {
    let channels = cfg.channels.for_client(g);
    let sub = format!("{}{g}", cfg.user_prefix);
    let token = crate::jwt::connection_token(&cfg.secret, &sub, cfg.token_ttl_s);
    let path = cfg
        .dialect
        .upgrade_path(&cfg.target_for(g).path, &token, &channels);
    // Slow consumers get a small, fixed receive window (a client on a poor link): what the
    // server cannot send then waits in the server, which is what the slow scenario measures.
    let rcvbuf = cfg.is_slow(g).then_some(SLOW_RCVBUF);
    let mut ws = WsConn::connect(cfg.target_for(g), &path, src, rcvbuf).await?;
    if cfg.dialect.ready_on_upgrade() {
        return Ok(ws);
    }
    if let Some(first) = cfg.dialect.opening(&token) {
        ws.send_text(first.as_bytes()).await?;
    }
    let mut p = Progress {
        dialect: cfg.dialect,
        token: &token,
        channels: &channels,
        subs_pending: None,
        ready: false,
        error: None,
    };
    loop {
        let dialect = cfg.dialect;
        let res = ws
            .read_batch(&mut |msg, out| dialect.for_each(msg, |inc| p.step(inc, out, stats)))
            .await?;
        if let Some(e) = p.error.take() {
            bail!("{e}");
        }
        if p.ready {
            return Ok(ws);
        }
        match res {
            Outcome::Open => {}
            Outcome::Closed(code) => bail!("close:{code:?} during {}", p.stage()),
            Outcome::Eof => bail!("eof during {}", p.stage()),
        }
    }
}
