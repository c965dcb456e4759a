//! One IMAP connection: the [`Session`], its dispatcher, the untagged updates between
//! commands, streamed APPENDs, and the `net::Session` interface the connection driver calls.
//!
//! **Invariant:** every command passes the command table ([`Verb::allowed_in`]) before a
//! handler runs, and every handler is given only what its state owns.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use auth::{Authenticated, Authenticator};
use imap_proto::{Command, CommandBody, Machine};
use net::{ConnInfo, Flow, TlsInfo};
use store::{Change, Store};
use tokio::sync::broadcast;
use tracing::{error, info, trace, warn};

use crate::Settings;
use crate::op::{self, Ctx};
use crate::reply::{self, CommandError, CommandResult, ok};
use crate::state::{Account, Selected, State, Verb, refusal};

/// One IMAP connection.
pub struct Session {
    pub(crate) machine: Machine,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) conn: ConnInfo,
    /// The connection's TLS, from the handshake on (implicit TLS or STARTTLS).
    pub(crate) tls: Option<TlsInfo>,
    pub(crate) state: State,
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

/// What the dispatcher did with a command.
enum Dispatched {
    /// Done: untagged updates follow, then the tagged completion.
    Done {
        /// EXPUNGE may be sent now (RFC 9051 §7.5.1: not during FETCH, STORE or SEARCH).
        expunges_allowed: bool,
        result: CommandResult,
    },
    /// Answered already (LOGOUT, STARTTLS) or later (IDLE, AUTHENTICATE); a flow for the
    /// driver, if any.
    Answered(Option<Flow>),
}

fn done(result: CommandResult) -> Dispatched {
    Dispatched::Done {
        expunges_allowed: true,
        result,
    }
}

impl Session {
    pub(crate) fn new(
        machine: Machine,
        store: Arc<dyn Store>,
        auth: Arc<Authenticator>,
        settings: Arc<Settings>,
        conn: ConnInfo,
    ) -> Session {
        Session {
            machine,
            store,
            auth,
            settings,
            conn,
            tls: None,
            state: State::NotAuthenticated { sasl: None },
            upload: None,
        }
    }

    pub(crate) fn ip(&self) -> IpAddr {
        self.conn.peer.ip()
    }

    /// STARTTLS is available on this connection and not done yet.
    pub(crate) fn starttls_offered(&self) -> bool {
        self.tls.is_none() && self.conn.starttls_available
    }

    pub(crate) fn after_login(&mut self, user: Authenticated) {
        info!(user = %user.address, "imap login");
        let changes = self.store.subscribe(user.account_id);
        self.state = State::Authenticated(Account::new(user, changes));
    }

    /// Writes a command's tagged completion; a server error is logged here, with the
    /// connection (the span `net` opened), the command and the error.
    pub(crate) fn complete(&mut self, tag: &str, verb: Verb, result: CommandResult) {
        let out = self.machine.out();
        match &result {
            Ok(done) => reply::tagged(out, tag, "OK", done.code.as_deref(), &done.text),
            Err(CommandError::Syntax(text)) => reply::tagged(out, tag, "BAD", None, text),
            Err(CommandError::User { code, text }) => {
                reply::tagged(out, tag, "NO", code.as_deref(), text)
            }
            Err(CommandError::Server(why)) => {
                error!(tag, command = verb.name(), error = %why, "internal error");
                reply::tagged(out, tag, "NO", Some("SERVERBUG"), reply::SERVER_ERROR_TEXT);
            }
        }
    }

    /// Runs one command: the table, the handler, untagged updates, the tagged completion.
    pub(crate) async fn handle(&mut self, command: Command) -> Option<Flow> {
        trace!("C: {} {}", command.tag, Logged::new(&command.body));
        self.run(command).await
    }

    /// [`Session::handle`] without the trace line: a streamed APPEND was traced as it began.
    async fn run(&mut self, command: Command) -> Option<Flow> {
        let Command { tag, body } = command;
        let verb = Verb::of(&body);
        let state = self.state.kind();
        let (expunges_allowed, result) = if verb.allowed_in(state) {
            match self.dispatch(&tag, body).await {
                Dispatched::Done {
                    expunges_allowed,
                    result,
                } => (expunges_allowed, result),
                Dispatched::Answered(flow) => return flow,
            }
        } else {
            (true, Err(refusal(verb, state, self.starttls_offered())))
        };
        // Untagged updates before the tagged completion (RFC 9051 §7.5.1 governs EXPUNGE).
        self.sync(expunges_allowed).await;
        self.complete(&tag, verb, result);
        None
    }

    /// Hands a command the table allows to its handler.
    async fn dispatch(&mut self, tag: &str, body: CommandBody) -> Dispatched {
        match body {
            CommandBody::Capability => done(Ok(self.capability())),
            CommandBody::Noop | CommandBody::Check => done(Ok(ok("NOOP completed"))),
            CommandBody::Id => done(Ok(op::any::id(self.machine.out()))),
            CommandBody::Logout => Dispatched::Answered(Some(self.logout(tag))),
            CommandBody::StartTls => match self.starttls(tag) {
                Ok(flow) => Dispatched::Answered(Some(flow)),
                Err(e) => done(Err(e)),
            },
            CommandBody::Login { user, password } => done(self.login(&user, &password).await),
            CommandBody::Authenticate { mechanism, initial } => {
                self.authenticate_start(tag, &mechanism, initial).await;
                Dispatched::Answered(None)
            }
            body => self.dispatch_logged_in(tag, body).await,
        }
    }

    /// The commands of the authenticated and selected states, each handler given the
    /// account and, in the selected state, the mailbox.
    async fn dispatch_logged_in(&mut self, tag: &str, body: CommandBody) -> Dispatched {
        use CommandBody as C;
        use State::{Authenticated as Auth, Selected as Sel};
        let mut cx = Ctx {
            store: &*self.store,
            machine: &mut self.machine,
        };
        let mut expunges_allowed = true;
        let result = match (&mut self.state, body) {
            (Auth(account) | Sel(account, _), C::Enable(caps)) => {
                Ok(op::enable::enable(&mut cx, account, &caps))
            }
            (
                state,
                C::Select {
                    mailbox,
                    read_only,
                    condstore,
                    qresync,
                },
            ) => {
                op::select::select(
                    &mut cx,
                    state,
                    &mailbox,
                    read_only,
                    condstore,
                    qresync.as_ref(),
                )
                .await
            }
            (
                Auth(account) | Sel(account, _),
                C::Create {
                    mailbox,
                    special_use,
                },
            ) => op::mailbox::create(&mut cx, account, &mailbox, special_use.as_deref()).await,
            (state, C::Delete { mailbox }) => op::mailbox::delete(&mut cx, state, &mailbox).await,
            (Auth(account) | Sel(account, _), C::Rename { from, to }) => {
                op::mailbox::rename(&mut cx, account, &from, &to).await
            }
            (Auth(account) | Sel(account, _), C::Subscribe { mailbox }) => {
                op::mailbox::subscribe(&mut cx, account, &mailbox, true).await
            }
            (Auth(account) | Sel(account, _), C::Unsubscribe { mailbox }) => {
                op::mailbox::subscribe(&mut cx, account, &mailbox, false).await
            }
            (
                Auth(account) | Sel(account, _),
                C::List {
                    reference,
                    patterns,
                    options,
                },
            ) => op::list::list(&mut cx, account, &reference, &patterns, &options).await,
            (Auth(_) | Sel(..), C::Namespace) => Ok(op::list::namespace(&mut cx)),
            (Auth(account) | Sel(account, _), C::Status { mailbox, items }) => {
                op::status::status(&mut cx, account, &mailbox, &items).await
            }
            (
                Auth(account) | Sel(account, _),
                C::Append {
                    mailbox,
                    flags,
                    date,
                    message,
                },
            ) => {
                op::append::append(&mut cx, account, &mailbox, &flags, date.as_deref(), message)
                    .await
            }
            (Auth(account), C::Idle) => {
                op::idle::start(&mut cx, account, None, tag).await;
                return Dispatched::Answered(None);
            }
            (Sel(account, selected), C::Idle) => {
                op::idle::start(&mut cx, account, Some(selected), tag).await;
                return Dispatched::Answered(None);
            }
            (state @ Sel(..), C::Close) => op::select::close(&mut cx, state, true).await,
            (state @ Sel(..), C::Unselect) => op::select::close(&mut cx, state, false).await,
            (Sel(_, selected), C::Expunge { uids }) => {
                op::expunge::expunge(&mut cx, selected, uids.as_ref()).await
            }
            (
                Sel(account, selected),
                C::Search {
                    uid,
                    charset,
                    key,
                    ret,
                },
            ) => {
                expunges_allowed = uid;
                op::search::search(
                    &mut cx,
                    account,
                    selected,
                    tag,
                    uid,
                    charset.as_deref(),
                    &key,
                    ret.as_ref(),
                )
                .await
            }
            (
                Sel(account, selected),
                C::Fetch {
                    uid,
                    set,
                    items,
                    changed_since,
                    vanished,
                },
            ) => {
                expunges_allowed = uid;
                op::fetch::fetch(
                    &mut cx,
                    account,
                    selected,
                    uid,
                    &set,
                    &items,
                    changed_since,
                    vanished,
                )
                .await
            }
            (
                Sel(account, selected),
                C::Store {
                    uid,
                    set,
                    mode,
                    silent,
                    flags,
                    unchanged_since,
                },
            ) => {
                expunges_allowed = uid;
                op::store::store(
                    &mut cx,
                    account,
                    selected,
                    uid,
                    &set,
                    mode,
                    silent,
                    &flags,
                    unchanged_since,
                )
                .await
            }
            (
                Sel(account, selected),
                C::Copy {
                    uid,
                    set,
                    mailbox,
                    move_them,
                },
            ) => op::copy::copy(&mut cx, account, selected, uid, &set, &mailbox, move_them).await,
            // The table let through a command this match does not handle in this state.
            (_, body) => Err(CommandError::wrong_state(Verb::of(&body).name())),
        };
        Dispatched::Done {
            expunges_allowed,
            result,
        }
    }

    /// Brings the account's view up to date: the notifications are taken, and a selected
    /// mailbox's changes written as untagged responses.
    pub(crate) async fn sync(&mut self, expunges_allowed: bool) {
        let mut cx = Ctx {
            store: &*self.store,
            machine: &mut self.machine,
        };
        match &mut self.state {
            State::Authenticated(account) => sync(&mut cx, account, None, expunges_allowed).await,
            State::Selected(account, selected) => {
                sync(&mut cx, account, Some(selected), expunges_allowed).await
            }
            State::NotAuthenticated { .. } | State::Logout => {}
        }
    }
}

/// Takes the account's pending notifications into the selected view and writes the untagged
/// responses; EXPUNGEs only when `expunges_allowed`. A lagged channel is replaced by a full
/// resynchronisation from the store, so no change is ever lost.
pub(crate) async fn sync(
    cx: &mut Ctx<'_>,
    account: &mut Account,
    selected: Option<&mut Selected>,
    expunges_allowed: bool,
) {
    let mut lagged = false;
    let mut pending = Vec::new();
    loop {
        match account.changes.try_recv() {
            Ok(Change::Resync) | Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
            Ok(change) => pending.push(change),
            Err(_) => break,
        }
    }
    let Some(selected) = selected else {
        return;
    };
    let view = &mut selected.view;
    if lagged {
        warn!("change notifications lagged; resynchronising");
        if let Err(e) = view.resync(cx.store).await {
            error!(error = %e, "resync failed");
        }
    } else {
        for change in pending {
            view.apply(change);
        }
    }
    let enabled = account.enabled;
    if let Err(e) = view
        .flush(
            cx.store,
            cx.machine.out(),
            expunges_allowed,
            enabled.condstore,
            enabled.qresync,
        )
        .await
    {
        error!(error = %e, "reading new messages failed");
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
                let tag = upload.command.tag;
                self.complete(
                    &tag,
                    Verb::Append,
                    Err(CommandError::Server(
                        "the store could not begin an upload".into(),
                    )),
                );
                return None;
            }
            // Not logged in: answered as for any APPEND in this state.
            return if complete {
                self.run(upload.command).await
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
                self.run(upload.command).await
            }
            Err(e) => {
                warn!(error = %e, "APPEND upload failed");
                let _ = self.store.discard_upload(id).await;
                let tag = upload.command.tag;
                self.complete(&tag, Verb::Append, Err(CommandError::from(e)));
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
                imap_proto::Event::Command(command) => {
                    if let Some(f) = self.handle(command).await {
                        flow = f;
                        break;
                    }
                }
                imap_proto::Event::AppendBegin { command, size } => {
                    trace!(
                        "C: {} {} (streamed)",
                        command.tag,
                        Logged::new(&command.body).with_size(size)
                    );
                    // Logged out sessions get their answer from `handle` at the end.
                    let logged_in = self.state.is_authenticated();
                    let id = if logged_in {
                        self.store.begin_upload().await.ok()
                    } else {
                        None
                    };
                    self.upload = Some(Upload {
                        command,
                        id,
                        pending: Vec::new(),
                        failed: logged_in && id.is_none(),
                    });
                }
                imap_proto::Event::AppendData(data) => self.upload_piece(data).await,
                imap_proto::Event::AppendEnd { ok } => {
                    if let Some(f) = self.finish_upload(ok).await {
                        flow = f;
                        break;
                    }
                }
                imap_proto::Event::AuthResponse(data) => {
                    trace!("C: <AUTHENTICATE response, {} bytes>", data.len());
                    if let State::NotAuthenticated { sasl: Some(sasl) } = &mut self.state {
                        let step = sasl.session.step(&self.auth, &data).await;
                        self.sasl_answer(step);
                    }
                }
                imap_proto::Event::AuthCancelled => {
                    trace!("C: * (AUTHENTICATE cancelled)");
                    if let State::NotAuthenticated { sasl } = &mut self.state
                        && let Some(sasl) = sasl.take()
                    {
                        self.complete(
                            &sasl.tag,
                            Verb::Authenticate,
                            Err(CommandError::syntax("AUTHENTICATE cancelled")),
                        );
                    }
                }
                imap_proto::Event::IdleDone => {
                    trace!("C: DONE");
                    self.idle_done().await;
                }
                imap_proto::Event::Close => {
                    flow = Flow::Close;
                    break;
                }
            }
        }
        out.extend(self.machine.take_output());
        flow
    }

    fn idle_timeout(&self) -> Duration {
        if self.state.is_authenticated() {
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
        self.wait_idle_change().await
    }

    async fn notification(&mut self, out: &mut Vec<u8>) -> Flow {
        self.sync(true).await;
        out.extend(self.machine.take_output());
        Flow::Continue
    }
}

/// A command as the trace log shows it: never a password, SASL data or a message's bytes
/// (their sizes instead).
struct Logged<'a> {
    body: &'a CommandBody,
    /// A streamed APPEND's announced size (its message is not in the command).
    size: Option<usize>,
}

impl<'a> Logged<'a> {
    fn new(body: &'a CommandBody) -> Logged<'a> {
        Logged { body, size: None }
    }

    fn with_size(self, size: usize) -> Self {
        Logged {
            size: Some(size),
            ..self
        }
    }
}

impl fmt::Display for Logged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.body {
            CommandBody::Login { user, .. } => write!(f, "LOGIN {user:?} <password>"),
            CommandBody::Authenticate { mechanism, initial } => {
                write!(f, "AUTHENTICATE {mechanism}")?;
                match initial {
                    Some(data) => write!(f, " <initial response, {} bytes>", data.len()),
                    None => Ok(()),
                }
            }
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => write!(
                f,
                "APPEND {mailbox:?} flags={flags:?} date={date:?} <message, {} bytes>",
                self.size.unwrap_or(message.len())
            ),
            body => write!(f, "{body:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_hides_secrets_and_messages() {
        let login = CommandBody::Login {
            user: "bob@t.test".into(),
            password: "hunter2".into(),
        };
        let text = Logged::new(&login).to_string();
        assert!(
            text.contains("bob@t.test") && !text.contains("hunter2"),
            "{text}"
        );
        let sasl = CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(b"\0bob\0hunter2".to_vec()),
        };
        let text = Logged::new(&sasl).to_string();
        assert_eq!(text, "AUTHENTICATE PLAIN <initial response, 12 bytes>");
        let append = CommandBody::Append {
            mailbox: "INBOX".into(),
            flags: vec![],
            date: None,
            message: b"Subject: secret\r\n\r\nbody".to_vec(),
        };
        let text = Logged::new(&append).to_string();
        assert!(
            !text.contains("secret") && text.contains("<message, 23 bytes>"),
            "{text}"
        );
        let streamed = Logged::new(&append).with_size(5_000_000).to_string();
        assert!(streamed.contains("<message, 5000000 bytes>"), "{streamed}");
    }
}
