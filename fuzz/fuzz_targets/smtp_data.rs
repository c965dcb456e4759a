//! The DATA receiver: arbitrary content, dot-stuffed by our encoder, must come back exactly in
//! its canonical form (bare CR and LF as CRLF), whatever the chunking; the wire never has a
//! bare CR or LF; arbitrary wire bytes must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_proto::canonical::{canonicalize, is_canonical};
use smtp_proto::data::{DataProgress, DataReceiver, dot_stuff};

fuzz_target!(|data: &[u8]| {
    // Raw wire bytes: no panic, and Done never claims more than it was given.
    let mut rx = DataReceiver::new(1 << 20);
    let mut out = Vec::new();
    if let DataProgress::Done { consumed } = rx.ingest(data, &mut out) {
        assert!(consumed <= data.len());
    }

    // Round trip through dot-stuffing, fed in chunks of a size chosen by the input.
    let mut wire = Vec::new();
    dot_stuff(data, &mut wire);
    assert!(is_canonical(&wire));
    let chunk = 1 + data.first().copied().unwrap_or(0) as usize;
    // No header limits here: this checks the round trip, not the refusal.
    let mut rx = DataReceiver::with_canonicalizer(
        usize::MAX,
        smtp_proto::canonical::Canonicalizer::new(usize::MAX, usize::MAX),
    );
    let mut out = Vec::new();
    let mut fed = 0;
    let mut done = false;
    for piece in wire.chunks(chunk) {
        match rx.ingest(piece, &mut out) {
            DataProgress::NeedMore => fed += piece.len(),
            DataProgress::Done { consumed } => {
                assert_eq!(fed + consumed, wire.len(), "the terminator is the last thing sent");
                done = true;
                break;
            }
        }
    }
    assert!(done);
    let canonical = canonicalize(data);
    let expected = if canonical.is_empty() || canonical.ends_with(b"\r\n") {
        canonical.into_owned()
    } else {
        [&canonical[..], b"\r\n"].concat()
    };
    assert_eq!(out, expected);
});
