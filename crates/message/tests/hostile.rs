//! Issue 14: parsing is linear in the message's size and bounded in the parts it makes.
//! Multiparts whose boundary never appears (each search read the rest of the message: parts
//! times size), millions of empty parts (7 bytes each), huge boundaries (compared at every
//! `--`), through the views pigeon computes, on a thread with tokio's 2 MiB worker stack.
//!
//! No timing is asserted: before the fix the first test ran for minutes, which is the
//! failure signal.

use message::mime::{self, MAX_BOUNDARY_LEN, MAX_DEPTH, MAX_PARTS};
use message::{imap, summary};

const HEAD: &str = "From: Mallory <m@evil.test>\r\nTo: bob@b.test\r\nSubject: hostile\r\n\
    MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n";

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .expect("no panic");
}

/// Every view of a message: none may take more than linear time or overflow the stack.
fn all_views(raw: &[u8]) {
    let message = mime::parse(raw).expect("parses");
    assert!(message.parts.len() <= MAX_PARTS + MAX_DEPTH);
    let (_, _, bs) = imap::structures(raw, Some(&message));
    assert!(!bs.is_empty());
    summary::summarize(raw);
    summary::texts(raw);
}

/// `size` bytes of parts of `multipart/mixed; boundary=a`, each itself a multipart whose
/// boundary (`boundary(i)`) never appears: every one of them was searched for to the end.
fn missing_boundaries(size: usize, boundary: impl Fn(usize) -> String) -> Vec<u8> {
    let mut raw = String::from(HEAD);
    let mut i = 0;
    while raw.len() < size {
        raw.push_str(&format!(
            "--a\r\nContent-Type: multipart/mixed; boundary={}\r\n\r\n",
            boundary(i)
        ));
        i += 1;
    }
    raw.push_str("--a--\r\n");
    raw.into_bytes()
}

#[test]
fn parts_whose_boundary_never_appears_parse_in_linear_time() {
    on_small_stack(|| {
        for size in [1 << 20, 10 << 20] {
            // The same missing boundary in every part, and a new one in each.
            let raw = missing_boundaries(size, |_| "zz".into());
            let message = mime::parse(&raw).unwrap();
            assert_eq!(message.parts.len(), MAX_PARTS);
            let bs = imap::body_structure(&raw, true, false);
            // RFC 2046 §5.1.1: without its boundary the part is not a multipart; shown as
            // opaque, as before.
            assert!(bs.starts_with(b"((\"APPLICATION\" \"OCTET-STREAM\""));
            let raw = missing_boundaries(size, |i| format!("zz{i}"));
            assert_eq!(mime::parse(&raw).unwrap().parts.len(), MAX_PARTS);
        }
        all_views(&missing_boundaries(1 << 20, |i| format!("zz{i}")));
    });
}

/// 1,000,000 empty parts: the first MAX_PARTS - 1 are parts, the rest is one opaque part
/// holding the remaining bytes, and the message is still the same bytes.
#[test]
fn a_million_empty_parts_are_capped() {
    on_small_stack(|| {
        let mut raw = HEAD.as_bytes().to_vec();
        for _ in 0..1_000_000 {
            raw.extend_from_slice(b"--a\r\n\r\n");
        }
        raw.extend_from_slice(b"--a--\r\n");
        all_views(&raw);
        let message = mime::parse(&raw).unwrap();
        assert_eq!(message.parts.len(), MAX_PARTS);

        let bs = String::from_utf8(imap::body_structure(&raw, true, false)).unwrap();
        assert_eq!(bs.matches("(\"TEXT\" \"PLAIN\"").count(), MAX_PARTS - 2);
        assert_eq!(bs.matches("(\"APPLICATION\" \"OCTET-STREAM\"").count(), 1);
        assert!(
            bs.ends_with(" \"MIXED\" (\"BOUNDARY\" \"a\") NIL NIL NIL)"),
            "{bs:.100}"
        );

        // Part MAX_PARTS - 1 is the rest: from the header of the part that would have passed
        // the cap to the line end before the close delimiter (RFC 2046 §5.1.1).
        let rest = imap::part_range(&raw, &[MAX_PARTS as u32 - 1]).unwrap();
        let start = HEAD.len() + (MAX_PARTS - 2) * 7 + 5;
        let end = raw.len() - b"\r\n--a--\r\n".len();
        assert_eq!(rest.body, start..end);
        assert_eq!(rest.header, start..start);
        assert_eq!(rest.decoded.as_deref(), Ok(&raw[start..end]));
        assert!(raw[start..end].starts_with(b"\r\n--a\r\n\r\n--a\r\n"));
        assert!(imap::part_range(&raw, &[MAX_PARTS as u32]).is_none());
        let last = imap::part_range(&raw, &[MAX_PARTS as u32 - 2]).unwrap();
        assert_eq!(last.body, start - 5..start - 5);
    });
}

/// Past the cap, a multipart without its close delimiter: the rest of the message.
#[test]
fn capped_parts_without_a_close_delimiter_run_to_the_end() {
    on_small_stack(|| {
        let mut raw = HEAD.as_bytes().to_vec();
        for _ in 0..MAX_PARTS + 5 {
            raw.extend_from_slice(b"--a\r\n\r\n");
        }
        all_views(&raw);
        let rest = imap::part_range(&raw, &[MAX_PARTS as u32 - 1]).unwrap();
        assert_eq!(rest.body.end, raw.len());
    });
}

/// Fewer parts than the cap: all there, none opaque.
#[test]
fn parts_below_the_cap_are_all_parsed() {
    let mut raw = HEAD.as_bytes().to_vec();
    for i in 0..MAX_PARTS - 2 {
        raw.extend_from_slice(format!("--a\r\n\r\n{i}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"--a--\r\n");
    let message = mime::parse(&raw).unwrap();
    assert_eq!(message.parts.len(), MAX_PARTS - 1);
    let bs = String::from_utf8(imap::body_structure(&raw, true, false)).unwrap();
    assert!(!bs.contains("OCTET-STREAM"));
    let last = imap::part_range(&raw, &[MAX_PARTS as u32 - 2]).unwrap();
    assert_eq!(
        last.decoded.as_deref(),
        Ok(format!("{}", MAX_PARTS - 3).as_bytes())
    );
}

/// A boundary of 100 KB against a megabyte of dashes (each `--` compared it whole): longer
/// than MAX_BOUNDARY_LEN, so the part is a leaf holding the body, at once.
#[test]
fn a_hundred_kilobyte_boundary_is_no_boundary() {
    on_small_stack(|| {
        let boundary = format!("{}x", "-".repeat(100_000));
        let mut raw = format!(
            "Subject: long\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
        )
        .into_bytes();
        let body_at = raw.len();
        raw.extend_from_slice(&[b'-'; 1 << 20]);
        raw.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        all_views(&raw);
        let bs = String::from_utf8(imap::body_structure(&raw, false, false)).unwrap();
        assert!(
            bs.starts_with("(\"APPLICATION\" \"OCTET-STREAM\""),
            "{bs:.100}"
        );
        let whole = imap::part_range(&raw, &[1]).unwrap();
        assert_eq!(whole.body, body_at..raw.len());

        // Boundaries up to the bound are honoured, also over dashes.
        let boundary = format!("{}x", "-".repeat(MAX_BOUNDARY_LEN - 1));
        let mut raw = format!(
            "Subject: long\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
             --{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(&[b'-'; 1 << 20]);
        raw.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        all_views(&raw);
        let bs = String::from_utf8(imap::body_structure(&raw, false, false)).unwrap();
        assert!(bs.starts_with("((\"TEXT\" \"PLAIN\""), "{bs:.100}");
        assert_eq!(imap::part_range(&raw, &[1]).unwrap().body.len(), 1 << 20);
    });
}

/// A text leaf at depth MAX_DEPTH was parsed normally: its BODYSTRUCTURE says TEXT/PLAIN with
/// its line count, as BODY[1. ... .1] returns it (only containers there are opaque).
#[test]
fn a_text_leaf_at_the_depth_limit_stays_text() {
    on_small_stack(|| {
        let mut s = String::from("Subject: deep\r\n");
        for i in 0..MAX_DEPTH {
            s.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i:03}\"\r\n\r\n--b{i:03}\r\n"
            ));
        }
        s.push_str("Content-Type: text/plain\r\n\r\nthe leaf\r\n");
        for i in (0..MAX_DEPTH).rev() {
            s.push_str(&format!("--b{i:03}--\r\n"));
        }
        let raw = s.into_bytes();
        let bs = String::from_utf8(imap::body_structure(&raw, false, false)).unwrap();
        assert!(!bs.contains("OCTET-STREAM"), "{bs}");
        assert!(
            bs.contains("(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 8 1)"),
            "{bs}"
        );
        let leaf = imap::part_range(&raw, &vec![1; MAX_DEPTH]).unwrap();
        assert_eq!(&raw[leaf.body], b"the leaf");
    });
}

/// Two 4–8 KB inputs the `mime_structure` fuzzer found: BODYSTRUCTURE of each took over 2 GB
/// and 26 s, because a part reached twice was written again at every level (exponential in
/// the depth). Each part is now written once, so the structure stays small.
#[test]
fn fuzzer_found_structures_stay_small() {
    for input in [
        &include_bytes!("data/fuzz-oom-1.eml")[..],
        &include_bytes!("data/fuzz-oom-2.eml")[..],
    ] {
        on_small_stack(move || {
            for extensible in [false, true] {
                let structure = imap::body_structure(input, extensible, false);
                assert!(structure.len() < 64 * 1024, "{} bytes", structure.len());
            }
            all_views(input);
        });
    }
}
