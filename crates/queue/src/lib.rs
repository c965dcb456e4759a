//! The outbound queue: delivery workers that take due mail from the store's queue and hand it
//! to the next hop over SMTP, with retries, expiry and delivery status notifications.
//!
//! The scheduler claims due recipients from the store (a lease, so several nodes can share
//! one queue and a dead worker's claims come back), splits each message by destination
//! domain and puts the parts in that domain's lane. A lane runs up to
//! `max_connections_per_domain` workers; each opens one session to the domain's next hop and
//! sends every message waiting in the lane over it. Results are recorded per recipient:
//! delivered, deferred until the next retry, or failed, with a DSN to the sender.

mod bounce;
pub mod deliver;
pub mod route;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{AttemptResult, QueueEntry, Recipient, RecipientStatus, Store};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{info, warn};

pub use deliver::{Credentials, Hop, Outcome, SessionSettings, TlsPolicy};
pub use route::{Resolver, Router};

/// How the queue behaves.
#[derive(Clone)]
pub struct Settings {
    pub session: SessionSettings,
    /// Waits between attempts; the last repeats until the message expires.
    pub retry_schedule: Vec<Duration>,
    pub max_connections: usize,
    pub max_connections_per_domain: usize,
    /// Longest sleep when nothing wakes the scheduler.
    pub poll: Duration,
    /// Send a `delayed` DSN (to senders who asked with NOTIFY=DELAY) once mail waited this long.
    pub delay_warning: Option<Duration>,
    /// How long a claim lasts; a crashed node's claims come back after it.
    pub lease: Duration,
    /// Messages claimed and not yet finished, at most.
    pub max_in_flight: usize,
}

impl Settings {
    /// Defaults around the given session settings.
    pub fn new(session: SessionSettings) -> Settings {
        Settings {
            session,
            retry_schedule: [300, 600, 1200, 2400, 3600, 7200, 14400]
                .map(Duration::from_secs)
                .to_vec(),
            max_connections: 100,
            max_connections_per_domain: 10,
            poll: Duration::from_secs(30),
            delay_warning: Some(Duration::from_secs(4 * 3600)),
            lease: Duration::from_secs(1800),
            max_in_flight: 2000,
        }
    }

    /// The wait after the `attempts`-th failed attempt (1-based).
    fn retry_after(&self, attempts: u32) -> Duration {
        let i = (attempts.max(1) as usize - 1).min(self.retry_schedule.len() - 1);
        self.retry_schedule[i]
    }
}

/// The queue service of one node.
pub struct Queue {
    store: Arc<dyn Store>,
    settings: Settings,
    router: Router,
    lanes: Mutex<HashMap<String, Lane>>,
    connections: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    finished: Notify,
}

/// The work waiting for one destination domain.
#[derive(Default)]
struct Lane {
    waiting: VecDeque<Work>,
    workers: usize,
}

/// Some recipients of one message, all in one domain.
struct Work {
    job: Arc<QueueEntry>,
    recipients: Vec<Recipient>,
    /// Held until the work is recorded; the message counts as in flight until its last part.
    _permit: Arc<tokio::sync::OwnedSemaphorePermit>,
}

impl Queue {
    pub fn new(store: Arc<dyn Store>, settings: Settings, router: Router) -> Arc<Queue> {
        Arc::new(Queue {
            store,
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            settings,
            router,
            lanes: Mutex::default(),
            finished: Notify::new(),
        })
    }

    /// Runs the scheduler until `stop` turns true; then waits for the sessions in progress
    /// (whose results must be recorded so nothing goes out twice) before returning.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let signal = self.store.queue_signal();
        info!("queue running");
        loop {
            if *stop.borrow() {
                break;
            }
            let wake = signal.notified();
            let finished = self.finished.notified();
            let free = self.in_flight.available_permits();
            let mut claimed = 0;
            if free > 0 {
                match self.claim(free.min(500)).await {
                    Ok(n) => claimed = n,
                    Err(e) => warn!(error = %e, "queue claim failed"),
                }
                if claimed == free.min(500) {
                    continue;
                }
            }
            let now = common::clock::now();
            let wait = match self.store.next_queue_due().await {
                Ok(Some(due)) if free > 0 => {
                    Duration::from_secs(due.saturating_sub(now).max(0) as u64)
                }
                _ => self.settings.poll,
            }
            .clamp(Duration::from_millis(50), self.settings.poll);
            tokio::select! {
                _ = wake => {}
                _ = finished, if free == 0 => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        // Let running sessions finish their transactions and record them.
        let all = self.settings.max_in_flight as u32;
        let _ = self.in_flight.acquire_many(all).await;
        info!("queue stopped");
    }

    /// Claims due work and hands it to the lanes; returns how many messages were claimed.
    async fn claim(self: &Arc<Self>, limit: usize) -> store::Result<usize> {
        let now = common::clock::now();
        let jobs = self
            .store
            .claim_queue(now, now + self.settings.lease.as_secs() as i64, limit)
            .await?;
        let n = jobs.len();
        for job in jobs {
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                // Cannot happen (we claimed at most the free permits); the lease brings it back.
                break;
            };
            let permit = Arc::new(permit);
            let mut by_domain: Vec<(String, Vec<Recipient>)> = Vec::new();
            for r in &job.recipients {
                let domain = r
                    .address
                    .rsplit_once('@')
                    .map(|(_, d)| d)
                    .unwrap_or("")
                    .to_lowercase();
                match by_domain.iter_mut().find(|(d, _)| *d == domain) {
                    Some((_, list)) => list.push(r.clone()),
                    None => by_domain.push((domain, vec![r.clone()])),
                }
            }
            let job = Arc::new(job);
            for (domain, recipients) in by_domain {
                self.push(
                    domain,
                    Work {
                        job: job.clone(),
                        recipients,
                        _permit: permit.clone(),
                    },
                );
            }
        }
        Ok(n)
    }

    fn push(self: &Arc<Self>, domain: String, work: Work) {
        let mut lanes = self.lanes.lock().expect("lanes lock");
        let lane = lanes.entry(domain.clone()).or_default();
        lane.waiting.push_back(work);
        if lane.workers < self.settings.max_connections_per_domain
            && lane.waiting.len() > lane.workers.saturating_sub(1) * 4
        {
            lane.workers += 1;
            let queue = self.clone();
            tokio::spawn(async move { queue.worker(domain).await });
        }
    }

    fn next_work(&self, domain: &str) -> Option<Work> {
        let mut lanes = self.lanes.lock().expect("lanes lock");
        let lane = lanes.get_mut(domain)?;
        let work = lane.waiting.pop_front();
        if work.is_none() {
            lane.workers -= 1;
            if lane.workers == 0 {
                lanes.remove(domain);
            }
        }
        work
    }

    /// Everything waiting in the lane, for when its destination cannot be reached at all.
    fn drain(&self, domain: &str) -> Vec<Work> {
        let mut lanes = self.lanes.lock().expect("lanes lock");
        lanes
            .get_mut(domain)
            .map(|lane| lane.waiting.drain(..).collect())
            .unwrap_or_default()
    }

    /// One worker of a lane: one session, reused for every message waiting in the lane.
    async fn worker(self: Arc<Self>, domain: String) {
        let Ok(_connection) = self.connections.clone().acquire_owned().await else {
            return;
        };
        let mut session: Option<deliver::Session> = None;
        while let Some(work) = self.next_work(&domain) {
            if session.is_none() {
                match self.open(&domain).await {
                    Ok(s) => session = Some(s),
                    Err(outcome) => {
                        // The destination is unreachable: everything waiting for it shares
                        // the outcome instead of each trying (and timing out) again.
                        let mut all = self.drain(&domain);
                        all.push(work);
                        for work in all {
                            let outcomes = vec![outcome.clone(); work.recipients.len()];
                            self.settle(work, outcomes, None).await;
                        }
                        continue;
                    }
                }
            }
            let live = session.as_mut().expect("opened above");
            let message = match self.store.queue_data(work.job.id).await {
                Ok(m) => m,
                Err(e) => {
                    // Dropped by an admin meanwhile, or a store failure: the lease expires.
                    warn!(id = work.job.id, error = %e, "queued message unreadable");
                    continue;
                }
            };
            let (outcomes, usable) = live.send(&work.job, &work.recipients, &message).await;
            // Recording waits for an fsync; the session goes on with the next message meanwhile
            // (the work's permit keeps the message in flight until it is recorded).
            let queue = self.clone();
            tokio::spawn(async move { queue.settle(work, outcomes, Some(message)).await });
            if !usable {
                session = None;
            }
        }
        if let Some(session) = session {
            session.close().await;
        }
    }

    async fn open(&self, domain: &str) -> Result<deliver::Session, Outcome> {
        let route = self.router.route(domain).await?;
        deliver::Session::open(
            &route.hops,
            &self.settings.session,
            route.tls,
            route.credentials.as_ref(),
        )
        .await
        .map_err(|f| f.outcome)
    }

    /// Records one attempt's outcomes and sends the DSNs they call for.
    /// `message` is the queued message when the caller has it already (for DSNs).
    async fn settle(&self, work: Work, outcomes: Vec<Outcome>, message: Option<Vec<u8>>) {
        let now = common::clock::now();
        let job = &work.job;
        let mut results = Vec::with_capacity(outcomes.len());
        let mut reports = Vec::new();
        for (recipient, outcome) in work.recipients.iter().zip(outcomes) {
            let (result, report) = self.judge(job, recipient, outcome, now);
            results.push(result);
            reports.extend(report);
        }
        // The DSN goes first: a crash between the two repeats the DSN rather than losing it.
        if !reports.is_empty() && !job.envelope.sender.is_empty() {
            let message = match message {
                Some(m) => m,
                None => self.store.queue_data(job.id).await.unwrap_or_default(),
            };
            if let Err(e) = bounce::send(
                &*self.store,
                &self.settings.session.hostname,
                job,
                reports,
                &message,
                now,
            )
            .await
            {
                warn!(id = job.id, error = %e, "could not send a delivery status notification");
            }
        }
        for r in &results {
            match r.status {
                RecipientStatus::Delivered => info!(id = job.id, to = %r.address, "delivered"),
                RecipientStatus::Failed => {
                    warn!(id = job.id, to = %r.address, error = r.error.as_deref().unwrap_or(""), "failed")
                }
                _ => {
                    info!(id = job.id, to = %r.address, error = r.error.as_deref().unwrap_or(""), "deferred")
                }
            }
        }
        if let Err(e) = self.store.record_attempt(job.id, results).await {
            warn!(id = job.id, error = %e, "could not record a delivery attempt");
        }
        drop(work);
        self.finished.notify_one();
    }

    /// The recorded result of one recipient's outcome, and the DSN line it calls for.
    fn judge(
        &self,
        job: &QueueEntry,
        recipient: &Recipient,
        outcome: Outcome,
        now: i64,
    ) -> (AttemptResult, Option<bounce::Line>) {
        use store::dsn_notify as n;
        let notify = recipient.notify;
        let wants = |bit: u8| {
            if notify & n::NEVER != 0 {
                false
            } else if notify == 0 {
                bit == n::FAILURE
            } else {
                notify & bit != 0
            }
        };
        let attempts = recipient.attempts + 1;
        let result = |status, error: Option<String>, next_attempt| AttemptResult {
            address: recipient.address.clone(),
            status,
            error,
            next_attempt,
        };
        match outcome {
            Outcome::Delivered {
                reply,
                dsn_passed_on,
            } => {
                // A next hop with DSN got NOTIFY and reports success itself (RFC 3461 §6.2.2).
                let report = (wants(n::SUCCESS) && !dsn_passed_on).then(|| {
                    bounce::Line::new(recipient, bounce::Kind::Relayed, "2.0.0", &reply, now)
                });
                (result(RecipientStatus::Delivered, None, 0), report)
            }
            Outcome::Permanent { status, error } => {
                let report = wants(n::FAILURE).then(|| {
                    bounce::Line::new(recipient, bounce::Kind::Failed, &status, &error, now)
                });
                (result(RecipientStatus::Failed, Some(error), 0), report)
            }
            Outcome::Temporary { status, error } => {
                let wait = self.settings.retry_after(attempts).as_secs() as i64;
                if job.envelope.expires > 0 && now + wait > job.envelope.expires {
                    let error = format!("{error} (gave up after {attempts} attempts)");
                    let report = wants(n::FAILURE).then(|| {
                        bounce::Line::new(recipient, bounce::Kind::Failed, &status, &error, now)
                    });
                    return (result(RecipientStatus::Failed, Some(error), 0), report);
                }
                let age = now - job.envelope.created;
                let warn_now = self.settings.delay_warning.is_some_and(|after| {
                    let after = after.as_secs() as i64;
                    let previous = if recipient.attempts == 0 {
                        0
                    } else {
                        self.settings.retry_after(recipient.attempts).as_secs() as i64
                    };
                    age >= after && age - previous < after
                });
                let report = (warn_now && notify & n::DELAY != 0).then(|| {
                    let mut line =
                        bounce::Line::new(recipient, bounce::Kind::Delayed, &status, &error, now);
                    line.retry_until = Some(job.envelope.expires);
                    line
                });
                (
                    result(RecipientStatus::Deferred, Some(error), now + wait),
                    report,
                )
            }
        }
    }
}
