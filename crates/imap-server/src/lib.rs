//! IMAP sessions (RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1) over the [`store::Store`].
//!
//! Implementation notes:
//! - The selected mailbox is a `view::View`: the UIDs in sequence order with their flags.
//!   Changes made by anyone (this session, other sessions, SMTP delivery, POP3) arrive as
//!   `store::Change` notifications and are turned into untagged EXISTS / EXPUNGE / FETCH at
//!   the points RFC 9051 §7.5.1 allows: never EXPUNGE during FETCH, STORE or SEARCH (the
//!   sequence numbers those commands use stay valid), immediately during IDLE.
//! - A notification channel that lagged is replaced by a full resynchronisation from the
//!   store, so no change is ever lost.
//! - IMAP4rev1 clients see mailbox names in modified UTF-7; after `ENABLE IMAP4rev2` or
//!   `UTF8=ACCEPT`, UTF-8.
//!
//! - Each command passes the command table (`state::Verb::states`, which commands are valid
//!   in which state) before its handler runs; a handler gets only what its state owns (the
//!   account from login on, the selected mailbox while one is selected), so there are no
//!   "checked by the dispatcher" unwraps.
//! - Handlers return `Result<Completed, CommandError>`: a syntax error is `BAD`, a user error
//!   `NO` with its response code, a server error `NO [SERVERBUG]`, logged with the command.
//! - At `trace` level each command (never a password, SASL data or message bytes) and each
//!   tagged completion is logged inside the connection's span (`cid`).
//!
//! # Layout
//! `session.rs`: the [`Session`], the dispatcher, untagged updates (`sync`), streamed APPEND,
//! the `net::Session` interface. `state.rs`: the `State` enum, what each state owns, the
//! command table. `reply.rs`: tagged completions and `CommandError`. `view.rs`: the selected
//! mailbox. `op/`: one file per command family (`auth`, `any`, `enable`, `select`,
//! `mailbox`, `list`, `status`, `append`, `idle`, `expunge`, `store`, `copy`, `fetch`,
//! `search`).
//!
//! **Architecture invariant:** sees `dyn Store`, never a backend.

mod op;
mod reply;
mod session;
mod state;
mod view;

use std::sync::Arc;
use std::time::Duration;

use auth::Authenticator;
use imap_proto::{Config, Machine, flags};
use net::ConnInfo;
use store::Store;

pub use session::Session;

// The flag bits are shared by the protocol crate and the store.
const _: () = assert!(
    flags::SEEN == store::flags::SEEN
        && flags::ANSWERED == store::flags::ANSWERED
        && flags::FLAGGED == store::flags::FLAGGED
        && flags::DELETED == store::flags::DELETED
        && flags::DRAFT == store::flags::DRAFT
);

/// Settings of the IMAP service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Accept LOGIN and AUTHENTICATE without TLS from loopback addresses.
    pub allow_plaintext_on_loopback: bool,
    /// Largest APPEND (APPENDLIMIT).
    pub max_append: usize,
    /// Autologout after this long idle once logged in (RFC 9051 §5.4: at least 30 minutes).
    pub idle_timeout: Duration,
    /// Autologout before login.
    pub preauth_timeout: Duration,
}

/// The IMAP service, one per listener.
pub struct Imap {
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    settings: Arc<Settings>,
}

impl Imap {
    pub fn new(store: Arc<dyn Store>, auth: Arc<Authenticator>, settings: Settings) -> Imap {
        Imap {
            store,
            auth,
            settings: Arc::new(settings),
        }
    }
}

impl net::Protocol for Imap {
    type Session = Session;

    fn session(&self, conn: ConnInfo) -> Session {
        Session::new(
            Machine::new(Config {
                max_literal: self.settings.max_append,
                ..Config::default()
            }),
            self.store.clone(),
            self.auth.clone(),
            self.settings.clone(),
            conn,
        )
    }

    fn busy_message(&self) -> Vec<u8> {
        b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n".to_vec()
    }

    fn name(&self) -> &'static str {
        "imap"
    }
}
