//! Checks shared by the MIME fuzz targets (included with `#[path]`: each target is its own
//! binary).

/// The deepest parenthesis nesting of an IMAP structure, skipping quoted strings and
/// literals; panics if unbalanced.
pub fn paren_depth(s: &[u8]) -> usize {
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0);
    while i < s.len() {
        match s[i] {
            b'"' => {
                i += 1;
                while s[i] != b'"' {
                    i += if s[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' => {
                let close = i + s[i..].iter().position(|&b| b == b'}').expect("literal");
                let len: usize = std::str::from_utf8(&s[i + 1..close])
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(&s[close + 1..close + 3], b"\r\n");
                i = close + 2 + len;
            }
            b'(' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' => depth = depth.checked_sub(1).expect("balanced"),
            _ => {}
        }
        i += 1;
    }
    assert_eq!(depth, 0, "balanced");
    max
}

pub fn check_range(raw: &[u8], path: &[u32]) {
    if let Some(range) = message::imap::part_range(raw, path) {
        assert!(range.header.start <= range.header.end);
        assert!(range.header.end <= range.body.start || path.is_empty());
        assert!(range.body.start <= range.body.end && range.body.end <= raw.len());
        if let Some((header, text)) = range.inner {
            assert!(header.end <= text.start && text.end <= raw.len());
        }
    }
}

/// Sections of `data`: the whole message, straight down, and a path the input chooses.
pub fn check_sections(data: &[u8]) {
    check_range(data, &[]);
    let down = data
        .first()
        .map_or(1, |&b| usize::from(b) % (message::mime::MAX_DEPTH + 8) + 1);
    check_range(data, &vec![1; down]);
    let chosen: Vec<u32> = data
        .iter()
        .rev()
        .take(80)
        .map(|&b| u32::from(b % 4))
        .collect();
    check_range(data, &chosen);
}
