//! `pigeon serve`: open the store, bind the listeners, run until SIGTERM or ctrl-c.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use config::{Config, Protocol, TlsMode};
use tokio::net::TcpListener;
use tracing::info;

pub async fn run(config: Config) -> anyhow::Result<()> {
    init_logging();
    raise_open_files_limit();
    let signals = Signals::install()?;
    let store = crate::admin::open_store(&config).await?;
    if !store.has_domain(&config.domain).await? {
        store
            .add_domain(&config.domain)
            .await
            .with_context(|| format!("add primary domain {}", config.domain))?;
        let now = common::clock::now();
        for (selector, algorithm) in [("ed1", "ed25519"), ("rsa1", "rsa")] {
            let key = submission::dkim::generate_key(&config.domain, selector, algorithm, now)
                .map_err(|e| anyhow::anyhow!("DKIM key: {e}"))?;
            store.add_dkim_key(key).await?;
        }
        info!(domain = %config.domain, "created primary domain with DKIM keys (`pigeon domain dns` shows the records)");
    }

    let listening_path = config.data_dir.join("listening.json");
    let _ = std::fs::remove_file(&listening_path);

    let tls_source = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => net::CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => net::CertSource::SelfSigned {
            dir: config.data_dir.join("tls"),
            hostname: config.hostname.clone(),
        },
    };
    let tls = net::Tls::new(tls_source).context("set up TLS")?;
    let https = tls.acceptor().clone();
    let server = net::Server::new(
        net::Limits {
            max_connections: config.limits.max_connections,
            max_connections_per_ip: config.limits.max_connections_per_ip,
            shutdown_grace: std::time::Duration::from_secs(config.limits.shutdown_grace_secs),
            max_connection_rate_per_ip: config.limits.max_connection_rate_per_ip,
        },
        Some(tls),
    );
    let login = Arc::new(auth::Authenticator::with_hash_workers(
        store.clone(),
        sasl::ThrottleConfig {
            free_failures: config.auth.free_failures,
            base_delay: std::time::Duration::from_millis(config.auth.base_delay_ms),
            max_delay: std::time::Duration::from_millis(config.auth.max_delay_ms),
            lockout_after: config.auth.lockout_after,
            lockout: std::time::Duration::from_secs(config.auth.lockout_secs),
        },
        common::random::bytes::<32>(),
        config.auth.hash_workers,
    ));
    let resolver = queue::route::resolver(&config.dns.servers)
        .map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?;
    let authenticator = Arc::new(mail_auth::MessageAuthenticator(resolver.clone()));
    let sending_limits = Arc::new(submission::SendingLimits::default());
    let smtp_settings = |mode| smtp_server::Settings {
        machine: smtp_proto::ServerConfig {
            hostname: config.hostname.clone(),
            max_message_size: config.smtp.max_message_size,
            max_recipients: config.smtp.max_recipients,
            max_line_length: config.smtp.max_line_length,
            max_header_line: config.smtp.max_header_line,
            ..smtp_proto::ServerConfig::default()
        },
        command_timeout: config.smtp.command_timeout(),
        data_timeout: config.smtp.data_timeout(),
        mode,
        submission: smtp_server::SubmissionPolicy {
            allowed_senders: config
                .submission
                .allowed_senders
                .iter()
                .map(|(user, list)| {
                    (
                        user.to_lowercase(),
                        list.iter().map(|a| a.to_lowercase()).collect(),
                    )
                })
                .collect(),
            max_messages_per_hour: config.submission.max_messages_per_hour,
            max_recipients_per_hour: config.submission.max_recipients_per_hour,
            allow_plaintext_on_loopback: config.auth.plaintext_on_loopback(Protocol::Submission),
        },
        queue_lifetime: std::time::Duration::from_secs(config.queue.lifetime_secs),
        dev_failures: config.smtp.dev_failures,
        authenticator: (config.smtp.verify_inbound && !config.dns.offline)
            .then(|| authenticator.clone()),
        dmarc_reject: config.smtp.dmarc_reject,
    };
    let smtp = Arc::new(smtp_server::Smtp::new(
        store.clone(),
        login.clone(),
        sending_limits.clone(),
        smtp_settings(smtp_server::Mode::Mx),
    ));
    let submission = Arc::new(smtp_server::Smtp::new(
        store.clone(),
        login.clone(),
        sending_limits.clone(),
        smtp_settings(smtp_server::Mode::Submission),
    ));

    let submitter = Arc::new(submission::Submitter::new(
        store.clone(),
        sending_limits.clone(),
        smtp_settings(smtp_server::Mode::Submission),
    ));
    let web_sessions = Arc::new(webmail::Sessions::new(std::time::Duration::from_secs(
        config.webmail.idle_timeout_secs,
    )));
    let webmail_for = |secure| {
        Arc::new(webmail::Webmail {
            store: store.clone(),
            login: login.clone(),
            submitter: submitter.clone(),
            sessions: web_sessions.clone(),
            settings: webmail::Settings {
                hostname: config.hostname.clone(),
                max_message_size: config.smtp.max_message_size,
                secure,
                allow_plaintext_on_loopback: config.auth.plaintext_on_loopback(Protocol::Http),
                max_sessions_per_account: config.webmail.max_sessions_per_account,
            },
        })
    };

    let pop3 = Arc::new(pop3_server::Pop3::new(
        store.clone(),
        login.clone(),
        pop3_server::Settings {
            timeout: std::time::Duration::from_secs(config.pop3.timeout_secs),
            expire_days: config.pop3.expire_days,
            login_delay_secs: config.pop3.login_delay_secs,
            allow_plaintext_on_loopback: config.auth.plaintext_on_loopback(Protocol::Pop3),
        },
    ));

    let imap = Arc::new(imap_server::Imap::new(
        store.clone(),
        login.clone(),
        imap_server::Settings {
            allow_plaintext_on_loopback: config.auth.plaintext_on_loopback(Protocol::Imap),
            max_append: config.imap.max_append,
            idle_timeout: std::time::Duration::from_secs(config.imap.idle_timeout_secs),
            preauth_timeout: std::time::Duration::from_secs(config.imap.preauth_timeout_secs),
        },
    ));

    let mut bound: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tasks = Vec::new();
    for listener in config.effective_listeners() {
        let socket = TcpListener::bind(listener.bind).await.with_context(|| {
            format!(
                "bind {} listener on {}",
                listener.protocol.name(),
                listener.bind
            )
        })?;
        let address = socket.local_addr()?;
        info!(protocol = listener.protocol.name(), %address, "listening");
        // Keyed by protocol, with `+tls` for implicit-TLS listeners (`submission+tls`).
        let key = match listener.tls {
            TlsMode::Implicit => format!("{}+tls", listener.protocol.name()),
            _ => listener.protocol.name().to_string(),
        };
        bound.entry(key).or_default().push(address.to_string());
        let server = server.clone();
        let mode = match listener.tls {
            TlsMode::Starttls => net::TlsMode::StartTls,
            TlsMode::Implicit => net::TlsMode::Implicit,
            TlsMode::None => net::TlsMode::None,
        };
        tasks.push(match listener.protocol {
            Protocol::Smtp => tokio::spawn(server.serve(socket, smtp.clone(), mode)),
            Protocol::Submission => tokio::spawn(server.serve(socket, submission.clone(), mode)),
            Protocol::Pop3 => tokio::spawn(server.serve(socket, pop3.clone(), mode)),
            Protocol::Imap => tokio::spawn(server.serve(socket, imap.clone(), mode)),
            Protocol::Http => {
                let tls = (listener.tls == TlsMode::Implicit).then(|| https.clone());
                let site = webmail_for(tls.is_some());
                tokio::spawn(webmail::serve(server, socket, tls, site))
            }
        });
    }
    // Written last and atomically: when the file exists, every listener accepts connections.
    let tmp = listening_path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&bound)?)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &listening_path)?;

    let (stop_queue, stopped) = tokio::sync::watch::channel(false);
    let queue_task = if config.queue.enabled {
        // Claims left by a previous life of this node are void (on PostgreSQL, only this
        // node's: other nodes may be delivering theirs).
        store.release_queue_leases().await?;
        Some(tokio::spawn(
            outbound_queue(&config, store.clone(), resolver)?.run(stopped),
        ))
    } else {
        None
    };

    wait_for_signal(signals, &server).await?;
    info!("shutting down");
    let _ = stop_queue.send(true);
    server.shutdown().await;
    if let Some(task) = queue_task {
        let grace = std::time::Duration::from_secs(config.limits.shutdown_grace_secs);
        if tokio::time::timeout(grace, task).await.is_err() {
            tracing::warn!("queue deliveries still running at shutdown; their leases will lapse");
        }
    }
    for task in tasks {
        task.abort();
    }
    info!("stopped");
    Ok(())
}

/// The delivery queue, as configured.
fn outbound_queue(
    config: &Config,
    store: Arc<dyn store::Store>,
    resolver: queue::Resolver,
) -> anyhow::Result<Arc<queue::Queue>> {
    let q = &config.queue;
    let tls = client::tls::client_config(&client::tls::Trust::Insecure)
        .map_err(|e| anyhow::anyhow!("TLS client: {e}"))?;
    let secs = std::time::Duration::from_secs;
    let mut settings = queue::Settings::new(queue::SessionSettings {
        hostname: config.hostname.clone(),
        connect_timeout: secs(q.connect_timeout_secs),
        command_timeout: secs(q.command_timeout_secs),
        tls,
    });
    settings.retry_schedule = q.retry_schedule_secs.iter().copied().map(secs).collect();
    settings.max_connections = q.max_connections;
    settings.max_connections_per_domain = q.max_connections_per_domain;
    settings.poll = secs(q.poll_secs);
    settings.lease = secs(q.lease_secs);
    settings.delay_warning = (q.delay_warning_secs > 0).then(|| secs(q.delay_warning_secs));
    let smarthost = q.smarthost.clone().map(|host| {
        let credentials = match (&q.smarthost_username, &q.smarthost_password) {
            (Some(username), Some(password)) => Some(queue::Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        (host, credentials)
    });
    let router = queue::Router::new(
        (!config.dns.offline).then_some(resolver),
        q.routes.clone(),
        smarthost,
        q.require_tls.clone(),
        q.mx_port,
    );
    Ok(queue::Queue::new(store, settings, router))
}

/// The signals `serve` answers. Installed before any listener is bound: until then a signal
/// has its default effect (SIGTERM kills), which would cut sessions already being served while
/// start-up still awaited the store.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("install SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("install SIGHUP handler")?,
        })
    }
}

/// How often the certificate is looked at again without a SIGHUP: a self-signed one is made
/// anew a month before it expires, and files a renewal tool replaced are picked up.
const CERTIFICATE_CHECK: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Waits for SIGTERM or SIGINT; SIGHUP (and a daily check) reloads the TLS certificate meanwhile.
async fn wait_for_signal(signals: Signals, server: &net::Server) -> anyhow::Result<()> {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let mut daily = tokio::time::interval_at(
        tokio::time::Instant::now() + CERTIFICATE_CHECK,
        CERTIFICATE_CHECK,
    );
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = daily.tick() => {
                if let Some(tls) = server.tls()
                    && let Err(e) = tls.reload()
                {
                    tracing::error!(error = %e, "daily TLS check failed; keeping the old certificate");
                }
            }
            _ = hup.recv() => {
                if let Some(tls) = server.tls() {
                    match tls.reload() {
                        Ok(()) => info!("reloaded TLS certificate"),
                        Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the old certificate"),
                    }
                }
            }
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIGEON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Raises the soft limit on open files to the hard limit, as other servers do at start: every
/// connection is a descriptor, and the usual soft default (1,024) would refuse connections long
/// before `limits.max_connections`. The hard limit is the operator's (systemd `LimitNOFILE=`).
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => info!(
            limit = limit
                .maximum
                .map_or("unlimited".to_string(), |n| n.to_string()),
            "raised the open-files limit"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
}
