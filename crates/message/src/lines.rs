//! Line ends of stored messages as POP3 sends them.
//!
//! Mail received over SMTP is stored with CRLF line ends, but a message appended over IMAP or
//! imported may have bare LFs. POP3 sends every line with CRLF (RFC 1939 §3) and announces
//! sizes in octets first (LIST, STAT, `+OK n octets` for RETR), so the size the store records
//! at delivery and the one `pop3_proto::Machine::message` announces must be this one function.

/// The size of `data` once every bare LF is a CRLF and the last line ends with CRLF, before
/// byte-stuffing: what POP3's RETR sends for it (a bare CR is sent as it is).
pub fn crlf_size(data: &[u8]) -> u64 {
    let mut size = data.len() as u64;
    let mut previous = 0u8;
    for &b in data {
        if b == b'\n' && previous != b'\r' {
            size += 1;
        }
        previous = b;
    }
    if !data.is_empty() && !data.ends_with(b"\n") {
        size += 2;
    }
    size
}

#[cfg(test)]
mod tests {
    use super::crlf_size;

    #[test]
    fn sizes() {
        assert_eq!(crlf_size(b""), 0);
        assert_eq!(crlf_size(b"a\r\n"), 3);
        assert_eq!(crlf_size(b"a\n"), 3);
        assert_eq!(crlf_size(b"a"), 3, "the last line is terminated");
        assert_eq!(crlf_size(b"A: b\n\nbare lf"), 17);
        assert_eq!(crlf_size(b"a\rb\r\n"), 5, "a bare CR stays");
        assert_eq!(crlf_size(b"\n\n"), 4);
    }
}
