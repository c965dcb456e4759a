//! Mail protocol clients used by the user agent, the queue, the tests and the benchmark.
//!
//! Only SMTP so far: [`smtp::SmtpClient`].

pub mod smtp;
