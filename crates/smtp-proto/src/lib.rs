//! Sans-IO SMTP: the server state machine, DATA transparency, replies, and a reply parser for
//! clients.
//!
//! **Architecture invariant:** this crate does no IO, uses no async runtime, and reads no clock
//! and no RNG. Bytes go in through `feed`, decisions come out of `next` as [`server::Event`]s.
//! Command-line syntax is parsed with Stalwart's `smtp-proto` crate (renamed `smtp-codec` in our
//! workspace because our crate has the same name); framing, limits, sequencing and DATA handling
//! are ours.

pub mod canonical;
pub mod client;
pub mod data;
pub mod reply;
pub mod server;

pub use reply::{Reply, replies};
pub use server::{Event, MailParams, RcptParams, ServerConfig, ServerMachine};
