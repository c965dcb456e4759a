//! Attachments and messages saved as files, under names that stay inside the target
//! directory whatever the message calls them.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// A file name that stays inside the target directory: no path, no control characters, no
/// leading dots.
pub fn safe_file_name(name: &str, index: usize) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .map(|c| if c.is_control() || c == ':' { '_' } else { c })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        format!("attachment-{index}")
    } else {
        cleaned
    }
}

/// `dir/name`, with `-1`, `-2`... before the extension if it exists already.
fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (1..)
        .map(|i| dir.join(format!("{stem}-{i}{ext}")))
        .find(|p| !p.exists())
        .expect("some free name")
}

/// Saves a message's attachments into `dir` (created if missing) under their sanitised names,
/// never over an existing file; returns the paths written, in the message's order.
pub fn save_attachments(raw: &[u8], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    // Depth-bounded (issue 14): a message nested 100,000 levels deep cannot overflow.
    let m = message::mime::parse(raw).context("the message cannot be parsed")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut saved = Vec::new();
    for (i, a) in m.attachments().enumerate() {
        use mail_parser::MimeHeaders;
        let name = safe_file_name(a.attachment_name().unwrap_or(""), i + 1);
        let path = unused_path(dir, &name);
        std::fs::write(&path, a.contents()).with_context(|| format!("write {}", path.display()))?;
        saved.push(path);
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_escape() {
        assert_eq!(safe_file_name("../../etc/passwd", 1), "passwd");
        assert_eq!(safe_file_name("..\\..\\boot.ini", 1), "boot.ini");
        assert_eq!(safe_file_name(".hidden", 1), "hidden");
        assert_eq!(safe_file_name("", 3), "attachment-3");
        assert_eq!(safe_file_name("..", 2), "attachment-2");
        assert_eq!(safe_file_name("a\nb.txt", 1), "a_b.txt");
        assert_eq!(safe_file_name("说明.txt", 1), "说明.txt");
    }
}
