//! Frame codec on borrowed buffers: parses client frames with tungstenite's
//! [`FrameHeader`] and builds server frames as ready-to-send [`Bytes`].
//!
//! Why not `tungstenite::WebSocket`: it owns a read buffer per connection
//! (128 KiB by default, allocated when the socket is created) and a write
//! buffer, so an idle connection would cost far more than the 2 KiB budget.
//! Here the caller lends a pooled buffer only while bytes are in flight, and
//! outbound frames are immutable refcounted `Bytes` shared by every subscriber.
//!
//! Invariant: every frame accepted by [`parse`] is masked, has no RSV bits, a
//! known opcode, and (for control frames) is final with ≤125 bytes of payload.

use bytes::{BufMut, Bytes, BytesMut};
use std::io::Cursor;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::close::Disconnect;

/// One parsed frame: header fields and where its (already unmasked) payload lies in the buffer.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub is_final: bool,
    pub opcode: OpCode,
    pub payload: std::ops::Range<usize>,
}

/// Tries to parse one frame at the start of `buf`. `Ok(None)`: incomplete (need more bytes).
/// On success the payload is unmasked in place and the frame spans `..payload.end`.
pub fn parse(buf: &mut [u8], max_payload: usize) -> Result<Option<RawFrame>, Disconnect> {
    let mut cursor = Cursor::new(&buf[..]);
    let (header, len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(_) => return Err(Disconnect::PROTOCOL_ERROR),
    };
    let start = cursor.position() as usize;
    validate(&header, len, max_payload)?;
    let len = len as usize;
    if buf.len() - start < len {
        return Ok(None);
    }
    let payload = start..start + len;
    if let Some(mask) = header.mask {
        unmask(&mut buf[payload.clone()], mask);
    }
    Ok(Some(RawFrame {
        is_final: header.is_final,
        opcode: header.opcode,
        payload,
    }))
}

fn validate(h: &FrameHeader, len: u64, max_payload: usize) -> Result<(), Disconnect> {
    if h.rsv1 || h.rsv2 || h.rsv3 || h.mask.is_none() {
        return Err(Disconnect::PROTOCOL_ERROR);
    }
    match h.opcode {
        OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
            Err(Disconnect::PROTOCOL_ERROR)
        }
        OpCode::Control(_) if !h.is_final || len > 125 => Err(Disconnect::PROTOCOL_ERROR),
        _ if len > max_payload as u64 => Err(Disconnect::MESSAGE_TOO_BIG),
        _ => Ok(()),
    }
}

/// XOR-unmasks a client payload (RFC 6455 §5.3). tungstenite keeps its own helper private.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let header = FrameHeader {
        is_final: true,
        opcode,
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    let mut out = BytesMut::with_capacity(header.len(len) + payload.len());
    let mut w = (&mut out).writer();
    header
        .format(len, &mut w)
        .expect("formatting into memory cannot fail");
    out.put_slice(payload);
    out.freeze()
}

/// The payload of a frame built here (to merge queued frames into one); empty if `frame`
/// is not a whole frame.
pub fn payload(frame: &[u8]) -> &[u8] {
    let mut cursor = Cursor::new(frame);
    match FrameHeader::parse(&mut cursor) {
        Ok(Some((_, len))) => {
            let start = cursor.position() as usize;
            frame.get(start..start + len as usize).unwrap_or_default()
        }
        _ => &[],
    }
}

/// A final, unmasked text frame carrying `payload`.
pub fn text(payload: &[u8]) -> Bytes {
    frame(OpCode::Data(Data::Text), payload)
}

/// A final binary frame (used by the conformance echo endpoint).
pub fn binary(payload: &[u8]) -> Bytes {
    frame(OpCode::Data(Data::Binary), payload)
}

/// A pong answering a ping with `payload`.
pub fn pong(payload: &[u8]) -> Bytes {
    frame(OpCode::Control(Control::Pong), payload)
}

/// A close frame with `code` and `reason` (truncated to fit a control frame).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut p = Vec::with_capacity(2 + reason.len());
    p.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    p.extend_from_slice(&reason.as_bytes()[..end]);
    frame(OpCode::Control(Control::Close), &p)
}

/// Validates a client close payload (RFC 6455 §5.5.1, §7.4): returns the code to echo.
pub fn close_code_of(payload: &[u8]) -> Result<u16, Disconnect> {
    match payload.len() {
        0 => Ok(1000),
        1 => Err(Disconnect::PROTOCOL_ERROR),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !allowed {
                return Err(Disconnect::PROTOCOL_ERROR);
            }
            simdutf8::basic::from_utf8(&payload[2..]).map_err(|_| Disconnect::INVALID_UTF8)?;
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_reads_back_every_length_form() {
        for n in [0, 1, 125, 126, 65535, 65536] {
            let p = vec![b'x'; n];
            assert_eq!(payload(&text(&p)), &p[..], "{n} bytes");
        }
        assert_eq!(
            payload(&text(b"abc")[..3]),
            b"",
            "a cut frame has no payload"
        );
    }

    fn masked(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut v = vec![op | if fin { 0x80 } else { 0 }];
        assert!(payload.len() < 126);
        v.push(0x80 | payload.len() as u8);
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        v
    }

    #[test]
    fn parses_masked_text_and_unmasks() {
        let mut b = masked(0x1, true, b"hello");
        let f = parse(&mut b, 100).unwrap().unwrap();
        assert_eq!(&b[f.payload.clone()], b"hello");
        assert!(f.is_final);
    }

    #[test]
    fn incomplete_and_errors() {
        let full = masked(0x1, true, b"hello");
        let mut part = full[..full.len() - 1].to_vec();
        assert!(parse(&mut part, 100).unwrap().is_none());
        let mut unmasked = vec![0x81, 0x01, b'a'];
        assert_eq!(
            parse(&mut unmasked, 100).unwrap_err(),
            Disconnect::PROTOCOL_ERROR
        );
        let mut big = masked(0x1, true, &[b'a'; 50]);
        assert_eq!(
            parse(&mut big, 10).unwrap_err(),
            Disconnect::MESSAGE_TOO_BIG
        );
        let mut frag_ping = masked(0x9, false, b"x");
        assert_eq!(
            parse(&mut frag_ping, 100).unwrap_err(),
            Disconnect::PROTOCOL_ERROR
        );
        let mut rsv = masked(0x1, true, b"x");
        rsv[0] |= 0x40;
        assert_eq!(
            parse(&mut rsv, 100).unwrap_err(),
            Disconnect::PROTOCOL_ERROR
        );
    }

    #[test]
    fn builds_frames() {
        assert_eq!(&text(b"{}")[..], &[0x81, 2, b'{', b'}']);
        let c = close(3001, "shutdown");
        assert_eq!(&c[..4], &[0x88, 10, 0x0b, 0xb9]);
        assert_eq!(close_code_of(&[0x03, 0xe8]).unwrap(), 1000);
        assert!(close_code_of(&[0x03, 0xed]).is_err()); // 1005 must not be sent
    }
}
