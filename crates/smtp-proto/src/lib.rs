//! Sans-IO SMTP: the server state machine, DATA transparency, replies, and a reply parser for
//! clients.
//!
//! **Architecture invariant:** this crate does no IO, uses no async runtime, and reads no clock
//! and no RNG. Bytes go in through `feed`, decisions come out of `next` as [`server::Event`]s.
//! Command-line syntax is parsed with Stalwart's `smtp-proto` crate (renamed `smtp-codec` in our
//! workspace because our crate has the same name); framing, limits, sequencing and DATA handling
//! are ours.
//!
//! For trace logs the server machine can keep a transcript of the exchange
//! ([`ServerMachine::record_transcript`]): it notes each line where it reads or writes it, so
//! no line is missed, and puts placeholders for AUTH data and message content.

pub mod canonical;
pub mod client;
pub mod data;
pub mod reply;
pub mod server;
mod transcript;

pub use reply::{Reply, replies};
pub use server::{Event, MailParams, RcptParams, ServerConfig, ServerMachine};
