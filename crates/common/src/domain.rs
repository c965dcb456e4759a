//! The one rule for what can be a mail domain, used by the config (`domain = ...`) and the
//! store (domains, addresses), so the config cannot accept a domain the store then refuses.

/// A loose check that `s` can be a DNS domain (RFC 1035 §2.3.4 lengths, RFC 5890 IDNs
/// written as Unicode): at most 253 octets of labels of at most 63 octets each, not empty,
/// not starting or ending with `-`. ASCII characters must be letters, digits or `-`; any
/// other character is allowed except white space, controls, invisible format characters
/// (which let two domains look alike) and the full stops IDNA reads as dots.
///
/// Non-ASCII is checked loosely on purpose: IDN labels need combining marks such as the
/// Devanagari virama, which `char::is_alphanumeric` refuses (the store's old rule did).
/// No trailing dot and no case folding here: callers that store a domain normalise first.
pub fn valid_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(label_char)
        })
}

fn label_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '-';
    }
    !c.is_whitespace()
        && !c.is_control()
        && !invisible(c)
        && !ascii_like(c)
        && !matches!(c, '\u{3002}' | '\u{ff61}')
}

/// Format characters that render as nothing: soft hyphen, zero-width space and joiners,
/// direction marks and overrides, word joiner and friends, the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// Characters that compatibility normalisation (NFKC, which IDNA's mapping applies: RFC 5895,
/// UTS #46) turns into ASCII other than a letter, digit or `-`: the ideographic, fullwidth,
/// halfwidth and small full stops and the one-dot leader become `.` and would split labels in
/// DNS but not here; the fullwidth `＠` and `／` would read as address or path syntax. (The
/// ideographic full stop U+3002 and its halfwidth form are dots to IDNA too, by UTS #46's own
/// mapping rather than NFKC: `label_char` refuses them by name.)
fn ascii_like(c: char) -> bool {
    use unicode_normalization::char::decompose_compatible;
    let mut bad = false;
    decompose_compatible(c, |d| {
        bad |= d.is_ascii() && !(d.is_ascii_alphanumeric() || d == '-');
    });
    bad
}

#[cfg(test)]
mod tests {
    use super::valid_domain;

    #[test]
    fn ascii_domains() {
        for good in [
            "a.test",
            "localhost",
            "mx-1.example.org",
            "xn--bcher-kva.de",
            "1.2",
        ] {
            assert!(valid_domain(good), "{good:?}");
        }
        for bad in [
            "", ".", "a..test", "-a.test", "a-.test", "a.test.", "a_b.test", "a b.test",
            "a@b.test", "a/b",
        ] {
            assert!(!valid_domain(bad), "{bad:?}");
        }
        assert!(valid_domain(&format!("{}.test", "a".repeat(63))));
        assert!(!valid_domain(&format!("{}.test", "a".repeat(64))));
        assert!(!valid_domain(&["a"; 128].join(".")), "255 octets");
        assert!(valid_domain(&["a"; 127].join(".")), "253 octets");
    }

    /// The cases where the config's old rule (any non-ASCII) and the store's (letters and
    /// digits only) disagreed: both now give these answers.
    #[test]
    fn non_ascii_cases_that_used_to_differ() {
        // Accepted by the config, refused by the store before: valid IDN labels.
        assert!(
            valid_domain("हिन्दी.भारत"),
            "Devanagari virama is a combining mark"
        );
        assert!(valid_domain("ไทย.ไทย"), "Thai vowel marks");
        assert!(valid_domain("☃.net"));
        // Accepted by the config, refused by the store, refused by both now.
        for bad in [
            "例子。测试",           // ideographic full stop: a dot to IDNA
            "a\u{ff0e}test",        // fullwidth full stop
            "a\u{fe52}b.test",      // small full stop: NFKC makes it a dot
            "a\u{2024}b.test",      // one dot leader: NFKC makes it a dot
            "a\u{ff61}b.test",      // halfwidth ideographic full stop
            "exa\u{ff20}mple.test", // fullwidth commercial at
            "a\u{ff0f}b.test",      // fullwidth solidus
            "a\u{a0}b.test",        // no-break space
            "a\u{3000}b.test",      // ideographic space
            "pay\u{200b}pal.com",   // zero-width space
            "a\u{202e}b.test",      // right-to-left override
            "a\u{85}b.test",        // next line (a C1 control)
            "\u{feff}a.test",       // byte-order mark
        ] {
            assert!(!valid_domain(bad), "{bad:?}");
        }
        // Accepted by both before and now.
        for good in ["例子.测试", "bücher.de", "пример.рф", "ｅｘａｍｐｌｅ.com"]
        {
            assert!(valid_domain(good), "{good:?}");
        }
    }
}
