//! A WebSocket client that writes hand-made frames, for tests of malformed
//! input (unmasked frames, bad opcodes, split frames) that a real client
//! library refuses to send.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::Server;

/// A WebSocket client that writes hand-made frames (for malformed-input tests).
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    pub fn open(server: &Server, path: &str) -> RawWs {
        Self::handshake(TcpStream::connect(server.addr).unwrap(), server, path)
    }

    /// Like `open`, with a small fixed receive buffer (no autotuning): a client that
    /// stops reading then really stops the server's writes.
    pub fn open_small_rcvbuf(server: &Server, path: &str, rcvbuf: usize) -> RawWs {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(rcvbuf).unwrap();
        s.connect(&server.addr.into()).unwrap();
        Self::handshake(s.into(), server, path)
    }

    fn handshake(mut stream: TcpStream, server: &Server, path: &str) -> RawWs {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr
        );
        stream.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).unwrap(), 1, "handshake cut short");
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawWs {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes one masked frame.
    pub fn frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) {
        self.stream
            .write_all(&masked_frame(opcode, fin, payload))
            .unwrap();
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one server frame: (opcode, payload). `None` on EOF.
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let len0 = (self.buf[1] & 0x7f) as usize;
                let (len, hdr) = match len0 {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if len != usize::MAX && self.buf.len() >= hdr + len {
                    let op = self.buf[0] & 0x0f;
                    let payload = self.buf[hdr..hdr + len].to_vec();
                    self.buf.drain(..hdr + len);
                    return Some((op, payload));
                }
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads frames until a close frame; returns its code (0 on EOF first).
    pub fn wait_close_code(&mut self) -> u16 {
        while let Some((op, payload)) = self.read_frame() {
            if op == 8 {
                return if payload.len() >= 2 {
                    u16::from_be_bytes([payload[0], payload[1]])
                } else {
                    1005
                };
            }
        }
        0
    }
}

pub fn masked_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut v = vec![opcode | if fin { 0x80 } else { 0 }];
    match payload.len() {
        n if n < 126 => v.push(0x80 | n as u8),
        n if n < 65536 => {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(0x80 | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    v
}
