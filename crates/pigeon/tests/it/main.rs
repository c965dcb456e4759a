//! End-to-end tests: the real `pigeon` binary on ephemeral loopback ports, driven by our own
//! client and by independent ones (Python smtplib, curl, swaks).

mod admin;
mod corpus;
mod crash;
mod decoding;
mod fixtures;
mod hardening_auth;
mod hardening_imap;
mod hardening_mime;
mod hardening_net;
mod hardening_smtp;
mod hardening_store;
mod hardening_webmail;
mod imap;
mod pop3;
mod postgres;
mod queue;
mod smtp;
mod submission;
mod trace;
mod ua;
mod webmail;
mod webmail_net;

use std::path::Path;

pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pigeon"))
}

/// Runs a Python script with `args`; the test fails with its output if the script fails.
/// Returns what it printed.
pub fn python(script: &str, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Delivers `message` to `to` on the server's MX port with our client.
pub async fn deliver(server: &test_support::TestServer, from: &str, to: &str, message: &[u8]) {
    let mut smtp =
        client::smtp::SmtpClient::connect(server.addr("smtp"), std::time::Duration::from_secs(20))
            .await
            .unwrap();
    smtp.ehlo("sender.test").await.unwrap();
    smtp.send(from, &[to], message).await.unwrap();
    smtp.quit().await.unwrap();
}
