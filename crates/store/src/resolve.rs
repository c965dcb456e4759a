//! Recipient resolution: aliases, subaddresses (`user+tag@domain`) and catch-all (`@domain`),
//! written once over the [`Store`] lookups so every backend routes the same way.

use crate::{AccountId, Address, Result, Store};

/// Where mail for one address goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local account's INBOX.
    Local(AccountId),
    /// An address on another server (an alias that forwards out).
    Remote(String),
}

/// The outcome of resolving one recipient address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The domain is ours and the address delivers to these targets (never empty).
    Deliver(Vec<Target>),
    /// The domain is ours but nobody has this address.
    NoSuchUser,
    /// We do not receive mail for this domain.
    NotLocal,
}

/// Alias chains longer than this are treated as a loop.
const MAX_DEPTH: usize = 8;

/// Resolves `address` to its delivery targets.
pub async fn resolve(store: &dyn Store, address: &Address) -> Result<Resolution> {
    if !store.has_domain(address.domain()).await? {
        return Ok(Resolution::NotLocal);
    }
    let mut targets = Vec::new();
    let mut seen = Vec::new();
    expand(store, address, 0, &mut seen, &mut targets).await?;
    if targets.is_empty() {
        Ok(Resolution::NoSuchUser)
    } else {
        Ok(Resolution::Deliver(targets))
    }
}

/// Appends the targets of one local address; returns whether the address exists at all.
async fn expand(
    store: &dyn Store,
    address: &Address,
    depth: usize,
    seen: &mut Vec<String>,
    targets: &mut Vec<Target>,
) -> Result<bool> {
    if depth > MAX_DEPTH || seen.iter().any(|s| s == address.as_str()) {
        return Ok(false);
    }
    seen.push(address.as_str().to_owned());
    // Order: exact alias, account, then the same two without the +tag, then catch-all.
    let base = address.without_subaddress();
    let mut candidates = vec![address.clone()];
    candidates.extend(base);
    for candidate in &candidates {
        let alias = store.alias_targets(candidate.as_str()).await?;
        if !alias.is_empty() {
            for target in alias {
                add_target(store, &target, depth, seen, targets).await?;
            }
            return Ok(true);
        }
        if let Some(account) = store.account(candidate).await? {
            push_unique(targets, Target::Local(account.id));
            return Ok(true);
        }
    }
    let catch_all = store
        .alias_targets(&format!("@{}", address.domain()))
        .await?;
    if depth == 0 && !catch_all.is_empty() {
        for target in catch_all {
            add_target(store, &target, depth, seen, targets).await?;
        }
        return Ok(true);
    }
    Ok(false)
}

async fn add_target(
    store: &dyn Store,
    target: &str,
    depth: usize,
    seen: &mut Vec<String>,
    targets: &mut Vec<Target>,
) -> Result<()> {
    let Ok(target) = Address::parse(target) else {
        return Ok(());
    };
    if store.has_domain(target.domain()).await? {
        Box::pin(expand(store, &target, depth + 1, seen, targets)).await?;
    } else {
        push_unique(targets, Target::Remote(target.as_str().to_owned()));
    }
    Ok(())
}

fn push_unique(targets: &mut Vec<Target>, target: Target) {
    if !targets.contains(&target) {
        targets.push(target);
    }
}
