//! The byte formats the Redis engine stores and sends through PUB/SUB: a
//! publication body (kept in the history stream) and the PUB/SUB messages
//! (publication with offset and epoch, join, leave).
//!
//! Written by [`super::RedisEngine`] (bodies, join/leave, and the live message of a
//! publication without history, sent by a plain `PUBLISH`) and by the publish Lua
//! script (which prefixes a body with `P<offset>:<epoch>:`), read by the PUB/SUB
//! reader on the I/O thread and by history reads. Invariant: every variable part
//! is length-prefixed, so payload bytes (JSON that may hold `:`) are never
//! parsed as separators; an absent optional part is length 0 (JSON is never
//! empty).
//!
//! ```text
//! body     = <len info>:<len tags>:<info><tags><data>
//! message  = P<offset>:<epoch>:<body>
//!          | J<client info> | L<client info>
//! client   = <len user>:<len client>:<len conn_info>:<len chan_info>:<bytes...>
//! ```

use bytes::Bytes;

use super::super::{ChannelEvent, ClientInfo, Publication};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed engine payload: {0}")]
pub struct PayloadError(&'static str);

/// Encodes the stored part of a publication.
pub fn body(data: &[u8], info: Option<&[u8]>, tags: Option<&[u8]>) -> Vec<u8> {
    let (info, tags) = (info.unwrap_or_default(), tags.unwrap_or_default());
    let mut out = Vec::with_capacity(data.len() + info.len() + tags.len() + 16);
    push_len(&mut out, info.len());
    push_len(&mut out, tags.len());
    out.extend_from_slice(info);
    out.extend_from_slice(tags);
    out.extend_from_slice(data);
    out
}

/// Decodes a stored body into a publication at `offset`.
pub fn decode_body(offset: u64, b: &Bytes) -> Result<Publication, PayloadError> {
    let mut r = Reader { b, at: 0 };
    let (li, lt) = (r.len()?, r.len()?);
    let info = r.opt(li)?;
    let tags = r.opt(lt)?;
    Ok(Publication {
        offset,
        data: b.slice(r.at..),
        info,
        tags,
    })
}

/// Encodes the live message of a publication (`P<offset>:<epoch>:<body>`), as the publish
/// script does.
pub fn live(offset: u64, epoch: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + epoch.len() + 24);
    out.push(b'P');
    out.extend_from_slice(offset.to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(epoch.as_bytes());
    out.push(b':');
    out.extend_from_slice(body);
    out
}

/// Encodes a join (`J`) or leave (`L`) message.
pub fn join_leave(join: bool, i: &ClientInfo) -> Vec<u8> {
    let conn = i.conn_info.as_deref().unwrap_or_default();
    let chan = i.chan_info.as_deref().unwrap_or_default();
    let mut out = vec![if join { b'J' } else { b'L' }];
    out.extend_from_slice(&client_info(
        i.user.as_bytes(),
        i.client.as_bytes(),
        conn,
        chan,
    ));
    out
}

/// Encodes a presence entry (the value kept per client in the presence hash).
pub fn client_info(user: &[u8], client: &[u8], conn: &[u8], chan: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(user.len() + client.len() + conn.len() + chan.len() + 16);
    for part in [user, client, conn, chan] {
        push_len(&mut out, part.len());
    }
    for part in [user, client, conn, chan] {
        out.extend_from_slice(part);
    }
    out
}

/// Decodes a presence entry.
pub fn decode_client_info(b: &Bytes) -> Result<ClientInfo, PayloadError> {
    let mut r = Reader { b, at: 0 };
    let lens = [r.len()?, r.len()?, r.len()?, r.len()?];
    let user = r.take(lens[0])?;
    let client = r.take(lens[1])?;
    let conn_info = r.opt(lens[2])?;
    let chan_info = r.opt(lens[3])?;
    let text = |b: Bytes| String::from_utf8(b.to_vec()).map_err(|_| PayloadError("utf-8"));
    Ok(ClientInfo {
        user: text(user)?,
        client: text(client)?,
        conn_info,
        chan_info,
    })
}

/// A PUB/SUB message, decoded. `epoch` is empty for publications outside the stream.
#[derive(Debug)]
pub struct Message {
    pub event: ChannelEvent,
    pub epoch: String,
}

/// Decodes a PUB/SUB message.
pub fn decode_message(b: &Bytes) -> Result<Message, PayloadError> {
    let rest = b.slice(1.min(b.len())..);
    match b.first() {
        Some(b'P') => {
            let mut r = Reader { b: &rest, at: 0 };
            let offset = r.number()?;
            let epoch = r.until_colon()?;
            let epoch = String::from_utf8(epoch.to_vec()).map_err(|_| PayloadError("epoch"))?;
            let publication = decode_body(offset, &rest.slice(r.at..))?;
            Ok(Message {
                event: ChannelEvent::Publication(publication),
                epoch,
            })
        }
        Some(b'J') => Ok(Message {
            event: ChannelEvent::Join(decode_client_info(&rest)?),
            epoch: String::new(),
        }),
        Some(b'L') => Ok(Message {
            event: ChannelEvent::Leave(decode_client_info(&rest)?),
            epoch: String::new(),
        }),
        _ => Err(PayloadError("unknown kind")),
    }
}

fn push_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.push(b':');
}

struct Reader<'a> {
    b: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn until_colon(&mut self) -> Result<Bytes, PayloadError> {
        let rest = &self.b[self.at..];
        let end = rest
            .iter()
            .position(|&c| c == b':')
            .ok_or(PayloadError("missing ':'"))?;
        let part = self.b.slice(self.at..self.at + end);
        self.at += end + 1;
        Ok(part)
    }

    fn number(&mut self) -> Result<u64, PayloadError> {
        let digits = self.until_colon()?;
        std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(PayloadError("number"))
    }

    fn len(&mut self) -> Result<usize, PayloadError> {
        usize::try_from(self.number()?).map_err(|_| PayloadError("length"))
    }

    fn take(&mut self, n: usize) -> Result<Bytes, PayloadError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(PayloadError("truncated"))?;
        let part = self.b.slice(self.at..end);
        self.at = end;
        Ok(part)
    }

    fn opt(&mut self, n: usize) -> Result<Option<Bytes>, PayloadError> {
        Ok(Some(self.take(n)?).filter(|b| !b.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_round_trip_with_colons_in_payloads() {
        let b = body(br#"{"a":"x:y"}"#, Some(br#"{"user":"u:1"}"#), None);
        let mut msg = b"P42:ep:och:".to_vec();
        // an epoch never holds ':'; the reader stops at the first one
        msg.truncate(4);
        msg.extend_from_slice(b"e1:");
        msg.extend_from_slice(&b);
        let m = decode_message(&Bytes::from(msg)).unwrap();
        assert_eq!(m.epoch, "e1");
        match m.event {
            ChannelEvent::Publication(p) => {
                assert_eq!(p.offset, 42);
                assert_eq!(&p.data[..], br#"{"a":"x:y"}"#);
                assert_eq!(p.info.as_deref(), Some(&br#"{"user":"u:1"}"#[..]));
                assert_eq!(p.tags, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn live_message_without_history_round_trips() {
        let b = body(br#"{"n":1}"#, None, Some(br#"{"t":"v"}"#));
        let m = decode_message(&Bytes::from(live(0, "", &b))).unwrap();
        assert_eq!(m.epoch, "");
        match m.event {
            ChannelEvent::Publication(p) => {
                assert_eq!(p.offset, 0);
                assert_eq!(&p.data[..], br#"{"n":1}"#);
                assert_eq!(p.tags.as_deref(), Some(&br#"{"t":"v"}"#[..]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn join_leave_round_trip() {
        let i = ClientInfo {
            user: "u".into(),
            client: "c-1".into(),
            conn_info: Some(Bytes::from_static(b"{\"k\":1}")),
            chan_info: None,
        };
        let m = decode_message(&Bytes::from(join_leave(false, &i))).unwrap();
        assert!(matches!(m.event, ChannelEvent::Leave(ref got) if *got == i));
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"X",
            b"P",
            b"P1:e:",
            b"P1:e:9:0:ab",
            b"J1:1:0:0:a",
            b"Pz:e:0:0:",
        ] {
            assert!(
                decode_message(&Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}
