//! Hourly sending limits per user for submission (fixed one-hour windows, in memory).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use store::AccountId;

const WINDOW: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
struct Usage {
    started: Instant,
    messages: u32,
    recipients: u32,
}

/// Counts messages and recipients per account in the current hour.
#[derive(Debug, Default)]
pub struct SendingLimits {
    usage: Mutex<HashMap<AccountId, Usage>>,
}

impl SendingLimits {
    fn take(&self, account: AccountId, max: u32, pick: impl Fn(&mut Usage) -> &mut u32) -> bool {
        let now = Instant::now();
        let mut usage = self.usage.lock().expect("limits lock poisoned");
        let entry = usage.entry(account).or_insert(Usage {
            started: now,
            messages: 0,
            recipients: 0,
        });
        if now.duration_since(entry.started) >= WINDOW {
            *entry = Usage {
                started: now,
                messages: 0,
                recipients: 0,
            };
        }
        let count = pick(entry);
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    /// Counts one message; false if the user reached `max` this hour.
    pub fn take_message(&self, account: AccountId, max: u32) -> bool {
        self.take(account, max, |u| &mut u.messages)
    }

    /// Counts one recipient; false if the user reached `max` this hour.
    pub fn take_recipient(&self, account: AccountId, max: u32) -> bool {
        self.take(account, max, |u| &mut u.recipients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_account() {
        let limits = SendingLimits::default();
        assert!(limits.take_message(1, 2));
        assert!(limits.take_message(1, 2));
        assert!(!limits.take_message(1, 2));
        assert!(
            limits.take_message(2, 2),
            "other accounts have their own budget"
        );
        assert!(limits.take_recipient(1, 1));
        assert!(!limits.take_recipient(1, 1));
    }
}
