//! Trace headers added on delivery (RFC 5321 §4.4): `Return-Path:` and `Received:`.

use std::net::IpAddr;

/// What a `Received:` header records about one hop.
#[derive(Debug, Clone)]
pub struct Received<'a> {
    /// The name the client gave in EHLO/HELO.
    pub helo: &'a str,
    pub peer: IpAddr,
    /// Our host name.
    pub by: &'a str,
    /// RFC 3848 protocol: SMTP, ESMTP, ESMTPS, ESMTPSA, UTF8SMTP...
    pub with: &'a str,
    /// TLS details, e.g. `TLSv1.3 TLS13_AES_256_GCM_SHA384`, when the hop was encrypted.
    pub tls: Option<&'a str>,
    /// Our id for this transaction.
    pub id: &'a str,
    /// The recipient, given only when the transaction had exactly one (RFC 5321 §4.4).
    pub for_recipient: Option<&'a str>,
    /// Unix seconds.
    pub date: i64,
}

/// The trace block to put in front of a delivered message: `Return-Path:` then `Received:`,
/// folded to stay under 78 columns, CRLF line ends.
pub fn trace_headers(return_path: &str, received: &Received<'_>) -> Vec<u8> {
    let mut out = format!("Return-Path: <{}>\r\n", clean(return_path));
    let peer = match received.peer {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    };
    out.push_str(&format!(
        "Received: from {} ({peer})\r\n",
        clean(received.helo)
    ));
    out.push_str(&format!(
        "\tby {} (pigeon) with {} id {}",
        clean(received.by),
        received.with,
        clean(received.id)
    ));
    if let Some(tls) = received.tls {
        out.push_str(&format!("\r\n\t(using {})", clean(tls)));
    }
    if let Some(rcpt) = received.for_recipient {
        out.push_str(&format!("\r\n\tfor <{}>", clean(rcpt)));
    }
    out.push_str(&format!(
        ";\r\n\t{}\r\n",
        crate::date::format_rfc5322(received.date)
    ));
    out.into_bytes()
}

/// Peer-supplied text must not break the header: no control characters, no angle brackets
/// that could end the path early.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || c == '<' || c == '>' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_block() {
        let received = Received {
            helo: "client.example",
            peer: "192.0.2.1".parse().unwrap(),
            by: "mx.example",
            with: "ESMTP",
            tls: None,
            id: "abc123",
            for_recipient: Some("bob@example.com"),
            date: 0,
        };
        let text = String::from_utf8(trace_headers("alice@example.org", &received)).unwrap();
        assert_eq!(
            text,
            "Return-Path: <alice@example.org>\r\n\
             Received: from client.example ([192.0.2.1])\r\n\
             \tby mx.example (pigeon) with ESMTP id abc123\r\n\
             \tfor <bob@example.com>;\r\n\
             \tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn hostile_helo_cannot_inject_headers() {
        let received = Received {
            helo: "evil\r\nX-Injected: yes",
            peer: "::1".parse().unwrap(),
            by: "mx",
            with: "SMTP",
            tls: None,
            id: "1",
            for_recipient: None,
            date: 0,
        };
        let text = String::from_utf8(trace_headers("", &received)).unwrap();
        assert!(!text.contains("\r\nX-Injected"), "{text}");
        assert!(text.contains("[IPv6:::1]"));
    }
}
