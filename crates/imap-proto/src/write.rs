//! Byte-level response writing: strings (quoted or literal), flag lists, dates.

use crate::flags;

/// Writes `s` as an IMAP string: quoted when it is short 7-bit text without CR/LF, a literal
/// otherwise (RFC 9051 §4.3). `utf8` allows 8-bit text in quoted strings (IMAP4rev2/UTF8=ACCEPT).
pub fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let quotable = s.len() < 1024
        && s.iter()
            .all(|&b| b != b'\r' && b != b'\n' && b != 0 && (utf8 || b < 0x80));
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// `NIL` or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        Some(s) => string(out, s, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// `(\Seen \Flagged $Keyword)`.
pub fn flag_list(out: &mut Vec<u8>, bits: u32, keywords: &[String]) {
    out.push(b'(');
    let mut first = true;
    for (bit, name) in flags::NAMES {
        if bits & bit != 0 {
            if !first {
                out.push(b' ');
            }
            out.extend_from_slice(name.as_bytes());
            first = false;
        }
    }
    for k in keywords {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(k.as_bytes());
        first = false;
    }
    out.push(b')');
}

/// An INTERNALDATE: `"27-Nov-2026 21:11:26 +0000"`.
pub fn internal_date(unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "\"{day:02}-{}-{year:04} {:02}:{:02}:{:02} +0000\"",
        MONTHS[month as usize - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parses an APPEND date-time (`"27-Nov-2026 21:11:26 +0100"`) to Unix seconds.
pub fn parse_date_time(text: &str) -> Option<i64> {
    let text = text.trim().trim_matches('"').trim();
    let (date, rest) = text.split_once(' ')?;
    let (time, zone) = rest.trim().split_once(' ')?;
    let days = crate::command::parse_date(date.trim())?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zone: i64 = zone[1..].parse().ok()?;
    let offset = sign * ((zone / 100) * 3600 + (zone % 100) * 60);
    Some(days * 86_400 + h * 3600 + m * 60 + s - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_dates() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\"", false);
        out.push(b' ');
        string(&mut out, "中".as_bytes(), false);
        assert_eq!(out, b"\"a \\\"b\\\"\" {3}\r\n\xe4\xb8\xad");
        let mut out = Vec::new();
        flag_list(&mut out, flags::SEEN | flags::FLAGGED, &["$Junk".into()]);
        assert_eq!(out, b"(\\Flagged \\Seen $Junk)");
        assert_eq!(internal_date(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(parse_date_time("\"01-Jan-1970 01:00:00 +0100\""), Some(0));
        assert_eq!(parse_date_time("bad"), None);
    }
}
