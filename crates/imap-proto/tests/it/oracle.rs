//! Property test against an independent implementation: imap-codec builds random commands
//! (its `arbitrary` feature) and encodes them; our decoder must accept every one it claims to
//! support, under the same tag, as the same command.

use arbitrary::{Arbitrary, Unstructured};
use imap_codec::encode::Encoder;
use imap_codec::imap_types::command::{Command as Theirs, CommandBody as TheirBody};
use imap_proto::{CommandBody as Ours, Config, Event, Machine};

/// splitmix64: a fixed, seedable byte source so a failure reproduces from its case number.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The command we must have decoded `theirs` as; `None` for commands we do not offer
/// (their BAD is the right answer).
fn same_command(theirs: &TheirBody, ours: &Ours) -> Option<bool> {
    Some(match theirs {
        TheirBody::Capability => matches!(ours, Ours::Capability),
        TheirBody::Noop => matches!(ours, Ours::Noop),
        TheirBody::Logout => matches!(ours, Ours::Logout),
        TheirBody::Authenticate { .. } => matches!(ours, Ours::Authenticate { .. }),
        TheirBody::Login { .. } => matches!(ours, Ours::Login { .. }),
        TheirBody::Select { .. } => matches!(
            ours,
            Ours::Select {
                read_only: false,
                ..
            }
        ),
        TheirBody::Examine { .. } => matches!(
            ours,
            Ours::Select {
                read_only: true,
                ..
            }
        ),
        TheirBody::Unselect => matches!(ours, Ours::Unselect),
        TheirBody::Create { .. } => matches!(ours, Ours::Create { .. }),
        TheirBody::Delete { .. } => matches!(ours, Ours::Delete { .. }),
        TheirBody::Rename { .. } => matches!(ours, Ours::Rename { .. }),
        TheirBody::Subscribe { .. } => matches!(ours, Ours::Subscribe { .. }),
        TheirBody::Unsubscribe { .. } => matches!(ours, Ours::Unsubscribe { .. }),
        TheirBody::List { .. } => matches!(ours, Ours::List { options, .. } if !options.lsub),
        TheirBody::Lsub { .. } => matches!(ours, Ours::List { options, .. } if options.lsub),
        TheirBody::Status { .. } => matches!(ours, Ours::Status { .. }),
        TheirBody::Append { .. } => matches!(ours, Ours::Append { .. }),
        TheirBody::Check => matches!(ours, Ours::Check),
        TheirBody::Close => matches!(ours, Ours::Close),
        TheirBody::Expunge => matches!(ours, Ours::Expunge { uids: None }),
        TheirBody::ExpungeUid { .. } => matches!(ours, Ours::Expunge { uids: Some(_) }),
        TheirBody::Search { uid, .. } => matches!(ours, Ours::Search { uid: u, .. } if u == uid),
        TheirBody::Fetch { uid, .. } => matches!(ours, Ours::Fetch { uid: u, .. } if u == uid),
        TheirBody::Store { uid, .. } => matches!(ours, Ours::Store { uid: u, .. } if u == uid),
        TheirBody::Copy { uid, .. } => {
            matches!(ours, Ours::Copy { uid: u, move_them: false, .. } if u == uid)
        }
        TheirBody::Move { uid, .. } => {
            matches!(ours, Ours::Copy { uid: u, move_them: true, .. } if u == uid)
        }
        TheirBody::Idle => matches!(ours, Ours::Idle),
        TheirBody::Enable { .. } => matches!(ours, Ours::Enable(_)),
        TheirBody::Id { .. } => matches!(ours, Ours::Id),
        TheirBody::Namespace => matches!(ours, Ours::Namespace),
        _ => return None,
    })
}

/// Whether we offer the command at all (the decoded body it is compared with is irrelevant).
fn offered(theirs: &TheirBody) -> bool {
    same_command(theirs, &Ours::Noop).is_some()
}

/// Commands imap-codec generates that a server is right to answer with BAD.
fn rightly_refused(theirs: &TheirBody, wire: &[u8], answer: &str) -> bool {
    let text = String::from_utf8_lossy(wire);
    // RFC 7162 §3.2.6: VANISHED without UID FETCH and CHANGEDSINCE MUST get BAD.
    (matches!(theirs, TheirBody::Fetch { uid, .. } if !uid || !text.contains("CHANGEDSINCE"))
        && answer.contains("BAD VANISHED needs UID FETCH with CHANGEDSINCE"))
        // Names, patterns and passwords are UTF-8 here (RFC 9051 §5.1, RFC 6855); bytes
        // that are not UTF-8 cannot name anything.
        || (std::str::from_utf8(wire).is_err() && answer.contains(" BAD "))
        // DELETED-STORAGE belongs to QUOTA (RFC 9208), which we do not advertise.
        || answer.contains("BAD unknown status item DELETED-STORAGE")
        // A modifier given twice (RFC 4466 §2.1: each at most once).
        || (text.matches("UNCHANGEDSINCE").count() > 1 && answer.contains(" BAD "))
}

#[test]
fn random_commands_from_imap_codec_decode_the_same() {
    let (mut checked, mut unsupported) = (0, 0);
    let mut failures = Vec::new();
    for case in 0..20_000u64 {
        let data = bytes(case, 2048);
        let Ok(theirs) = Theirs::arbitrary(&mut Unstructured::new(&data)) else {
            continue;
        };
        let wire = imap_codec::CommandCodec::default().encode(&theirs).dump();
        let mut machine = Machine::new(Config::default());
        machine.feed(&wire);
        let event = machine.next();
        let shown = String::from_utf8_lossy(&wire);
        let Some(Event::Command(ours)) = event else {
            if !offered(&theirs.body) {
                unsupported += 1;
                continue;
            }
            let answer = String::from_utf8_lossy(&machine.take_output()).into_owned();
            if !rightly_refused(&theirs.body, &wire, &answer) {
                failures.push(format!("case {case}: we reject {shown:?}: {answer:?}"));
            }
            continue;
        };
        assert_eq!(ours.tag, theirs.tag.inner(), "case {case}: {shown:?}");
        assert_eq!(
            same_command(&theirs.body, &ours.body),
            Some(true),
            "case {case}: {shown:?} decoded as {ours:?}"
        );
        checked += 1;
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The generator must really exercise the decoder, not skip nearly everything.
    assert!(
        checked > 1000,
        "only {checked} commands checked ({unsupported} unsupported)"
    );
}
