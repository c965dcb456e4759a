//! Protocol transcripts: the one harness the SMTP, POP3 and IMAP tests read conversations with
//! and feed them to a server in every chunking (STYLE.md: fed whole, split at every offset and
//! byte by byte, so nothing depends on how bytes arrive).
//!
//! A transcript is text, one line each:
//! - `C: text`: the client sends `text` and CRLF; `c: text`: raw client bytes, nothing added;
//! - `S: text`: the server's line (CRLF added);
//! - any other `X: text` is kept for the test (`M:` a message SMTP must receive);
//! - `# key: value` (a key of lowercase words) before the first conversation line sets an
//!   option of the test; other `#` lines and empty lines are comments.
//!
//! With [`Escapes::On`], `\r`, `\n`, `\\` and `\xNN` stand for bytes (SMTP, POP3); IMAP
//! transcripts are raw, as flags like `\Recent` have backslashes of their own.
//!
//! A client line whose command is a sync point (STARTTLS, STLS) ends a segment: the client
//! waits for the TLS handshake there, so splits never join bytes across it.

use std::fmt::Debug;
use std::path::Path;

/// Whether transcript text has escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escapes {
    On,
    Off,
}

/// A conversation read from a transcript.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// The client's bytes, cut after each sync-point line.
    pub segments: Vec<Vec<u8>>,
    /// The server's lines, without their CRLF.
    pub server_lines: Vec<Vec<u8>>,
    /// Other `X:` lines in order: (`X`, bytes).
    pub other: Vec<(String, Vec<u8>)>,
    /// The `# key: value` lines before the first conversation line.
    pub options: Vec<(String, String)>,
}

impl Transcript {
    /// Reads `path` (panics naming it if it cannot).
    pub fn load(path: impl AsRef<Path>, escapes: Escapes, sync_points: &[&str]) -> Transcript {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read transcript {}: {e}", path.display()));
        Transcript::parse(&text, escapes, sync_points)
    }

    /// Parses transcript text; `sync_points` are client commands after which a segment ends
    /// (compared without case).
    pub fn parse(text: &str, escapes: Escapes, sync_points: &[&str]) -> Transcript {
        let bytes = |s: &str| match escapes {
            Escapes::On => unescape(s),
            Escapes::Off => s.as_bytes().to_vec(),
        };
        let mut t = Transcript {
            segments: vec![Vec::new()],
            ..Transcript::default()
        };
        let mut started = false;
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix('#') {
                if !started
                    && let Some((key, value)) = comment.split_once(':')
                    && key
                        .trim()
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b' ')
                {
                    t.options
                        .push((key.trim().to_string(), value.trim().to_string()));
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            started = true;
            let Some((kind, rest)) = line.split_once(':').filter(|(k, _)| k.len() == 1) else {
                panic!("bad transcript line {line:?}");
            };
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match kind {
                "C" => {
                    let segment = t.segments.last_mut().expect("one segment at least");
                    segment.extend(bytes(rest));
                    segment.extend_from_slice(b"\r\n");
                    if sync_points.iter().any(|s| rest.eq_ignore_ascii_case(s)) {
                        t.segments.push(Vec::new());
                    }
                }
                "c" => t
                    .segments
                    .last_mut()
                    .expect("one segment at least")
                    .extend(bytes(rest)),
                "S" => t.server_lines.push(bytes(rest)),
                other => t.other.push((other.to_string(), bytes(rest))),
            }
        }
        t
    }

    /// The value of option `key` (`# key: value`).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All the client's bytes.
    pub fn client(&self) -> Vec<u8> {
        self.segments.concat()
    }

    /// The server's bytes: every `S:` line with CRLF.
    pub fn server(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for line in &self.server_lines {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// The bytes of the other lines of `kind`, in order.
    pub fn others(&self, kind: &str) -> Vec<Vec<u8>> {
        self.other
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every way the tests feed the client's bytes, with a label for failures: whole (one
    /// chunk per segment), each segment split in two at every offset, and byte by byte.
    pub fn chunkings(&self) -> Vec<(String, Vec<&[u8]>)> {
        let whole: Vec<&[u8]> = self.segments.iter().map(|s| &s[..]).collect();
        let mut all = vec![("fed whole".to_string(), whole.clone())];
        for (i, segment) in self.segments.iter().enumerate() {
            for split in 1..segment.len() {
                let (a, b) = segment.split_at(split);
                let mut chunks = whole[..i].to_vec();
                chunks.push(a);
                chunks.push(b);
                chunks.extend_from_slice(&whole[i + 1..]);
                all.push((format!("segment {i} split at {split}"), chunks));
            }
        }
        let bytes: Vec<&[u8]> = self.segments.iter().flat_map(|s| s.chunks(1)).collect();
        all.push(("byte by byte".to_string(), bytes));
        all
    }

    /// Runs `run` on every [`chunking`](Transcript::chunkings) and asserts it gives `expected`.
    #[track_caller]
    pub fn assert_every_chunking<T: PartialEq + Debug>(
        &self,
        name: &str,
        expected: &T,
        mut run: impl FnMut(&[&[u8]]) -> T,
    ) {
        for (label, chunks) in self.chunkings() {
            assert_eq!(&run(&chunks), expected, "{name}: {label}");
        }
    }
}

/// Transcript escapes: `\r`, `\n`, `\\` and `\xNN`; a backslash before anything else panics
/// (a typo in a transcript should not pass silently).
pub fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hex = text.get(i + 2..i + 4).expect("\\x needs two hex digits");
                    out.push(u8::from_str_radix(hex, 16).expect("bad \\x escape"));
                    i += 2;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Whether `actual` matches the `expected` line, where each `{}` in it stands for any run of
/// characters (UIDVALIDITY, dates).
pub fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("{}").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let mut rest = actual;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

/// Asserts the server's output `actual` has exactly the `expected` lines (with `{}`
/// wildcards, see [`line_matches`]), naming the transcript and the chunking on failure.
#[track_caller]
pub fn assert_lines(name: &str, mode: &str, expected: &[String], actual: &str) {
    let actual: Vec<&str> = actual.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        actual.len(),
        expected.len(),
        "{name} ({mode}): line count\nactual:\n{}",
        actual.join("\n")
    );
    for (e, a) in expected.iter().zip(&actual) {
        assert!(
            line_matches(e, a),
            "{name} ({mode}):\nexpected {e}\nactual   {a}\nall:\n{}",
            actual.join("\n")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# mode: submission\n# header limits: 20 60\n\
        # RFC 5321: not an option\nS: 220 hi\nC: EHLO x\nC: STARTTLS\nS: 220 go\nc: A\\r\\nB\\x41\nM: m\\n\n# later: no\n";

    #[test]
    fn parses_lines_segments_and_options() {
        let t = Transcript::parse(TEXT, Escapes::On, &["STARTTLS"]);
        assert_eq!(
            t.segments,
            [b"EHLO x\r\nSTARTTLS\r\n".to_vec(), b"A\r\nBA".to_vec()]
        );
        assert_eq!(t.server(), b"220 hi\r\n220 go\r\n");
        assert_eq!(t.others("M"), [b"m\n".to_vec()]);
        assert_eq!(t.option("mode"), Some("submission"));
        assert_eq!(t.option("header limits"), Some("20 60"));
        assert_eq!(
            t.option("later"),
            None,
            "options come before the conversation"
        );
        assert_eq!(t.options.len(), 2, "{:?}", t.options);
        let raw = Transcript::parse("C: a FLAGS (\\Recent)\n", Escapes::Off, &[]);
        assert_eq!(raw.client(), b"a FLAGS (\\Recent)\r\n");
    }

    #[test]
    fn chunkings_keep_sync_points() {
        let t = Transcript::parse("C: ab\nC: STLS\nC: cd\n", Escapes::On, &["stls"]);
        let chunkings = t.chunkings();
        // Whole, 9 splits of "ab\r\nSTLS\r\n", 3 of "cd\r\n", byte by byte.
        assert_eq!(chunkings.len(), 1 + 9 + 3 + 1);
        for (label, chunks) in &chunkings {
            assert_eq!(chunks.concat(), t.client(), "{label}");
            let mut fed = 0;
            for chunk in chunks {
                assert!(
                    fed >= 10 || fed + chunk.len() <= 10,
                    "{label}: a chunk crosses STLS"
                );
                fed += chunk.len();
            }
        }
    }

    #[test]
    fn wildcards() {
        assert!(line_matches(
            "* OK [UIDVALIDITY {}] x",
            "* OK [UIDVALIDITY 17] x"
        ));
        assert!(line_matches("{} a {} b", "x a y b"));
        assert!(!line_matches("* 1 EXISTS", "* 2 EXISTS"));
        assert!(!line_matches("a {} c", "a b d"));
    }
}
