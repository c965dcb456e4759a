//! IDLE (RFC 2177, RFC 9051 §6.3.13): changes are pushed as they happen until DONE.

use super::Ctx;
use crate::Session;
use crate::reply::ok;
use crate::session::sync;
use crate::state::{Account, Selected, State, Verb};

/// Starts idling: pending updates, the continuation, and the machine reads until DONE.
pub(crate) async fn start(
    cx: &mut Ctx<'_>,
    account: &mut Account,
    selected: Option<&mut Selected>,
    tag: &str,
) {
    sync(cx, account, selected, true).await;
    cx.out().extend_from_slice(b"+ idling\r\n");
    cx.machine.start_idle();
    account.idle = Some(tag.to_string());
}

impl Session {
    /// DONE: the last updates and IDLE's completion.
    pub(crate) async fn idle_done(&mut self) {
        let tag = match &mut self.state {
            State::Authenticated(account) | State::Selected(account, _) => account.idle.take(),
            State::NotAuthenticated { .. } | State::Logout => None,
        };
        if let Some(tag) = tag {
            self.sync(true).await;
            self.complete(&tag, Verb::Idle, Ok(ok("IDLE terminated")));
        }
    }

    /// Waits for a change to push. Only IDLE pushes updates unasked; otherwise they wait for
    /// the next command. Cancelled by the driver whenever input arrives.
    pub(crate) async fn wait_idle_change(&mut self) {
        let (account, selected) = match &mut self.state {
            State::Authenticated(account) if account.idle.is_some() => (account, None),
            State::Selected(account, selected) if account.idle.is_some() => {
                (account, Some(selected))
            }
            _ => return std::future::pending().await,
        };
        match account.changes.recv().await {
            Ok(store::Change::Resync)
            | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Some(selected) = selected {
                    let _ = selected.view.resync(&*self.store).await;
                }
            }
            Ok(change) => {
                if let Some(selected) = selected {
                    selected.view.apply(change);
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}
