//! The connection pool, client checkout, `transaction!` and which errors are worth a retry.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use store::{Result, StoreError};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// Connections per node unless configured.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How often a transaction that lost a race is run again.
pub(crate) const RETRIES: u32 = 5;

pub(crate) type Tx<'a> = deadpool_postgres::Transaction<'a>;
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// What the `transaction!` macro needs of a store: a pooled connection.
pub(crate) struct PoolHandle(pub(crate) Pool);

/// A pool of `size` connections (at least 2) to `config`'s database.
pub(crate) fn build(config: tokio_postgres::Config, size: usize) -> Result<Pool> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(2))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .map_err(backend)
}

impl PoolHandle {
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.0
            .get()
            .await
            .map_err(|e| StoreError::Backend(format!("PostgreSQL pool: {e}").into()))
    }
}

pub(crate) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.query(&stmt, params).await.map_err(backend)
}

pub(crate) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.query_opt(&stmt, params).await.map_err(backend)
}

pub(crate) async fn query_one<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Row> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.query_one(&stmt, params).await.map_err(backend)
}

pub(crate) async fn execute<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<u64> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.execute(&stmt, params).await.map_err(backend)
}

/// Runs `$body` (an expression using `$tx: &Tx`) in a transaction and commits it, running it
/// again if it lost a race.
macro_rules! transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            let mut client = match $store.client().await {
                Ok(client) => client,
                Err(e) => break Err(e),
            };
            let transaction = match client.transaction().await {
                Ok(transaction) => transaction,
                Err(e) => break Err($crate::pool::backend(e)),
            };
            let result = {
                let $tx = &transaction;
                $body.await
            };
            let error = match result {
                Ok(value) => match transaction.commit().await {
                    Ok(()) => break Ok(value),
                    Err(e) => $crate::pool::backend(e),
                },
                Err(e) => {
                    let _ = transaction.rollback().await;
                    e
                }
            };
            if attempt < $crate::pool::RETRIES && $crate::pool::retryable(&error) {
                attempt += 1;
                tracing::debug!(error = %error, attempt, "postgres: transaction lost a race; again");
                tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
                continue;
            }
            break Err(error);
        }
    }};
}
pub(crate) use transaction;

/// A backend error; a PostgreSQL one says what the server said.
pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
    match boxed.downcast::<tokio_postgres::Error>() {
        Ok(pg) => StoreError::Backend(Box::new(PgError(*pg))),
        Err(other) => StoreError::Backend(other),
    }
}

/// A PostgreSQL error that says what the server said (tokio-postgres prints only "db error").
#[derive(Debug)]
pub(crate) struct PgError(pub(crate) tokio_postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{} (SQLSTATE {})", db.message(), db.code().code()),
            None => match std::error::Error::source(&self.0) {
                Some(source) => write!(f, "{}: {source}", self.0),
                None => write!(f, "{}", self.0),
            },
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// Whether an error comes from a race with another transaction, so running the whole
/// transaction again can succeed.
pub(crate) fn retryable(e: &StoreError) -> bool {
    let StoreError::Backend(inner) = e else {
        return false;
    };
    let Some(code) = inner.downcast_ref::<PgError>().and_then(|e| e.0.code()) else {
        return false;
    };
    [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::FOREIGN_KEY_VIOLATION,
        SqlState::UNIQUE_VIOLATION,
    ]
    .contains(code)
}
