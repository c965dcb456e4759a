//! DATA content: the receiver that undoes dot-stuffing and finds the end of data, and the
//! encoder that applies it (RFC 5321 §4.5.2).
//!
//! Only `<CRLF>.<CRLF>` ends the data. A bare LF or bare CR never ends a line on the wire, so
//! `\n.\r\n`, `\r.\r` and `.\n` are content, not terminators (no SMTP smuggling), and a
//! leading dot is removed only at the start of a CRLF line. The content then gets canonical
//! line endings ([`crate::canonical`]): every bare CR or LF in it becomes CRLF, so what we
//! store, sign and relay has no bare CR or LF at all. The encoder does the same before it
//! stuffs, so no sequence in a message can end our DATA early at any receiver.

use crate::canonical::{Canonicalizer, Findings};

/// Where the receiver is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// At the start of a line (just after CRLF, or at the very start of the data).
    Start,
    /// Inside a line.
    Middle,
    /// Saw a CR inside a line; it is held back until we know whether LF follows.
    Cr,
    /// Saw a `.` at the start of a line.
    Dot,
    /// Saw `.` CR at the start of a line: LF now ends the data.
    DotCr,
}

/// Incremental receiver for DATA content with a size limit.
///
/// Content beyond `max_size` is counted but not kept, so a huge message costs no memory and the
/// session can still answer 552 once the terminator arrives. Likewise once the header breaks
/// its limits ([`Findings::over_limit`]): a 10 MB header line is counted, never buffered.
#[derive(Debug)]
pub struct DataReceiver {
    state: LineState,
    max_size: usize,
    size: usize,
    canon: Canonicalizer,
    /// The header broke its limits: nothing more is kept.
    discard: bool,
}

/// What [`DataReceiver::ingest`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProgress {
    /// All input was consumed and the data has not ended yet.
    NeedMore,
    /// The terminator was found after this many input bytes; the rest belongs to the next command.
    Done { consumed: usize },
}

impl DataReceiver {
    /// A receiver with the default header limits (RFC 5322 §2.1.1).
    pub fn new(max_size: usize) -> DataReceiver {
        DataReceiver::with_canonicalizer(max_size, Canonicalizer::default())
    }

    /// A receiver whose content goes through `canon` (its header limits).
    pub fn with_canonicalizer(max_size: usize, canon: Canonicalizer) -> DataReceiver {
        DataReceiver {
            state: LineState::Start,
            max_size,
            size: 0,
            canon,
            discard: false,
        }
    }

    /// Size of the content so far (unstuffed, canonical), including any part not kept.
    pub fn size(&self) -> usize {
        self.size
    }

    /// True if the content has grown beyond the limit; what was kept is then incomplete.
    pub fn exceeded(&self) -> bool {
        self.size > self.max_size
    }

    /// What the conversion to canonical line endings found so far.
    pub fn findings(&self) -> Findings {
        self.canon.findings()
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.convert(out, Some(bytes));
    }

    /// Feeds `bytes` (or the end of the content) through the canonicalizer into `out`.
    fn convert(&mut self, out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        let DataReceiver {
            max_size,
            size,
            canon,
            discard,
            ..
        } = self;
        let mut sink = |piece: &[u8]| {
            let room = max_size.saturating_sub(*size);
            if !*discard {
                out.extend_from_slice(&piece[..piece.len().min(room)]);
            }
            *size = size.saturating_add(piece.len());
        };
        match bytes {
            Some(bytes) => canon.push(bytes, &mut sink),
            None => canon.finish(&mut sink),
        }
        if !*discard && canon.findings().over_limit() {
            // The message will be refused: keep nothing more of it.
            *discard = true;
            *out = Vec::new();
        }
    }

    /// Consumes `input`, appending unstuffed content to `out`.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                LineState::Middle => {
                    // Fast path: copy everything up to the next CR in one go.
                    let rest = &input[i..];
                    match rest.iter().position(|&b| b == b'\r') {
                        Some(pos) => {
                            self.emit(out, &rest[..pos]);
                            self.state = LineState::Cr;
                            i += pos + 1;
                        }
                        None => {
                            self.emit(out, rest);
                            i = input.len();
                        }
                    }
                }
                LineState::Start => {
                    let b = input[i];
                    i += 1;
                    self.state = match b {
                        b'.' => LineState::Dot,
                        b'\r' => LineState::Cr,
                        _ => {
                            self.emit(out, &[b]);
                            LineState::Middle
                        }
                    };
                }
                LineState::Cr => {
                    let b = input[i];
                    i += 1;
                    self.state = match b {
                        b'\n' => {
                            self.emit(out, b"\r\n");
                            LineState::Start
                        }
                        b'\r' => {
                            self.emit(out, b"\r");
                            LineState::Cr
                        }
                        _ => {
                            self.emit(out, &[b'\r', b]);
                            LineState::Middle
                        }
                    };
                }
                LineState::Dot => {
                    let b = input[i];
                    i += 1;
                    // RFC 5321 §4.5.2: the leading dot is removed.
                    self.state = match b {
                        b'\r' => LineState::DotCr,
                        _ => {
                            self.emit(out, &[b]);
                            LineState::Middle
                        }
                    };
                }
                LineState::DotCr => {
                    if input[i] == b'\n' {
                        self.state = LineState::Start;
                        // The content ended with CRLF, so no CR is held back; finish anyway.
                        self.convert(out, None);
                        return DataProgress::Done { consumed: i + 1 };
                    }
                    // `.` CR followed by something else: the dot was stuffing, and the CR is
                    // an ordinary held-back CR; look at this byte again in that state.
                    self.state = LineState::Cr;
                }
            }
        }
        DataProgress::NeedMore
    }
}

/// Applies dot-stuffing to `message` and appends the terminator, the client side of §4.5.2.
///
/// The message is sent with canonical line endings first ([`crate::canonical`]): a bare CR or
/// LF goes out as CRLF, so nothing in a stored body (`\n.\n`, `\r.\r`, `\n.\r\n`...) can
/// look like the end of data to any receiver, and every line that starts with a dot gets a
/// second one. A message that does not end with a line end gets CRLF before the final `.`
/// line (RFC 5321 requires the content to end with CRLF); a canonical message that does is
/// sent unchanged, so the receiver stores exactly the bytes given.
pub fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + message.len() / 64 + 5);
    let mut canon = Canonicalizer::new(usize::MAX, usize::MAX);
    let mut line_start = true;
    // Pieces are CRLF or text without CR and LF (the canonicalizer's contract).
    let mut stuff = |piece: &[u8]| {
        if piece == b"\r\n" {
            line_start = true;
        } else {
            if line_start && piece.first() == Some(&b'.') {
                out.push(b'.');
            }
            line_start = false;
        }
        out.extend_from_slice(piece);
    };
    canon.push(message, &mut stuff);
    canon.finish(&mut stuff);
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut rx = DataReceiver::new(usize::MAX);
        let mut out = Vec::new();
        match rx.ingest(input, &mut out) {
            DataProgress::Done { consumed } => (out, Some(consumed)),
            DataProgress::NeedMore => (out, None),
        }
    }

    #[test]
    fn ends_only_on_crlf_dot_crlf() {
        assert_eq!(receive(b"a\r\n.\r\nNEXT"), (b"a\r\n".to_vec(), Some(6)));
        assert_eq!(receive(b".\r\n"), (b"".to_vec(), Some(3)));
    }

    #[test]
    fn smuggling_sequences_are_content_with_canonical_line_ends() {
        // RFC 5321 §2.3.8: the bare CR and LF become CRLF; a dot is unstuffed only after CRLF.
        let cases: [(&[u8], &[u8]); 5] = [
            (b"a\n.\r\nb", b"a\r\n.\r\nb\r\n"),
            (b"a\r.\rb", b"a\r\n.\r\nb\r\n"),
            (b"a\r\n.\nb", b"a\r\n\r\nb\r\n"),
            (b"a\n.\nb", b"a\r\n.\r\nb\r\n"),
            (b"a\r\n.\rb", b"a\r\n\r\nb\r\n"),
        ];
        for (body, kept) in cases {
            assert_eq!(receive(body).1, None, "{body:?} must not end the data");
            let (out, done) = receive(&[body, b"\r\n.\r\n"].concat());
            assert_eq!(done, Some(body.len() + 5));
            assert_eq!(out, kept, "{body:?}");
        }
    }

    #[test]
    fn a_long_header_line_is_counted_not_kept() {
        let mut rx = DataReceiver::new(usize::MAX);
        let mut out = Vec::new();
        let line = [b"X: ".as_slice(), &[b'a'; 100_000]].concat();
        assert_eq!(rx.ingest(&line, &mut out), DataProgress::NeedMore);
        assert!(out.len() < 2000, "{} bytes kept", out.len());
        let done = rx.ingest(b"\r\n\r\nbody\r\n.\r\n", &mut out);
        assert_eq!(done, DataProgress::Done { consumed: 13 });
        assert!(rx.findings().long_header_line);
        assert!(!rx.exceeded());
        assert_eq!(rx.size(), line.len() + 10);
        assert!(out.is_empty());
    }

    #[test]
    fn dots_are_unstuffed() {
        assert_eq!(
            receive(b"..a\r\n.\r\r\n..\r\n.\r\n").0,
            b".a\r\n\r\n\r\n.\r\n".to_vec()
        );
    }

    #[test]
    fn size_limit_keeps_counting() {
        let mut rx = DataReceiver::new(4);
        let mut out = Vec::new();
        assert_eq!(
            rx.ingest(b"0123456789\r\n.\r\n", &mut out),
            DataProgress::Done { consumed: 15 }
        );
        assert_eq!(out, b"0123");
        assert!(rx.exceeded());
        assert_eq!(rx.size(), 12);
    }

    #[test]
    fn stuff_then_receive_round_trips() {
        let samples: [(&[u8], &[u8]); 10] = [
            (b"", b""),
            (b".", b".\r\n"),
            (b"a\r\n.b\r\n", b"a\r\n.b\r\n"),
            (b"x\r\n.\r\n..\r\n", b"x\r\n.\r\n..\r\n"),
            (b"no final crlf", b"no final crlf\r\n"),
            (b"bare\n.lf\r.cr\r\n", b"bare\r\n.lf\r\n.cr\r\n"),
            (b"\n.\n", b"\r\n.\r\n"),
            (b"a\r", b"a\r\n"),
            (b".\n", b".\r\n"),
            (b"\r\r\n.\r\r\n", b"\r\n\r\n.\r\n\r\n"),
        ];
        for (sample, expected) in samples {
            let mut wire = Vec::new();
            dot_stuff(sample, &mut wire);
            assert!(crate::canonical::is_canonical(&wire), "{sample:?}");
            let (out, done) = receive(&wire);
            assert_eq!(done, Some(wire.len()), "{sample:?}");
            assert_eq!(out, expected, "{sample:?}");
        }
        let mut wire = Vec::new();
        dot_stuff(b"a\n.\nb\r.\r", &mut wire);
        assert_eq!(wire, b"a\r\n..\r\nb\r\n..\r\n.\r\n");
    }
}
