//! `pigeon migrate`: copies a whole installation between stores (SQLite to PostgreSQL and
//! back) through the `Store` API, keeping everything a client or a peer can see: UIDVALIDITY,
//! UIDs, MODSEQs, flags, internal dates, expunge records (QRESYNC), passwords, aliases, DKIM
//! keys and the outbound queue with each recipient's state.

use std::sync::Arc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use store::{ImportedMessage, Store};

/// Messages copied per import call: bounds memory (and one PostgreSQL transaction) to about
/// this many messages' bytes.
const BATCH_MESSAGES: usize = 200;
const BATCH_BYTES: usize = 32 << 20;

/// Opens `sqlite:DIR` or `postgres://...`.
async fn open(spec: &str) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(dir) = spec.strip_prefix("sqlite:") {
        let store = store_sqlite::SqliteStore::open(std::path::Path::new(dir))
            .with_context(|| format!("open SQLite store in {dir}"))?;
        return Ok(Arc::new(store));
    }
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        let store = store_postgres::PostgresStore::connect(spec, 8, "pigeon-migrate")
            .await
            .with_context(|| format!("open {}", crate::admin::redact_url(spec)))?;
        return Ok(Arc::new(store));
    }
    bail!("unknown store {spec:?}: use sqlite:DIR or postgres://user@host:port/db")
}

pub async fn run(from: &str, to: &str) -> anyhow::Result<std::process::ExitCode> {
    let source = open(from).await?;
    let target = open(to).await?;
    let domains = target.list_domains().await?;
    let accounts = target.list_accounts().await?;
    if !domains.is_empty() || !accounts.is_empty() {
        bail!(
            "the target store is not empty ({} domains, {} accounts); migrate into an empty store",
            domains.len(),
            accounts.len()
        );
    }
    let copied = copy(&*source, &*target).await?;
    let before = source.verify().await?;
    let after = target.verify().await?;
    println!(
        "copied {} domains, {} accounts, {} mailboxes, {} messages, {} aliases, {} queued messages",
        copied.domains,
        after.accounts,
        after.mailboxes,
        after.messages,
        copied.aliases,
        copied.queued
    );
    let mut ok = after.problems.is_empty();
    for problem in &after.problems {
        println!("problem in the target: {problem}");
    }
    if (before.accounts, before.mailboxes, before.messages)
        != (after.accounts, after.mailboxes, after.messages)
    {
        ok = false;
        println!(
            "problem: the source has {} accounts, {} mailboxes, {} messages",
            before.accounts, before.mailboxes, before.messages
        );
    }
    if ok {
        println!("ok");
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        Ok(std::process::ExitCode::FAILURE)
    }
}

#[derive(Default)]
struct Copied {
    domains: usize,
    aliases: usize,
    queued: usize,
}

async fn copy(source: &dyn Store, target: &dyn Store) -> anyhow::Result<Copied> {
    let mut copied = Copied::default();
    for domain in source.list_domains().await? {
        target.add_domain(&domain).await?;
        for key in source.dkim_keys(&domain).await? {
            target.add_dkim_key(key).await?;
        }
        copied.domains += 1;
    }
    let accounts = source.list_accounts().await?;
    let mut total = 0u64;
    for account in &accounts {
        for mailbox in source.list_mailboxes(account.id).await? {
            total += mailbox.messages as u64;
        }
    }
    let progress = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} messages, {per_sec}, {eta} left")
            .expect("template"),
    );
    for account in &accounts {
        let address = store::Address::parse(&account.address)?;
        let credentials = source
            .credentials(&address)
            .await?
            .with_context(|| format!("credentials of {address}"))?;
        let new_id = target
            .create_account(&address, &credentials.secrets)
            .await?;
        let mailboxes = source.list_mailboxes(account.id).await?;
        // The defaults the target created but the source no longer has go.
        for made in target.list_mailboxes(new_id).await? {
            if made.name != "INBOX" && !mailboxes.iter().any(|m| m.name == made.name) {
                target.delete_mailbox(made.id).await?;
            }
        }
        for mailbox in mailboxes {
            let into = target.import_mailbox(new_id, &mailbox).await?;
            let messages = source.list_messages(mailbox.id).await?;
            let mut batch = Vec::new();
            let mut bytes = 0;
            for message in messages {
                let data = source.read_message(mailbox.id, message.uid).await?;
                bytes += data.len();
                batch.push(ImportedMessage {
                    message,
                    data,
                    summary: None,
                });
                if batch.len() >= BATCH_MESSAGES || bytes >= BATCH_BYTES {
                    import(source, target, mailbox.id, into, &mut batch, &progress).await?;
                    bytes = 0;
                }
            }
            import(source, target, mailbox.id, into, &mut batch, &progress).await?;
            let expunged = source.expunged_records(mailbox.id).await?;
            target.import_messages(into, Vec::new(), expunged).await?;
        }
    }
    progress.finish_and_clear();
    for alias in source.list_aliases().await? {
        target.add_alias(&alias.address, &alias.targets).await?;
        copied.aliases += 1;
    }
    for entry in source.list_queue().await? {
        let data = source.queue_data(entry.id).await?;
        target.import_queued(entry, data).await?;
        copied.queued += 1;
    }
    Ok(copied)
}

/// Imports a batch with the summaries the source has for it.
async fn import(
    source: &dyn Store,
    target: &dyn Store,
    from: store::MailboxId,
    into: store::MailboxId,
    batch: &mut Vec<ImportedMessage>,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let uids: Vec<u32> = batch.iter().map(|m| m.message.uid).collect();
    for (uid, summary) in source.summaries(from, &uids).await? {
        if let Some(m) = batch.iter_mut().find(|m| m.message.uid == uid) {
            m.summary = Some(summary);
        }
    }
    let n = batch.len() as u64;
    target
        .import_messages(into, std::mem::take(batch), Vec::new())
        .await?;
    progress.inc(n);
    Ok(())
}
