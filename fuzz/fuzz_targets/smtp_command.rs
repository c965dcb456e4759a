//! Feeds arbitrary bytes to the SMTP server machine, whole and split at a point chosen by the
//! input: it must never panic, and chunking must not change what it answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_proto::{Event, ServerConfig, ServerMachine, replies};

fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut machine = ServerMachine::new(ServerConfig {
        max_message_size: 4096,
        max_recipients: 4,
        max_line_length: 600,
        // STARTTLS drops pipelined input on purpose, which makes output depend on chunking.
        starttls: false,
        auth_mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        auth_requires_tls: false,
        // Small header limits, so short inputs reach the refusal paths too.
        max_header_line: 100,
        max_header_size: 600,
        ..ServerConfig::default()
    });
    machine.greet();
    let mut out = machine.take_output();
    let mut messages = Vec::new();
    let mut decisions = 0usize;
    for chunk in chunks {
        machine.feed(chunk);
        while let Some(event) = machine.next() {
            decisions += 1;
            match event {
                Event::Mail { .. } => machine.reply(replies::sender_ok()),
                // Alternate accepted and refused recipients.
                Event::Rcpt { .. } if decisions % 2 == 0 => machine.reply(replies::unknown_user()),
                Event::Rcpt { .. } => machine.reply(replies::recipient_ok()),
                Event::Message { data, findings } => {
                    assert!(data.len() <= 4096);
                    // What reaches the session has canonical line ends and a header in bounds.
                    assert!(smtp_proto::canonical::is_canonical(&data));
                    assert!(!findings.over_limit());
                    messages.push(data);
                    machine.reply(replies::ok());
                }
                Event::Close => {
                    out.extend(machine.take_output());
                    return (out, messages);
                }
                Event::StartTls => unreachable!("STARTTLS is not offered"),
                Event::Auth { .. } | Event::AuthResponse(_) => {
                    machine.auth_done(None, replies::syntax("no"))
                }
            }
        }
        out.extend(machine.take_output());
    }
    (out, messages)
}

fuzz_target!(|data: &[u8]| {
    let whole = run(&[data]);
    if let Some((&first, rest)) = data.split_first() {
        let split = usize::from(first) * rest.len() / 256;
        let (a, b) = rest.split_at(split);
        let _ = run(&[a, b]);
        let with_first = [&data[..1], a].concat();
        assert_eq!(run(&[&with_first, b]), whole);
    }
});
