//! What the full-text index holds of a message, the same on every backend.
//!
//! **The index holds the text of a message's first [`READ_LIMIT`] bytes (4 MiB): its decoded
//! header values (at most [`HEADER_TEXT_LIMIT`], 256 KiB) and at most [`BODY_TEXT_LIMIT`]
//! (1 MiB) of its decoded body text.** Words beyond that are not found by IMAP SEARCH
//! BODY/TEXT or the webmail's search. Every message is indexed whatever its size, in one piece
//! whose cost is bounded: a 50 MB message costs its first 4 MiB to read and parse and 1 MiB of
//! text to index (trigram indexing takes about 0.3 s per MiB, so bigger texts would hold the
//! writer for seconds, and so would deleting them again). Real mail puts its text first and
//! attachments after it; a text body of 1 MiB is some 500 pages.
//!
//! Backends move queued texts into the index in steps bounded by bytes ([`STEP_BYTES`] of
//! message read per step), never by count alone, and always index at least one message per
//! step, so a step ends and the next one makes progress whatever the sizes. A message whose
//! text cannot be derived or stored is recorded as an index failure (`pigeon verify` and
//! `pigeon status` count them) and leaves the queue: it is never tried again in a loop.

/// Bytes of a message the indexer reads and parses.
pub const READ_LIMIT: usize = 4 << 20;
/// Most bytes of decoded header text indexed per message.
pub const HEADER_TEXT_LIMIT: usize = 256 << 10;
/// Most bytes of decoded body text indexed per message.
pub const BODY_TEXT_LIMIT: usize = 1 << 20;
/// Bytes of messages (each counted up to [`READ_LIMIT`]) one indexing step reads before it
/// commits; a step takes at least one message.
pub const STEP_BYTES: u64 = 4 << 20;

/// The header and body text the index holds for a message whose first bytes are `prefix`
/// (at most [`READ_LIMIT`] of them; more are ignored). A panic while parsing becomes an error
/// naming it, so one strange message cannot stop the indexer.
pub fn texts(prefix: &[u8]) -> Result<(String, String), String> {
    let prefix = &prefix[..prefix.len().min(READ_LIMIT)];
    let (mut headers, mut body) = std::panic::catch_unwind(|| message::summary::texts(prefix))
        .map_err(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("parsing the message panicked: {what}")
        })?;
    truncate(&mut headers, HEADER_TEXT_LIMIT);
    truncate(&mut body, BODY_TEXT_LIMIT);
    Ok((headers, body))
}

/// Cuts `text` to at most `limit` bytes at a character boundary.
fn truncate(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// Whether `text` (the derived header or body text) contains `needle` the way the index
/// matches: case-insensitively.
pub fn matches(text: &str, needle_lowercase: &str) -> bool {
    text.to_lowercase().contains(needle_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_bytes_and_the_first_mib_of_text_count() {
        let mut raw = b"Subject: big\r\n\r\nearlyword ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', BODY_TEXT_LIMIT));
        raw.extend_from_slice(b" lateword\r\n");
        let (headers, body) = texts(&raw).unwrap();
        assert!(headers.contains("big"));
        assert!(body.starts_with("earlyword "));
        assert_eq!(body.len(), BODY_TEXT_LIMIT);
        assert!(!body.contains("lateword"));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let mut text = "ééé".to_string();
        truncate(&mut text, 3);
        assert_eq!(text, "é");
    }

    #[test]
    fn bytes_past_the_read_limit_are_ignored() {
        let mut raw = b"Subject: x\r\n\r\n".to_vec();
        raw.resize(READ_LIMIT, b' ');
        raw.extend_from_slice(b"beyond\r\n");
        let (_, body) = texts(&raw).unwrap();
        assert!(!body.contains("beyond"));
    }
}
