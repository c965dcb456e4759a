//! `pigeon serve`: open the store, bind the listeners, run until SIGTERM or ctrl-c.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use config::{Config, Protocol};
use tokio::net::TcpListener;
use tracing::info;

pub async fn run(config: Config) -> anyhow::Result<()> {
    init_logging();
    let store = crate::admin::open_store(&config)?;
    if !store.has_domain(&config.domain).await? {
        store
            .add_domain(&config.domain)
            .await
            .with_context(|| format!("add primary domain {}", config.domain))?;
        info!(domain = %config.domain, "created primary domain");
    }

    let listening_path = config.data_dir.join("listening.json");
    let _ = std::fs::remove_file(&listening_path);

    let server = net::Server::new(net::Limits {
        max_connections: config.limits.max_connections,
        max_connections_per_ip: config.limits.max_connections_per_ip,
        shutdown_grace: std::time::Duration::from_secs(config.limits.shutdown_grace_secs),
    });
    let smtp = Arc::new(smtp_server::Smtp::new(
        store.clone(),
        smtp_server::Settings {
            machine: smtp_proto::ServerConfig {
                hostname: config.hostname.clone(),
                max_message_size: config.smtp.max_message_size,
                max_recipients: config.smtp.max_recipients,
                max_line_length: config.smtp.max_line_length,
                ..smtp_proto::ServerConfig::default()
            },
            command_timeout: config.smtp.command_timeout(),
            data_timeout: config.smtp.data_timeout(),
        },
    ));

    let mut bound: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
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
        bound
            .entry(listener.protocol.name())
            .or_default()
            .push(address.to_string());
        let server = server.clone();
        tasks.push(match listener.protocol {
            Protocol::Smtp => tokio::spawn(server.serve(socket, smtp.clone())),
        });
    }
    // Written last and atomically: when the file exists, every listener accepts connections.
    let tmp = listening_path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&bound)?)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &listening_path)?;

    wait_for_signal().await?;
    info!("shutting down");
    server.shutdown().await;
    for task in tasks {
        task.abort();
    }
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
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
