//! Reassembles client frames into messages (RFC 6455 §5.4): continuation
//! frames are collected up to the message-size limit (then close 1009), text
//! messages must be valid UTF-8 (else close 1007), and control frames may
//! arrive between fragments.
//!
//! UTF-8 fails fast (RFC 6455 §8.1, Autobahn 6.4.x): each text fragment is
//! validated as it arrives, so an invalid sequence closes 1007 before the rest
//! of the message is sent. Only the bytes after the last complete code point
//! (at most 3, a code point cut by the fragment boundary) are checked again
//! with the next fragment; the final fragment must leave nothing incomplete.
//!
//! Owned by one session; holds a buffer only while a fragmented message is in
//! progress, so an idle connection keeps nothing here.

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::close::Disconnect;
use super::frame::{close_code_of, RawFrame};

/// A complete message or control frame, borrowing the bytes it came in.
#[derive(Debug)]
pub enum Msg<'a> {
    Text(&'a mut [u8]),
    Binary(&'a mut [u8]),
    Ping(&'a [u8]),
    Pong,
    /// The client closed with this (validated) code.
    Close(u16),
}

/// Fragment state of one connection.
#[derive(Debug, Default)]
pub struct Assembler {
    /// The message whose final frame has not arrived
    /// (boxed: this struct lives in every idle connection's task).
    partial: Option<Box<Partial>>,
}

/// A fragmented message in progress.
#[derive(Debug)]
struct Partial {
    op: Data,
    collected: Vec<u8>,
    /// Length of the prefix of `collected` known to be complete, valid UTF-8 (text only).
    checked: usize,
}

/// Validates `bytes[from..]` as UTF-8 that may end in the middle of a code point; returns
/// the new checked length (all but an incomplete tail) or 1007 for an invalid sequence.
fn check_prefix(bytes: &[u8], from: usize) -> Result<usize, Disconnect> {
    match simdutf8::compat::from_utf8(&bytes[from..]) {
        Ok(_) => Ok(bytes.len()),
        Err(e) if e.error_len().is_none() => Ok(from + e.valid_up_to()),
        Err(_) => Err(Disconnect::INVALID_UTF8),
    }
}

impl Assembler {
    /// Feeds one parsed frame whose payload lies at `frame.payload` in `buf`.
    pub fn push<'a>(
        &'a mut self,
        frame: &RawFrame,
        buf: &'a mut [u8],
        max_message: usize,
    ) -> Result<Option<Msg<'a>>, Disconnect> {
        let payload = &mut buf[frame.payload.clone()];
        match frame.opcode {
            OpCode::Control(Control::Ping) => Ok(Some(Msg::Ping(payload))),
            OpCode::Control(Control::Pong) => Ok(Some(Msg::Pong)),
            OpCode::Control(Control::Close) => Ok(Some(Msg::Close(close_code_of(payload)?))),
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                Err(Disconnect::PROTOCOL_ERROR)
            }
            OpCode::Data(Data::Continue) => {
                let Some(p) = self.partial.as_deref_mut() else {
                    return Err(Disconnect::PROTOCOL_ERROR);
                };
                if p.collected.len() + payload.len() > max_message {
                    return Err(Disconnect::MESSAGE_TOO_BIG);
                }
                p.collected.extend_from_slice(payload);
                if p.op == Data::Text {
                    p.checked = check_prefix(&p.collected, p.checked)?;
                }
                if !frame.is_final {
                    return Ok(None);
                }
                if p.checked != p.collected.len() && p.op == Data::Text {
                    return Err(Disconnect::INVALID_UTF8); // ends inside a code point
                }
                Ok(Some(match p.op {
                    Data::Text => Msg::Text(p.collected.as_mut_slice()),
                    _ => Msg::Binary(p.collected.as_mut_slice()),
                }))
            }
            OpCode::Data(op) => {
                if self.partial.is_some() {
                    return Err(Disconnect::PROTOCOL_ERROR);
                }
                if frame.is_final {
                    return finish(op, payload);
                }
                let checked = match op {
                    Data::Text => check_prefix(payload, 0)?,
                    _ => 0,
                };
                self.partial = Some(Box::new(Partial {
                    op,
                    collected: payload.to_vec(),
                    checked,
                }));
                Ok(None)
            }
        }
    }

    /// Drops the collected fragments once their message has been handled.
    pub fn reset_if_complete(&mut self, frame: &RawFrame) {
        if frame.is_final && matches!(frame.opcode, OpCode::Data(_)) {
            self.partial = None;
        }
    }
}

fn finish(op: Data, bytes: &mut [u8]) -> Result<Option<Msg<'_>>, Disconnect> {
    match op {
        Data::Text => {
            simdutf8::basic::from_utf8(bytes).map_err(|_| Disconnect::INVALID_UTF8)?;
            Ok(Some(Msg::Text(bytes)))
        }
        _ => Ok(Some(Msg::Binary(bytes))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(op: OpCode, fin: bool, len: usize) -> RawFrame {
        RawFrame {
            is_final: fin,
            opcode: op,
            payload: 0..len,
        }
    }

    #[test]
    fn reassembles_fragments_with_limit() {
        let mut a = Assembler::default();
        let mut b1 = b"hel".to_vec();
        let f1 = raw(OpCode::Data(Data::Text), false, 3);
        assert!(a.push(&f1, &mut b1, 10).unwrap().is_none());
        let mut ping = b"p".to_vec();
        assert!(matches!(
            a.push(&raw(OpCode::Control(Control::Ping), true, 1), &mut ping, 10)
                .unwrap(),
            Some(Msg::Ping(b"p"))
        ));
        let mut b2 = b"lo".to_vec();
        let f2 = raw(OpCode::Data(Data::Continue), true, 2);
        match a.push(&f2, &mut b2, 10).unwrap() {
            Some(Msg::Text(t)) => assert_eq!(t, b"hello"),
            other => panic!("{other:?}"),
        }
        a.reset_if_complete(&f2);
        let mut big = vec![b'a'; 8];
        assert!(a
            .push(&raw(OpCode::Data(Data::Text), false, 8), &mut big, 10)
            .unwrap()
            .is_none());
        let mut more = vec![b'a'; 8];
        let err = a
            .push(&raw(OpCode::Data(Data::Continue), true, 8), &mut more, 10)
            .unwrap_err();
        assert_eq!(err, Disconnect::MESSAGE_TOO_BIG);
    }

    #[test]
    fn rejects_bad_utf8_and_stray_continuation() {
        let mut a = Assembler::default();
        let mut bad = vec![0xff, 0xfe];
        let err = a
            .push(&raw(OpCode::Data(Data::Text), true, 2), &mut bad, 10)
            .unwrap_err();
        assert_eq!(err, Disconnect::INVALID_UTF8);
        let mut x = vec![b'x'];
        let err = a
            .push(&raw(OpCode::Data(Data::Continue), true, 1), &mut x, 10)
            .unwrap_err();
        assert_eq!(err, Disconnect::PROTOCOL_ERROR);
    }

    /// Feeds `frags` as one text message; the index of the fragment that failed, if any.
    fn feed_text(frags: &[&[u8]]) -> Result<Vec<u8>, (usize, Disconnect)> {
        let mut a = Assembler::default();
        for (i, f) in frags.iter().enumerate() {
            let op = if i == 0 { Data::Text } else { Data::Continue };
            let last = i + 1 == frags.len();
            let mut b = f.to_vec();
            match a.push(&raw(OpCode::Data(op), last, b.len()), &mut b, 1 << 20) {
                Err(d) => return Err((i, d)),
                Ok(Some(Msg::Text(t))) => return Ok(t.to_vec()),
                Ok(_) => {}
            }
        }
        panic!("no message")
    }

    #[test]
    fn utf8_is_checked_per_fragment() {
        // "κόσμε" with the boundary inside the two-byte sequences and a four-byte one split 1+3
        let text = "κόσμε𝄞".as_bytes();
        let (a, rest) = text.split_at(3);
        let (b, c) = rest.split_at(rest.len() - 3);
        assert_eq!(feed_text(&[a, b, c]).unwrap(), text);
        // one byte per fragment
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(feed_text(&bytes).unwrap(), text);
        // an invalid first fragment fails at once, before any continuation
        assert_eq!(
            feed_text(&[b"ok\xff", b"more", b"end"]).unwrap_err(),
            (0, Disconnect::INVALID_UTF8)
        );
        // invalid in the middle fragment: fails there
        assert_eq!(
            feed_text(&[b"ok", b"\xed\xa0\x80", b"end"]).unwrap_err(),
            (1, Disconnect::INVALID_UTF8)
        );
        // a truncated sequence carried over, then a bad continuation byte
        assert_eq!(
            feed_text(&[b"a\xf0\x9d", b"x", b"end"]).unwrap_err(),
            (1, Disconnect::INVALID_UTF8)
        );
        // the message may not end inside a code point
        assert_eq!(
            feed_text(&[b"a", b"\xce"]).unwrap_err(),
            (1, Disconnect::INVALID_UTF8)
        );
    }
}
