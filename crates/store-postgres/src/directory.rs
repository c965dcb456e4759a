//! The directory: domains, accounts, aliases and DKIM keys.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use store::rules::now;
use store::{
    Account, AccountId, Address, Alias, Credentials, DkimKey, Result, Secrets, SpecialUse,
    StoreError,
};

use crate::PostgresStore;
use crate::mailboxes::next_uid_validity;
use crate::messages::collect_garbage;
use crate::pool::{Tx, execute, query, query_one, query_opt, transaction};
use crate::rows::{account_row, dkim_key_row};

#[async_trait]
impl store::DirectoryStore for PostgresStore {
    async fn add_domain_normalised(&self, name: &str) -> Result<()> {
        let client = self.client().await?;
        let n = execute(
            &client,
            "INSERT INTO domains (name, created) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&name, &now()],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!("domain {name}")));
        }
        Ok(())
    }

    async fn list_domains(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = query(&client, "SELECT name FROM domains ORDER BY name", &[]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn has_domain_normalised(&self, name: &str) -> Result<bool> {
        domain_exists(&self.client().await?, name).await
    }

    async fn delete_domain_normalised(&self, name: &str) -> Result<()> {
        transaction!(self, |tx| async {
            let row = query_one(
                tx,
                "SELECT (SELECT COUNT(*) FROM accounts WHERE domain = $1), \
                 (SELECT COUNT(*) FROM aliases WHERE domain = $1)",
                &[&name],
            )
            .await?;
            let (users, aliases): (i64, i64) = (row.get(0), row.get(1));
            if users > 0 || aliases > 0 {
                return Err(StoreError::InUse(format!(
                    "domain {name} still has {users} user(s) and {aliases} alias(es); delete them first"
                )));
            }
            if execute(tx, "DELETE FROM domains WHERE name = $1", &[&name]).await? == 0 {
                return Err(StoreError::NotFound(format!("domain {name}")));
            }
            Ok(())
        })
    }

    async fn create_account(&self, address: &Address, secrets: &Secrets) -> Result<AccountId> {
        transaction!(self, |tx| create_account_tx(tx, address, secrets))
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT id, address, created FROM accounts ORDER BY address",
            &[],
        )
        .await?;
        Ok(rows.iter().map(account_row).collect())
    }

    async fn account(&self, address: &Address) -> Result<Option<Account>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT id, address, created FROM accounts WHERE address = $1",
            &[&address.as_str()],
        )
        .await?;
        Ok(row.as_ref().map(account_row))
    }

    async fn credentials(&self, address: &Address) -> Result<Option<Credentials>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT id, address, password_hash, scram FROM accounts WHERE address = $1",
            &[&address.as_str()],
        )
        .await?;
        Ok(row.map(|r| Credentials {
            account_id: r.get(0),
            address: r.get(1),
            secrets: Secrets {
                password_hash: r.get(2),
                scram: r.get(3),
            },
        }))
    }

    async fn set_password(&self, address: &Address, secrets: &Secrets) -> Result<()> {
        let client = self.client().await?;
        let n = execute(
            &client,
            "UPDATE accounts SET password_hash = $1, scram = $2 WHERE address = $3",
            &[&secrets.password_hash, &secrets.scram, &address.as_str()],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {address}")));
        }
        Ok(())
    }

    async fn delete_account(&self, address: &Address) -> Result<()> {
        transaction!(self, |tx| async {
            let n = execute(
                tx,
                "DELETE FROM accounts WHERE address = $1",
                &[&address.as_str()],
            )
            .await?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {address}")));
            }
            collect_garbage(tx).await
        })
    }

    async fn add_alias_normalised(
        &self,
        source: &str,
        domain: &str,
        targets: &[String],
    ) -> Result<()> {
        transaction!(self, |tx| async {
            if !domain_exists(tx, domain).await? {
                return Err(StoreError::Invalid(format!("unknown domain {domain}")));
            }
            for target in targets {
                execute(
                    tx,
                    "INSERT INTO aliases (address, target, domain) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                    &[&source, target, &domain],
                )
                .await?;
            }
            Ok(())
        })
    }

    async fn list_aliases(&self) -> Result<Vec<Alias>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT address, target FROM aliases ORDER BY address, seq",
            &[],
        )
        .await?;
        let mut aliases: Vec<Alias> = Vec::new();
        for row in rows {
            let (address, target): (String, String) = (row.get(0), row.get(1));
            match aliases.last_mut() {
                Some(last) if last.address == address => last.targets.push(target),
                _ => aliases.push(Alias {
                    address,
                    targets: vec![target],
                }),
            }
        }
        Ok(aliases)
    }

    async fn alias_targets_normalised(&self, address: &str) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT target FROM aliases WHERE address = $1 ORDER BY seq",
            &[&address],
        )
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn alias_sources_normalised(&self, target: &str) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT address FROM aliases WHERE target = $1 ORDER BY address",
            &[&target],
        )
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn delete_alias_normalised(&self, source: &str) -> Result<()> {
        let client = self.client().await?;
        if execute(
            &client,
            "DELETE FROM aliases WHERE address = $1",
            &[&source],
        )
        .await?
            == 0
        {
            return Err(StoreError::NotFound(format!("alias {source}")));
        }
        Ok(())
    }

    async fn add_dkim_key_normalised(&self, key: DkimKey) -> Result<()> {
        transaction!(self, |tx| async {
            if !domain_exists(tx, &key.domain).await? {
                return Err(StoreError::NotFound(format!("domain {}", key.domain)));
            }
            let n = execute(
                tx,
                "INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, \
                 created) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &key.domain,
                    &key.selector,
                    &key.algorithm,
                    &key.private_key,
                    &key.public_key,
                    &key.created,
                ],
            )
            .await?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!(
                    "DKIM selector {} of {}",
                    key.selector, key.domain
                )));
            }
            Ok(())
        })
    }

    async fn dkim_keys_normalised(&self, domain: &str) -> Result<Vec<DkimKey>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT domain, selector, algorithm, private_key, public_key, created \
             FROM dkim_keys WHERE domain = $1 ORDER BY created, selector",
            &[&domain],
        )
        .await?;
        Ok(rows.iter().map(dkim_key_row).collect())
    }
}

/// Creates the account and its default mailboxes.
async fn create_account_tx(tx: &Tx<'_>, address: &Address, secrets: &Secrets) -> Result<i64> {
    if !domain_exists(tx, address.domain()).await? {
        return Err(StoreError::Invalid(format!(
            "unknown domain {}: add it with `pigeon domain add {}` first",
            address.domain(),
            address.domain()
        )));
    }
    let row = query_opt(
        tx,
        "INSERT INTO accounts (address, domain, password_hash, scram, created) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
        &[
            &address.as_str(),
            &address.domain(),
            &secrets.password_hash,
            &secrets.scram,
            &now(),
        ],
    )
    .await?;
    let Some(row) = row else {
        return Err(StoreError::AlreadyExists(format!("user {address}")));
    };
    let id: i64 = row.get(0);
    let uid_validity = next_uid_validity(tx).await?;
    let mut boxes: Vec<(&str, Option<SpecialUse>)> = vec![("INBOX", None)];
    boxes.extend(SpecialUse::ALL.iter().map(|u| (u.default_name(), Some(*u))));
    for (name, usage) in boxes {
        execute(
            tx,
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) \
             VALUES ($1, $2, $3, $4)",
            &[&id, &name, &usage.map(|u| u.attribute()), &uid_validity],
        )
        .await?;
    }
    Ok(id)
}

async fn domain_exists<C: GenericClient>(c: &C, domain: &str) -> Result<bool> {
    Ok(
        query_opt(c, "SELECT 1 FROM domains WHERE name = $1", &[&domain])
            .await?
            .is_some(),
    )
}
