//! RFC 5322 messages: dates and trace headers now; MIME parsing and composition (on
//! mail-parser and mail-builder) as the user agent and IMAP land.
//!
//! **Architecture invariant:** pure code: no IO, no clock (callers pass the time in).

pub mod compose;
pub mod date;
pub mod decode;
pub mod dsn;
pub mod headers;
pub mod imap;
pub mod lines;
pub mod mime;
pub mod search;
pub mod summary;
pub mod text;
pub mod trace;
