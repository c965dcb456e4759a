//! Arbitrary bytes into the IMAP framing and command parser: no panic, bounded buffers, and
//! chunking does not change the events or the machine's output. Lines up to 256 KiB are
//! parsed, so with `-max_len=200000` an input can nest 200,000 levels deep in one command
//! (issue 14: nesting must be refused, never overflow the stack); the same bytes also go
//! through the tokenizer a client uses on server responses.
#![no_main]

use imap_proto::{CommandBody, Config, Event, Machine};
use libfuzzer_sys::fuzz_target;

fn run(chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
    let mut machine = Machine::new(Config {
        max_line: 256 * 1024,
        max_literal: 8192,
        max_small_literal: 1024,
        max_errors: 50,
        stream_threshold: 2048,
    });
    let mut events = Vec::new();
    for chunk in chunks {
        machine.feed(chunk);
        while let Some(event) = machine.next() {
            if let Event::Command(c) = &event {
                match c.body {
                    CommandBody::Idle => machine.start_idle(),
                    CommandBody::Authenticate { .. } => machine.auth_continue(b""),
                    _ => {}
                }
            }
            // A streamed message arrives in pieces that depend on the chunking: compare the
            // pieces joined.
            if let (Event::AppendData(piece), Some(Event::AppendData(last))) =
                (&event, events.last_mut())
            {
                last.extend_from_slice(piece);
                continue;
            }
            events.push(event);
        }
    }
    (
        events.iter().map(|e| format!("{e:?}")).collect(),
        machine.take_output(),
    )
}

fuzz_target!(|data: &[u8]| {
    // Responses: deep lists are read past, never recursed into.
    if let Ok(tokens) = imap_proto::token::tokenize_response(data) {
        let _ = format!("{tokens:?}");
    }
    let whole = run(&[data]);
    if let Some((&first, rest)) = data.split_first() {
        let split = usize::from(first) * rest.len() / 256;
        let (a, b) = rest.split_at(split);
        let with_first = [&data[..1], a].concat();
        assert_eq!(run(&[&with_first, b]), whole);
    }
});
