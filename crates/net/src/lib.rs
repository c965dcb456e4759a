//! The one connection driver for every protocol: accept loop, connection limits, idle
//! timeouts, output flushing and graceful shutdown.
//!
//! **Architecture invariant:** `net` knows no protocol. A protocol plugs in through
//! [`Protocol`] (make a session, say "too busy") and [`Session`] (greet, consume input, say
//! goodbye). A fix to timeouts, limits or shutdown here fixes every protocol at once.
//!
//! The loop per connection: write the greeting; then repeatedly read (with the session's idle
//! timeout), hand the bytes to the session, and write everything it produced before reading
//! again. On shutdown an idle session says goodbye at once; a session in the middle of a
//! transaction gets `shutdown_grace` to finish it.
//!
//! TLS: a listener is plain, STARTTLS-capable or implicit TLS. On [`Flow::StartTls`] the driver
//! writes the pending reply, then handshakes on the same socket; it keeps no read-ahead buffer,
//! and the session's machine drops whatever plaintext followed the command, so no pipelined
//! plaintext can reach the encrypted session (RFC 3207 §4.2, CVE-2011-0411).
//!
//! Faults stay in their connection: a panic anywhere in a session (a bug, or input nobody
//! foresaw) is caught at the connection's task, logged with the connection id, and closes only
//! that connection; its slot in the limits is released and every other connection goes on. A
//! stack overflow is not a panic: it aborts the process, so no code may recurse to a depth the
//! peer chooses (ARCHITECTURE.md lists every recursion and its bound), worker threads get a
//! deliberate stack size (`pigeon serve`), and the supervisor restarts the process
//! (`Restart=on-failure` in the shipped systemd unit).

pub mod tls;

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tracing::{Instrument, debug, error, info_span, warn};

/// What the driver does after the session consumed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Write the pending output, then close the connection.
    Close,
    /// Write the pending output, then start TLS on this connection (STARTTLS/STLS).
    StartTls,
}

pub use tls::{CertSource, Tls, TlsInfo};

/// How a listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text only.
    None,
    /// Plain text, with STARTTLS available.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// Facts about a connection a session may need.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Unique within this process, for logs.
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// STARTTLS can be offered on this connection.
    pub starttls_available: bool,
}

/// One protocol session. Implementations wrap a sans-IO machine and the `Store`.
pub trait Session: Send + 'static {
    /// Writes the greeting, if the protocol has one.
    fn greet(&mut self, out: &mut Vec<u8>);
    /// Consumes bytes from the peer, appending replies to `out`.
    fn input(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> impl Future<Output = Flow> + Send;
    /// How long the peer may now stay silent.
    fn idle_timeout(&self) -> Duration;
    /// The peer was silent too long: write the protocol's goodbye.
    fn timed_out(&mut self, out: &mut Vec<u8>);
    /// True when closing now loses no work (no transaction in progress).
    fn is_idle(&self) -> bool;
    /// The server is stopping: write the protocol's goodbye.
    fn shutting_down(&mut self, out: &mut Vec<u8>);
    /// TLS is now active (after the implicit-TLS handshake, before `greet`; or after a
    /// STARTTLS handshake). The protocol state must restart as RFC 3207 §4.2 says.
    fn tls_established(&mut self, info: TlsInfo);
    /// Resolves when the session has something to tell the peer unasked (IMAP IDLE: new
    /// mail, expunges). Must be cancel-safe; the default never resolves.
    fn wait_notification(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
    /// Writes what `wait_notification` announced.
    fn notification(&mut self, out: &mut Vec<u8>) -> impl Future<Output = Flow> + Send {
        let _ = out;
        async { Flow::Continue }
    }
}

/// What woke the connection loop.
enum Wake {
    Read(Result<std::io::Result<usize>, tokio::time::error::Elapsed>),
    Notified,
    Shutdown,
}

/// A protocol served on a listener.
pub trait Protocol: Send + Sync + 'static {
    type Session: Session;
    /// A session for a new connection.
    fn session(&self, conn: ConnInfo) -> Self::Session;
    /// Written to a connection refused by the limits before it is closed.
    fn busy_message(&self) -> Vec<u8>;
    /// A short name for logs, such as `smtp`.
    fn name(&self) -> &'static str;
}

/// Connection limits shared by all listeners.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// How long shutdown waits for sessions in the middle of a transaction.
    pub shutdown_grace: Duration,
    /// New connections per IP per minute.
    pub max_connection_rate_per_ip: u32,
}

/// The server's stop signal as a connection that drives itself (HTTP) sees it: on
/// [`Shutdown::requested`] it stops taking new work, and it may take [`Shutdown::grace`] to
/// finish what is in flight before [`Server::shutdown`] stops waiting for it.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    grace: Duration,
}

impl Shutdown {
    /// Resolves once the server is stopping (at once if it already is). Cancel-safe.
    pub async fn requested(&mut self) {
        // An error means the server is gone: stopping too.
        let _ = self.rx.wait_for(|&stopping| stopping).await;
    }

    /// How long a connection may take to finish its work once stopping was requested
    /// (`[limits] shutdown_grace_secs`).
    pub fn grace(&self) -> Duration {
        self.grace
    }
}

/// A connection's byte stream, before or after TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection attempts per IP within the current minute.
#[derive(Debug, Default)]
struct RateWindow {
    started: Option<tokio::time::Instant>,
    counts: HashMap<IpAddr, u32>,
}

/// State shared by every listener: limits, counters and the shutdown signal.
pub struct Server {
    limits: Limits,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    rate: Mutex<RateWindow>,
    tls: Option<Tls>,
    next_id: AtomicU64,
    all_closed: Notify,
    shutdown_tx: watch::Sender<bool>,
    shutdown_rx: watch::Receiver<bool>,
}

/// Releases a connection's place in the counters when the connection ends.
struct Slot {
    server: Arc<Server>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut per_ip = lock(&self.server.per_ip);
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        if self.server.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.server.all_closed.notify_waiters();
        }
    }
}

impl Server {
    /// A server; `tls` is needed by STARTTLS and implicit-TLS listeners.
    pub fn new(limits: Limits, tls: Option<Tls>) -> Arc<Server> {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        Arc::new(Server {
            limits,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            rate: Mutex::new(RateWindow::default()),
            tls,
            next_id: AtomicU64::new(1),
            all_closed: Notify::new(),
            shutdown_tx,
            shutdown_rx,
        })
    }

    /// Number of open connections.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The TLS acceptor, for reloading certificates.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Counts a connection attempt; false if `ip` exceeded its rate this minute.
    fn within_rate(&self, ip: IpAddr) -> bool {
        let now = tokio::time::Instant::now();
        let mut rate = lock(&self.rate);
        if rate
            .started
            .is_none_or(|started| now.duration_since(started) >= Duration::from_secs(60))
        {
            rate.started = Some(now);
            rate.counts.clear();
        }
        let count = rate.counts.entry(ip).or_insert(0);
        *count += 1;
        *count <= self.limits.max_connection_rate_per_ip
    }

    /// Takes a slot for a connection from `ip`, or `None` if a limit is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        if !self.within_rate(ip) {
            return None;
        }
        let mut per_ip = lock(&self.per_ip);
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.limits.max_connections_per_ip
            || self.open.load(Ordering::Acquire) >= self.limits.max_connections
        {
            return None;
        }
        per_ip.insert(ip, from_ip + 1);
        self.open.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            server: self.clone(),
            ip,
        })
    }

    /// Stops accepting, asks every session to finish, and waits for them (at most the grace
    /// period plus a little for goodbyes to be written).
    pub async fn shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
        let deadline = self.limits.shutdown_grace + Duration::from_secs(2);
        let _ = tokio::time::timeout(deadline, async {
            loop {
                let notified = self.all_closed.notified();
                if self.open.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown_rx.borrow()
    }

    /// Accepts connections on `listener` until shutdown, one task per connection.
    pub async fn serve<P: Protocol>(
        self: Arc<Self>,
        listener: TcpListener,
        protocol: Arc<P>,
        mode: TlsMode,
    ) {
        let server = self.clone();
        let starttls = mode == TlsMode::StartTls && self.tls.is_some();
        let busy = protocol.clone();
        self.accept_loop(
            listener,
            protocol.name(),
            starttls,
            move || busy.busy_message(),
            move |stream, conn| {
                // Boxed, and the rare large futures below too (command execution,
                // notifications, TLS handshakes): the task then holds only what an idle
                // connection needs, about 0.8 KB, instead of room for the largest await point
                // and a second copy of the session (4.3 KB for IMAP).
                let session = Box::new(protocol.session(conn));
                let server = server.clone();
                async move { server.drive(stream, session, mode).await }
            },
        )
        .await
    }

    /// The accept loop every listener runs, for protocols driven here ([`Server::serve`]) and
    /// for those that drive their own connections (HTTP): accepts on `listener` until
    /// shutdown and admits each connection by the [`Limits`] (rate and count per IP, the
    /// global count). A refused connection gets `busy()` written and is closed. An admitted
    /// one gets its [`ConnInfo`] and runs `start`'s future in its own task, inside the span
    /// `conn{proto, cid, peer}` that every event of the connection carries; a panic in it is
    /// caught and closes only that connection, and its place in the limits is released when
    /// the future ends. `name` is the protocol's short name for logs.
    pub async fn accept_loop<B, S, F>(
        self: Arc<Self>,
        listener: TcpListener,
        name: &'static str,
        starttls_available: bool,
        busy: B,
        start: S,
    ) where
        B: Fn() -> Vec<u8>,
        S: Fn(TcpStream, ConnInfo) -> F,
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let mut shutdown = self.shutdown_rx.clone();
        let mut backoff = Duration::from_millis(10);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|&s| s) => return,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => {
                    backoff = Duration::from_millis(10);
                    pair
                }
                Err(e) => {
                    // Usually out of file descriptors: wait instead of spinning.
                    warn!(protocol = name, error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Some(slot) = self.admit(peer.ip()) else {
                let message = busy();
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        let _ = stream.write_all(&message).await;
                        let _ = stream.shutdown().await;
                    })
                    .await;
                });
                continue;
            };
            let local = stream.local_addr().unwrap_or(peer);
            let conn = ConnInfo {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                peer,
                local,
                starttls_available,
            };
            let work = start(stream, conn);
            let span = info_span!("conn", proto = name, cid = conn.id, peer = %peer);
            tokio::spawn(
                async move {
                    debug!("connected");
                    // Whatever the connection owned is dropped with the future, so nothing of a
                    // panicked session is used again: asserting unwind safety is sound here.
                    match AssertUnwindSafe(work).catch_unwind().await {
                        Ok(Ok(())) => debug!("closed"),
                        Ok(Err(e)) => debug!(error = %e, "connection ended with an error"),
                        Err(panic) => error!(
                            panic = panic_message(panic.as_ref()),
                            "session panicked: this connection is closed, the others go on"
                        ),
                    }
                    drop(slot);
                }
                .instrument(span),
            );
        }
    }

    /// The stop signal, for connections driven outside this crate (HTTP).
    pub fn shutdown_signal(&self) -> Shutdown {
        Shutdown {
            rx: self.shutdown_rx.clone(),
            grace: self.limits.shutdown_grace,
        }
    }

    /// Reads into `buf` (sized `size` first). A plain connection waits for readability before the
    /// buffer exists; TLS keeps its buffer (rustls buffers anyway).
    async fn read_some(
        stream: &mut Stream,
        buf: &mut Vec<u8>,
        size: usize,
    ) -> std::io::Result<usize> {
        match stream {
            Stream::Plain(tcp) => loop {
                tcp.readable().await?;
                buf.resize(size, 0);
                match tcp.try_read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // A spurious wake-up: wait without holding the buffer.
                        *buf = Vec::new();
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            },
            Stream::Tls(_) => {
                buf.resize(size, 0);
                stream.read(buf).await
            }
        }
    }

    /// The per-connection loop.
    async fn drive<S: Session>(
        &self,
        tcp: TcpStream,
        mut session: Box<S>,
        mode: TlsMode,
    ) -> std::io::Result<()> {
        let mut stream = match mode {
            TlsMode::Implicit => {
                let (stream, info) = Box::pin(self.handshake(tcp)).await?;
                session.tls_established(info);
                stream
            }
            TlsMode::None | TlsMode::StartTls => Stream::Plain(tcp),
        };
        let mut out = Vec::new();
        // Allocated when bytes are there to read and freed after (plain connections), so an
        // idle connection holds no read buffer; grows while the peer sends a lot.
        let mut buf = Vec::new();
        let mut buf_size = 4096;
        let mut shutdown = self.shutdown_rx.clone();
        let mut grace_deadline: Option<tokio::time::Instant> = None;

        session.greet(&mut out);
        flush(&mut stream, &mut out).await?;

        loop {
            if self.is_shutting_down() {
                let deadline = *grace_deadline.get_or_insert_with(|| {
                    tokio::time::Instant::now() + self.limits.shutdown_grace
                });
                if session.is_idle() || tokio::time::Instant::now() >= deadline {
                    session.shutting_down(&mut out);
                    flush(&mut stream, &mut out).await?;
                    return Ok(());
                }
            }
            let timeout = session.idle_timeout();
            let wake = tokio::select! {
                read = tokio::time::timeout(timeout, Self::read_some(&mut stream, &mut buf, buf_size)) => Wake::Read(read),
                _ = session.wait_notification() => Wake::Notified,
                _ = shutdown.changed(), if grace_deadline.is_none() => Wake::Shutdown,
                _ = sleep_until_opt(grace_deadline) => Wake::Shutdown,
            };
            let read = match wake {
                Wake::Read(read) => read,
                Wake::Shutdown => continue,
                Wake::Notified => {
                    let flow = Box::pin(session.notification(&mut out)).await;
                    flush(&mut stream, &mut out).await?;
                    if flow == Flow::Close {
                        let _ = stream.shutdown().await;
                        return Ok(());
                    }
                    continue;
                }
            };
            let n = match read {
                Err(_elapsed) => {
                    session.timed_out(&mut out);
                    flush(&mut stream, &mut out).await?;
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => n,
            };
            let flow = Box::pin(session.input(&buf[..n], &mut out)).await;
            flush(&mut stream, &mut out).await?;
            match flow {
                Flow::Continue => {}
                Flow::Close => {
                    let _ = stream.shutdown().await;
                    return Ok(());
                }
                Flow::StartTls => {
                    let Stream::Plain(tcp) = stream else {
                        // The session must refuse a second STARTTLS; never nest TLS.
                        return Err(std::io::Error::other("STARTTLS inside TLS"));
                    };
                    let (tls, info) = Box::pin(self.handshake(tcp)).await?;
                    stream = tls;
                    session.tls_established(info);
                }
            }
            if n == buf_size && buf_size < 64 * 1024 {
                buf_size *= 2;
            }
            if matches!(stream, Stream::Plain(_)) {
                buf = Vec::new();
            }
        }
    }
}

impl Server {
    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<(Stream, TlsInfo)> {
        let tls = self
            .tls
            .as_ref()
            .ok_or_else(|| std::io::Error::other("TLS requested but not configured"))?;
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        let info = tls::info(stream.get_ref().1, tls.end_point());
        debug!(version = %info.version, cipher = %info.cipher, "TLS established");
        Ok((Stream::Tls(Box::new(stream)), info))
    }
}

/// The text a panic was raised with, for the log.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

/// Locks `mutex` even if a panicking thread held it: the counters it guards stay consistent
/// at every instruction (one insert or decrement), so a poisoned lock holds valid data, and
/// one fault must not turn into a panic in every later connection.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn flush(stream: &mut Stream, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        stream.flush().await?;
        // Idle connections keep no output buffer; busy ones reallocate, which costs little
        // next to the write.
        *out = Vec::new();
    }
    Ok(())
}
