//! The sans-IO crates read no clock and no random number generator: their callers pass times,
//! nonces and salts in (ARCHITECTURE.md). Depending on `common` (or on `ring`'s generator
//! through it) would make that easy to break unnoticed, so none of them may.

#[test]
fn sans_io_crates_do_not_depend_on_common() {
    let crates = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for name in ["sasl", "message", "smtp-proto", "pop3-proto", "imap-proto"] {
        let manifest = std::fs::read_to_string(format!("{crates}/{name}/Cargo.toml"))
            .unwrap_or_else(|e| panic!("{name}/Cargo.toml: {e}"));
        let mut section = "";
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
                continue;
            }
            let depends = line.starts_with("common") || line.starts_with("store");
            assert!(
                !(depends && section == "[dependencies]"),
                "{name} is sans-IO but depends on {line:?}: pass times and random bytes in"
            );
        }
    }
}
