//! Test messages, each with CRLF line ends as RFC 5322 requires.

/// Deterministic pseudo-random bytes (xorshift), so a binary attachment is reproducible.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Base64 with 76-column lines (RFC 2045 §6.8).
pub fn base64(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 4);
    let mut column = 0;
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
        column += 4;
        if column == 76 {
            out.extend_from_slice(b"\r\n");
            column = 0;
        }
    }
    if column > 0 {
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub fn ascii(to: &str, tag: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: <{to}>\r\nSubject: Hello ({tag})\r\n\
         Message-ID: <ascii-{tag}@example.org>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n\
         Hello Bob,\r\nthis is plain ASCII.\r\n"
    )
    .into_bytes()
}

/// 8-bit UTF-8 body, Chinese subject as an RFC 2047 encoded word.
pub fn utf8(to: &str, tag: &str) -> Vec<u8> {
    // "电子邮件测试" in UTF-8, base64: 55S15a2Q6YKu5Lu25rWL6K+V
    format!(
        "From: =?UTF-8?B?5byg5LiJ?= <zhang@example.org>\r\nTo: <{to}>\r\n\
         Subject: =?UTF-8?B?55S15a2Q6YKu5Lu25rWL6K+V?= ({tag})\r\n\
         Message-ID: <utf8-{tag}@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         你好，世界！电子邮件。\r\nCafé, naïve, Ærøskøbing.\r\n"
    )
    .into_bytes()
}

/// About 10 MB: a multipart message with a base64 binary attachment.
pub fn big(to: &str, tag: &str) -> Vec<u8> {
    let attachment = noise(7_500_000, 42);
    let mut message = format!(
        "From: alice@example.org\r\nTo: <{to}>\r\nSubject: Big attachment ({tag})\r\n\
         Message-ID: <big-{tag}@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
         --b1\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"noise.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    message.extend(base64(&attachment));
    message.extend_from_slice(b"--b1--\r\n");
    message
}

/// Body lines that start with dots, including a lone dot.
pub fn dotted(to: &str, tag: &str) -> Vec<u8> {
    format!(
        "From: alice@example.org\r\nTo: <{to}>\r\nSubject: Dots ({tag})\r\n\
         Message-ID: <dots-{tag}@example.org>\r\n\r\n\
         .starts with a dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n..\r\n.end\r\n"
    )
    .into_bytes()
}
