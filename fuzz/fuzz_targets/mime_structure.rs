//! The bounded MIME parser alone (`message::mime::parse`, issue 14), so it gets many more
//! executions than `mime_summary`, which also computes every view: BODYSTRUCTURE balanced and
//! no deeper than `MAX_DEPTH` allows, every section range inside the message, no panic, no
//! stack overflow. Run with `-max_len=1000000` (30,000 levels of `message/rfc822`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use message::mime::MAX_DEPTH;

#[path = "mime_common.rs"]
mod common;
use common::{check_sections, paren_depth};

fuzz_target!(|data: &[u8]| {
    let _ = message::mime::parse(data);
    assert!(paren_depth(&message::imap::body_structure(data, true, false)) <= MAX_DEPTH + 4);
    check_sections(data);
});
