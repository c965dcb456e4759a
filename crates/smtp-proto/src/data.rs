//! DATA content: the receiver that undoes dot-stuffing and finds the end of data, and the
//! encoder that applies it (RFC 5321 §4.5.2).
//!
//! Only `<CRLF>.<CRLF>` ends the data. A bare LF or bare CR never counts as a line end, so
//! `\n.\r\n`, `\r.\r` and `.\n` are content, not terminators (no SMTP smuggling). The bytes
//! between the terminators are kept exactly, bare CR and LF included.

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
/// session can still answer 552 once the terminator arrives.
#[derive(Debug)]
pub struct DataReceiver {
    state: LineState,
    max_size: usize,
    size: usize,
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
    pub fn new(max_size: usize) -> DataReceiver {
        DataReceiver {
            state: LineState::Start,
            max_size,
            size: 0,
        }
    }

    /// Size of the content so far (after removing dot-stuffing), including any part not kept.
    pub fn size(&self) -> usize {
        self.size
    }

    /// True if the content has grown beyond the limit; what was kept is then incomplete.
    pub fn exceeded(&self) -> bool {
        self.size > self.max_size
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        let room = self.max_size.saturating_sub(self.size);
        out.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.size += bytes.len();
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
/// A message that does not end with CRLF gets one before the final `.` line (RFC 5321 requires
/// the content to end with CRLF); a message that does is sent unchanged, so the receiver
/// stores exactly the bytes given.
pub fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + message.len() / 64 + 5);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n' && out.len() >= 2 && out[out.len() - 2] == b'\r';
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
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
    fn smuggling_sequences_are_content() {
        let cases: [(&[u8], &[u8]); 5] = [
            (b"a\n.\r\nb", b"a\n.\r\nb\r\n"),
            (b"a\r.\rb", b"a\r.\rb\r\n"),
            (b"a\r\n.\nb", b"a\r\n\nb\r\n"),
            (b"a\n.\nb", b"a\n.\nb\r\n"),
            (b"a\r\n.\rb", b"a\r\n\rb\r\n"),
        ];
        for (body, kept) in cases {
            assert_eq!(receive(body).1, None, "{body:?} must not end the data");
            let (out, done) = receive(&[body, b"\r\n.\r\n"].concat());
            assert_eq!(done, Some(body.len() + 5));
            assert_eq!(out, kept, "{body:?}");
        }
    }

    #[test]
    fn dots_are_unstuffed() {
        assert_eq!(
            receive(b"..a\r\n.\r\r\n..\r\n.\r\n").0,
            b".a\r\n\r\r\n.\r\n".to_vec()
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
        let samples: [&[u8]; 6] = [
            b"",
            b".",
            b"a\r\n.b\r\n",
            b"x\r\n.\r\n..\r\n",
            b"no final crlf",
            b"bare\n.lf\r.cr\r\n",
        ];
        for sample in samples {
            let mut wire = Vec::new();
            dot_stuff(sample, &mut wire);
            let (out, done) = receive(&wire);
            assert_eq!(done, Some(wire.len()), "{sample:?}");
            let expected = if sample.is_empty() || sample.ends_with(b"\r\n") {
                sample.to_vec()
            } else {
                [sample, b"\r\n"].concat()
            };
            assert_eq!(out, expected, "{sample:?}");
        }
    }
}
