//! Arbitrary bytes into the POP3 machine (logged in, with a small maildrop): no panic, bounded
//! output per command, and chunking does not change the answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pop3_proto::{Config, Entry, Event, Machine};

fn run(chunks: &[&[u8]]) -> Vec<u8> {
    let mut machine = Machine::new(Config {
        plaintext_login: true,
        mechanisms: vec!["PLAIN".into()],
        ..Config::default()
    });
    machine.greet();
    let mut out = machine.take_output();
    for chunk in chunks {
        machine.feed(chunk);
        while let Some(event) = machine.next() {
            match event {
                Event::Login { .. } | Event::Auth { .. } | Event::AuthResponse(_) => machine.login_ok(vec![
                    Entry { uid: 1, size: 10, uidl: "1.1".into() },
                    Entry { uid: 2, size: 20, uidl: "1.2".into() },
                ]),
                Event::Retrieve { top, .. } => machine.message(b"A: b\r\n\r\n.x\nbody", top),
                Event::Update { .. } => machine.update_done(true),
                Event::StartTls => unreachable!("STLS is not offered"),
                Event::Close => {
                    out.extend(machine.take_output());
                    return out;
                }
            }
        }
        out.extend(machine.take_output());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let whole = run(&[data]);
    if let Some((&first, rest)) = data.split_first() {
        let split = usize::from(first) * rest.len() / 256;
        let (a, b) = rest.split_at(split);
        let with_first = [&data[..1], a].concat();
        assert_eq!(run(&[&with_first, b]), whole);
    }
});
