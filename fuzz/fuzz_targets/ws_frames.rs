//! The WebSocket frame decoder and message assembler as a session drives them: frames are
//! parsed in place from the input, one after another, and fed to one `Assembler` (control
//! frames, fragments, UTF-8 checked per fragment) until the input ends or a frame is
//! refused with a close code. The first byte picks the message size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wiresocket::ws::{frame, message::Assembler};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let max = [16usize, 125, 4096, 65_536][(sel & 3) as usize];
    let mut buf = rest.to_vec();
    let mut asm = Assembler::default();
    let mut pos = 0;
    while pos < buf.len() {
        let parsed = match frame::parse(&mut buf[pos..], max) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => return,
        };
        let end = pos + parsed.payload.end;
        assert!(end <= buf.len(), "a frame ends past the input");
        if asm.push(&parsed, &mut buf[pos..end], max).is_err() {
            return;
        }
        asm.reset_if_complete(&parsed);
        pos = end;
    }
});
