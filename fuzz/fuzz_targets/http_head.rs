//! The HTTP request head parser (`net::request::parse`): any bytes, with the conformance
//! echo route on and off. It must answer (upgrade, plain request, refusal or failure)
//! without panicking, whatever the head holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wiresocket::net::request::parse(data, false);
    let _ = wiresocket::net::request::parse(data, true);
});
