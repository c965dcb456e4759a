//! Differential test: transfer decoding (message::decode, through both IMAP BINARY's
//! `part_range` and the MIME parse behind `pigeon read` and the webmail) against Python's
//! `email` package (policy `default`, `part.get_payload(decode=True)`), over hand-made
//! malformed base64 and quoted-printable parts.
//!
//! Where Python departs from RFC 2045 the case says so, with the section, and pigeon
//! follows the RFC; everywhere else the bytes must be Python's.

use message::{imap, mime};

/// How pigeon's result relates to Python's.
enum Expect {
    /// The same bytes as Python.
    Python,
    /// These bytes instead, for the reason given (an RFC section).
    Rfc(&'static [u8], &'static str),
}

use Expect::{Python, Rfc};

/// (name, Content-Transfer-Encoding, encoded body, expectation)
const CASES: &[(&str, &str, &[u8], Expect)] = &[
    // RFC 2045 §6.8, base64.
    ("b64 well formed", "base64", b"aMO2aMO2", Python),
    ("b64 stray characters", "base64", b"aMO2!aMO2*", Python),
    ("b64 spaces and tabs", "base64", b"aM O2\taMO2 ", Python),
    ("b64 url-safe characters", "base64", b"aMO2-_aMO2", Python),
    ("b64 8-bit bytes", "base64", b"aMO2\xff\xfeaMO2", Python),
    ("b64 missing padding (2)", "base64", b"aMO2aA", Python),
    ("b64 missing padding (3)", "base64", b"aMO2aMO", Python),
    ("b64 excess padding", "base64", b"aMO2aMO2====", Python),
    ("b64 padding mid-quantum", "base64", b"aMO2a=MO2", Python),
    ("b64 lines of many lengths", "base64", b"aM\r\nO2aMO2aM\r\n\r\nO2\r\n", Python),
    ("b64 bare LF lines", "base64", b"aMO2\naMO2\n", Python),
    (
        "b64 one long line",
        "base64",
        b"aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2aMO2",
        Python,
    ),
    (
        "b64 data after padding",
        "base64",
        b"aA==aMO2",
        Rfc(
            "hhö".as_bytes(),
            "RFC 2045 §6.8: '=' *may* be taken as the end of the data; pigeon decodes what \
             follows (separately encoded pieces), Python drops it",
        ),
    ),
    (
        "b64 lone final character",
        "base64",
        b"aMO2aMO2a",
        Rfc(
            "höhö".as_bytes(),
            "RFC 2045 §6.8: a lone final character holds 6 bits, no octet; pigeon drops it, \
             Python returns the whole part still encoded",
        ),
    ),
    // RFC 2045 §6.7, quoted-printable.
    ("qp well formed", "quoted-printable", b"h=C3=B6h=C3=B6", Python),
    ("qp bad escape", "quoted-printable", b"h=C3=B6h=C3=B6 =ZZ 100%=\r\n", Python),
    ("qp lower case hex", "quoted-printable", b"h=c3=b6h=c3=b6", Python),
    ("qp soft breaks", "quoted-printable", b"h=C3=\r\n=B6h=\r\n=C3=B6", Python),
    ("qp soft break, bare LF", "quoted-printable", b"h=C3=\n=B6\n", Python),
    ("qp '=' then space", "quoted-printable", b"a = b", Python),
    ("qp '=' penultimate", "quoted-printable", b"h=C3=B6=4", Python),
    ("qp '=' ultimate", "quoted-printable", b"h=C3=B6=", Python),
    ("qp 8-bit and controls", "quoted-printable", b"h\xc3\xb6h=C3=B6\x01\tx", Python),
    (
        "qp long line",
        "quoted-printable",
        b"h=C3=B6h=C3=B6h=C3=B6h=C3=B6h=C3=B6h=C3=B6h=C3=B6h=C3=B6h=C3=B6h=C3=B6h=C3=B6h=C3=B6h=C3=B6h=C3=B6",
        Python,
    ),
    (
        "qp trailing white space",
        "quoted-printable",
        b"h=C3=B6h=C3=B6  \r\nnext\t\r\n",
        Rfc(
            "höhö\r\nnext\r\n".as_bytes(),
            "RFC 2045 §6.7 rule 3: trailing white space is transport padding and must be \
             deleted; Python keeps it",
        ),
    ),
    (
        "qp soft break after padding",
        "quoted-printable",
        b"h=C3=B6= \r\nh=C3=B6",
        Rfc(
            "höhö".as_bytes(),
            "RFC 2045 §6.7 rules 3 and 5: with the padding deleted the line ends in '=', a \
             soft line break; Python keeps '= ' and the line break",
        ),
    ),
    (
        "qp double '='",
        "quoted-printable",
        b"token==41",
        Rfc(
            b"token==41",
            "RFC 2045 §6.7 note 2: an '=' not followed by two hex digits is kept together with \
             the character after it; Python makes '==' one '='",
        ),
    ),
];

const PYTHON: &str = r#"
import email, email.policy, sys
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
for part in m.walk():
    if not part.is_multipart():
        print(part.get_payload(decode=True).hex())
"#;

/// Python's decoded bytes of every leaf part of `raw`, in order.
fn python_decodes(raw: &[u8]) -> Vec<Vec<u8>> {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", PYTHON])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

/// One multipart/mixed holding every case as an application/octet-stream part (so that
/// the MIME parse hands over bytes, not charset-decoded text).
fn message_of_cases() -> Vec<u8> {
    let mut raw =
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n".to_vec();
    for (_, cte, body, _) in CASES {
        raw.extend_from_slice(b"--=_b\r\nContent-Type: application/octet-stream\r\n");
        raw.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n\r\n").as_bytes());
        raw.extend_from_slice(body);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"--=_b--\r\n");
    raw
}

#[test]
fn malformed_parts_decode_as_python_or_the_rfc_says() {
    if !test_support::require_tool("python3") {
        return;
    }
    let raw = message_of_cases();
    let python = python_decodes(&raw);
    assert_eq!(python.len(), CASES.len());
    let parsed = mime::parse(&raw).unwrap();
    for (i, ((name, _, _, expect), python)) in CASES.iter().zip(&python).enumerate() {
        let binary = imap::part_range(&raw, &[i as u32 + 1])
            .unwrap()
            .decoded
            .unwrap();
        let parse = parsed.parts[i + 1].contents();
        assert_eq!(binary, parse, "{name}: BINARY and the MIME parse agree");
        match expect {
            Python => assert_eq!(
                String::from_utf8_lossy(&binary),
                String::from_utf8_lossy(python),
                "{name}: as Python"
            ),
            Rfc(ours, why) => {
                assert_eq!(binary, *ours, "{name}: {why}");
                assert_ne!(&binary, python, "{name}: Python now agrees; make it Python");
            }
        }
    }
}

/// A base64 part whose close delimiter never comes (a message cut short): both decode what
/// there is, and the multipart's structure is kept.
#[test]
fn a_part_cut_short_decodes_as_python() {
    if !test_support::require_tool("python3") {
        return;
    }
    let raw = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
h=C3=B6h=C3=B6\r\n--b\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\naMO2aMO2\r\naMO";
    let python = python_decodes(raw);
    assert_eq!(python.len(), 2);
    for (i, python) in python.iter().enumerate() {
        let binary = imap::part_range(raw, &[i as u32 + 1])
            .unwrap()
            .decoded
            .unwrap();
        assert_eq!(&binary, python, "part {}", i + 1);
    }
    // "aMO": three characters, two octets (RFC 2045 §6.8).
    assert_eq!(
        mime::parse(raw).unwrap().parts[2].contents(),
        b"h\xc3\xb6h\xc3\xb6h\xc3"
    );
}

/// Python decodes `x-uuencode`; pigeon does not know it (RFC 2045 §6.4: an unknown
/// encoding makes the part application/octet-stream): BINARY refuses it (RFC 3516 §4.3,
/// `NO [UNKNOWN-CTE]`) and readers get the bytes as written.
#[test]
fn an_unknown_encoding_is_refused_not_guessed() {
    let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\
begin 644 x\r\n#86)C\r\n`\r\nend\r\n--b--\r\n";
    let range = imap::part_range(raw, &[1]).unwrap();
    assert_eq!(range.decoded, Err(message::decode::UnknownCte));
    assert_eq!(
        mime::parse(raw).unwrap().parts[1].contents(),
        &raw[range.body]
    );
}
