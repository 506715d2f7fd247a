//! The store: a SQL database reached through sqlx's `Any` driver, so one set of queries
//! serves SQLite (the embedded default: a file, WAL mode, `synchronous=FULL`) and
//! PostgreSQL (production). Migrations for both are checked in under `migrations/`.
//!
//! Writes go through [`Store::write`], which opens a transaction whose first statement
//! bumps the configuration version. That row lock serialises writers on both backends, so
//! checks made inside a write transaction (references, IPAM) cannot race, and versions
//! commit in order.
//!
//! All SQL of the control plane lives in this module and its children, one per kind of
//! thing stored; the rest of the crate calls their typed functions (a test, `tidy`, keeps
//! it so). Each function takes the connection or transaction its caller holds, so the
//! caller decides what runs in one transaction.

pub mod aiot;
pub mod artifacts;
pub mod billing;
pub mod bucket_usage;
pub mod colocation;
pub mod defence;
mod docs;
pub mod health;
pub mod hostnames;
pub mod inspect;
pub mod ipam;
pub mod lines;
mod load;
pub mod meter;
pub mod models;
pub mod monitor;
pub mod nodes;
pub mod purges;
pub mod records;
pub mod rollouts;
pub mod services;
mod status;
pub mod storage;
pub mod tenants;
mod usage;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::StoreError;

pub use docs::{
    DocWindow, delete_doc, get_doc, insert_doc, list_docs, page_docs, row_exists, update_doc,
};
pub use load::{LoadChange, load_percents, publish_load, record_load};
pub use status::{HeartbeatRecord, last_heartbeats, node_statuses, record_heartbeat};
pub use usage::{record_usage, service_usage};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to the control plane's database.
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer: writers queue here instead of spinning on SQLITE_BUSY.
    write_lock: Option<Mutex<()>>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// An open write transaction; dropping it without [`WriteTx::commit`] rolls back.
pub struct WriteTx<'a> {
    pub tx: Transaction<'static, Any>,
    /// The configuration version this write creates, when it bumps one.
    pub version: Option<u64>,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    /// Commits; returns the new configuration version, if this write made one.
    pub async fn commit(self) -> Result<Option<u64>, StoreError> {
        self.tx.commit().await?;
        Ok(self.version)
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`: `sqlite://PATH`,
    /// `sqlite::memory:` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') && !url.contains(":memory:") => {
                format!("{url}?mode=rwc")
            }
            _ => url.to_owned(),
        };
        let sqlite_file = match backend {
            Backend::Sqlite => sqlite_path(&url),
            Backend::Postgres => None,
        };
        if let Some(path) = &sqlite_file {
            // It holds tenants' private keys: only this user may read it (and its WAL).
            private_sqlite_files(path).map_err(sqlx::Error::Io)?;
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let pool_options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(match backend {
                Backend::Sqlite if url.contains(":memory:") => 1,
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // FULL: a commit is on disk before it is acknowledged, also in WAL
                        // mode; busy_timeout covers readers meeting a checkpoint.
                        conn.execute("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                            .await?;
                    }
                    Ok(())
                })
            });
        let pool = pool_options.connect_with(options).await?;
        if backend == Backend::Sqlite {
            // Persistent on the database file: readers never block the writer.
            pool.execute("PRAGMA journal_mode = WAL;").await?;
        }
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        if let Some(path) = &sqlite_file {
            private_sqlite_files(path).map_err(sqlx::Error::Io)?;
        }
        crate::hostnames::backfill(&mut *pool.acquire().await?).await?;
        Ok(Store {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Mutex::new(())),
        })
    }

    /// Opens the SQLite database file `path`, creating it if needed.
    pub async fn open_sqlite_file(path: &Path) -> Result<Store, StoreError> {
        Store::open(&format!("sqlite://{}", path.display())).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a write. With `bump`, the transaction first increments the configuration
    /// version (do so for every change of desired state the data planes see).
    pub async fn write(&self, bump: bool) -> Result<WriteTx<'_>, StoreError> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        let version = if bump {
            let row = sqlx::query(
                "UPDATE config_version SET version = version + 1 WHERE id = 1 RETURNING version",
            )
            .fetch_one(&mut *tx)
            .await?;
            Some(row.try_get::<i64, _>(0)? as u64)
        } else {
            None
        };
        Ok(WriteTx {
            tx,
            version,
            _guard: guard,
        })
    }

    /// Begins a read-only transaction that sees one consistent state of the database.
    pub async fn read(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
        }
        Ok(tx)
    }

    /// The current configuration version.
    pub async fn version(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT version FROM config_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    /// Reads a value from the key-value `meta` table.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<String, _>(0)?),
            None => None,
        })
    }

    /// Writes a value to the key-value `meta` table within `tx`.
    pub async fn set_meta(
        tx: &mut Transaction<'static, Any>,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM meta WHERE key = $1")
            .bind(key)
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
            .bind(key)
            .bind(value)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The current configuration version, read on `conn` (inside a snapshot's read
/// transaction, the version that snapshot is of).
pub async fn config_version(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let row = sqlx::query("SELECT version FROM config_version WHERE id = 1")
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<i64, _>(0)? as u64)
}

/// The database file of a `sqlite:` URL (none for an in-memory database).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Creates the SQLite file 0600 if it is missing (SQLite gives its `-wal` and `-shm` files
/// the database file's mode) and tightens the three files if they are looser.
fn private_sqlite_files(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = std::path::PathBuf::from(name);
            match std::fs::metadata(&file) {
                Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
                    tracing::info!(path = %file.display(), "made the database file readable by its owner only (0600)");
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
