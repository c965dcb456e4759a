//! Connections to the account's server: name resolution, TLS trust, and deadlines.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use client::tls::{Trust, client_config};

use crate::Account;

/// How long any one network step may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The TLS configuration the account trusts: any certificate (`insecure`), a PEM file, or the
/// system's CA bundle.
pub fn tls(account: &Account) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let trust = if account.insecure {
        Trust::Insecure
    } else if let Some(ca) = &account.ca {
        Trust::PemFile(ca.clone())
    } else {
        Trust::System
    };
    client_config(&trust).map_err(|e| {
        anyhow::anyhow!(
            "TLS: {e}; trust the server's certificate with --ca FILE, or use --insecure for a self-signed test server"
        )
    })
}

/// A TLS connection to the account's host on `port` (IMAP or POP3 over implicit TLS).
pub async fn tls_stream(
    account: &Account,
    port: u16,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let addr = resolve(&account.host, port).await?;
    let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("cannot reach {}:{port}: timed out", account.host))?
        .with_context(|| format!("cannot reach {}:{port}", account.host))?;
    let name = rustls_pki_types::ServerName::try_from(account.host.clone())?;
    tokio_rustls::TlsConnector::from(tls(account)?)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "TLS with {}:{port}: {e}; use --ca FILE, or --insecure for a self-signed test server",
                account.host
            )
        })
}

/// The first address of `host`.
pub async fn resolve(host: &str, port: u16) -> anyhow::Result<std::net::SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}
