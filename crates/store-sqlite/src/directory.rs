//! The directory: domains, accounts, aliases and DKIM keys.

use super::*;
use crate::mailboxes::next_uid_validity;
use crate::messages::collect_garbage;
use crate::rows::special_use_name;

#[async_trait]
impl store::DirectoryStore for SqliteStore {
    async fn add_domain_normalised(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| {
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO domains (name, created) VALUES (?1, ?2)",
                    params![name, now()],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("domain {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_domains(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name FROM domains ORDER BY name")
                .map_err(backend)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(backend)
        })
        .await
    }

    async fn has_domain_normalised(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM domains WHERE name = ?1")
                .and_then(|mut s| s.exists([name]))
                .map_err(backend)
        })
        .await
    }

    async fn delete_domain_normalised(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| {
            let (users, aliases) = domain_in_use(conn, &name).map_err(backend)?;
            if users > 0 || aliases > 0 {
                return Err(StoreError::InUse(format!(
                    "domain {name} still has {users} user(s) and {aliases} alias(es); delete them first"
                )));
            }
            let deleted = conn
                .execute("DELETE FROM domains WHERE name = ?1", [&name])
                .map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::NotFound(format!("domain {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn create_account(&self, address: &Address, secrets: &Secrets) -> Result<AccountId> {
        let address = address.clone();
        let secrets = secrets.clone();
        self.write(move |conn| {
            let known = conn
                .prepare_cached("SELECT 1 FROM domains WHERE name = ?1")
                .and_then(|mut s| s.exists([address.domain()]))
                .map_err(backend)?;
            if !known {
                return Err(StoreError::Invalid(format!(
                    "unknown domain {}: add it with `pigeon domain add {}` first",
                    address.domain(),
                    address.domain()
                )));
            }
            let created = now();
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO accounts (address, domain, password_hash, scram, created) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![address.as_str(), address.domain(), secrets.password_hash, secrets.scram, created],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("user {address}")));
            }
            let id = conn.last_insert_rowid();
            let uid_validity = next_uid_validity(conn).map_err(backend)?;
            let mut boxes: Vec<(&str, Option<SpecialUse>)> = vec![("INBOX", None)];
            boxes.extend(SpecialUse::ALL.iter().map(|u| (u.default_name(), Some(*u))));
            for (name, usage) in boxes {
                conn.execute(
                    "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, name, special_use_name(usage), uid_validity],
                )
                .map_err(backend)?;
            }
            Ok(id)
        })
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, address, created FROM accounts ORDER BY address")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Account {
                        id: r.get(0)?,
                        address: r.get(1)?,
                        created: r.get(2)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn account(&self, address: &Address) -> Result<Option<Account>> {
        let address = address.as_str().to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT id, address, created FROM accounts WHERE address = ?1")
                .and_then(|mut s| {
                    s.query_row([address], |r| {
                        Ok(Account {
                            id: r.get(0)?,
                            address: r.get(1)?,
                            created: r.get(2)?,
                        })
                    })
                    .optional()
                })
                .map_err(backend)
        })
        .await
    }

    async fn credentials(&self, address: &Address) -> Result<Option<Credentials>> {
        let address = address.as_str().to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, address, password_hash, scram FROM accounts WHERE address = ?1",
            )
            .and_then(|mut s| {
                s.query_row([address], |r| {
                    Ok(Credentials {
                        account_id: r.get(0)?,
                        address: r.get(1)?,
                        secrets: Secrets {
                            password_hash: r.get(2)?,
                            scram: r.get(3)?,
                        },
                    })
                })
                .optional()
            })
            .map_err(backend)
        })
        .await
    }

    async fn set_password(&self, address: &Address, secrets: &Secrets) -> Result<()> {
        let address = address.clone();
        let secrets = secrets.clone();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE accounts SET password_hash = ?1, scram = ?2 WHERE address = ?3",
                    params![secrets.password_hash, secrets.scram, address.as_str()],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {address}")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_account(&self, address: &Address) -> Result<()> {
        let address = address.clone();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM accounts WHERE address = ?1",
                    [address.as_str()],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {address}")));
            }
            collect_garbage(conn).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn add_alias_normalised(
        &self,
        source: &str,
        domain: &str,
        targets: &[String],
    ) -> Result<()> {
        let (source, domain, targets) = (source.to_owned(), domain.to_owned(), targets.to_vec());
        self.write(move |conn| {
            let known = conn
                .prepare_cached("SELECT 1 FROM domains WHERE name = ?1")
                .and_then(|mut s| s.exists([&domain]))
                .map_err(backend)?;
            if !known {
                return Err(StoreError::Invalid(format!("unknown domain {domain}")));
            }
            for target in targets {
                conn.execute(
                    "INSERT OR IGNORE INTO aliases (address, target, domain) VALUES (?1, ?2, ?3)",
                    params![source, target, domain],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_aliases(&self) -> Result<Vec<Alias>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT address, target FROM aliases ORDER BY address, rowid")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(backend)?;
            let mut aliases: Vec<Alias> = Vec::new();
            for row in rows {
                let (address, target) = row.map_err(backend)?;
                match aliases.last_mut() {
                    Some(last) if last.address == address => last.targets.push(target),
                    _ => aliases.push(Alias {
                        address,
                        targets: vec![target],
                    }),
                }
            }
            Ok(aliases)
        })
        .await
    }

    async fn alias_targets_normalised(&self, address: &str) -> Result<Vec<String>> {
        let address = address.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT target FROM aliases WHERE address = ?1 ORDER BY rowid")
                .map_err(backend)?;
            let rows = stmt.query_map([address], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(backend)
        })
        .await
    }

    async fn alias_sources_normalised(&self, target: &str) -> Result<Vec<String>> {
        let target = target.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT address FROM aliases WHERE target = ?1 ORDER BY address")
                .map_err(backend)?;
            let rows = stmt.query_map([target], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(backend)
        })
        .await
    }

    async fn delete_alias_normalised(&self, source: &str) -> Result<()> {
        let source = source.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM aliases WHERE address = ?1", [&source])
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("alias {source}")));
            }
            Ok(())
        })
        .await
    }

    async fn add_dkim_key_normalised(&self, key: DkimKey) -> Result<()> {
        self.write(move |conn| {
            let known = conn
                .prepare_cached("SELECT 1 FROM domains WHERE name = ?1")
                .and_then(|mut s| s.exists([&key.domain]))
                .map_err(backend)?;
            if !known {
                return Err(StoreError::NotFound(format!("domain {}", key.domain)));
            }
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO dkim_keys \
                     (domain, selector, algorithm, private_key, public_key, created) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        key.domain,
                        key.selector,
                        key.algorithm,
                        key.private_key,
                        key.public_key,
                        key.created
                    ],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!(
                    "DKIM selector {} of {}",
                    key.selector, key.domain
                )));
            }
            Ok(())
        })
        .await
    }

    async fn dkim_keys_normalised(&self, domain: &str) -> Result<Vec<DkimKey>> {
        let domain = domain.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT domain, selector, algorithm, private_key, public_key, created \
                     FROM dkim_keys WHERE domain = ?1 ORDER BY created, selector",
                )
                .map_err(backend)?;
            stmt.query_map([domain], |r| {
                Ok(DkimKey {
                    domain: r.get(0)?,
                    selector: r.get(1)?,
                    algorithm: r.get(2)?,
                    private_key: r.get(3)?,
                    public_key: r.get(4)?,
                    created: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(backend)
        })
        .await
    }
}

pub(crate) fn domain_in_use(conn: &Connection, domain: &str) -> rusqlite::Result<(i64, i64)> {
    let users: i64 = conn.query_row(
        "SELECT COUNT(*) FROM accounts WHERE domain = ?1",
        [domain],
        |r| r.get(0),
    )?;
    let aliases: i64 = conn.query_row(
        "SELECT COUNT(*) FROM aliases WHERE domain = ?1",
        [domain],
        |r| r.get(0),
    )?;
    Ok((users, aliases))
}
