//! IMAP sessions (RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1) over the [`store::Store`].
//!
//! Implementation notes:
//! - The selected mailbox is a [`view::View`]: the UIDs in sequence order with their flags.
//!   Changes made by anyone (this session, other sessions, SMTP delivery, POP3) arrive as
//!   `store::Change` notifications and are turned into untagged EXISTS / EXPUNGE / FETCH at
//!   the points RFC 9051 §7.5.1 allows: never EXPUNGE during FETCH, STORE or SEARCH (the
//!   sequence numbers those commands use stay valid), immediately during IDLE.
//! - A notification channel that lagged is replaced by a full resynchronisation from the
//!   store, so no change is ever lost.
//! - IMAP4rev1 clients see mailbox names in modified UTF-7; after `ENABLE IMAP4rev2` or
//!   `UTF8=ACCEPT`, UTF-8.
//!
//! **Architecture invariant:** sees `dyn Store`, never a backend.

mod fetch;
mod list;
mod search;
mod view;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth::{Authenticated, Authenticator, SaslSession, SaslStep};
use imap_proto::command::{SequenceSet, StatusItem, StoreMode};
use imap_proto::{Command, CommandBody, Config, Event, Machine, flags};
use net::{ConnInfo, Flow, TlsInfo};
use sasl::exchange::ChannelBindings;
use store::{Change, FlagMode, Mailbox, SpecialUse, Store, StoreError};
use tokio::sync::broadcast;
use tracing::{error, info, warn};

use view::View;

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
        Session {
            machine: Machine::new(Config {
                max_literal: self.settings.max_append,
                ..Config::default()
            }),
            store: self.store.clone(),
            auth: self.auth.clone(),
            settings: self.settings.clone(),
            conn,
            tls: None,
            user: None,
            changes: None,
            selected: None,
            idle_tag: None,
            sasl: None,
            rev2: false,
            utf8: false,
            condstore: false,
            qresync: false,
            saved: Vec::new(),
            upload: None,
        }
    }

    fn busy_message(&self) -> Vec<u8> {
        b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n".to_vec()
    }

    fn name(&self) -> &'static str {
        "imap"
    }
}

/// One IMAP connection.
pub struct Session {
    machine: Machine,
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    settings: Arc<Settings>,
    conn: ConnInfo,
    tls: Option<TlsInfo>,
    user: Option<Authenticated>,
    /// The account's change notifications, from login on.
    changes: Option<broadcast::Receiver<Change>>,
    selected: Option<View>,
    /// The tag of the IDLE command in progress.
    idle_tag: Option<String>,
    /// An AUTHENTICATE exchange in progress, with its tag.
    sasl: Option<(String, SaslSession)>,
    rev2: bool,
    utf8: bool,
    condstore: bool,
    /// QRESYNC enabled (RFC 7162): VANISHED instead of EXPUNGE.
    qresync: bool,
    /// SEARCHRES: UIDs saved by `SEARCH RETURN (SAVE)` (RFC 5182).
    saved: Vec<u32>,
    /// A big APPEND whose message is arriving (and going into the store piece by piece).
    upload: Option<Upload>,
}

/// Pieces of a streamed APPEND are sent to the store in pieces of about this size.
const UPLOAD_PIECE: usize = 1024 * 1024;

/// A streamed APPEND in progress.
struct Upload {
    command: Command,
    /// The store's upload; None when the data is dropped (not logged in, or a store error:
    /// the APPEND is answered when it completes).
    id: Option<i64>,
    pending: Vec<u8>,
    failed: bool,
}

/// What a command handler tells the dispatcher.
type Outcome = Result<Reply, Reply>;

/// A tagged reply: status, optional response code, text.
struct Reply {
    status: &'static str,
    code: Option<String>,
    text: String,
}

fn ok(text: impl Into<String>) -> Reply {
    Reply {
        status: "OK",
        code: None,
        text: text.into(),
    }
}

fn ok_code(code: impl Into<String>, text: impl Into<String>) -> Reply {
    Reply {
        status: "OK",
        code: Some(code.into()),
        text: text.into(),
    }
}

fn no(code: Option<&str>, text: impl Into<String>) -> Reply {
    Reply {
        status: "NO",
        code: code.map(String::from),
        text: text.into(),
    }
}

fn bad(text: impl Into<String>) -> Reply {
    Reply {
        status: "BAD",
        code: None,
        text: text.into(),
    }
}

fn internal(e: StoreError) -> Reply {
    match e {
        StoreError::NotFound(what) => no(Some("NONEXISTENT"), format!("{what} not found")),
        StoreError::AlreadyExists(what) => {
            no(Some("ALREADYEXISTS"), format!("{what} already exists"))
        }
        StoreError::Invalid(why) => no(Some("CANNOT"), why),
        StoreError::InUse(why) => no(Some("INUSE"), why),
        StoreError::Backend(e) => {
            error!(error = %e, "store failure");
            no(Some("SERVERBUG"), "Internal error, try again later")
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn random_nonce() -> [u8; 18] {
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; 18];
    let _ = ring::rand::SystemRandom::new().fill(&mut nonce);
    nonce
}

/// Flag names to system bits and keywords; `\Recent` and unknown `\` flags are refused.
fn parse_flags(names: &[String]) -> Result<(u32, Vec<String>), Reply> {
    let mut bits = 0;
    let mut keywords: Vec<String> = Vec::new();
    for name in names {
        if let Some(bit) = flags::from_name(name) {
            bits |= bit;
        } else if name.starts_with('\\') {
            return Err(bad(format!("cannot set flag {name}")));
        } else if name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
            && !name.is_empty()
        {
            if !keywords.iter().any(|k| k.eq_ignore_ascii_case(name)) {
                keywords.push(name.clone());
            }
        } else {
            return Err(bad(format!("invalid keyword {name}")));
        }
    }
    Ok((bits, keywords))
}

impl Session {
    fn ip(&self) -> IpAddr {
        self.conn.peer.ip()
    }

    fn login_allowed(&self) -> bool {
        self.tls.is_some() || (self.settings.allow_plaintext_on_loopback && self.ip().is_loopback())
    }

    fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1", "IMAP4rev2"];
        if self.user.is_none() {
            if self.tls.is_none() && self.conn.starttls_available {
                caps.push("STARTTLS");
            }
            if self.login_allowed() {
                caps.extend(["AUTH=PLAIN", "AUTH=SCRAM-SHA-256"]);
                if self.tls.is_some() {
                    caps.push("AUTH=SCRAM-SHA-256-PLUS");
                }
            } else {
                caps.push("LOGINDISABLED");
            }
        }
        caps.extend([
            "SASL-IR",
            "LITERAL+",
            "ENABLE",
            "ID",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "MOVE",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "SEARCHRES",
            "WITHIN",
            "STATUS=SIZE",
            "BINARY",
            "CONDSTORE",
            "UTF8=ACCEPT",
            "QRESYNC",
        ]);
        let mut text = caps.join(" ");
        text.push_str(&format!(" APPENDLIMIT={}", self.settings.max_append));
        text
    }

    /// Mailbox name as the client writes it, to the stored UTF-8 name.
    fn name_from_client(&self, name: &str) -> Result<String, Reply> {
        if self.utf8 || name.eq_ignore_ascii_case("INBOX") {
            return Ok(name.to_string());
        }
        imap_proto::utf7::decode(name)
            .ok_or_else(|| bad("mailbox name is not valid modified UTF-7"))
    }

    /// Stored name to what the client expects.
    fn name_to_client(&self, name: &str) -> String {
        if self.utf8 {
            name.to_string()
        } else {
            imap_proto::utf7::encode(name)
        }
    }

    fn write_tagged(&mut self, tag: &str, reply: Reply) {
        let code = reply.code.map(|c| format!("[{c}] ")).unwrap_or_default();
        let line = format!("{tag} {} {code}{}\r\n", reply.status, reply.text);
        self.machine.out().extend_from_slice(line.as_bytes());
    }

    async fn mailbox(&self, name: &str) -> Result<Mailbox, Reply> {
        let user = self.user.as_ref().ok_or_else(|| bad("not logged in"))?;
        let name = self.name_from_client(name)?;
        self.store
            .mailbox(user.account_id, &name)
            .await
            .map_err(internal)?
            .ok_or_else(|| no(Some("NONEXISTENT"), "No such mailbox"))
    }

    /// Brings the selected view up to date and writes the untagged responses; EXPUNGEs only
    /// when `expunges_allowed`.
    async fn sync(&mut self, expunges_allowed: bool) {
        let Some(changes) = self.changes.as_mut() else {
            return;
        };
        let mut lagged = false;
        let mut pending = Vec::new();
        loop {
            match changes.try_recv() {
                Ok(store::Change::Resync) | Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    lagged = true
                }
                Ok(change) => pending.push(change),
                Err(_) => break,
            }
        }
        let Some(view) = self.selected.as_mut() else {
            return;
        };
        if lagged {
            warn!("change notifications lagged; resynchronising");
            if let Err(e) = view.resync(&*self.store).await {
                error!(error = %e, "resync failed");
            }
        } else {
            for change in pending {
                view.apply(change);
            }
        }
        let (condstore, qresync) = (self.condstore, self.qresync);
        if let Err(e) = view
            .flush(
                &*self.store,
                self.machine.out(),
                expunges_allowed,
                condstore,
                qresync,
            )
            .await
        {
            error!(error = %e, "reading new messages failed");
        }
    }

    async fn handle(&mut self, command: Command) -> Option<Flow> {
        let Command { tag, body } = command;
        let (expunges_allowed, result) = match body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.machine
                    .out()
                    .extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
                (true, Ok(ok("CAPABILITY completed")))
            }
            CommandBody::Noop | CommandBody::Check => (true, Ok(ok("NOOP completed"))),
            CommandBody::Id => {
                self.machine
                    .out()
                    .extend_from_slice(b"* ID (\"name\" \"pigeon\")\r\n");
                (true, Ok(ok("ID completed")))
            }
            CommandBody::Logout => {
                self.machine
                    .out()
                    .extend_from_slice(b"* BYE pigeon IMAP server logging out\r\n");
                self.write_tagged(&tag, ok("LOGOUT completed"));
                self.machine.close();
                return Some(Flow::Close);
            }
            CommandBody::StartTls => {
                if self.tls.is_some() || !self.conn.starttls_available {
                    (true, Err(bad("STARTTLS not available")))
                } else if self.user.is_some() {
                    (true, Err(bad("already authenticated")))
                } else {
                    self.write_tagged(&tag, ok("Begin TLS negotiation now"));
                    // RFC 9051 §6.2.1: nothing pipelined after STARTTLS is read as TLS data.
                    self.machine.tls_started();
                    return Some(Flow::StartTls);
                }
            }
            CommandBody::Login { user, password } => (true, self.login(&user, &password).await),
            CommandBody::Authenticate { mechanism, initial } => {
                self.authenticate_start(tag, &mechanism, initial).await;
                return None;
            }
            body if self.user.is_none() => {
                let _ = body;
                (true, Err(bad("Log in first")))
            }
            CommandBody::Enable(caps) => (true, Ok(self.enable(&caps))),
            CommandBody::Select {
                mailbox,
                read_only,
                condstore,
                qresync,
            } => (
                true,
                self.select(&mailbox, read_only, condstore, qresync.as_ref())
                    .await,
            ),
            CommandBody::Create {
                mailbox,
                special_use,
            } => (true, self.create(&mailbox, special_use.as_deref()).await),
            CommandBody::Delete { mailbox } => (true, self.delete(&mailbox).await),
            CommandBody::Rename { from, to } => (true, self.rename(&from, &to).await),
            CommandBody::Subscribe { mailbox } => (true, self.subscribe(&mailbox, true).await),
            CommandBody::Unsubscribe { mailbox } => (true, self.subscribe(&mailbox, false).await),
            CommandBody::List {
                reference,
                patterns,
                options,
            } => (true, self.list(&reference, &patterns, &options).await),
            CommandBody::Namespace => {
                self.machine
                    .out()
                    .extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
                (true, Ok(ok("NAMESPACE completed")))
            }
            CommandBody::Status { mailbox, items } => (true, self.status(&mailbox, &items).await),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => (
                true,
                self.append(&mailbox, &flags, date.as_deref(), message)
                    .await,
            ),
            CommandBody::Idle => {
                self.sync(true).await;
                self.machine.out().extend_from_slice(b"+ idling\r\n");
                self.machine.start_idle();
                self.idle_tag = Some(tag);
                return None;
            }
            body if self.selected.is_none() => {
                let _ = body;
                (true, Err(bad("Select a mailbox first")))
            }
            CommandBody::Close => (true, self.close(true).await),
            CommandBody::Unselect => (true, self.close(false).await),
            CommandBody::Expunge { uids } => (true, self.expunge(uids.as_ref()).await),
            CommandBody::Search {
                uid,
                charset,
                key,
                ret,
            } => match charset.as_deref() {
                // Text is indexed as UTF-8, of which US-ASCII is a subset (RFC 9051 §6.4.4:
                // an unsupported charset gets NO, not BAD).
                None | Some("UTF-8" | "US-ASCII") => {
                    (uid, self.search(&tag, uid, &key, ret.as_ref()).await)
                }
                Some(_) => (
                    uid,
                    Err(no(
                        Some("BADCHARSET (UTF-8 US-ASCII)"),
                        "unsupported charset",
                    )),
                ),
            },
            CommandBody::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => (
                uid,
                self.fetch(uid, &set, &items, changed_since, vanished).await,
            ),
            CommandBody::Store {
                uid,
                set,
                mode,
                silent,
                flags,
                unchanged_since,
            } => (
                uid,
                self.store_flags(uid, &set, mode, silent, &flags, unchanged_since)
                    .await,
            ),
            CommandBody::Copy {
                uid,
                set,
                mailbox,
                move_them,
            } => (true, self.copy(uid, &set, &mailbox, move_them).await),
        };
        // Untagged updates before the tagged completion (RFC 9051 §7.5.1 governs EXPUNGE).
        if self.user.is_some() {
            self.sync(expunges_allowed).await;
        }
        let reply = result.unwrap_or_else(|e| e);
        self.write_tagged(&tag, reply);
        None
    }

    fn after_login(&mut self, user: Authenticated) {
        info!(user = %user.address, "imap login");
        self.changes = Some(self.store.subscribe(user.account_id));
        self.user = Some(user);
    }

    async fn login(&mut self, username: &str, password: &str) -> Outcome {
        if self.user.is_some() {
            return Err(bad("already authenticated"));
        }
        if !self.login_allowed() {
            return Err(no(Some("PRIVACYREQUIRED"), "Use STARTTLS first"));
        }
        match self
            .auth
            .check_password(self.ip(), username, password)
            .await
        {
            Ok(Some(user)) => {
                self.after_login(user);
                Ok(ok_code(
                    format!("CAPABILITY {}", self.capabilities()),
                    "LOGIN completed",
                ))
            }
            Ok(None) => Err(no(Some("AUTHENTICATIONFAILED"), "Invalid credentials")),
            Err(e) => Err(internal(e)),
        }
    }

    async fn authenticate_start(&mut self, tag: String, mechanism: &str, initial: Option<Vec<u8>>) {
        if self.user.is_some() {
            self.write_tagged(&tag, bad("already authenticated"));
            return;
        }
        if !self.login_allowed() {
            self.write_tagged(&tag, no(Some("PRIVACYREQUIRED"), "Use STARTTLS first"));
            return;
        }
        let bindings = self
            .tls
            .as_ref()
            .map(|t| ChannelBindings {
                tls_exporter: t.exporter.clone(),
                tls_server_end_point: t.server_end_point.clone(),
            })
            .unwrap_or_default();
        let Some(mut session) = SaslSession::new(
            mechanism,
            self.ip(),
            bindings,
            self.tls.is_some(),
            &random_nonce(),
        ) else {
            self.write_tagged(&tag, no(None, "Unsupported authentication mechanism"));
            return;
        };
        let step = session.start(&self.auth, initial.as_deref()).await;
        self.sasl = Some((tag, session));
        self.sasl_answer(step);
    }

    fn sasl_answer(&mut self, step: SaslStep) {
        if let SaslStep::Challenge(challenge) = step {
            self.machine.auth_continue(&challenge);
            return;
        }
        let Some((tag, _)) = self.sasl.take() else {
            return;
        };
        let reply = match step {
            SaslStep::Success(user) => {
                self.after_login(user);
                ok_code(
                    format!("CAPABILITY {}", self.capabilities()),
                    "AUTHENTICATE completed",
                )
            }
            SaslStep::Invalid => no(Some("AUTHENTICATIONFAILED"), "Invalid credentials"),
            SaslStep::Malformed(why) => bad(why),
            SaslStep::Temporary => no(
                Some("UNAVAILABLE"),
                "Authentication unavailable, try again later",
            ),
            SaslStep::Challenge(_) => unreachable!("handled above"),
        };
        self.write_tagged(&tag, reply);
    }

    fn enable(&mut self, caps: &[String]) -> Reply {
        let mut enabled = Vec::new();
        for cap in caps {
            match cap.as_str() {
                "IMAP4REV2" if !self.rev2 => {
                    self.rev2 = true;
                    self.utf8 = true;
                    enabled.push("IMAP4rev2");
                }
                "UTF8=ACCEPT" if !self.utf8 => {
                    self.utf8 = true;
                    enabled.push("UTF8=ACCEPT");
                }
                "QRESYNC" if !self.qresync => {
                    // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                    self.qresync = true;
                    self.condstore = true;
                    enabled.push("QRESYNC");
                }
                "CONDSTORE" if !self.condstore => {
                    self.condstore = true;
                    enabled.push("CONDSTORE");
                }
                _ => {}
            }
        }
        let line = format!("* ENABLED {}\r\n", enabled.join(" "));
        self.machine
            .out()
            .extend_from_slice(line.replace("ENABLED \r\n", "ENABLED\r\n").as_bytes());
        ok("ENABLE completed")
    }

    async fn select(
        &mut self,
        name: &str,
        read_only: bool,
        condstore: bool,
        qresync: Option<&imap_proto::command::Qresync>,
    ) -> Outcome {
        if qresync.is_some() && !self.qresync {
            return Err(bad("ENABLE QRESYNC first"));
        }
        // Selecting closes the previous mailbox without expunging (RFC 9051 §6.3.2).
        if self.selected.take().is_some() {
            self.machine
                .out()
                .extend_from_slice(b"* OK [CLOSED] Previous mailbox closed\r\n");
        }
        if condstore {
            self.condstore = true;
        }
        let mailbox = self.mailbox(name).await?;
        // Drop notifications older than the snapshot we are about to take.
        if let Some(changes) = self.changes.as_mut() {
            *changes = changes.resubscribe();
        }
        let view = View::open(&*self.store, mailbox.clone(), read_only)
            .await
            .map_err(internal)?;
        let out = self.machine.out();
        out.extend_from_slice(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
        if read_only {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
        } else {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n");
        }
        out.extend_from_slice(format!("* {} EXISTS\r\n", view.len()).as_bytes());
        if !self.rev2 {
            out.extend_from_slice(b"* 0 RECENT\r\n");
        }
        let out = self.machine.out();
        out.extend_from_slice(
            format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", mailbox.uid_validity).as_bytes(),
        );
        out.extend_from_slice(
            format!("* OK [UIDNEXT {}] Predicted next UID\r\n", mailbox.uid_next).as_bytes(),
        );
        if self.condstore {
            out.extend_from_slice(
                format!(
                    "* OK [HIGHESTMODSEQ {}] Highest\r\n",
                    mailbox.highest_modseq
                )
                .as_bytes(),
            );
        }
        if self.rev2 {
            let line = format!(
                "* LIST () \"/\" {}\r\n",
                list::quote_name(&self.name_to_client(&mailbox.name))
            );
            self.machine.out().extend_from_slice(line.as_bytes());
        }
        if let Some(q) = qresync
            && q.uid_validity == mailbox.uid_validity
        {
            // RFC 7162 §3.2.5.1: what vanished and what changed since the client's MODSEQ.
            let mut vanished = self
                .store
                .expunged_since(mailbox.id, q.modseq)
                .await
                .map_err(internal)?;
            if let Some(known) = &q.known_uids {
                let max = mailbox.uid_next.saturating_sub(1);
                vanished.retain(|u| known.contains(*u, max));
            }
            let mut out = Vec::new();
            if !vanished.is_empty() {
                out.extend_from_slice(
                    format!("* VANISHED (EARLIER) {}\r\n", search::compress(&vanished)).as_bytes(),
                );
            }
            for (i, m) in view.messages().iter().enumerate() {
                if m.modseq > q.modseq {
                    out.extend_from_slice(
                        format!("* {} FETCH (UID {} FLAGS ", i + 1, m.uid).as_bytes(),
                    );
                    imap_proto::write::flag_list(&mut out, m.flags, &m.keywords);
                    out.extend_from_slice(format!(" MODSEQ ({}))\r\n", m.modseq).as_bytes());
                }
            }
            self.machine.out().extend_from_slice(&out);
        }
        self.selected = Some(view);
        let code = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        Ok(ok_code(
            code,
            if read_only {
                "EXAMINE completed"
            } else {
                "SELECT completed"
            },
        ))
    }

    async fn create(&mut self, name: &str, special_use: Option<&str>) -> Outcome {
        let user = self.user.clone().ok_or_else(|| bad("not logged in"))?;
        let name = self.name_from_client(name)?;
        let name = name.trim_end_matches('/');
        let usage = match special_use {
            None => None,
            Some(attr) => Some(
                SpecialUse::from_attribute(attr)
                    .ok_or_else(|| no(Some("USEATTR"), "Unsupported special-use attribute"))?,
            ),
        };
        self.store
            .create_mailbox(user.account_id, name, usage)
            .await
            .map_err(internal)?;
        // Subscribed by default, as clients expect new folders to show up.
        if let Ok(Some(mailbox)) = self.store.mailbox(user.account_id, name).await {
            let _ = self.store.set_subscribed(mailbox.id, true).await;
        }
        Ok(ok("CREATE completed"))
    }

    async fn delete(&mut self, name: &str) -> Outcome {
        let mailbox = self.mailbox(name).await?;
        if mailbox.name == "INBOX" {
            return Err(no(Some("CANNOT"), "INBOX cannot be deleted"));
        }
        if self
            .selected
            .as_ref()
            .is_some_and(|v| v.mailbox.id == mailbox.id)
        {
            self.selected = None;
        }
        self.store
            .delete_mailbox(mailbox.id)
            .await
            .map_err(internal)?;
        Ok(ok("DELETE completed"))
    }

    async fn rename(&mut self, from: &str, to: &str) -> Outcome {
        let mailbox = self.mailbox(from).await?;
        let to = self.name_from_client(to)?;
        self.store
            .rename_mailbox(mailbox.id, &to)
            .await
            .map_err(internal)?;
        Ok(ok("RENAME completed"))
    }

    async fn subscribe(&mut self, name: &str, subscribed: bool) -> Outcome {
        let mailbox = self.mailbox(name).await?;
        self.store
            .set_subscribed(mailbox.id, subscribed)
            .await
            .map_err(internal)?;
        Ok(ok(if subscribed {
            "SUBSCRIBE completed"
        } else {
            "UNSUBSCRIBE completed"
        }))
    }

    async fn status(&mut self, name: &str, items: &[StatusItem]) -> Outcome {
        let mailbox = self.mailbox(name).await?;
        let line = format!(
            "* STATUS {} ({})\r\n",
            list::quote_name(&self.name_to_client(&mailbox.name)),
            list::status_items(&mailbox, items)
        );
        self.machine.out().extend_from_slice(line.as_bytes());
        Ok(ok("STATUS completed"))
    }

    async fn append(
        &mut self,
        name: &str,
        flag_names: &[String],
        date: Option<&str>,
        message: Vec<u8>,
    ) -> Outcome {
        let mailbox = match self.mailbox(name).await {
            Ok(m) => m,
            Err(_) => return Err(no(Some("TRYCREATE"), "No such mailbox")),
        };
        let (bits, keywords) = parse_flags(flag_names)?;
        let date = match date {
            Some(d) => {
                imap_proto::write::parse_date_time(d).ok_or_else(|| bad("invalid date-time"))?
            }
            None => unix_now(),
        };
        if message.is_empty() {
            return Err(no(None, "empty message"));
        }
        let summary = message::summary::summarize(&message);
        let uid = self
            .store
            .append(mailbox.id, message, bits, keywords, date, Some(summary))
            .await
            .map_err(internal)?;
        Ok(ok_code(
            format!("APPENDUID {} {uid}", mailbox.uid_validity),
            "APPEND completed",
        ))
    }

    async fn close(&mut self, expunge: bool) -> Outcome {
        let Some(view) = self.selected.take() else {
            return Err(bad("no mailbox selected"));
        };
        if expunge && !view.read_only {
            let deleted = view.deleted_uids();
            if !deleted.is_empty() {
                self.store
                    .expunge(view.mailbox.id, &deleted)
                    .await
                    .map_err(internal)?;
            }
        }
        Ok(ok(if expunge {
            "CLOSE completed"
        } else {
            "UNSELECT completed"
        }))
    }

    async fn expunge(&mut self, uids: Option<&SequenceSet>) -> Outcome {
        let view = self.selected.as_ref().expect("checked by the dispatcher");
        if view.read_only {
            return Err(no(Some("READ-ONLY"), "Mailbox is read-only"));
        }
        let mut deleted = view.deleted_uids();
        if let Some(set) = uids {
            let max = view.max_uid();
            let saved = &self.saved;
            deleted.retain(|&u| match set {
                SequenceSet::Saved => saved.contains(&u),
                _ => set.contains(u, max),
            });
        }
        if !deleted.is_empty() {
            self.store
                .expunge(view.mailbox.id, &deleted)
                .await
                .map_err(internal)?;
        }
        Ok(ok("EXPUNGE completed"))
    }

    async fn store_flags(
        &mut self,
        uid: bool,
        set: &SequenceSet,
        mode: StoreMode,
        silent: bool,
        names: &[String],
        unchanged_since: Option<u64>,
    ) -> Outcome {
        let (bits, keywords) = parse_flags(names)?;
        let view = self.selected.as_ref().expect("checked by the dispatcher");
        if view.read_only {
            return Err(no(Some("READ-ONLY"), "Mailbox is read-only"));
        }
        let uids = view.resolve(set, uid, &self.saved);
        let mode = match mode {
            StoreMode::Replace => FlagMode::Replace,
            StoreMode::Add => FlagMode::Add,
            StoreMode::Remove => FlagMode::Remove,
        };
        if unchanged_since.is_some() {
            self.condstore = true;
        }
        let (updated, failed) = self
            .store
            .store_flags(
                view.mailbox.id,
                &uids,
                mode,
                bits,
                &keywords,
                unchanged_since,
            )
            .await
            .map_err(internal)?;
        let condstore = self.condstore;
        let view = self.selected.as_mut().expect("checked by the dispatcher");
        let mut out = Vec::new();
        for u in &updated {
            view.set_flags(u.uid, u.flags, u.keywords.clone(), u.modseq);
            if silent && unchanged_since.is_none() {
                continue;
            }
            if let Some(seq) = view.seq_of(u.uid) {
                out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
                let mut parts = Vec::new();
                if !silent {
                    let mut f = b"FLAGS ".to_vec();
                    imap_proto::write::flag_list(&mut f, u.flags, &u.keywords);
                    parts.push(f);
                }
                if uid {
                    parts.push(format!("UID {}", u.uid).into_bytes());
                }
                if condstore {
                    parts.push(format!("MODSEQ ({})", u.modseq).into_bytes());
                }
                out.extend_from_slice(&parts.join(&b' '));
                out.extend_from_slice(b")\r\n");
            }
        }
        // Messages named but not changed still show their flags (unless silent).
        if !silent {
            for u in &uids {
                if updated.iter().any(|x| x.uid == *u) || failed.contains(u) {
                    continue;
                }
                if let (Some(seq), Some(meta)) = (view.seq_of(*u), view.meta(*u)) {
                    out.extend_from_slice(format!("* {seq} FETCH (FLAGS ").as_bytes());
                    imap_proto::write::flag_list(&mut out, meta.flags, &meta.keywords);
                    if uid {
                        out.extend_from_slice(format!(" UID {u}").as_bytes());
                    }
                    out.extend_from_slice(b")\r\n");
                }
            }
        }
        self.machine.out().extend_from_slice(&out);
        if failed.is_empty() {
            Ok(ok("STORE completed"))
        } else {
            let list: Vec<String> = if uid {
                failed.iter().map(u32::to_string).collect()
            } else {
                failed
                    .iter()
                    .filter_map(|u| view.seq_of(*u))
                    .map(|s| s.to_string())
                    .collect()
            };
            Ok(ok_code(
                format!("MODIFIED {}", list.join(",")),
                "Conditional STORE failed for some messages",
            ))
        }
    }

    async fn copy(
        &mut self,
        uid: bool,
        set: &SequenceSet,
        target: &str,
        move_them: bool,
    ) -> Outcome {
        let destination = match self.mailbox(target).await {
            Ok(m) => m,
            Err(_) => return Err(no(Some("TRYCREATE"), "No such mailbox")),
        };
        let view = self.selected.as_ref().expect("checked by the dispatcher");
        if move_them && view.read_only {
            return Err(no(Some("READ-ONLY"), "Mailbox is read-only"));
        }
        let uids = view.resolve(set, uid, &self.saved);
        if uids.is_empty() {
            return Ok(ok(if move_them {
                "MOVE completed"
            } else {
                "COPY completed"
            }));
        }
        let pairs = self
            .store
            .copy(view.mailbox.id, &uids, destination.id, move_them)
            .await
            .map_err(internal)?;
        let sources: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let targets: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let code = format!(
            "COPYUID {} {} {}",
            destination.uid_validity,
            search::compress(&sources),
            search::compress(&targets)
        );
        if move_them {
            // RFC 6851 §4.3: COPYUID goes in an untagged OK, then the EXPUNGEs.
            self.machine
                .out()
                .extend_from_slice(format!("* OK [{code}] Moved\r\n").as_bytes());
            self.sync(true).await;
            Ok(ok("MOVE completed"))
        } else {
            Ok(ok_code(code, "COPY completed"))
        }
    }
}

impl Session {
    /// Keeps a piece of the streamed message; sends a full piece to the store.
    async fn upload_piece(&mut self, data: Vec<u8>) {
        let Some(upload) = self.upload.as_mut() else {
            return;
        };
        let Some(id) = upload.id else {
            return;
        };
        upload.pending.extend_from_slice(&data);
        if upload.pending.len() >= UPLOAD_PIECE {
            let piece = std::mem::take(&mut upload.pending);
            if let Err(e) = self.store.upload_chunk(id, piece).await {
                warn!(error = %e, "APPEND upload failed");
                upload.failed = true;
                upload.id = None;
                let _ = self.store.discard_upload(id).await;
            }
        }
    }

    /// The streamed APPEND is complete: the message comes back from the store and is appended.
    async fn finish_upload(&mut self, complete: bool) -> Option<Flow> {
        let mut upload = self.upload.take()?;
        let Some(id) = upload.id else {
            if upload.failed {
                self.write_tagged(&upload.command.tag, no(None, "Server error"));
                return None;
            }
            // Not logged in: `handle` answers as for any APPEND in this state.
            return if complete {
                self.handle(upload.command).await
            } else {
                None
            };
        };
        if !complete {
            let _ = self.store.discard_upload(id).await;
            return None;
        }
        let last = std::mem::take(&mut upload.pending);
        let data = match self.store.upload_chunk(id, last).await {
            Ok(()) => self.store.take_upload(id).await,
            Err(e) => Err(e),
        };
        match data {
            Ok(data) => {
                tracing::debug!(size = data.len(), "APPEND streamed through the store");
                if let CommandBody::Append { message, .. } = &mut upload.command.body {
                    *message = data;
                }
                self.handle(upload.command).await
            }
            Err(e) => {
                warn!(error = %e, "APPEND upload failed");
                let _ = self.store.discard_upload(id).await;
                self.write_tagged(&upload.command.tag, no(None, "Server error"));
                None
            }
        }
    }
}

impl net::Session for Session {
    fn greet(&mut self, out: &mut Vec<u8>) {
        let caps = self.capabilities();
        out.extend_from_slice(
            format!("* OK [CAPABILITY {caps}] pigeon IMAP4rev2 server ready\r\n").as_bytes(),
        );
    }

    async fn input(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Flow {
        self.machine.feed(bytes);
        let mut flow = Flow::Continue;
        while let Some(event) = self.machine.next() {
            match event {
                Event::Command(command) => {
                    if let Some(f) = self.handle(command).await {
                        flow = f;
                        break;
                    }
                }
                Event::AppendBegin { command, .. } => {
                    // Logged out sessions get their answer from `handle` at the end.
                    let id = if self.user.is_some() {
                        self.store.begin_upload().await.ok()
                    } else {
                        None
                    };
                    let failed = self.user.is_some() && id.is_none();
                    self.upload = Some(Upload {
                        command,
                        id,
                        pending: Vec::new(),
                        failed,
                    });
                }
                Event::AppendData(data) => self.upload_piece(data).await,
                Event::AppendEnd { ok } => {
                    if let Some(f) = self.finish_upload(ok).await {
                        flow = f;
                        break;
                    }
                }
                Event::AuthResponse(data) => {
                    if let Some((_, session)) = self.sasl.as_mut() {
                        let step = session.step(&self.auth, &data).await;
                        self.sasl_answer(step);
                    }
                }
                Event::AuthCancelled => {
                    if let Some((tag, _)) = self.sasl.take() {
                        self.write_tagged(&tag, bad("AUTHENTICATE cancelled"));
                    }
                }
                Event::IdleDone => {
                    if let Some(tag) = self.idle_tag.take() {
                        self.sync(true).await;
                        self.write_tagged(&tag, ok("IDLE terminated"));
                    }
                }
                Event::Close => {
                    flow = Flow::Close;
                    break;
                }
            }
        }
        out.extend(self.machine.take_output());
        flow
    }

    fn idle_timeout(&self) -> Duration {
        if self.user.is_some() {
            self.settings.idle_timeout
        } else {
            self.settings.preauth_timeout
        }
    }

    fn timed_out(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"* BYE Autologout; idle for too long\r\n");
    }

    fn is_idle(&self) -> bool {
        self.machine.is_quiet()
    }

    fn shutting_down(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"* BYE [UNAVAILABLE] Server shutting down\r\n");
    }

    fn tls_established(&mut self, info: TlsInfo) {
        self.machine.tls_started();
        self.tls = Some(info);
    }

    async fn wait_notification(&mut self) {
        // Only IDLE pushes updates unasked; otherwise they wait for the next command.
        if self.idle_tag.is_none() {
            return std::future::pending().await;
        }
        let Some(changes) = self.changes.as_mut() else {
            return std::future::pending().await;
        };
        match changes.recv().await {
            Ok(store::Change::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                if let Some(view) = self.selected.as_mut() {
                    let _ = view.resync(&*self.store).await;
                }
            }
            Ok(change) => {
                if let Some(view) = self.selected.as_mut() {
                    view.apply(change);
                }
            }
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    async fn notification(&mut self, out: &mut Vec<u8>) -> Flow {
        self.sync(true).await;
        out.extend(self.machine.take_output());
        Flow::Continue
    }
}
