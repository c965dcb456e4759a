//! RFC 5322 §3.3 date-time formatting, from Unix seconds, without a date library.

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Civil date (year, month 1-12, day 1-31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats `unix` seconds as an RFC 5322 date in UTC, e.g. `Fri, 27 Nov 2026 21:11:26 +0000`.
pub fn format_rfc5322(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    format!(
        "{weekday}, {day} {} {year:04} {:02}:{:02}:{:02} +0000",
        MONTHS[month as usize - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            format_rfc5322(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
        assert_eq!(
            format_rfc5322(1_795_813_886),
            "Fri, 27 Nov 2026 21:11:26 +0000"
        );
        assert_eq!(format_rfc5322(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
    }
}
