//! Arbitrary bytes as a message through every MIME view pigeon computes (issue 14): the
//! delivery summary (ENVELOPE, BODY, BODYSTRUCTURE), index texts, sections, SEARCH, the
//! readable text and a DSN returning it. No panic, no stack overflow, structures balanced and
//! no deeper than `message::mime::MAX_DEPTH` allows (one parenthesis per MIME level, plus an
//! ENVELOPE's address list or a disposition at the bottom), section ranges inside the message.
//!
//! Run with inputs big enough to nest far past the limit: a level of
//! `Content-Type:message/rfc822` takes 30 bytes, so `-max_len=1000000` reaches 30,000 levels:
//! `cargo fuzz run -s none mime_summary -- -max_len=1000000`
#![no_main]

use libfuzzer_sys::fuzz_target;
use message::mime::MAX_DEPTH;

#[path = "mime_common.rs"]
mod common;
use common::{check_sections, paren_depth};

fuzz_target!(|data: &[u8]| {
    let summary = message::summary::summarize(data);
    for structure in [&summary.body, &summary.body_structure] {
        assert!(paren_depth(structure) <= MAX_DEPTH + 4);
    }
    paren_depth(&summary.envelope);
    let _ = message::summary::texts(data);

    check_sections(data);

    let searchable = message::search::Searchable::new(data);
    let _ = searchable.body("needle");
    let _ = searchable.text("needle");
    let _ = searchable.header("subject", "needle");
    let _ = message::text::readable_text(data);

    let report = message::dsn::build(&message::dsn::Report {
        reporting_mta: "mx.example",
        envid: None,
        arrival_date: 0,
        sender: "sender@example.org",
        recipients: vec![message::dsn::RecipientReport {
            address: "rcpt@example.com".into(),
            original: None,
            action: message::dsn::Action::Failed,
            status: "5.1.1".into(),
            remote_mta: None,
            diagnostic: None,
            last_attempt: None,
            will_retry_until: None,
        }],
        original: data,
        headers_only: false,
        date: 0,
        message_id: "report@mx.example".into(),
    });
    assert!(paren_depth(&message::summary::summarize(&report).body_structure) <= MAX_DEPTH + 4);
});
