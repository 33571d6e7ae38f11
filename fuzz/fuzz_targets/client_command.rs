//! The client command parser (`protocol::command::parse`, the simd-json path): the input is
//! split into newline-separated commands as a WebSocket text message is, and each line is
//! parsed in place. Any bytes must give a command or `MalformedCommand`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let mut line = line.to_vec();
        let _ = wiresocket::protocol::command::parse(&mut line);
    }
});
