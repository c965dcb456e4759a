//! The user agent as a library: what `pigeon account|send|read` and the webmail do with mail,
//! returning typed values; the callers only parse arguments and print (or answer HTTP).
//!
//! - [`view`]: one message as a reader sees it ([`view::MessageView`]: decoded headers, its
//!   text, its attachments), list entries, and whether a BODYSTRUCTURE names an attachment.
//!   Pure code: no IO.
//! - [`html`]: HTML made into readable text (the one conversion the CLI and the webmail share)
//!   and HTML re-written so the sanitiser's parser runs in about linear time. Pure code.
//! - [`account`]: the accounts file and where passwords come from.
//! - [`imap`], [`pop3`]: reading over IMAP and POP3 (implicit TLS) with the `client` crate.
//! - [`send`]: building a message from a draft and submitting it, with the Sent copy.
//! - [`files`]: attachments saved under names that cannot leave the target directory.

pub mod account;
pub mod connect;
pub mod files;
pub mod html;
pub mod imap;
pub mod pop3;
pub mod send;
pub mod view;

pub use account::Account;
pub use view::MessageView;
