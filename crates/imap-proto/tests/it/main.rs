//! The IMAP framing fed whole, split in two at every byte offset and byte by byte: the events
//! and the machine's own output (continuations, BAD) must not depend on how bytes arrive.
//! The stream below is RFC 9051's examples with literals, LITERAL+, IDLE and AUTHENTICATE.

mod nesting;
mod oracle;

use imap_proto::{Config, Event, Machine};

const STREAM: &[u8] = b"a001 CAPABILITY\r\n\
a002 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n\
A003 APPEND saved-messages (\\Seen) {21+}\r\nSubject: x\r\n\r\nhello\r\n\r\n\
A142 SELECT INBOX\r\n\
A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n\
A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n\
A003 STORE 2:4 +FLAGS (\\Deleted)\r\n\
bad command\r\n\
A004 UID FETCH 4827313:4828442 FLAGS\r\n\
a047 NOOP\r\n\
A001 IDLE\r\n";

const AFTER_IDLE: &[u8] = b"DONE\r\nA002 AUTHENTICATE PLAIN\r\n";
const AFTER_AUTH: &[u8] = b"AGZyZWQAZm9vYmFy\r\nA005 LOGOUT\r\n";

/// Feeds `chunks` of the whole conversation, answering IDLE and AUTHENTICATE like a session.
fn run(chunks: &[&[u8]]) -> (Vec<String>, String) {
    let mut machine = Machine::new(Config::default());
    let mut events = Vec::new();
    for chunk in chunks {
        machine.feed(chunk);
        while let Some(event) = machine.next() {
            match &event {
                Event::Command(c) if matches!(c.body, imap_proto::CommandBody::Idle) => {
                    machine.out().extend_from_slice(b"+ idling\r\n");
                    machine.start_idle();
                }
                Event::Command(c)
                    if matches!(c.body, imap_proto::CommandBody::Authenticate { .. }) =>
                {
                    machine.auth_continue(b"");
                }
                _ => {}
            }
            events.push(format!("{event:?}"));
        }
    }
    (events, String::from_utf8(machine.take_output()).unwrap())
}

#[test]
fn framing_does_not_depend_on_chunking() {
    let all = [STREAM, AFTER_IDLE, AFTER_AUTH].concat();
    let (events, out) = run(&[&all]);
    assert_eq!(events.len(), 14, "{events:#?}");
    assert!(
        events[1].contains("Login { user: \"FRED FOOBAR\", password: \"fat man\" }"),
        "{}",
        events[1]
    );
    assert!(
        events[2].contains("message: [83, 117, 98"),
        "APPEND literal bytes: {}",
        events[2]
    );
    assert!(
        events[12].contains("AuthResponse([0, 102, 114, 101, 100"),
        "{}",
        events[12]
    );
    assert_eq!(
        out,
        "+ Ready for literal data\r\n+ Ready for literal data\r\nbad BAD unknown command command\r\n+ idling\r\n+ \r\n",
        "two synchronizing literals, one BAD, IDLE and AUTHENTICATE continuations; no + for LITERAL+"
    );
    for split in 1..all.len() {
        let (a, b) = all.split_at(split);
        assert_eq!(
            run(&[a, b]),
            (events.clone(), out.clone()),
            "split at {split}"
        );
    }
    let bytes: Vec<&[u8]> = all.chunks(1).collect();
    assert_eq!(run(&bytes), (events, out), "byte by byte");
}

#[test]
fn rfc9051_examples_parse() {
    let examples: &[&[u8]] = &[
        b"A142 SELECT INBOX\r\n",
        b"A932 EXAMINE blurdybloop\r\n",
        b"A003 CREATE owatagusiam/\r\n",
        b"A683 RENAME blurdybloop sarasota\r\n",
        b"A002 SUBSCRIBE #news.comp.mail.mime\r\n",
        b"A101 LIST \"\" \"\"\r\n",
        b"A102 LIST #news.comp.mail.misc \"\"\r\n",
        b"A202 LIST ~/Mail/ %\r\n",
        b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
        b"A341 CLOSE\r\n",
        b"A202 EXPUNGE\r\n",
        b"A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
        b"A285 SEARCH CHARSET UTF-8 TEXT {12+}\r\n\xd0\xbd\xd0\xb5\xd1\x81\xd1\x82\xd0\xbe\xd1\x8f\r\n",
        b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
        b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n",
        b"A003 COPY 2:4 MEETING\r\n",
        b"a UID MOVE 42:69 foo\r\n",
        b"A999 UID FETCH 4827313:4828442 FLAGS\r\n",
        b"a ENABLE IMAP4rev2 CONDSTORE\r\n",
        b"a NAMESPACE\r\n",
        b"a UNSELECT\r\n",
        b"a ID (\"name\" \"sodr\")\r\n",
        b"a UID EXPUNGE 3000:3002\r\n",
        b"a LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))\r\n",
        b"a CREATE MySpecialArchive (USE (\\Archive))\r\n",
        b"a FETCH 1 (BINARY.PEEK[1]<0.100> BINARY.SIZE[2] BODY.PEEK[1.MIME] RFC822.HEADER MODSEQ) (CHANGEDSINCE 12345)\r\n",
        b"a STORE 1 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n",
    ];
    for example in examples {
        // The independent parser (imap-codec, DEPS.md §4) accepts the same commands...
        use imap_codec::decode::Decoder;
        let oracle = imap_codec::CommandCodec::default().decode(example);
        // What imap-codec does not know: ESEARCH return options and rev2 extensions.
        let rev2_only = [
            &b"a ENABLE IMAP4rev2"[..],
            b"a CREATE MySpecialArchive (USE",
            b"a LIST (SUBSCRIBED)",
            b"a FETCH 1 (BINARY",
            b"A282 SEARCH RETURN",
        ];
        if !rev2_only.iter().any(|p| example.starts_with(p)) {
            assert!(
                oracle.is_ok(),
                "imap-codec rejects {}: {oracle:?}",
                String::from_utf8_lossy(example)
            );
        }
        // ...and so does ours.
        let mut machine = Machine::new(Config::default());
        machine.feed(example);
        let event = machine.next();
        assert!(
            matches!(event, Some(Event::Command(_))),
            "{}: {event:?} {:?}",
            String::from_utf8_lossy(example),
            String::from_utf8_lossy(&machine.take_output())
        );
    }
}
