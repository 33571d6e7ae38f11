//! Reassembles client frames into messages (RFC 6455 §5.4): continuation
//! frames are collected up to the message-size limit (then close 1009), text
//! messages must be valid UTF-8 (else close 1007), and control frames may
//! arrive between fragments.
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
    /// Opcode and collected payload of a message whose final frame has not arrived
    /// (boxed: this struct lives in every idle connection's task).
    partial: Option<Box<(Data, Vec<u8>)>>,
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
                let Some((_, collected)) = self.partial.as_deref_mut() else {
                    return Err(Disconnect::PROTOCOL_ERROR);
                };
                if collected.len() + payload.len() > max_message {
                    return Err(Disconnect::MESSAGE_TOO_BIG);
                }
                collected.extend_from_slice(payload);
                if !frame.is_final {
                    return Ok(None);
                }
                let (op, collected) = self.partial.as_deref_mut().expect("checked above");
                let op = *op;
                finish(op, collected.as_mut_slice())
            }
            OpCode::Data(op) => {
                if self.partial.is_some() {
                    return Err(Disconnect::PROTOCOL_ERROR);
                }
                if frame.is_final {
                    return finish(op, payload);
                }
                self.partial = Some(Box::new((op, payload.to_vec())));
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
}
