//! The session's state (RFC 9051 §3) and what each state owns, and the command → states
//! table the dispatcher consults before a command runs.
//!
//! **Invariant:** data exists only in the states that have it: an account (its change
//! subscription, the extensions it enabled, an IDLE in progress) from login on, a selected
//! mailbox's [`View`] and saved search only while it is selected. A handler is given the
//! parts its state owns, so a command in the wrong state cannot reach data it does not have.

use auth::{Authenticated, SaslSession};
use imap_proto::CommandBody;
use store::Change;
use tokio::sync::broadcast;

use crate::reply::CommandError;
use crate::view::View;

/// Where the session is.
pub(crate) enum State {
    /// Before login; maybe in an AUTHENTICATE exchange (boxed: a SASL exchange is big, and
    /// rare next to the logged-in sessions that would carry its size).
    NotAuthenticated { sasl: Option<Box<Sasl>> },
    /// Logged in, no mailbox selected.
    Authenticated(Account),
    /// Logged in with a mailbox selected (SELECT or EXAMINE).
    Selected(Account, Selected),
    /// After LOGOUT: nothing more is read.
    Logout,
}

/// An AUTHENTICATE exchange in progress, with the tag its completion answers.
pub(crate) struct Sasl {
    pub tag: String,
    pub session: SaslSession,
}

/// What a logged-in session owns.
pub(crate) struct Account {
    pub user: Authenticated,
    /// The account's change notifications, from login on.
    pub changes: broadcast::Receiver<Change>,
    pub enabled: Enabled,
    /// The tag of the IDLE command in progress.
    pub idle: Option<String>,
}

/// Extensions the client turned on: by ENABLE, or CONDSTORE by using it (RFC 7162 §3.1).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Enabled {
    pub rev2: bool,
    /// Mailbox names in UTF-8 rather than modified UTF-7 (IMAP4rev2 or UTF8=ACCEPT).
    pub utf8: bool,
    pub condstore: bool,
    /// QRESYNC (RFC 7162): VANISHED instead of EXPUNGE.
    pub qresync: bool,
}

/// What a session with a selected mailbox owns besides its account.
pub(crate) struct Selected {
    pub view: View,
    /// SEARCHRES: UIDs saved by `SEARCH RETURN (SAVE)` (RFC 5182); empty again after each
    /// SELECT or EXAMINE (RFC 5182 §2.1).
    pub saved: Vec<u32>,
}

impl Account {
    pub(crate) fn new(user: Authenticated, changes: broadcast::Receiver<Change>) -> Account {
        Account {
            user,
            changes,
            enabled: Enabled::default(),
            idle: None,
        }
    }

    /// Mailbox name as the client writes it, to the stored UTF-8 name.
    pub(crate) fn name_from_client(&self, name: &str) -> Result<String, CommandError> {
        if self.enabled.utf8 || name.eq_ignore_ascii_case("INBOX") {
            return Ok(name.to_string());
        }
        imap_proto::utf7::decode(name)
            .ok_or_else(|| CommandError::syntax("mailbox name is not valid modified UTF-7"))
    }

    /// Stored name to what the client expects.
    pub(crate) fn name_to_client(&self, name: &str) -> String {
        if self.enabled.utf8 {
            name.to_string()
        } else {
            imap_proto::utf7::encode(name)
        }
    }
}

impl Selected {
    pub(crate) fn new(view: View) -> Selected {
        Selected {
            view,
            saved: Vec::new(),
        }
    }
}

impl State {
    pub(crate) fn kind(&self) -> StateKind {
        match self {
            State::NotAuthenticated { .. } => StateKind::NotAuthenticated,
            State::Authenticated(_) => StateKind::Authenticated,
            State::Selected(..) => StateKind::Selected,
            State::Logout => StateKind::Logout,
        }
    }

    /// Logged in (with or without a mailbox selected).
    pub(crate) fn is_authenticated(&self) -> bool {
        matches!(self, State::Authenticated(_) | State::Selected(..))
    }

    /// The account, for the few handlers that change the state themselves (SELECT, DELETE).
    pub(crate) fn account(&mut self, command: &str) -> Result<&mut Account, CommandError> {
        match self {
            State::Authenticated(account) | State::Selected(account, _) => Ok(account),
            _ => Err(CommandError::wrong_state(command)),
        }
    }

    /// Selected → Authenticated; returns the mailbox left, if one was selected.
    pub(crate) fn leave_mailbox(&mut self) -> Option<Selected> {
        // No await between taking the state and putting one back.
        match std::mem::replace(self, State::Logout) {
            State::Selected(account, selected) => {
                *self = State::Authenticated(account);
                Some(selected)
            }
            other => {
                *self = other;
                None
            }
        }
    }

    /// Authenticated (or Selected) → Selected with `selected`; no change before login.
    pub(crate) fn enter_mailbox(&mut self, selected: Selected) {
        *self = match std::mem::replace(self, State::Logout) {
            State::Authenticated(account) | State::Selected(account, _) => {
                State::Selected(account, selected)
            }
            other => other,
        };
    }
}

/// The states, without their data: what the command table speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateKind {
    NotAuthenticated,
    Authenticated,
    Selected,
    Logout,
}

/// Every command the parser knows, as the table names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Capability,
    Noop,
    Check,
    Id,
    Logout,
    StartTls,
    Login,
    Authenticate,
    Enable,
    Select,
    Examine,
    Create,
    Delete,
    Rename,
    Subscribe,
    Unsubscribe,
    List,
    Lsub,
    Namespace,
    Status,
    Append,
    Idle,
    Close,
    Unselect,
    Expunge,
    Search,
    Fetch,
    Store,
    Copy,
    Move,
}

impl Verb {
    pub(crate) fn of(body: &CommandBody) -> Verb {
        match body {
            CommandBody::Capability => Verb::Capability,
            CommandBody::Noop => Verb::Noop,
            CommandBody::Check => Verb::Check,
            CommandBody::Id => Verb::Id,
            CommandBody::Logout => Verb::Logout,
            CommandBody::StartTls => Verb::StartTls,
            CommandBody::Login { .. } => Verb::Login,
            CommandBody::Authenticate { .. } => Verb::Authenticate,
            CommandBody::Enable(_) => Verb::Enable,
            CommandBody::Select { read_only, .. } => {
                if *read_only {
                    Verb::Examine
                } else {
                    Verb::Select
                }
            }
            CommandBody::Create { .. } => Verb::Create,
            CommandBody::Delete { .. } => Verb::Delete,
            CommandBody::Rename { .. } => Verb::Rename,
            CommandBody::Subscribe { .. } => Verb::Subscribe,
            CommandBody::Unsubscribe { .. } => Verb::Unsubscribe,
            CommandBody::List { options, .. } => {
                if options.lsub {
                    Verb::Lsub
                } else {
                    Verb::List
                }
            }
            CommandBody::Namespace => Verb::Namespace,
            CommandBody::Status { .. } => Verb::Status,
            CommandBody::Append { .. } => Verb::Append,
            CommandBody::Idle => Verb::Idle,
            CommandBody::Close => Verb::Close,
            CommandBody::Unselect => Verb::Unselect,
            CommandBody::Expunge { .. } => Verb::Expunge,
            CommandBody::Search { .. } => Verb::Search,
            CommandBody::Fetch { .. } => Verb::Fetch,
            CommandBody::Store { .. } => Verb::Store,
            CommandBody::Copy { move_them, .. } => {
                if *move_them {
                    Verb::Move
                } else {
                    Verb::Copy
                }
            }
        }
    }

    /// The command's name, for logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verb::Capability => "CAPABILITY",
            Verb::Noop => "NOOP",
            Verb::Check => "CHECK",
            Verb::Id => "ID",
            Verb::Logout => "LOGOUT",
            Verb::StartTls => "STARTTLS",
            Verb::Login => "LOGIN",
            Verb::Authenticate => "AUTHENTICATE",
            Verb::Enable => "ENABLE",
            Verb::Select => "SELECT",
            Verb::Examine => "EXAMINE",
            Verb::Create => "CREATE",
            Verb::Delete => "DELETE",
            Verb::Rename => "RENAME",
            Verb::Subscribe => "SUBSCRIBE",
            Verb::Unsubscribe => "UNSUBSCRIBE",
            Verb::List => "LIST",
            Verb::Lsub => "LSUB",
            Verb::Namespace => "NAMESPACE",
            Verb::Status => "STATUS",
            Verb::Append => "APPEND",
            Verb::Idle => "IDLE",
            Verb::Close => "CLOSE",
            Verb::Unselect => "UNSELECT",
            Verb::Expunge => "EXPUNGE",
            Verb::Search => "SEARCH",
            Verb::Fetch => "FETCH",
            Verb::Store => "STORE",
            Verb::Copy => "COPY",
            Verb::Move => "MOVE",
        }
    }

    /// The command table: the states each command is valid in (RFC 9051 §6.1–6.4; mox's
    /// `commandsState*` lists). The dispatcher answers any other state with [`refusal`].
    pub(crate) fn states(self) -> &'static [StateKind] {
        use StateKind::{Authenticated, NotAuthenticated, Selected};
        const ANY: &[StateKind] = &[NotAuthenticated, Authenticated, Selected];
        const NOT_AUTHENTICATED: &[StateKind] = &[NotAuthenticated];
        const AUTHENTICATED: &[StateKind] = &[Authenticated, Selected];
        const SELECTED: &[StateKind] = &[Selected];
        match self {
            // CHECK is a selected-state command in RFC 3501, but pigeon has always answered it
            // like NOOP in any state (RFC 9051 dropped it).
            Verb::Capability | Verb::Noop | Verb::Check | Verb::Id | Verb::Logout => ANY,
            Verb::StartTls | Verb::Login | Verb::Authenticate => NOT_AUTHENTICATED,
            Verb::Enable
            | Verb::Select
            | Verb::Examine
            | Verb::Create
            | Verb::Delete
            | Verb::Rename
            | Verb::Subscribe
            | Verb::Unsubscribe
            | Verb::List
            | Verb::Lsub
            | Verb::Namespace
            | Verb::Status
            | Verb::Append
            | Verb::Idle => AUTHENTICATED,
            Verb::Close
            | Verb::Unselect
            | Verb::Expunge
            | Verb::Search
            | Verb::Fetch
            | Verb::Store
            | Verb::Copy
            | Verb::Move => SELECTED,
        }
    }

    pub(crate) fn allowed_in(self, state: StateKind) -> bool {
        self.states().contains(&state)
    }
}

/// The answer to a command the table does not allow in `state` (always `BAD`, RFC 9051
/// §7.1.5). `starttls_offered`: STARTTLS is available on this connection and not done yet.
pub(crate) fn refusal(verb: Verb, state: StateKind, starttls_offered: bool) -> CommandError {
    let text = match state {
        StateKind::NotAuthenticated => "Log in first",
        StateKind::Authenticated if verb.allowed_in(StateKind::Selected) => {
            "Select a mailbox first"
        }
        // Logged in: only the not-authenticated commands are left.
        StateKind::Authenticated | StateKind::Selected => match verb {
            Verb::StartTls if !starttls_offered => "STARTTLS not available",
            _ => "already authenticated",
        },
        StateKind::Logout => "Logged out",
    };
    CommandError::syntax(text)
}

#[cfg(test)]
mod tests {
    use super::StateKind::{Authenticated, Logout, NotAuthenticated, Selected};
    use super::*;

    const ALL: [Verb; 30] = [
        Verb::Capability,
        Verb::Noop,
        Verb::Check,
        Verb::Id,
        Verb::Logout,
        Verb::StartTls,
        Verb::Login,
        Verb::Authenticate,
        Verb::Enable,
        Verb::Select,
        Verb::Examine,
        Verb::Create,
        Verb::Delete,
        Verb::Rename,
        Verb::Subscribe,
        Verb::Unsubscribe,
        Verb::List,
        Verb::Lsub,
        Verb::Namespace,
        Verb::Status,
        Verb::Append,
        Verb::Idle,
        Verb::Close,
        Verb::Unselect,
        Verb::Expunge,
        Verb::Search,
        Verb::Fetch,
        Verb::Store,
        Verb::Copy,
        Verb::Move,
    ];

    fn verbs_in(state: StateKind) -> Vec<&'static str> {
        ALL.iter()
            .filter(|v| v.allowed_in(state))
            .map(|v| v.name())
            .collect()
    }

    #[test]
    fn commands_by_state() {
        assert_eq!(
            verbs_in(NotAuthenticated),
            [
                "CAPABILITY",
                "NOOP",
                "CHECK",
                "ID",
                "LOGOUT",
                "STARTTLS",
                "LOGIN",
                "AUTHENTICATE"
            ]
        );
        let authenticated = [
            "CAPABILITY",
            "NOOP",
            "CHECK",
            "ID",
            "LOGOUT",
            "ENABLE",
            "SELECT",
            "EXAMINE",
            "CREATE",
            "DELETE",
            "RENAME",
            "SUBSCRIBE",
            "UNSUBSCRIBE",
            "LIST",
            "LSUB",
            "NAMESPACE",
            "STATUS",
            "APPEND",
            "IDLE",
        ];
        assert_eq!(verbs_in(Authenticated), authenticated);
        let selected: Vec<&str> = authenticated
            .into_iter()
            .chain([
                "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE",
            ])
            .collect();
        assert_eq!(verbs_in(Selected), selected);
        assert!(verbs_in(Logout).is_empty());
    }

    #[test]
    fn every_verb_has_a_state_and_a_distinct_name() {
        let mut names: Vec<&str> = ALL.iter().map(|v| v.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert!(ALL.iter().all(|v| !v.states().is_empty()));
    }

    fn refused(verb: Verb, state: StateKind, starttls_offered: bool) -> String {
        match refusal(verb, state, starttls_offered) {
            CommandError::Syntax(text) => text,
            other => panic!("{other:?}"),
        }
    }

    /// The texts clients have always seen (the transcript `errors.txt` checks some).
    #[test]
    fn refusals() {
        assert_eq!(
            refused(Verb::Select, NotAuthenticated, true),
            "Log in first"
        );
        assert_eq!(
            refused(Verb::Fetch, NotAuthenticated, false),
            "Log in first"
        );
        assert_eq!(
            refused(Verb::Fetch, Authenticated, false),
            "Select a mailbox first"
        );
        assert_eq!(
            refused(Verb::Login, Authenticated, true),
            "already authenticated"
        );
        assert_eq!(
            refused(Verb::Authenticate, Selected, false),
            "already authenticated"
        );
        assert_eq!(
            refused(Verb::StartTls, Selected, true),
            "already authenticated"
        );
        assert_eq!(
            refused(Verb::StartTls, Authenticated, false),
            "STARTTLS not available"
        );
    }
}
