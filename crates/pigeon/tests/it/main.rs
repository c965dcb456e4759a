//! End-to-end tests: the real `pigeon` binary on ephemeral loopback ports, driven by our own
//! client and by independent ones (Python smtplib, curl, swaks).

mod admin;
mod corpus;
mod crash;
mod fixtures;
mod imap;
mod pop3;
mod queue;
mod smtp;
mod submission;
mod ua;

use std::path::Path;

pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pigeon"))
}
