//! Documents (channels of a `pinned` namespace, with `[regions]`) in the subscribe paths:
//! [`open_document`] checks and holds the document's pin before the subscription is made
//! (`region::core::CorePins::open`; a refusal is the caller's 4009, temporary error or 103),
//! and [`establish_pinned`] makes the subscription and marks it as holding the pin, so
//! `Env::release_subscription` releases the hold when it ends. Used by `subscribe`, the
//! server-side subscriptions of `connect` (token `channels` and the connection URL's
//! document), and the server API's `subscribe`.

use std::rc::Rc;

use super::subscribe::{establish, Ask, Established};
use crate::channel::ChannelOptions;
use crate::engine::EngineError;
use crate::region::core::Refusal;
use crate::session::{Env, Session};

/// Before a subscription to a document (a channel of a `pinned` namespace, with `[regions]`):
/// checks its pin and holds it (`region`). `Ok(true)`: held, the subscription must be made
/// with [`establish_pinned`]; `Ok(false)`: not a document.
pub(super) async fn open_document(
    env: &Env,
    s: &Session,
    channel: &str,
    opts: &ChannelOptions,
) -> Result<bool, Refusal> {
    match &env.pins {
        Some(pins) if opts.pinned => pins.open(s.id, channel).await.map(|()| true),
        _ => Ok(false),
    }
}

/// [`establish`], then marks the subscription as holding its document's pin (released when
/// the subscription ends); a failure releases the hold at once.
pub(super) async fn establish_pinned(
    env: &Rc<Env>,
    s: &Rc<Session>,
    channel: &str,
    opts: &ChannelOptions,
    ask: Ask,
    pinned: bool,
) -> Result<Established, EngineError> {
    let r = establish(env, s, channel, opts, ask).await;
    if let (true, Some(pins)) = (pinned, &env.pins) {
        match &r {
            Ok(_) => {
                s.subscriptions().update(channel, |x| x.pinned = true);
            }
            Err(_) => pins.leave(s.id, channel),
        }
    }
    r
}
