//! Content-Transfer-Encoding decoding, lenient (RFC 2045 §6): every view of a part (IMAP
//! BINARY, the MIME parse behind `pigeon read` and the webmail, the user agent's text) goes
//! through [`transfer_decode`], so a part is never shown still encoded because one line of it
//! is malformed. What can be decoded is decoded; what cannot is skipped (base64) or kept as
//! written (quoted-printable). Python's `email` package (`get_payload(decode=True)`) is the
//! reference; where it departs from RFC 2045 the RFC is followed (the differential test in
//! `tests/decode_python.rs` lists each case).
//!
//! Both decoders run in one pass and allocate at most the input's length: a part can never
//! cost more memory than its own bytes.

use std::borrow::Cow;

/// A part's Content-Transfer-Encoding, as far as decoding goes (RFC 2045 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    /// `7bit`, `8bit`, `binary`, or no header at all (RFC 2045 §6.1: "7bit" is the default):
    /// the content is as written.
    Identity,
    Base64,
    QuotedPrintable,
    /// A mechanism pigeon does not decode (`x-uuencode`, `x-gzip`, a typo): RFC 2045 §6.4
    /// says to treat the part as application/octet-stream; IMAP BINARY answers
    /// `NO [UNKNOWN-CTE]` (RFC 3516 §4.3).
    Unknown,
}

impl TransferEncoding {
    /// The mechanism a header value names: its first token, in any case. A comment or stray
    /// parameter after it (`base64 (sent by X)`) does not hide it.
    pub fn of(value: Option<&str>) -> TransferEncoding {
        let Some(value) = value else {
            return TransferEncoding::Identity;
        };
        let token = value
            .trim()
            .split(|c: char| c.is_ascii_whitespace() || c == '(' || c == ';')
            .next()
            .unwrap_or_default();
        if token.is_empty()
            || ["7bit", "8bit", "binary"]
                .iter()
                .any(|m| token.eq_ignore_ascii_case(m))
        {
            TransferEncoding::Identity
        } else if token.eq_ignore_ascii_case("base64") {
            TransferEncoding::Base64
        } else if token.eq_ignore_ascii_case("quoted-printable") {
            TransferEncoding::QuotedPrintable
        } else {
            TransferEncoding::Unknown
        }
    }
}

/// The transfer encoding is one pigeon does not know how to undo ([`TransferEncoding::Unknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCte;

/// `body` with transfer encoding `cte` (the header's value, `None` without one) removed,
/// leniently. Identity encodings borrow; unknown ones are an error (the caller decides: IMAP
/// BINARY refuses, a reader shows the bytes as written).
pub fn transfer_decode<'a>(cte: Option<&str>, body: &'a [u8]) -> Result<Cow<'a, [u8]>, UnknownCte> {
    match TransferEncoding::of(cte) {
        TransferEncoding::Identity => Ok(Cow::Borrowed(body)),
        TransferEncoding::Base64 => Ok(Cow::Owned(base64_lenient(body))),
        TransferEncoding::QuotedPrintable => Ok(Cow::Owned(quoted_printable_lenient(body))),
        TransferEncoding::Unknown => Err(UnknownCte),
    }
}

/// The value of a base64 alphabet character (RFC 2045 §6.8, Table 1).
fn sextet(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Base64 decoded leniently (RFC 2045 §6.8):
///
/// - characters outside the alphabet (line breaks, spaces, stray punctuation, 8-bit bytes)
///   are skipped: "All line breaks or other characters not found in Table 1 must be ignored
///   by decoding software";
/// - a quantum cut short at the end (missing `=` padding) gives the octets its bits hold;
///   a lone final character holds fewer than 8 bits and gives none;
/// - `=` completing a quantum (`xx==`, `xxx=`) ends it, and decoding goes on after it (data
///   concatenated from separately encoded pieces); an `=` that completes nothing is skipped.
///
/// Python stops at the first completed padding, and returns a part with a lone final
/// character still encoded; §6.8 only says "=" *may* be taken as the end of the data.
pub fn base64_lenient(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    // Bits of the current quantum, how many characters it has, how many `=` follow them.
    let (mut bits, mut count, mut pads) = (0u32, 0u8, 0u8);
    for &byte in input {
        if byte == b'=' {
            // Padding counts only after two or three characters (RFC 2045 §6.8: the final
            // quantum is 8 or 16 bits); a quantum it completes is flushed and restarted.
            if count >= 2 {
                pads += 1;
                if count + pads >= 4 {
                    flush(&mut out, bits, count);
                    (bits, count, pads) = (0, 0, 0);
                }
            }
            continue;
        }
        let Some(value) = sextet(byte) else {
            continue;
        };
        pads = 0;
        bits = bits << 6 | u32::from(value);
        count += 1;
        if count == 4 {
            out.extend_from_slice(&bits.to_be_bytes()[1..]);
            (bits, count) = (0, 0);
        }
    }
    flush(&mut out, bits, count);
    out
}

/// The octets of a partial quantum of `count` characters (`bits` holds 6 per character).
fn flush(out: &mut Vec<u8>, bits: u32, count: u8) {
    match count {
        2 => out.push((bits >> 4) as u8),
        3 => out.extend_from_slice(&[(bits >> 10) as u8, (bits >> 2) as u8]),
        // 0: nothing; 1: six bits are no octet.
        _ => {}
    }
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        // RFC 2045 §6.7 note (1): lower case hex digits are "formally illegal"; "a robust
        // implementation might choose to recognize them".
        b'A'..=b'F' => Some(byte - b'A' + 10),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable decoded leniently (RFC 2045 §6.7), line by line; each line break is kept
/// as written (CRLF or a bare LF):
///
/// - `=XX` with two hex digits, in either case, is the octet (rules 1, note 1);
/// - trailing spaces and tabs on a line are transport padding and are deleted (rule 3;
///   Python keeps them);
/// - a line ending in `=` (after that deletion) is a soft line break: the `=` and the line
///   break vanish (rule 5), also on the last line (the body ends before the CRLF that
///   belongs to the next boundary);
/// - an `=` not followed by two hex digits is kept as written with the character after it
///   (note 2: "include the "=" character and the following character in the decoded data
///   without any transformation"; Python turns `==` into one `=`);
/// - lines over 76 characters and octets that should have been encoded (8-bit, controls)
///   are decoded as they are (notes 4 and 5).
pub fn quoted_printable_lenient(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while !rest.is_empty() {
        let (line, line_break, tail) = match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let text_end = if lf > 0 && rest[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                (&rest[..text_end], &rest[text_end..=lf], &rest[lf + 1..])
            }
            None => (rest, &b""[..], &b""[..]),
        };
        rest = tail;
        let soft = decode_qp_line(&mut out, trim_trailing_space(line));
        if !soft {
            out.extend_from_slice(line_break);
        }
    }
    out
}

fn trim_trailing_space(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// One line's text (without its line break and trailing white space); true if it ends in a
/// soft line break. Read left to right, so a final `==` is the kept pair of note 2, not a
/// kept `=` and a soft break (Python reads it so too).
fn decode_qp_line(out: &mut Vec<u8>, line: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&byte) = line.get(i) {
        if byte != b'=' {
            out.push(byte);
            i += 1;
            continue;
        }
        if i + 1 == line.len() {
            return true;
        }
        match (
            line.get(i + 1).copied().and_then(hex),
            line.get(i + 2).copied().and_then(hex),
        ) {
            (Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            _ => match line.get(i + 1) {
                // `=` and the character after it, as written (§6.7 note 2). Taking the second
                // `=` along keeps `==` from being read as `=` plus an escape or a soft break.
                Some(b'=') => {
                    out.extend_from_slice(b"==");
                    i += 2;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        base64_lenient(s.as_bytes())
    }

    fn qp(s: &str) -> Vec<u8> {
        quoted_printable_lenient(s.as_bytes())
    }

    #[test]
    fn well_formed_base64_decodes() {
        assert_eq!(b64("aMO2aMO2\r\n"), "höhö".as_bytes());
        assert_eq!(b64("YQ=="), b"a");
        assert_eq!(b64("YWI="), b"ab");
        assert_eq!(b64("YWJj"), b"abc");
        assert_eq!(b64(""), b"");
    }

    /// RFC 2045 §6.8: characters not in the alphabet "must be ignored by decoding software".
    #[test]
    fn base64_skips_stray_characters() {
        assert_eq!(b64("YW Jj\r\nZA==\r\n"), b"abcd");
        assert_eq!(b64("YWJj!ZGVm"), b"abcdef");
        assert_eq!(b64("YW\u{e9}Jj-ZG.Vm*"), b"abcdef");
        assert_eq!(b64("\tYWJj\t\r\n\r\nZGVm \r\n"), b"abcdef");
    }

    /// RFC 2045 §6.8: the final quantum is 8 or 16 bits; missing `=` still gives them.
    #[test]
    fn base64_without_padding_decodes() {
        assert_eq!(b64("YQ"), b"a");
        assert_eq!(b64("YWJjZA"), b"abcd");
        assert_eq!(b64("YWJjZGU"), b"abcde");
        assert_eq!(b64("YQ="), b"a");
    }

    /// Six bits are no octet (RFC 2045 §6.8): a lone last character is dropped, the rest kept.
    #[test]
    fn base64_lone_last_character_is_dropped() {
        assert_eq!(b64("YWJjZ"), b"abc");
        assert_eq!(b64("Z"), b"");
    }

    #[test]
    fn base64_padding_in_odd_places() {
        // Separately encoded pieces, one after the other.
        assert_eq!(b64("YQ==Yg=="), b"ab");
        assert_eq!(b64("YWI=YWI="), b"abab");
        // Padding that completes no quantum is skipped.
        assert_eq!(b64("=YWJj"), b"abc");
        assert_eq!(b64("Y=WJj"), b"abc");
        assert_eq!(b64("YWJj===="), b"abc");
        // Too much padding after a complete one changes nothing.
        assert_eq!(b64("YQ====="), b"a");
    }

    #[test]
    fn well_formed_quoted_printable_decodes() {
        assert_eq!(qp("h=C3=B6h=C3=B6"), "höhö".as_bytes());
        assert_eq!(qp("a=3Db=20\r\nc\r\n"), b"a=b \r\nc\r\n");
        assert_eq!(qp(""), b"");
    }

    /// RFC 2045 §6.7 rule 5: `=` at the end of a line is a soft line break.
    #[test]
    fn quoted_printable_soft_breaks() {
        assert_eq!(qp("abc=\r\ndef"), b"abcdef");
        assert_eq!(qp("abc=\ndef\n"), b"abcdef\n");
        // On the last line too: the body ends before the CRLF of the boundary.
        assert_eq!(qp("abc="), b"abc");
        // After transport padding (rule 3 deletes it first).
        assert_eq!(qp("abc= \t\r\ndef"), b"abcdef");
    }

    /// RFC 2045 §6.7 rule 3: trailing white space is transport padding and is deleted.
    #[test]
    fn quoted_printable_drops_trailing_white_space() {
        assert_eq!(qp("a  \r\nb\t\r\nc "), b"a\r\nb\r\nc");
        assert_eq!(qp("a=20\r\n"), b"a \r\n");
    }

    /// RFC 2045 §6.7 notes 1-3: lower case hex is recognised; an `=` without two hex digits
    /// after it is kept, with the character after it, as written.
    #[test]
    fn quoted_printable_keeps_bad_escapes_literally() {
        assert_eq!(qp("=c3=b6"), "ö".as_bytes());
        assert_eq!(qp("a=zz b"), b"a=zz b");
        assert_eq!(qp("x=4"), b"x=4");
        assert_eq!(qp("x=4g"), b"x=4g");
        assert_eq!(qp("a==41"), b"a==41");
        assert_eq!(qp("token=xyz==\r\nnext"), b"token=xyz==\r\nnext");
        // One bad escape does not stop the rest from decoding (the bug users saw).
        assert_eq!(
            qp("h=C3=B6h=C3=B6 =XY 100%=\r\n"),
            "höhö =XY 100%".as_bytes()
        );
    }

    /// RFC 2045 §6.7 notes 4 and 5: long lines and unencoded octets are decoded as they are.
    #[test]
    fn quoted_printable_long_lines_and_raw_octets() {
        let long = format!("{}=41", "x".repeat(500));
        assert_eq!(qp(&long), format!("{}A", "x".repeat(500)).into_bytes());
        assert_eq!(
            quoted_printable_lenient(b"h\xc3\xb6h=C3=B6\x01"),
            "höhö\u{1}".as_bytes()
        );
        // A bare CR is no line break: kept.
        assert_eq!(qp("a\rb=\r\n"), b"a\rb");
    }

    #[test]
    fn mechanisms_are_recognised() {
        use TransferEncoding::*;
        assert_eq!(TransferEncoding::of(None), Identity);
        assert_eq!(TransferEncoding::of(Some(" 8BIT ")), Identity);
        assert_eq!(TransferEncoding::of(Some("Binary")), Identity);
        assert_eq!(TransferEncoding::of(Some("BASE64")), Base64);
        assert_eq!(TransferEncoding::of(Some("base64 (from X)")), Base64);
        assert_eq!(
            TransferEncoding::of(Some("Quoted-Printable")),
            QuotedPrintable
        );
        assert_eq!(TransferEncoding::of(Some("x-uuencode")), Unknown);
        assert_eq!(transfer_decode(Some("x-uuencode"), b"x"), Err(UnknownCte));
        assert!(matches!(
            transfer_decode(Some("7bit"), b"x"),
            Ok(Cow::Borrowed(b"x"))
        ));
    }

    /// Every byte string decodes without a panic, and never to more than its length.
    #[test]
    fn any_input_is_bounded() {
        let mut seed: u32 = 0x1234_5678;
        for len in 0..2000 {
            let input: Vec<u8> = (0..len % 97)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let alphabet = b"=AZaz09+/\r\n \t\x00\xff-";
                    alphabet[(seed >> 16) as usize % alphabet.len()]
                })
                .collect();
            assert!(base64_lenient(&input).len() <= input.len());
            assert!(quoted_printable_lenient(&input).len() <= input.len());
        }
    }
}
