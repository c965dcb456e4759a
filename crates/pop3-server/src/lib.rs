//! POP3 sessions (RFC 1939, 2449, 2595, 5034) over the [`store::Store`]: POP3 sees the INBOX.
//!
//! - Message numbers are fixed for the session (a snapshot taken at login); UIDL is
//!   `<UIDVALIDITY>.<UID>`, stable for the message's life.
//! - Sizes are the octets RETR sends before byte-stuffing (`Message::crlf_size`).
//! - RETR marks the message `\Seen`; TOP does not. The marks are written in batches in the
//!   background (and at QUIT), so a RETR never waits for an fsync.
//! - DELE only marks; the deletions happen at QUIT (the UPDATE state), as one expunge that
//!   IMAP sessions see as EXPUNGE. A dropped connection deletes nothing.
//! - One POP3 session per maildrop: a second gets `-ERR [IN-USE]`, on this node (an
//!   in-process lock) and on others sharing the store (`Store::lock_maildrop`, a lease renewed
//!   while the session is active). IMAP sessions are not affected.
//! - At `trace` level every command and status line is logged inside the connection's span
//!   (`cid`), from the machine's transcript: never a password, SASL data or message content.
//!
//! **Architecture invariant:** sees `dyn Store`, never a backend.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auth::{Authenticated, Authenticator, SaslSession, SaslStep};
use net::{ConnInfo, Flow, TlsInfo};
use pop3_proto::{Config, Entry, Event, Machine};
use store::{AccountId, MailboxId, Store, flags};
use tracing::{Level, error, info, trace, warn};

/// Settings of the POP3 service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Idle timeout (RFC 1939 §3: at least 10 minutes).
    pub timeout: Duration,
    /// RFC 2449 EXPIRE: messages older than this many days are deleted at login.
    pub expire_days: Option<u32>,
    /// RFC 2449 LOGIN-DELAY: seconds that must pass between two logins of one user.
    pub login_delay_secs: Option<u32>,
    /// Accept USER/PASS and AUTH without TLS from loopback addresses.
    pub allow_plaintext_on_loopback: bool,
}

/// Maildrops with an open POP3 session, and when each user last logged in.
#[derive(Debug, Default)]
struct Locks {
    held: HashSet<AccountId>,
    last_login: HashMap<AccountId, Instant>,
}

/// The POP3 service, one per listener (the locks are shared across listeners).
pub struct Pop3 {
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    settings: Arc<Settings>,
    locks: Arc<Mutex<Locks>>,
}

impl Pop3 {
    pub fn new(store: Arc<dyn Store>, auth: Arc<Authenticator>, settings: Settings) -> Pop3 {
        Pop3 {
            store,
            auth,
            settings: Arc::new(settings),
            locks: Arc::default(),
        }
    }
}

const MECHANISMS: [&str; 4] = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"];

impl net::Protocol for Pop3 {
    type Session = Session;

    fn session(&self, conn: ConnInfo) -> Session {
        let config = Config {
            stls: conn.starttls_available,
            plaintext_login: self.settings.allow_plaintext_on_loopback
                && conn.peer.ip().is_loopback(),
            mechanisms: MECHANISMS.iter().map(|m| m.to_string()).collect(),
            expire_days: self.settings.expire_days,
            login_delay_secs: self.settings.login_delay_secs,
            ..Config::default()
        };
        Session {
            machine: Machine::new(config),
            store: self.store.clone(),
            auth: self.auth.clone(),
            settings: self.settings.clone(),
            locks: self.locks.clone(),
            conn,
            tls: None,
            sasl: None,
            login: None,
            seen: Vec::new(),
            holder: common::random::hex(18),
            lock_renewed: None,
        }
    }

    fn busy_message(&self) -> Vec<u8> {
        b"-ERR [SYS/TEMP] too many connections, try again later\r\n".to_vec()
    }

    fn name(&self) -> &'static str {
        "pop3"
    }
}

/// The logged-in user and their INBOX.
struct Login {
    user: Authenticated,
    inbox: MailboxId,
}

/// One POP3 connection.
pub struct Session {
    machine: Machine,
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    settings: Arc<Settings>,
    locks: Arc<Mutex<Locks>>,
    conn: ConnInfo,
    tls: Option<TlsInfo>,
    sasl: Option<SaslSession>,
    login: Option<Login>,
    /// Retrieved messages not yet marked `\Seen` in the store.
    seen: Vec<u32>,
    /// Names this session in the store's maildrop lock (shared by nodes).
    holder: String,
    /// When the store's lock was last taken or renewed.
    lock_renewed: Option<Instant>,
}

/// The store's lock outlives the session's idle timeout by this, so it never lapses while the
/// session lives; a dead node's lock lapses this long after its last command.
const LOCK_MARGIN: Duration = Duration::from_secs(60);

/// How many `\Seen` marks are collected before they are written.
const SEEN_BATCH: usize = 64;

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(login) = &self.login {
            self.locks
                .lock()
                .expect("locks poisoned")
                .held
                .remove(&login.user.account_id);
            let (store, account, holder) = (
                self.store.clone(),
                login.user.account_id,
                self.holder.clone(),
            );
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = store.unlock_maildrop(account, &holder).await {
                        warn!(error = %e, "releasing the maildrop lock failed; it lapses");
                    }
                });
            }
        }
        self.flush_seen();
    }
}

impl Session {
    fn ip(&self) -> IpAddr {
        self.conn.peer.ip()
    }

    /// Writes the collected `\Seen` marks in the background.
    fn flush_seen(&mut self) {
        let (Some(login), false) = (&self.login, self.seen.is_empty()) else {
            return;
        };
        let uids = std::mem::take(&mut self.seen);
        let (store, inbox) = (self.store.clone(), login.inbox);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.set_flags(inbox, &uids, flags::SEEN, 0).await {
                    warn!(error = %e, "marking retrieved messages \\Seen failed");
                }
            });
        }
    }

    /// After a successful authentication: lock, apply EXPIRE and LOGIN-DELAY, snapshot.
    async fn open_maildrop(&mut self, user: Authenticated) {
        {
            let mut locks = self.locks.lock().expect("locks poisoned");
            if let Some(delay) = self.settings.login_delay_secs
                && let Some(last) = locks.last_login.get(&user.account_id)
                && last.elapsed() < Duration::from_secs(u64::from(delay))
            {
                drop(locks);
                self.machine
                    .temp_error("LOGIN-DELAY", "minimum time between logins not reached");
                return;
            }
            if !locks.held.insert(user.account_id) {
                drop(locks);
                warn!(user = %user.address, "maildrop in use");
                self.machine.in_use();
                return;
            }
            locks.last_login.insert(user.account_id, Instant::now());
        }
        // Other nodes' sessions too (several nodes on one database).
        let until = common::clock::now() + (self.settings.timeout + LOCK_MARGIN).as_secs() as i64;
        let locked = self
            .store
            .lock_maildrop(user.account_id, &self.holder, until)
            .await;
        if !matches!(locked, Ok(true)) {
            self.locks
                .lock()
                .expect("locks poisoned")
                .held
                .remove(&user.account_id);
            match locked {
                Ok(_) => {
                    warn!(user = %user.address, "maildrop in use on another node");
                    self.machine.in_use();
                }
                Err(e) => {
                    error!(error = %e, "locking the maildrop failed");
                    self.machine
                        .temp_error("SYS/TEMP", "maildrop unavailable, try again later");
                }
            }
            return;
        }
        self.lock_renewed = Some(Instant::now());
        match self.snapshot(&user).await {
            Ok((inbox, entries)) => {
                info!(user = %user.address, messages = entries.len(), "pop3 login");
                self.login = Some(Login { user, inbox });
                self.machine.login_ok(entries);
            }
            Err(e) => {
                error!(error = %e, "opening the maildrop failed");
                self.locks
                    .lock()
                    .expect("locks poisoned")
                    .held
                    .remove(&user.account_id);
                self.machine
                    .temp_error("SYS/TEMP", "maildrop unavailable, try again later");
            }
        }
    }

    async fn snapshot(
        &self,
        user: &Authenticated,
    ) -> Result<(MailboxId, Vec<Entry>), store::StoreError> {
        let inbox = self
            .store
            .mailbox(user.account_id, "INBOX")
            .await?
            .ok_or_else(|| store::StoreError::NotFound("INBOX".into()))?;
        let mut messages = self.store.list_messages(inbox.id).await?;
        if let Some(days) = self.settings.expire_days {
            let cutoff = common::clock::now() - i64::from(days) * 86_400;
            let old: Vec<u32> = messages
                .iter()
                .filter(|m| m.internal_date < cutoff)
                .map(|m| m.uid)
                .collect();
            if !old.is_empty() {
                self.store.expunge(inbox.id, &old).await?;
                messages.retain(|m| m.internal_date >= cutoff);
            }
        }
        let entries = messages
            .into_iter()
            .map(|m| Entry {
                uid: m.uid,
                size: m.crlf_size,
                uidl: format!("{}.{}", inbox.uid_validity, m.uid),
            })
            .collect();
        Ok((inbox.id, entries))
    }

    async fn sasl_answer(&mut self, step: SaslStep) {
        if !matches!(step, SaslStep::Challenge(_)) {
            self.sasl = None;
        }
        match step {
            SaslStep::Challenge(challenge) => self.machine.auth_challenge(&challenge),
            SaslStep::Success(user) => self.open_maildrop(user).await,
            SaslStep::Invalid => self.machine.login_failed("authentication failed"),
            SaslStep::Malformed(why) => self.machine.login_failed(why),
            SaslStep::Temporary => self
                .machine
                .temp_error("SYS/TEMP", "authentication unavailable, try again later"),
        }
    }

    async fn handle(&mut self, event: Event) -> Option<Flow> {
        match event {
            Event::Login { user, password } => {
                match self.auth.check_password(self.ip(), &user, &password).await {
                    Ok(Some(user)) => self.open_maildrop(user).await,
                    Ok(None) => self.machine.login_failed("invalid user name or password"),
                    Err(e) => {
                        error!(error = %e, "credential lookup failed");
                        self.machine
                            .temp_error("SYS/TEMP", "authentication unavailable, try again later");
                    }
                }
            }
            Event::Auth { mechanism, initial } => {
                let begun = SaslSession::begin(
                    &self.auth,
                    &mechanism,
                    self.ip(),
                    self.tls.as_ref(),
                    initial.as_deref(),
                )
                .await;
                match begun {
                    Some((session, step)) => {
                        self.sasl = Some(session);
                        self.sasl_answer(step).await;
                    }
                    None => self.machine.login_failed("unsupported SASL mechanism"),
                }
            }
            Event::AuthResponse(data) => match self.sasl.as_mut() {
                Some(session) => {
                    let step = session.step(&self.auth, &data).await;
                    self.sasl_answer(step).await;
                }
                None => self.machine.login_failed("no authentication in progress"),
            },
            Event::Retrieve { uid, top } => {
                let Some(login) = &self.login else {
                    self.machine.temp_error("SYS/TEMP", "not logged in");
                    return None;
                };
                let inbox = login.inbox;
                match self.store.read_message(inbox, uid).await {
                    Ok(data) => {
                        self.machine.message(&data, top);
                        if top.is_none() {
                            self.seen.push(uid);
                            if self.seen.len() >= SEEN_BATCH {
                                self.flush_seen();
                            }
                        }
                    }
                    Err(store::StoreError::NotFound(_)) => {
                        // Expunged by another session (IMAP) since our snapshot.
                        self.machine
                            .temp_error("SYS/TEMP", "message was deleted by another session");
                    }
                    Err(e) => {
                        error!(error = %e, "reading a message failed");
                        self.machine
                            .temp_error("SYS/TEMP", "message unavailable, try again later");
                    }
                }
            }
            Event::Update { deleted } => {
                if let Some(login) = &self.login {
                    let uids = std::mem::take(&mut self.seen);
                    if !uids.is_empty()
                        && let Err(e) = self
                            .store
                            .set_flags(login.inbox, &uids, flags::SEEN, 0)
                            .await
                    {
                        warn!(error = %e, "marking retrieved messages \\Seen failed");
                    }
                }
                let ok = match &self.login {
                    Some(login) if !deleted.is_empty() => {
                        match self.store.expunge(login.inbox, &deleted).await {
                            Ok(removed) => {
                                info!(user = %login.user.address, deleted = removed.len(), "pop3 update");
                                true
                            }
                            Err(e) => {
                                error!(error = %e, "pop3 update failed");
                                false
                            }
                        }
                    }
                    _ => true,
                };
                self.machine.update_done(ok);
            }
            Event::StartTls => return Some(Flow::StartTls),
            Event::Close => return Some(Flow::Close),
        }
        None
    }
}

impl Session {
    /// Logs the exchange so far at `trace`, inside the connection's span (its `cid`): the
    /// machine notes every command and status line, redacted ([`Machine::take_transcript`]).
    fn trace_exchange(&mut self) {
        for line in self.machine.take_transcript() {
            trace!("{line}");
        }
    }

    /// Hands what the machine wrote to `net`, once traced.
    fn write(&mut self, out: &mut Vec<u8>) {
        self.trace_exchange();
        out.extend(self.machine.take_output());
    }
}

impl net::Session for Session {
    fn greet(&mut self, out: &mut Vec<u8>) {
        // Asked here, inside the connection's span, so a per-span filter applies too.
        self.machine
            .record_transcript(tracing::enabled!(Level::TRACE));
        self.machine.greet();
        self.write(out);
    }

    async fn input(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Flow {
        // Keep the store's lock ahead of the idle timeout while the client is active.
        if let (Some(login), Some(renewed)) = (&self.login, self.lock_renewed)
            && renewed.elapsed() > LOCK_MARGIN
        {
            let until =
                common::clock::now() + (self.settings.timeout + LOCK_MARGIN).as_secs() as i64;
            match self
                .store
                .lock_maildrop(login.user.account_id, &self.holder, until)
                .await
            {
                Ok(true) => self.lock_renewed = Some(Instant::now()),
                Ok(false) => warn!(user = %login.user.address, "the maildrop lock was lost"),
                Err(e) => warn!(error = %e, "renewing the maildrop lock failed"),
            }
        }
        self.machine.feed(bytes);
        let flow = loop {
            let Some(event) = self.machine.next() else {
                break Flow::Continue;
            };
            // The command before what the session logs about it.
            self.trace_exchange();
            if let Some(flow) = self.handle(event).await {
                break flow;
            }
        };
        self.write(out);
        flow
    }

    fn idle_timeout(&self) -> Duration {
        self.settings.timeout
    }

    fn timed_out(&mut self, out: &mut Vec<u8>) {
        self.machine.timeout();
        self.write(out);
    }

    fn is_idle(&self) -> bool {
        self.machine.is_idle()
    }

    fn shutting_down(&mut self, out: &mut Vec<u8>) {
        self.machine.shutdown();
        self.write(out);
    }

    fn tls_established(&mut self, info: TlsInfo) {
        self.machine.tls_started();
        self.tls = Some(info);
    }
}
