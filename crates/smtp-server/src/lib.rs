//! SMTP sessions: the inbound (MX) service on port 25 (2525 by default).
//!
//! A session wraps the sans-IO [`smtp_proto::ServerMachine`] and answers its events with the
//! [`store::Store`]: recipients are resolved through aliases, subaddresses and catch-alls;
//! the message is stored, with `Return-Path:` and `Received:` in front, in every local
//! recipient's INBOX and queued for remote alias targets. 250 after DATA is sent only when the
//! store has committed (fsync) both.
//!
//! **Architecture invariant:** sees `dyn Store`, never a backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use message::trace::{Received, trace_headers};
use net::{ConnInfo, Flow};
use smtp_proto::{Event, Reply, ServerConfig, ServerMachine, replies};
use store::{AccountId, Address, Delivery, Outbound, Resolution, Store, Target};
use tracing::{error, info, warn};

/// Settings of the SMTP service.
#[derive(Debug, Clone)]
pub struct Settings {
    pub machine: ServerConfig,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
}

/// The inbound SMTP service, one per listener.
pub struct Smtp {
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
}

impl Smtp {
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Smtp {
        Smtp {
            store,
            settings: Arc::new(settings),
        }
    }
}

impl net::Protocol for Smtp {
    type Session = Session;

    fn session(&self, conn: ConnInfo) -> Session {
        Session {
            machine: ServerMachine::new(self.settings.machine.clone()),
            store: self.store.clone(),
            settings: self.settings.clone(),
            conn,
            tx: Transaction::default(),
        }
    }

    fn busy_message(&self) -> Vec<u8> {
        replies::too_busy(&self.settings.machine.hostname).to_bytes()
    }

    fn name(&self) -> &'static str {
        "smtp"
    }
}

/// The envelope collected so far.
#[derive(Debug, Default)]
struct Transaction {
    from: String,
    local: Vec<AccountId>,
    remote: Vec<String>,
    /// Accepted recipient addresses as given, for the `Received: ... for` clause.
    accepted: Vec<String>,
}

/// One SMTP connection.
pub struct Session {
    machine: ServerMachine,
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    conn: ConnInfo,
    tx: Transaction,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A transaction id unique within this process: time and a counter.
fn transaction_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    format!("{micros:x}{n:04x}")
}

impl Session {
    async fn rcpt(&mut self, to: String) -> Reply {
        let address = match Address::parse(&to) {
            Ok(address) => address,
            Err(_) => return Reply::new(501, "5.1.3", "Bad recipient address syntax"),
        };
        match store::resolve(&*self.store, &address).await {
            Ok(Resolution::Deliver(targets)) => {
                for target in targets {
                    match target {
                        Target::Local(id) if !self.tx.local.contains(&id) => self.tx.local.push(id),
                        Target::Remote(addr) if !self.tx.remote.contains(&addr) => {
                            self.tx.remote.push(addr)
                        }
                        _ => {}
                    }
                }
                self.tx.accepted.push(to);
                replies::recipient_ok()
            }
            Ok(Resolution::NoSuchUser) => replies::unknown_user(),
            Ok(Resolution::NotLocal) => replies::relay_denied(),
            Err(e) => {
                error!(error = %e, "recipient lookup failed");
                replies::local_error()
            }
        }
    }

    async fn message(&mut self, data: Vec<u8>) -> Reply {
        let tx = std::mem::take(&mut self.tx);
        let id = transaction_id();
        let now = unix_now();
        let for_recipient = (tx.accepted.len() == 1).then(|| tx.accepted[0].as_str());
        let trace = trace_headers(
            &tx.from,
            &Received {
                helo: self.machine.helo().unwrap_or("unknown"),
                peer: self.conn.peer.ip(),
                by: &self.settings.machine.hostname,
                with: self.machine.protocol_name(),
                tls: None,
                id: &id,
                for_recipient,
                date: now,
            },
        );
        let mut stored = trace;
        stored.extend_from_slice(&data);
        drop(data);
        let size = stored.len();

        if !tx.remote.is_empty() {
            let outbound = Outbound {
                sender: tx.from.clone(),
                recipients: tx.remote.clone(),
                data: stored.clone(),
                created: now,
            };
            if let Err(e) = self.store.enqueue(outbound).await {
                error!(error = %e, "queueing for remote recipients failed");
                return replies::local_error();
            }
        }
        if !tx.local.is_empty() {
            let delivery = Delivery {
                data: stored,
                recipients: tx.local.clone(),
                internal_date: now,
            };
            if let Err(e) = self.store.deliver(delivery).await {
                error!(error = %e, "delivery failed");
                return replies::local_error();
            }
        }
        info!(
            id,
            from = %tx.from,
            local = tx.local.len(),
            remote = tx.remote.len(),
            size,
            "message accepted"
        );
        Reply::new(250, "2.0.0", format!("OK queued as {id}"))
    }
}

impl net::Session for Session {
    fn greet(&mut self, out: &mut Vec<u8>) {
        self.machine.greet();
        out.extend(self.machine.take_output());
    }

    async fn input(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Flow {
        self.machine.feed(bytes);
        let flow = loop {
            let Some(event) = self.machine.next() else {
                break Flow::Continue;
            };
            match event {
                Event::Mail { from, .. } => {
                    self.tx = Transaction {
                        from,
                        ..Transaction::default()
                    };
                    self.machine.reply(replies::sender_ok());
                }
                Event::Rcpt { to, .. } => {
                    let reply = self.rcpt(to).await;
                    self.machine.reply(reply);
                }
                Event::Message { data } => {
                    let reply = self.message(data).await;
                    self.machine.reply(reply);
                }
                Event::Close => break Flow::Close,
            }
        };
        out.extend(self.machine.take_output());
        flow
    }

    fn idle_timeout(&self) -> Duration {
        if self.machine.in_data() {
            self.settings.data_timeout
        } else {
            self.settings.command_timeout
        }
    }

    fn timed_out(&mut self, out: &mut Vec<u8>) {
        warn!("idle timeout");
        self.machine.timeout();
        out.extend(self.machine.take_output());
    }

    fn is_idle(&self) -> bool {
        self.machine.is_idle()
    }

    fn shutting_down(&mut self, out: &mut Vec<u8>) {
        self.machine.shutdown();
        out.extend(self.machine.take_output());
    }
}
