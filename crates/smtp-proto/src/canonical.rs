//! Canonical line endings and the header limits of message content.
//!
//! RFC 5321 §2.3.8 and RFC 5322 §2.3: CR and LF occur in a message only together, as CRLF. A
//! bare CR or a bare LF is read as the line end its sender meant and becomes CRLF, so every
//! parser, signer and store sees one and the same message, and no peer downstream can find a
//! line end (or an end of data) where we saw none: `a\nb`, `a\rb` and `a\r\nb` are all
//! `a\r\nb`; `a\r\r\nb` is two line ends.
//!
//! For reference, Postfix (3.9 default `smtpd_forbid_bare_newline = normalize`) also requires
//! `<CR><LF>.<CR><LF>` to end DATA and treats a bare LF as CRLF, but keeps bare CRs and strips a
//! leading dot after a bare LF. We turn bare CRs into CRLF too (RFC 5321 §2.3.8: CR and LF
//! are only line terminators), and remove dot-stuffing only at the start of a CRLF line, as
//! RFC 5321 §4.5.2 defines it: a conforming client stuffs only there, so a dot after its bare
//! LF is content.
//!
//! While it converts, a [`Canonicalizer`] measures the header section (the lines before the
//! first empty line): RFC 5322 §2.1.1 says a line MUST NOT be longer than 998 octets (CRLF
//! excluded). Only header lines are held to it: real mail has long body lines, and quoted
//! text or HTML cut at 998 would be damaged; the header section as a whole is bounded too.

use std::borrow::Cow;

/// RFC 5322 §2.1.1: at most 998 octets per line, CRLF excluded.
pub const MAX_HEADER_LINE: usize = 998;

/// The most header section we accept, its CRLFs included: the 256 KB Exchange Online allows
/// (Postfix keeps 100 KiB and drops the rest), far more than any real message carries.
pub const MAX_HEADER_SIZE: usize = 256 * 1024;

/// What the conversion found in the header section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Findings {
    /// A bare CR or LF was turned into CRLF within the header section (or ended it).
    pub bare_line_end_in_header: bool,
    /// A NUL octet is in the header section.
    pub nul_in_header: bool,
    /// A header line is longer than the limit.
    pub long_header_line: bool,
    /// The header section is bigger than the limit.
    pub header_too_big: bool,
    /// Bare CRs and LFs turned into CRLF anywhere in the message.
    pub bare_line_ends: usize,
}

impl Findings {
    /// True if the header breaks a limit: the message must be refused.
    pub fn over_limit(&self) -> bool {
        self.long_header_line || self.header_too_big
    }
}

/// Streaming conversion to canonical CRLF line endings.
///
/// [`Canonicalizer::push`] hands its output to a sink in pieces that are either exactly
/// `b"\r\n"` or text without CR and LF, never empty, so a consumer can follow line starts.
#[derive(Debug, Clone)]
pub struct Canonicalizer {
    /// A CR was the last input byte; it is a line end either way, bare unless LF follows.
    pending_cr: bool,
    in_header: bool,
    line_len: usize,
    header_size: usize,
    max_line: usize,
    max_header: usize,
    findings: Findings,
}

impl Default for Canonicalizer {
    fn default() -> Canonicalizer {
        Canonicalizer::new(MAX_HEADER_LINE, MAX_HEADER_SIZE)
    }
}

impl Canonicalizer {
    /// `max_line` bounds each header line (CRLF excluded), `max_header` the header section.
    pub fn new(max_line: usize, max_header: usize) -> Canonicalizer {
        Canonicalizer {
            pending_cr: false,
            in_header: true,
            line_len: 0,
            header_size: 0,
            max_line,
            max_header,
            findings: Findings::default(),
        }
    }

    /// What was found so far.
    pub fn findings(&self) -> Findings {
        self.findings
    }

    /// Converts `input`, the next bytes of the message.
    pub fn push(&mut self, input: &[u8], sink: &mut impl FnMut(&[u8])) {
        let mut i = 0;
        while i < input.len() {
            if self.pending_cr {
                self.pending_cr = false;
                if input[i] == b'\n' {
                    i += 1;
                    self.line_end(false, sink);
                } else {
                    // A bare CR; this byte is looked at again below.
                    self.line_end(true, sink);
                }
                continue;
            }
            let rest = &input[i..];
            let text = rest
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(rest.len());
            if text > 0 {
                self.text(&rest[..text], sink);
                i += text;
                continue;
            }
            i += 1;
            if rest[0] == b'\r' {
                self.pending_cr = true;
            } else {
                self.line_end(true, sink);
            }
        }
    }

    /// The message ended: a CR still held back is a bare one.
    pub fn finish(&mut self, sink: &mut impl FnMut(&[u8])) {
        if self.pending_cr {
            self.pending_cr = false;
            self.line_end(true, sink);
        }
    }

    fn text(&mut self, bytes: &[u8], sink: &mut impl FnMut(&[u8])) {
        sink(bytes);
        if self.in_header {
            self.line_len = self.line_len.saturating_add(bytes.len());
            self.header_size = self.header_size.saturating_add(bytes.len());
            if self.line_len > self.max_line {
                self.findings.long_header_line = true;
            }
            if self.header_size > self.max_header {
                self.findings.header_too_big = true;
            }
            if bytes.contains(&0) {
                self.findings.nul_in_header = true;
            }
        }
    }

    fn line_end(&mut self, bare: bool, sink: &mut impl FnMut(&[u8])) {
        sink(b"\r\n");
        if bare {
            self.findings.bare_line_ends += 1;
        }
        if self.in_header {
            if bare {
                self.findings.bare_line_end_in_header = true;
            }
            if self.line_len == 0 {
                // The empty line: the body starts.
                self.in_header = false;
            } else {
                self.header_size = self.header_size.saturating_add(2);
                if self.header_size > self.max_header {
                    self.findings.header_too_big = true;
                }
            }
        }
        self.line_len = 0;
    }
}

/// True if every CR in `data` is followed by LF and every LF follows a CR.
pub fn is_canonical(data: &[u8]) -> bool {
    let mut i = 0;
    while let Some(pos) = data[i..].iter().position(|&b| b == b'\r' || b == b'\n') {
        let at = i + pos;
        if data[at] == b'\n' || data.get(at + 1) != Some(&b'\n') {
            return false;
        }
        i = at + 2;
    }
    true
}

/// `data` with canonical line endings; borrowed when it already has them.
pub fn canonicalize(data: &[u8]) -> Cow<'_, [u8]> {
    if is_canonical(data) {
        return Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    let mut canon = Canonicalizer::new(usize::MAX, usize::MAX);
    let mut sink = |piece: &[u8]| out.extend_from_slice(piece);
    canon.push(data, &mut sink);
    canon.finish(&mut sink);
    Cow::Owned(out)
}

/// Canonical form of `data` and what the conversion found, with the default header limits.
pub fn inspect(data: &[u8]) -> (Cow<'_, [u8]>, Findings) {
    let mut canon = Canonicalizer::default();
    if is_canonical(data) {
        canon.push(data, &mut |_| {});
        return (Cow::Borrowed(data), canon.findings());
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    let mut sink = |piece: &[u8]| out.extend_from_slice(piece);
    canon.push(data, &mut sink);
    canon.finish(&mut sink);
    (Cow::Owned(out), canon.findings())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(data: &[u8]) -> Vec<u8> {
        canonicalize(data).into_owned()
    }

    #[test]
    fn bare_cr_and_lf_become_crlf() {
        let cases: [(&[u8], &[u8]); 10] = [
            (b"a\nb", b"a\r\nb"),
            (b"a\rb", b"a\r\nb"),
            (b"a\r\nb", b"a\r\nb"),
            (b"a\r\r\nb", b"a\r\n\r\nb"),
            (b"a\n\rb", b"a\r\n\r\nb"),
            (b"\n.\n", b"\r\n.\r\n"),
            (b"\r.\r", b"\r\n.\r\n"),
            (b"a\r", b"a\r\n"),
            (b"\r\r\r", b"\r\n\r\n\r\n"),
            (b"", b""),
        ];
        for (input, expected) in cases {
            assert_eq!(canon(input), expected, "{input:?}");
            assert!(is_canonical(expected));
            // Split anywhere: the same output.
            for split in 0..=input.len() {
                let mut out = Vec::new();
                let mut c = Canonicalizer::new(usize::MAX, usize::MAX);
                let mut sink = |p: &[u8]| {
                    assert!(!p.is_empty());
                    assert!(p == b"\r\n" || !p.iter().any(|&b| b == b'\r' || b == b'\n'));
                    out.extend_from_slice(p)
                };
                c.push(&input[..split], &mut sink);
                c.push(&input[split..], &mut sink);
                c.finish(&mut sink);
                assert_eq!(out, expected, "{input:?} split at {split}");
            }
        }
        assert!(matches!(canonicalize(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert!(!is_canonical(b"a\r"));
        assert!(!is_canonical(b"\n"));
    }

    #[test]
    fn header_findings() {
        let (_, f) = inspect(b"From: a@b\r\nSubject: x\r\n\r\nbody\nbody\r\n");
        assert_eq!(
            f,
            Findings {
                bare_line_ends: 1,
                ..Findings::default()
            }
        );
        // The bare-LF split between header and body is seen as one.
        let (out, f) = inspect(b"From: a@b\nSubject: x\r\n\nFrom: c@d\r\n\r\nbody\r\n");
        assert!(f.bare_line_end_in_header);
        assert_eq!(
            out.as_ref(),
            b"From: a@b\r\nSubject: x\r\n\r\nFrom: c@d\r\n\r\nbody\r\n"
        );
        assert!(inspect(b"From: a\0@b\r\n\r\n").1.nul_in_header);
        assert!(!inspect(b"From: a@b\r\n\r\n\0").1.nul_in_header);
    }

    #[test]
    fn header_lines_longer_than_998_octets_break_the_limit() {
        let ok = [b"X: ".as_slice(), &[b'a'; 995], b"\r\n\r\n"].concat();
        assert!(!inspect(&ok).1.over_limit());
        let long = [b"X: ".as_slice(), &[b'a'; 996], b"\r\n\r\n"].concat();
        assert!(inspect(&long).1.long_header_line);
        // Body lines are not held to it.
        let body = [b"X: y\r\n\r\n".as_slice(), &[b'a'; 5000], b"\r\n"].concat();
        assert!(!inspect(&body).1.over_limit());
        // Many short lines can still make the header too big.
        let big = b"X: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(5000);
        assert!(inspect(&big).1.header_too_big);
        assert!(!inspect(&big).1.long_header_line);
    }
}
