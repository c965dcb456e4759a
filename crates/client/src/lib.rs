//! Mail protocol clients used by the user agent, the queue, the tests and the benchmark.
//!
//! [`smtp::SmtpClient`] speaks SMTP over plain TCP or TLS (implicit or STARTTLS) with AUTH;
//! [`tls`] builds the rustls client configurations.

pub mod imap;
pub mod pop3;
pub mod smtp;
pub mod tls;
