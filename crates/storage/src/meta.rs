//! The S3 gateways' metadata in a real database: buckets (with their tenant, versioning
//! state, canned ACL, tag set and CORS configuration), every version of each object with
//! its block map and tags, and multipart uploads. A SQLite file in `up`; PostgreSQL when several gateways share the load (each
//! gateway is stateless: everything it knows of buckets and objects is here). Keys sort by
//! their bytes, as S3 lists them (SQLite's default collation; `COLLATE "C"` on PostgreSQL).
//!
//! **Versions:** `objects` holds the latest version of each key (possibly a delete
//! marker), `versions` the older ones. A version id is `null` (written while the bucket
//! was unversioned or suspended: at most one per key, a new one replaces it) or 32 hex
//! digits: a microsecond timestamp then 64 random bits, each greater than the id of the
//! version it supersedes, so a key's versions sort newest first by id.
//!
//! **Atomic visibility:** a version is written after every block of it is durable, in one
//! transaction that first locks the key's latest row, then decides the write's condition
//! (`If-None-Match`, `If-Match`) against that row, moves it to `versions` when it is kept,
//! and writes the new one. A listing or a read sees the old version or the new one, never
//! a half-written one; concurrent writers to one key are serialized by that lock and end
//! in the order they commit (the last one is the latest). A writer that loses the race to
//! create a key's first row (a unique-key conflict) starts its transaction again.
//!
//! **Tags** are a column of the version's row: a write stores them in the statement that
//! makes the version, and [`Meta::set_object_tags`] changes one version's under the same
//! key lock as writers take, so a version is never seen without the tags it was written
//! with. The gateway validates tags and CORS rules; this module stores them (CORS as the
//! gateway's JSON, opaque here).
//!
//! **Checksums:** a version's flexible checksum (CRC32, SHA256, ...: the gateway verified
//! it against the body and owns its `ALGORITHM:BASE64` form) is a column of its row too,
//! written by the statement that makes the version and moved with it.
//!
//! Blocks are content-addressed and shared by versions and copies; nothing here deletes
//! them (there is no garbage collection yet), so a deleted version's blocks stay on the
//! storage nodes.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Why a metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("unsupported metadata database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("metadata database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt metadata row: {0}")]
    Corrupt(String),
}

/// One block of an object, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    /// The block id (SHA-256 hex).
    pub id: String,
    pub len: u64,
    /// The nodes that acknowledged it (a replicated block; empty for a coded one).
    pub nodes: Vec<String>,
    /// Set when the block is erasure-coded: how, and where its shards are. Absent from
    /// every map written before coding existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coded: Option<CodedRef>,
}

/// An erasure-coded block's shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodedRef {
    /// The codec (`crate::erasure::CODEC`): a reader refuses one it does not know.
    pub codec: String,
    pub code: lingjing_model::ErasureCode,
    /// Shard `i`, data shards first.
    pub shards: Vec<ShardRef>,
}

/// One shard of a coded block: its id (SHA-256 hex of the shard) and the node that
/// acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRef {
    pub id: String,
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub tenant: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub public_read: bool,
    pub versioning: Versioning,
}

/// A bucket's versioning state (S3's: once enabled, a bucket is never unversioned again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Never enabled: every write replaces the key's `null` version.
    Unversioned,
    /// Every write adds a version.
    Enabled,
    /// Writes replace the key's `null` version; older versions are kept.
    Suspended,
}

impl Versioning {
    fn as_db(self) -> &'static str {
        match self {
            Versioning::Unversioned => "",
            Versioning::Enabled => "Enabled",
            Versioning::Suspended => "Suspended",
        }
    }

    fn from_db(s: &str) -> Result<Versioning, MetaError> {
        match s {
            "" => Ok(Versioning::Unversioned),
            "Enabled" => Ok(Versioning::Enabled),
            "Suspended" => Ok(Versioning::Suspended),
            other => Err(MetaError::Corrupt(format!("versioning state {other:?}"))),
        }
    }
}

/// The id of the version written while a bucket is unversioned or suspended.
pub const NULL_VERSION: &str = "null";

/// Whether `id` is a version id this database gives out (`null` or 32 lowercase hex
/// digits): anything else is refused before it reaches a query.
pub fn is_version_id(id: &str) -> bool {
    id == NULL_VERSION
        || (id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// A version id greater than `after` (the id ordering the key's latest version) and than
/// every id this process made before: a microsecond timestamp (at least one past
/// `after`'s) then 64 random bits, in hex.
fn next_version_id(after: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    // The last time part given out by this process: ids made here only grow.
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let previous = after
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    let floor = now.max(previous.saturating_add(1));
    let t = match LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
        Some(floor.max(last.saturating_add(1)))
    }) {
        Ok(last) | Err(last) => floor.max(last.saturating_add(1)),
    };
    format!("{t:016x}{:016x}", rand::random::<u64>())
}

/// A new multipart upload id: like a version id, its creation time then random bits,
/// so that a key's uploads list in the order they were started.
pub fn new_upload_id() -> String {
    next_version_id("")
}

/// A table that holds block maps (column `blocks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapTable {
    /// Keys' latest versions.
    Objects,
    /// Older versions.
    Versions,
    /// Parts of multipart uploads in progress.
    Parts,
}

impl MapTable {
    pub(crate) const ALL: [MapTable; 3] = [MapTable::Objects, MapTable::Versions, MapTable::Parts];

    pub(crate) fn name(self) -> &'static str {
        match self {
            MapTable::Objects => "objects",
            MapTable::Versions => "versions",
            MapTable::Parts => "parts",
        }
    }

    /// The primary key's columns, in order.
    pub(crate) fn key_columns(self) -> &'static [&'static str] {
        match self {
            MapTable::Objects => &["bucket", "key"],
            MapTable::Versions => &["bucket", "key", "version_id"],
            MapTable::Parts => &["upload_id", "part_number"],
        }
    }
}

/// One version of an object (as written, or as read back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// Milliseconds since the Unix epoch.
    pub last_modified: i64,
    pub blocks: Vec<BlockRef>,
    /// [`NULL_VERSION`] or an id given out by a write (a write assigns it: what the
    /// argument of [`Meta::put_object`] holds here is ignored).
    pub version_id: String,
    /// A delete marker: no bytes, and the key reads as absent while it is the latest.
    pub delete_marker: bool,
    /// The version's tags (key, value), in the order they were given.
    pub tags: Vec<(String, String)>,
    /// The version's flexible checksum as the gateway stores it (`ALGORITHM:BASE64`,
    /// opaque here); `None` when the write carried none.
    pub checksum: Option<String>,
}

impl Object {
    /// An object to write: its version is assigned by [`Meta::put_object`].
    pub fn new(bucket: &str, key: &str) -> Object {
        Object {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: 0,
            etag: String::new(),
            content_type: None,
            metadata: Vec::new(),
            last_modified: 0,
            blocks: Vec::new(),
            version_id: NULL_VERSION.to_owned(),
            delete_marker: false,
            tags: Vec::new(),
            checksum: None,
        }
    }
}

/// One entry of [`Meta::list_versions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub object: Object,
    /// The key's latest version.
    pub is_latest: bool,
}

/// A write's condition, decided against the key's latest version in the writing
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    None,
    /// `If-None-Match: *`: only if the key has no object (or its latest version is a
    /// delete marker).
    Absent,
    /// `If-Match`: only if the key's object has this ETag (any, when `None`).
    Matching(Option<String>),
}

/// What a write did: the version it made, and the bucket's versioning state then (the
/// version id goes back to the client unless the bucket is unversioned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub version_id: String,
    pub versioning: Versioning,
}

/// What [`Meta::create_bucket`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The caller's tenant has it already.
    OwnedByYou,
    /// Another tenant has it (bucket names are global).
    TakenByAnother,
}

/// The metadata database.
#[derive(Clone)]
pub struct Meta {
    pool: AnyPool,
    /// On SQLite (one writer at a time), write transactions queue here, in order, instead
    /// of in SQLite's busy handler, whose growing sleeps stalled concurrent PUTs for up
    /// to a second. PostgreSQL locks rows and needs no queue.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Meta {
    /// The connection pool (for the read-only reports of [`crate::census`]).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// One page of `table`'s rows after the key `after`: (primary key values, stored map).
    pub(crate) async fn map_page(
        &self,
        table: MapTable,
        after: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<(Vec<String>, String)>, MetaError> {
        let columns = table.key_columns();
        let cast = |c: &str| {
            if c == "part_number" {
                "CAST(part_number AS TEXT) AS part_key".to_owned()
            } else {
                c.to_owned()
            }
        };
        let select = columns
            .iter()
            .map(|c| cast(c))
            .collect::<Vec<_>>()
            .join(", ");
        // Qualified: PostgreSQL would otherwise sort by the (text) output column.
        let order = columns
            .iter()
            .map(|c| format!("{}.{c}", table.name()))
            .collect::<Vec<_>>()
            .join(", ");
        // A row-value comparison, (a, b) > ($1, $2): served from the primary key's index
        // (PostgreSQL, SQLite 3.15 and later), so each page costs its own rows only.
        let cond = format!(
            "({}) > ({})",
            columns.join(", "),
            (1..=columns.len())
                .map(|p| format!("${p}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let limit_at = columns.len() + 1;
        let sql = match after {
            Some(_) => format!(
                "SELECT {select}, blocks FROM {} WHERE {cond} ORDER BY {order} LIMIT ${limit_at}",
                table.name()
            ),
            None => format!(
                "SELECT {select}, blocks FROM {} ORDER BY {order} LIMIT $1",
                table.name()
            ),
        };
        let mut q = sqlx::query(&sql);
        if let Some(after) = after {
            for (v, c) in after.iter().zip(columns) {
                q = if *c == "part_number" {
                    q.bind(v.parse::<i64>().unwrap_or(i64::MAX))
                } else {
                    q.bind(v.clone())
                };
            }
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let key = (0..columns.len())
                    .map(|i| row.try_get::<String, _>(i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((key, row.try_get::<String, _>(columns.len())?))
            })
            .collect()
    }

    /// Replaces the block map of the row `table`/`key` (`key` = the primary key's values,
    /// in order) with `new`, only if it is still `old` (as stored): false when the row
    /// changed or went meanwhile. For rebalancing (`crate::rebalance`).
    pub(crate) async fn rewrite_map(
        &self,
        table: MapTable,
        key: &[String],
        old: &str,
        new: &str,
    ) -> Result<bool, MetaError> {
        let (_writing, mut tx) = self.begin_write().await?;
        let columns = table.key_columns();
        let mut sql = format!("UPDATE {} SET blocks = $1 WHERE blocks = $2", table.name());
        for (i, c) in columns.iter().enumerate() {
            sql += &format!(" AND {c} = ${}", i + 3);
        }
        let mut q = sqlx::query(&sql).bind(new.to_owned()).bind(old.to_owned());
        for (v, c) in key.iter().zip(columns) {
            q = if *c == "part_number" {
                q.bind(v.parse::<i64>().unwrap_or(-1))
            } else {
                q.bind(v.clone())
            };
        }
        let done = q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Opens (creating if needed) and migrates the database at `url`: `sqlite://PATH`,
    /// `sqlite::memory:` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Meta, MetaError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if !sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(MetaError::UnsupportedUrl(url.to_owned()));
        }
        let url = if sqlite && !url.contains('?') && !url.contains(":memory:") {
            format!("{url}?mode=rwc")
        } else {
            url.to_owned()
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(match (sqlite, url.contains(":memory:")) {
                (true, true) => 1,
                (true, false) => 8,
                (false, _) => 16,
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if sqlite {
                        // FULL: a commit is on disk before the S3 client hears of it.
                        conn.execute("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if sqlite {
            pool.execute("PRAGMA journal_mode = WAL;").await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
        } else {
            POSTGRES_MIGRATIONS.run(&pool).await?;
        }
        Ok(Meta {
            pool,
            writer: sqlite.then(|| Arc::new(tokio::sync::Mutex::new(()))),
        })
    }

    /// A write transaction, after the writers before it on SQLite (the `writer` queue);
    /// the guard must live as long as the transaction.
    async fn begin_write(
        &self,
    ) -> Result<
        (
            Option<tokio::sync::OwnedMutexGuard<()>>,
            sqlx::Transaction<'static, sqlx::Any>,
        ),
        MetaError,
    > {
        let guard = match &self.writer {
            Some(w) => Some(w.clone().lock_owned().await),
            None => None,
        };
        Ok((guard, self.pool.begin().await?))
    }

    /// Creates bucket `name` for `tenant` (private), unless it exists.
    pub async fn create_bucket(
        &self,
        name: &str,
        tenant: &str,
        now_ms: i64,
    ) -> Result<Created, MetaError> {
        self.create_bucket_with_acl(name, tenant, now_ms, false)
            .await
    }

    /// Creates bucket `name` for `tenant`, `public-read` when `public_read` (else
    /// `private`), unless it exists (an existing bucket keeps its ACL).
    pub async fn create_bucket_with_acl(
        &self,
        name: &str,
        tenant: &str,
        now_ms: i64,
        public_read: bool,
    ) -> Result<Created, MetaError> {
        let inserted = sqlx::query(
            "INSERT INTO buckets (name, tenant, created_at, public_read) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(tenant)
        .bind(now_ms)
        .bind(i64::from(public_read))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Created::Created);
        }
        Ok(match self.bucket(name).await? {
            Some(b) if b.tenant == tenant => Created::OwnedByYou,
            _ => Created::TakenByAnother,
        })
    }

    pub async fn bucket(&self, name: &str) -> Result<Option<Bucket>, MetaError> {
        let row = sqlx::query(
            "SELECT name, tenant, created_at, public_read, versioning FROM buckets WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(bucket_from_row).transpose()
    }

    /// `tenant`'s buckets, by name.
    pub async fn buckets(&self, tenant: &str) -> Result<Vec<Bucket>, MetaError> {
        let rows = sqlx::query(
            "SELECT name, tenant, created_at, public_read, versioning FROM buckets WHERE tenant = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(bucket_from_row).collect()
    }

    /// Sets bucket `name`'s canned ACL: `public-read` when `public_read`, else `private`;
    /// `false` when there is no such bucket.
    pub async fn set_public_read(&self, name: &str, public_read: bool) -> Result<bool, MetaError> {
        let done = sqlx::query("UPDATE buckets SET public_read = $2 WHERE name = $1")
            .bind(name)
            .bind(i64::from(public_read))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(done == 1)
    }

    /// Bucket `name`'s tag set (`None`: it has none, or there is no such bucket).
    pub async fn bucket_tags(
        &self,
        name: &str,
    ) -> Result<Option<Vec<(String, String)>>, MetaError> {
        let row = sqlx::query("SELECT tags FROM buckets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        let tags: Option<String> = match row {
            Some(r) => r.try_get("tags")?,
            None => None,
        };
        tags.as_deref().map(from_json).transpose()
    }

    /// Replaces bucket `name`'s tag set (`None` removes it); `false` when there is no such
    /// bucket.
    pub async fn set_bucket_tags(
        &self,
        name: &str,
        tags: Option<&[(String, String)]>,
    ) -> Result<bool, MetaError> {
        let tags = tags.map(|t| json(&t)).transpose()?;
        let done = sqlx::query("UPDATE buckets SET tags = $2 WHERE name = $1")
            .bind(name)
            .bind(tags)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(done == 1)
    }

    /// Bucket `name`'s CORS configuration as stored: `None` when there is no such bucket,
    /// `Some(None)` when it has none. One indexed read: the gateway makes it for every
    /// request that carries an `Origin`.
    pub async fn bucket_cors(&self, name: &str) -> Result<Option<Option<String>>, MetaError> {
        let row = sqlx::query("SELECT cors FROM buckets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get::<Option<String>, _>("cors"))
            .transpose()
            .map_err(MetaError::from)
    }

    /// Replaces bucket `name`'s CORS configuration (`None` removes it); `false` when there
    /// is no such bucket.
    pub async fn set_bucket_cors(&self, name: &str, cors: Option<&str>) -> Result<bool, MetaError> {
        let done = sqlx::query("UPDATE buckets SET cors = $2 WHERE name = $1")
            .bind(name)
            .bind(cors)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(done == 1)
    }

    /// Replaces the tags of version `version_id` of `key` (not a delete marker), under the
    /// key's lock (so a writer moving the version meanwhile cannot lose them); `false`
    /// when there is no such version.
    pub async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        tags: &[(String, String)],
    ) -> Result<bool, MetaError> {
        let tags = json(&tags)?;
        let mut attempt = 0;
        loop {
            let (_writing, mut tx) = self.begin_write().await?;
            let done = async {
                lock_latest(&mut tx, bucket, key).await?;
                let mut done = 0;
                for table in ["objects", "versions"] {
                    done = sqlx::query(&format!(
                        "UPDATE {table} SET tags = $4
                         WHERE bucket = $1 AND key = $2 AND version_id = $3 AND delete_marker = 0"
                    ))
                    .bind(bucket)
                    .bind(key)
                    .bind(version_id)
                    .bind(&tags)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if done > 0 {
                        break;
                    }
                }
                Ok::<_, MetaError>(done == 1)
            }
            .await;
            match done {
                Ok(done) => {
                    tx.commit().await?;
                    return Ok(done);
                }
                Err(e) if retryable(&e, &mut attempt) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Enables or suspends versioning on bucket `name` (`Unversioned` is refused: S3
    /// never goes back to it); `false` when there is no such bucket.
    pub async fn set_versioning(&self, name: &str, state: Versioning) -> Result<bool, MetaError> {
        if state == Versioning::Unversioned {
            return Err(MetaError::Corrupt(
                "a bucket cannot become unversioned again".into(),
            ));
        }
        let done = sqlx::query("UPDATE buckets SET versioning = $2 WHERE name = $1")
            .bind(name)
            .bind(state.as_db())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(done == 1)
    }

    /// Deletes bucket `name` if it holds no object, no version (delete markers included)
    /// and no upload in progress: `Ok(false)` when it is not empty.
    pub async fn delete_empty_bucket(&self, name: &str) -> Result<bool, MetaError> {
        // One statement: an object written meanwhile either commits first (and the bucket
        // stays) or finds no bucket (the foreign key refuses it).
        let deleted = sqlx::query(
            "DELETE FROM buckets WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM objects WHERE bucket = $1)
             AND NOT EXISTS (SELECT 1 FROM versions WHERE bucket = $1)
             AND NOT EXISTS (SELECT 1 FROM uploads WHERE bucket = $1)",
        )
        .bind(name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted == 1)
    }

    /// Writes `object` as the latest version of its key if `condition` holds: a new
    /// version when the bucket's versioning is enabled (the one it replaces is kept), the
    /// key's `null` version otherwise (replacing any). `None` when the condition fails.
    pub async fn put_object(
        &self,
        object: &Object,
        condition: &Condition,
    ) -> Result<Option<Written>, MetaError> {
        let mut attempt = 0;
        loop {
            let (_writing, mut tx) = self.begin_write().await?;
            match write_version(&mut tx, object, condition).await {
                Ok(Some(written)) => {
                    tx.commit().await?;
                    return Ok(Some(written));
                }
                Ok(None) => {
                    tx.rollback().await?;
                    return Ok(None);
                }
                Err(e) if retryable(&e, &mut attempt) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Meta::put_object`] for a copy of `source`, whose blocks `object` shares: the
    /// write happens only if, under the source key's lock (taken with the destination's,
    /// in key order), the source version is still there with the same block map and not
    /// a delete marker, so a
    /// copy never commits a reference to blocks garbage collection may already have taken
    /// (`crate::gc`). `Ok(Err(SourceGone))` when it is not.
    pub async fn put_object_copy(
        &self,
        object: &Object,
        condition: &Condition,
        source: &VersionRef<'_>,
    ) -> Result<Result<Option<Written>, SourceGone>, MetaError> {
        let mut attempt = 0;
        loop {
            let (_writing, mut tx) = self.begin_write().await?;
            let result = async {
                if let Err(gone) =
                    lock_source(&mut tx, source, Some((&object.bucket, &object.key))).await?
                {
                    return Ok(Err(gone));
                }
                write_version(&mut tx, object, condition).await.map(Ok)
            }
            .await;
            match result {
                Ok(Ok(Some(written))) => {
                    tx.commit().await?;
                    return Ok(Ok(Some(written)));
                }
                Ok(other) => {
                    tx.rollback().await?;
                    return Ok(other);
                }
                Err(e) if retryable(&e, &mut attempt) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Meta::put_part`] for a part copied from `source` (UploadPartCopy): recorded only
    /// if the source version is still there, checked under its key's lock (see
    /// [`Meta::put_object_copy`]).
    pub async fn put_part_copy(
        &self,
        upload_id: &str,
        part: &Part,
        source: &VersionRef<'_>,
    ) -> Result<Result<bool, SourceGone>, MetaError> {
        let mut attempt = 0;
        loop {
            let (_writing, mut tx) = self.begin_write().await?;
            let result = async {
                if let Err(gone) = lock_source(&mut tx, source, None).await? {
                    return Ok(Err(gone));
                }
                insert_part(&mut tx, upload_id, part).await.map(Ok)
            }
            .await;
            match result {
                Ok(Ok(true)) => {
                    tx.commit().await?;
                    return Ok(Ok(true));
                }
                Ok(other) => {
                    tx.rollback().await?;
                    return Ok(other);
                }
                Err(e) if retryable(&e, &mut attempt) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes (or renews) lease `name` for `holder` until `now_ms + ttl_ms`, if it is free,
    /// expired or already `holder`'s; `false` when another holder has it.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, MetaError> {
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
             WHERE leases.expires < $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms.saturating_add(ttl_ms))
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// The latest version at `key` (possibly a delete marker).
    pub async fn object(&self, bucket: &str, key: &str) -> Result<Option<Object>, MetaError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM objects WHERE bucket = $1 AND key = $2"
        ))
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| object_from_row(&r)).transpose()
    }

    /// Version `version_id` of `key` (possibly a delete marker), and whether it is the
    /// latest.
    pub async fn object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<Version>, MetaError> {
        // One statement: a write that moves the version from `objects` to `versions`
        // meanwhile cannot hide it.
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, CAST(1 AS BIGINT) AS latest FROM objects WHERE bucket = $1 AND key = $2 AND version_id = $3
             UNION ALL
             SELECT {COLUMNS}, CAST(0 AS BIGINT) AS latest FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3"
        ))
        .bind(bucket)
        .bind(key)
        .bind(version_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| version_from_row(&r)).transpose()
    }

    /// Deletes `key` as S3's DELETE without a version id does: in an unversioned bucket the
    /// object goes; otherwise a delete marker becomes the latest version (the `null` one
    /// when versioning is suspended, replacing the key's `null` version). The marker, if
    /// one was made.
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Written>, MetaError> {
        let mut marker = Object::new(bucket, key);
        marker.last_modified = now_ms;
        marker.delete_marker = true;
        let mut attempt = 0;
        loop {
            let (_writing, mut tx) = self.begin_write().await?;
            let result = match lock_latest(&mut tx, bucket, key).await {
                Ok(Versioning::Unversioned) => {
                    sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
                        .bind(bucket)
                        .bind(key)
                        .execute(&mut *tx)
                        .await
                        .map(|_| None)
                        .map_err(MetaError::from)
                }
                Ok(_) => write_version(&mut tx, &marker, &Condition::None).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(done) => {
                    tx.commit().await?;
                    return Ok(done);
                }
                Err(e) if retryable(&e, &mut attempt) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes version `version_id` of `key` for good (when it is the latest, the newest
    /// older version becomes the latest); the removed version, `None` when there was none.
    pub async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<Object>, MetaError> {
        let mut attempt = 0;
        loop {
            let (_writing, mut tx) = self.begin_write().await?;
            match remove_version(&mut tx, bucket, key, version_id).await {
                Ok(removed) => {
                    tx.commit().await?;
                    return Ok(removed);
                }
                Err(e) if retryable(&e, &mut attempt) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Up to `limit` objects of `bucket` (the latest version of each key, delete markers
    /// left out) whose keys start with `prefix` and sort after `after`, in key order.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<Object>, MetaError> {
        // Prefix match by range, not LIKE: keys may hold `%` and `_`.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM objects
             WHERE bucket = $1 AND key > $2 AND key >= $3 AND delete_marker = 0 ORDER BY key LIMIT $4"
        ))
        .bind(bucket)
        .bind(after)
        .bind(prefix)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let o = object_from_row(r)?;
            if !o.key.starts_with(prefix) {
                break;
            }
            out.push(o);
        }
        Ok(out)
    }

    /// Up to `limit` versions (delete markers included) of `bucket` whose keys start with
    /// `prefix`, by key and then newest first, starting after version `after_version` of
    /// key `after_key` (after every version of `after_key` when `None`). A `null`
    /// `after_version` that is gone meanwhile starts at `after_key`'s newest version.
    pub async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        after_key: &str,
        after_version: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Version>, MetaError> {
        // The versions of `after_key` still to list are those ordered before this.
        let before = match after_version {
            None => String::new(),
            Some(NULL_VERSION) => self
                .object_sort_id(bucket, after_key, NULL_VERSION)
                .await?
                .unwrap_or_else(|| "~".to_owned()),
            Some(id) => id.to_owned(),
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, CAST(1 AS BIGINT) AS latest FROM objects
               WHERE bucket = $1 AND key >= $2 AND (key > $3 OR (key = $3 AND sort_id < $4))
             UNION ALL
             SELECT {COLUMNS}, CAST(0 AS BIGINT) AS latest FROM versions
               WHERE bucket = $1 AND key >= $2 AND (key > $3 OR (key = $3 AND sort_id < $4))
             ORDER BY key, sort_id DESC LIMIT $5"
        ))
        .bind(bucket)
        .bind(prefix)
        .bind(after_key)
        .bind(&before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let v = version_from_row(r)?;
            if !v.object.key.starts_with(prefix) {
                break;
            }
            out.push(v);
        }
        Ok(out)
    }

    /// The `sort_id` of version `version_id` of `key`.
    async fn object_sort_id(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<String>, MetaError> {
        let row = sqlx::query(
            "SELECT sort_id FROM objects WHERE bucket = $1 AND key = $2 AND version_id = $3
             UNION ALL
             SELECT sort_id FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3",
        )
        .bind(bucket)
        .bind(key)
        .bind(version_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("sort_id")).transpose()?)
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub initiated: i64,
    /// The tags the object gets when the upload is completed.
    pub tags: Vec<(String, String)>,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub part_number: i64,
    pub size: u64,
    /// The part's MD5 in hex.
    pub etag: String,
    pub blocks: Vec<BlockRef>,
    pub last_modified: i64,
}

fn json<T: Serialize>(v: &T) -> Result<String, MetaError> {
    serde_json::to_string(v).map_err(|e| MetaError::Corrupt(e.to_string()))
}

fn from_json<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T, MetaError> {
    serde_json::from_str(s).map_err(|e| MetaError::Corrupt(e.to_string()))
}

impl Meta {
    pub async fn create_upload(&self, upload: &Upload) -> Result<(), MetaError> {
        sqlx::query(
            "INSERT INTO uploads (upload_id, bucket, key, content_type, metadata, initiated, tags) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&upload.upload_id)
        .bind(&upload.bucket)
        .bind(&upload.key)
        .bind(upload.content_type.as_deref())
        .bind(json(&upload.metadata)?)
        .bind(upload.initiated)
        .bind(json(&upload.tags)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn upload(&self, upload_id: &str) -> Result<Option<Upload>, MetaError> {
        let row = sqlx::query(
            "SELECT upload_id, bucket, key, content_type, metadata, initiated, tags FROM uploads WHERE upload_id = $1",
        )
        .bind(upload_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(upload_from_row).transpose()
    }

    /// Up to `limit` uploads in progress in `bucket` whose keys start with `prefix`, by key
    /// and then upload id, after upload `after_upload` of key `after_key` (after every
    /// upload of `after_key` when `None`).
    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after_key: &str,
        after_upload: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Upload>, MetaError> {
        let rows = sqlx::query(
            "SELECT upload_id, bucket, key, content_type, metadata, initiated, tags FROM uploads
             WHERE bucket = $1 AND key >= $2 AND (key > $3 OR (key = $3 AND upload_id > $4))
             ORDER BY key, upload_id LIMIT $5",
        )
        .bind(bucket)
        .bind(prefix)
        .bind(after_key)
        // Upload ids are hex: `~` sorts after them all.
        .bind(after_upload.unwrap_or("~"))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let u = upload_from_row(r)?;
            if !u.key.starts_with(prefix) {
                break;
            }
            out.push(u);
        }
        Ok(out)
    }

    /// Records part `part.part_number` of `upload_id` (replacing an earlier upload of the
    /// same number); `false` when the upload is gone (completed or aborted meanwhile).
    pub async fn put_part(&self, upload_id: &str, part: &Part) -> Result<bool, MetaError> {
        let mut conn = self.pool.acquire().await?;
        insert_part(&mut conn, upload_id, part).await
    }

    /// The parts of `upload_id`, by number.
    pub async fn parts(&self, upload_id: &str) -> Result<Vec<Part>, MetaError> {
        let rows = sqlx::query(
            "SELECT part_number, size, etag, blocks, last_modified FROM parts WHERE upload_id = $1 ORDER BY part_number",
        )
        .bind(upload_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let blocks: String = r.try_get("blocks")?;
                let size: i64 = r.try_get("size")?;
                Ok(Part {
                    part_number: r.try_get("part_number")?,
                    size: u64::try_from(size)
                        .map_err(|_| MetaError::Corrupt("negative size".into()))?,
                    etag: r.try_get("etag")?,
                    blocks: from_json(&blocks)?,
                    last_modified: r.try_get("last_modified")?,
                })
            })
            .collect()
    }

    /// Completes `upload_id` as `object` (a new version, as [`Meta::put_object`] writes
    /// it): the version is written and the upload (with its parts) removed in one
    /// transaction; `None` when the upload is gone already.
    pub async fn complete_upload(
        &self,
        upload_id: &str,
        object: &Object,
    ) -> Result<Option<Written>, MetaError> {
        let mut attempt = 0;
        loop {
            let (_writing, mut tx) = self.begin_write().await?;
            let removed = sqlx::query("DELETE FROM uploads WHERE upload_id = $1")
                .bind(upload_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if removed != 1 {
                return Ok(None);
            }
            let written = async {
                sqlx::query("DELETE FROM parts WHERE upload_id = $1")
                    .bind(upload_id)
                    .execute(&mut *tx)
                    .await?;
                write_version(&mut tx, object, &Condition::None).await
            }
            .await;
            match written {
                Ok(written) => {
                    tx.commit().await?;
                    return Ok(written);
                }
                Err(e) if retryable(&e, &mut attempt) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Abandons `upload_id` and its parts; `false` when there was none.
    pub async fn abort_upload(&self, upload_id: &str) -> Result<bool, MetaError> {
        let (_writing, mut tx) = self.begin_write().await?;
        sqlx::query("DELETE FROM parts WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query("DELETE FROM uploads WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(removed == 1)
    }
}

/// The columns of `objects` and `versions` that make an [`Object`], in one order.
const COLUMNS: &str = "bucket, key, size, etag, content_type, metadata, last_modified, blocks, version_id, sort_id, delete_marker, tags, checksum";

/// Whether a failed write transaction is to be run again: a unique-key conflict (two
/// writers creating a key's first row at once: the loser finds the winner's row the
/// next time) or a busy database, a few times.
fn retryable(e: &MetaError, attempt: &mut u32) -> bool {
    *attempt += 1;
    if *attempt > 8 {
        return false;
    }
    match e {
        MetaError::Db(sqlx::Error::Database(d)) => {
            d.is_unique_violation()
                // PostgreSQL: serialization failure, deadlock.
                || matches!(d.code().as_deref(), Some("40001" | "40P01"))
        }
        _ => false,
    }
}

/// The key's latest row, locked until the transaction ends (PostgreSQL: a row lock;
/// SQLite: the database's write lock, taken by the first write of the transaction), and
/// the bucket's versioning state as of then.
/// A version named by bucket, key and version id (the source of a copy), with the block
/// map it was read with.
#[derive(Debug, Clone, Copy)]
pub struct VersionRef<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub version_id: &'a str,
    /// The map the copy was made from. An unversioned key's version id (`null`) stays
    /// the same when the key is overwritten, so the id alone does not say the blocks the
    /// copy shares are still referenced (and safe from garbage collection).
    pub blocks: &'a [BlockRef],
}

/// A copy's source version was deleted (or, unversioned, overwritten) before the copy
/// could commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceGone {
    /// The version is there but holds other blocks now: it was overwritten (an
    /// unversioned key), so the copy may be retried from what the key holds now.
    pub overwritten: bool,
}

/// Locks the source key (and `dest`, in key order, so two copies in opposite directions
/// cannot deadlock) and says whether the source version is there, not a delete marker,
/// with the block map the copy was made from.
async fn lock_source(
    conn: &mut sqlx::AnyConnection,
    source: &VersionRef<'_>,
    dest: Option<(&str, &str)>,
) -> Result<Result<(), SourceGone>, MetaError> {
    let src = (source.bucket, source.key);
    let mut keys = vec![src];
    keys.extend(dest.filter(|d| *d != src));
    keys.sort_unstable();
    for (bucket, key) in keys {
        lock_latest(conn, bucket, key).await?;
    }
    let found = sqlx::query(
        "SELECT blocks FROM objects WHERE bucket = $1 AND key = $2 AND version_id = $3 AND delete_marker = 0
         UNION ALL
         SELECT blocks FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3 AND delete_marker = 0",
    )
    .bind(source.bucket)
    .bind(source.key)
    .bind(source.version_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = found else {
        return Ok(Err(SourceGone { overwritten: false }));
    };
    let blocks: String = row.try_get("blocks")?;
    if from_json::<Vec<BlockRef>>(&blocks)? == source.blocks {
        Ok(Ok(()))
    } else {
        Ok(Err(SourceGone { overwritten: true }))
    }
}

/// Records `part` of `upload_id` (replacing one of the same number); `false` when the
/// upload is gone.
async fn insert_part(
    conn: &mut sqlx::AnyConnection,
    upload_id: &str,
    part: &Part,
) -> Result<bool, MetaError> {
    let size = i64::try_from(part.size).map_err(|_| MetaError::Corrupt("size".into()))?;
    let done = sqlx::query(
        "INSERT INTO parts (upload_id, part_number, size, etag, blocks, last_modified)
         SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM uploads WHERE upload_id = $1)
         ON CONFLICT (upload_id, part_number) DO UPDATE SET size = excluded.size, etag = excluded.etag,
           blocks = excluded.blocks, last_modified = excluded.last_modified",
    )
    .bind(upload_id)
    .bind(part.part_number)
    .bind(size)
    .bind(&part.etag)
    .bind(json(&part.blocks)?)
    .bind(part.last_modified)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

async fn lock_latest(
    conn: &mut sqlx::AnyConnection,
    bucket: &str,
    key: &str,
) -> Result<Versioning, MetaError> {
    sqlx::query("UPDATE objects SET sort_id = sort_id WHERE bucket = $1 AND key = $2")
        .bind(bucket)
        .bind(key)
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query("SELECT versioning FROM buckets WHERE name = $1")
        .bind(bucket)
        .fetch_optional(&mut *conn)
        .await?;
    let state: String = match row {
        Some(r) => r.try_get("versioning")?,
        None => return Err(MetaError::Corrupt(format!("no bucket {bucket}"))),
    };
    Versioning::from_db(&state)
}

/// The key's latest version and its `sort_id` (read under [`lock_latest`]).
async fn latest(
    conn: &mut sqlx::AnyConnection,
    bucket: &str,
    key: &str,
) -> Result<Option<(Object, String)>, MetaError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM objects WHERE bucket = $1 AND key = $2"
    ))
    .bind(bucket)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| Ok((object_from_row(&r)?, r.try_get("sort_id")?)))
        .transpose()
}

/// Writes `object` (or the delete marker it is) as the key's latest version in the
/// transaction `conn`, if `condition` holds for the latest version: see [`Meta::put_object`].
async fn write_version(
    conn: &mut sqlx::AnyConnection,
    object: &Object,
    condition: &Condition,
) -> Result<Option<Written>, MetaError> {
    let (bucket, key) = (object.bucket.as_str(), object.key.as_str());
    let versioning = lock_latest(conn, bucket, key).await?;
    let current = latest(conn, bucket, key).await?;
    let live = current.as_ref().filter(|(o, _)| !o.delete_marker);
    let holds = match condition {
        Condition::None => true,
        Condition::Absent => live.is_none(),
        Condition::Matching(etag) => {
            live.is_some_and(|(o, _)| etag.as_ref().is_none_or(|e| *e == o.etag))
        }
    };
    if !holds {
        return Ok(None);
    }
    let sort_id = next_version_id(current.as_ref().map_or("", |(_, s)| s.as_str()));
    let version_id = match versioning {
        Versioning::Enabled => sort_id.clone(),
        Versioning::Unversioned | Versioning::Suspended => NULL_VERSION.to_owned(),
    };
    if let Some((latest, _)) = &current {
        // The latest version is kept unless the new one replaces it (both `null`).
        if latest.version_id != version_id {
            sqlx::query(&format!(
                "INSERT INTO versions ({COLUMNS}) SELECT {COLUMNS} FROM objects WHERE bucket = $1 AND key = $2"
            ))
            .bind(bucket)
            .bind(key)
            .execute(&mut *conn)
            .await?;
        }
    }
    if version_id == NULL_VERSION {
        // A new `null` version replaces an older one.
        sqlx::query("DELETE FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3")
            .bind(bucket)
            .bind(key)
            .bind(NULL_VERSION)
            .execute(&mut *conn)
            .await?;
    }
    store_latest(conn, object, &version_id, &sort_id, current.is_some()).await?;
    Ok(Some(Written {
        version_id,
        versioning,
    }))
}

/// Makes `object` (as version `version_id`) the row of its key in `objects`: an update
/// when the key has one (`replace`), an insert otherwise.
async fn store_latest(
    conn: &mut sqlx::AnyConnection,
    object: &Object,
    version_id: &str,
    sort_id: &str,
    replace: bool,
) -> Result<(), MetaError> {
    let size = i64::try_from(object.size).map_err(|_| MetaError::Corrupt("size".into()))?;
    let sql = if replace {
        "UPDATE objects SET size = $3, etag = $4, content_type = $5, metadata = $6, last_modified = $7,
           blocks = $8, version_id = $9, sort_id = $10, delete_marker = $11, tags = $12,
           checksum = $13
         WHERE bucket = $1 AND key = $2"
    } else {
        "INSERT INTO objects (bucket, key, size, etag, content_type, metadata, last_modified, blocks,
           version_id, sort_id, delete_marker, tags, checksum)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    };
    sqlx::query(sql)
        .bind(&object.bucket)
        .bind(&object.key)
        .bind(size)
        .bind(&object.etag)
        .bind(object.content_type.as_deref())
        .bind(json(&object.metadata)?)
        .bind(object.last_modified)
        .bind(json(&object.blocks)?)
        .bind(version_id)
        .bind(sort_id)
        .bind(i64::from(object.delete_marker))
        .bind(json(&object.tags)?)
        .bind(object.checksum.as_deref())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Removes version `version_id` of `key` in the transaction `conn`: see
/// [`Meta::delete_version`].
async fn remove_version(
    conn: &mut sqlx::AnyConnection,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Result<Option<Object>, MetaError> {
    lock_latest(conn, bucket, key).await?;
    let Some((current, _)) = latest(conn, bucket, key).await? else {
        // No latest version, no older one either.
        return Ok(None);
    };
    if current.version_id != version_id {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3"
        ))
        .bind(bucket)
        .bind(key)
        .bind(version_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3")
            .bind(bucket)
            .bind(key)
            .bind(version_id)
            .execute(&mut *conn)
            .await?;
        return object_from_row(&row).map(Some);
    }
    // The latest goes: the newest older version, if any, takes its place.
    let newest = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM versions WHERE bucket = $1 AND key = $2 ORDER BY sort_id DESC LIMIT 1"
    ))
    .bind(bucket)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    match newest {
        Some(row) => {
            let promoted = object_from_row(&row)?;
            let sort_id: String = row.try_get("sort_id")?;
            store_latest(conn, &promoted, &promoted.version_id, &sort_id, true).await?;
            sqlx::query("DELETE FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3")
                .bind(bucket)
                .bind(key)
                .bind(&promoted.version_id)
                .execute(&mut *conn)
                .await?;
        }
        None => {
            sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
                .bind(bucket)
                .bind(key)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(Some(current))
}

fn upload_from_row(r: &sqlx::any::AnyRow) -> Result<Upload, MetaError> {
    let metadata: String = r.try_get("metadata")?;
    let tags: String = r.try_get("tags")?;
    Ok(Upload {
        upload_id: r.try_get("upload_id")?,
        bucket: r.try_get("bucket")?,
        key: r.try_get("key")?,
        content_type: r.try_get("content_type")?,
        metadata: from_json(&metadata)?,
        initiated: r.try_get("initiated")?,
        tags: from_json(&tags)?,
    })
}

fn bucket_from_row(r: &sqlx::any::AnyRow) -> Result<Bucket, MetaError> {
    let versioning: String = r.try_get("versioning")?;
    Ok(Bucket {
        name: r.try_get("name")?,
        tenant: r.try_get("tenant")?,
        created_at: r.try_get("created_at")?,
        public_read: r.try_get::<i64, _>("public_read")? != 0,
        versioning: Versioning::from_db(&versioning)?,
    })
}

fn object_from_row(r: &sqlx::any::AnyRow) -> Result<Object, MetaError> {
    let metadata: String = r.try_get("metadata")?;
    let blocks: String = r.try_get("blocks")?;
    let tags: String = r.try_get("tags")?;
    let size: i64 = r.try_get("size")?;
    Ok(Object {
        bucket: r.try_get("bucket")?,
        key: r.try_get("key")?,
        size: u64::try_from(size).map_err(|_| MetaError::Corrupt("negative size".into()))?,
        etag: r.try_get("etag")?,
        content_type: r.try_get("content_type")?,
        metadata: from_json(&metadata)?,
        last_modified: r.try_get("last_modified")?,
        blocks: from_json(&blocks)?,
        version_id: r.try_get("version_id")?,
        delete_marker: r.try_get::<i64, _>("delete_marker")? != 0,
        tags: from_json(&tags)?,
        checksum: r.try_get("checksum")?,
    })
}

fn version_from_row(r: &sqlx::any::AnyRow) -> Result<Version, MetaError> {
    Ok(Version {
        object: object_from_row(r)?,
        is_latest: r.try_get::<i64, _>("latest")? != 0,
    })
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use sqlx::Connection;

    use super::*;

    fn object(bucket: &str, key: &str, etag: &str) -> Object {
        Object {
            size: 3,
            etag: etag.into(),
            content_type: Some("text/plain".into()),
            metadata: vec![("owner".into(), "ops".into())],
            last_modified: 1_700_000_000_000,
            blocks: vec![BlockRef {
                id: "ab".repeat(32),
                len: 3,
                nodes: vec!["st-1".into()],
                coded: None,
            }],
            ..Object::new(bucket, key)
        }
    }

    /// Runs `test` on an in-memory SQLite database and, when `LINGJING_TEST_POSTGRES`
    /// names a PostgreSQL server, on a scratch database there (dropped afterwards, also
    /// when the test fails).
    async fn on_each_database<F, Fut>(test: F)
    where
        F: Fn(Meta) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        test(Meta::open("sqlite::memory:").await.expect("sqlite")).await;
        let url = match std::env::var("LINGJING_TEST_POSTGRES") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                eprintln!(
                    "skipped on PostgreSQL: set LINGJING_TEST_POSTGRES=postgres://USER@HOST:PORT/DB"
                );
                return;
            }
        };
        let name = format!(
            "lingjing_storage_test_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut admin = sqlx::PgConnection::connect(&url)
            .await
            .expect("connect to LINGJING_TEST_POSTGRES");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let (base, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        let authority = base.find("://").map_or(0, |i| i + 3);
        let end = base[authority..]
            .find('/')
            .map_or(base.len(), |i| authority + i);
        let scratch = format!(
            "{}/{name}{}{query}",
            &base[..end],
            if query.is_empty() { "" } else { "?" }
        );
        let meta = Meta::open(&scratch).await.expect("postgres");
        let result = tokio::spawn(test(meta)).await;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .expect("drop the test database");
        if let Err(e) = result {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    async fn versions(m: &Meta, bucket: &str, prefix: &str) -> Vec<(String, String, bool, bool)> {
        m.list_versions(bucket, prefix, "", None, 1000)
            .await
            .expect("versions")
            .into_iter()
            .map(|v| {
                (
                    v.object.key,
                    v.object.etag,
                    v.object.delete_marker,
                    v.is_latest,
                )
            })
            .collect()
    }

    async fn put(m: &Meta, o: &Object) -> Written {
        m.put_object(o, &Condition::None)
            .await
            .expect("put")
            .expect("unconditional")
    }

    #[tokio::test]
    async fn bucket_names_are_global_and_owned_by_one_tenant() {
        on_each_database(|m| async move {
            assert_eq!(
                m.create_bucket("photos", "shop", 1).await.expect("create"),
                Created::Created
            );
            assert_eq!(
                m.create_bucket("photos", "shop", 2).await.expect("again"),
                Created::OwnedByYou
            );
            assert_eq!(
                m.create_bucket("photos", "rival", 3).await.expect("other"),
                Created::TakenByAnother
            );
            let b = m.bucket("photos").await.expect("get").expect("some");
            assert_eq!(b.tenant, "shop");
            assert_eq!(b.versioning, Versioning::Unversioned);
            assert_eq!(m.buckets("rival").await.expect("list"), vec![]);
            assert_eq!(m.buckets("shop").await.expect("list").len(), 1);
        })
        .await;
    }

    #[tokio::test]
    async fn a_bucket_with_objects_is_not_deleted() {
        on_each_database(|m| async move {
            m.create_bucket("b", "t", 1).await.expect("create");
            put(&m, &object("b", "k", "e1")).await;
            assert!(!m.delete_empty_bucket("b").await.expect("refused"));
            assert_eq!(m.delete_object("b", "k", 2).await.expect("delete"), None);
            assert!(m.object("b", "k").await.expect("get").is_none());
            assert!(m.delete_empty_bucket("b").await.expect("deleted"));
            assert!(m.bucket("b").await.expect("get").is_none());
            assert!(
                m.put_object(&object("b", "k", "e1"), &Condition::None)
                    .await
                    .is_err(),
                "no bucket, no object"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn an_object_is_replaced_whole_and_listed_in_byte_order_by_prefix() {
        on_each_database(|m| async move {
            m.create_bucket("b", "t", 1).await.expect("create");
            for key in ["a/2", "a/1", "a%", "a_", "b", "a/1/x", "A"] {
                put(&m, &object("b", key, "e1")).await;
            }
            let w = put(&m, &object("b", "a/1", "e2")).await;
            assert_eq!(
                (w.version_id.as_str(), w.versioning),
                (NULL_VERSION, Versioning::Unversioned)
            );
            let o = m.object("b", "a/1").await.expect("get").expect("some");
            assert_eq!((o.etag.as_str(), o.version_id.as_str()), ("e2", "null"));
            // Unversioned: the one `null` version was replaced, none kept.
            assert_eq!(
                versions(&m, "b", "a/1").await[..2],
                [
                    ("a/1".into(), "e2".into(), false, true),
                    ("a/1/x".into(), "e1".into(), false, true)
                ]
            );
            let keys = |v: Vec<Object>| v.into_iter().map(|o| o.key).collect::<Vec<_>>();
            assert_eq!(
                keys(m.list("b", "", "", 100).await.expect("all")),
                ["A", "a%", "a/1", "a/1/x", "a/2", "a_", "b"]
            );
            assert_eq!(
                keys(m.list("b", "a/", "", 100).await.expect("prefix")),
                ["a/1", "a/1/x", "a/2"]
            );
            assert_eq!(
                keys(m.list("b", "a/", "a/1", 1).await.expect("after")),
                ["a/1/x"]
            );
            assert_eq!(
                keys(m.list("b", "a%", "", 100).await.expect("percent")),
                ["a%"]
            );
        })
        .await;
    }

    #[tokio::test]
    async fn conditional_writes_are_decided_by_the_transaction() {
        on_each_database(|m| async move {
            m.create_bucket("b", "t", 1).await.expect("create");
            let absent = Condition::Absent;
            let cond = |o: &Object, c: &Condition| {
                let (m, o, c) = (m.clone(), o.clone(), c.clone());
                async move { m.put_object(&o, &c).await.expect("put").is_some() }
            };
            assert!(cond(&object("b", "k", "e1"), &absent).await);
            assert!(!cond(&object("b", "k", "e2"), &absent).await);
            assert_eq!(
                m.object("b", "k").await.expect("get").expect("some").etag,
                "e1"
            );
            let matching = |e: Option<&str>| Condition::Matching(e.map(str::to_owned));
            assert!(!cond(&object("b", "k", "e3"), &matching(Some("e2"))).await);
            assert!(cond(&object("b", "k", "e3"), &matching(Some("e1"))).await);
            assert!(cond(&object("b", "k", "e4"), &matching(None)).await);
            assert!(!cond(&object("b", "missing", "e1"), &matching(None)).await);
            assert_eq!(
                m.object("b", "k").await.expect("get").expect("some").etag,
                "e4"
            );
            // Versioned: a delete marker is no object for either condition.
            m.set_versioning("b", Versioning::Enabled)
                .await
                .expect("enable");
            m.delete_object("b", "k", 2)
                .await
                .expect("delete")
                .expect("a marker");
            assert!(!cond(&object("b", "k", "e5"), &matching(None)).await);
            assert!(cond(&object("b", "k", "e5"), &absent).await);
            assert!(!cond(&object("b", "k", "e6"), &absent).await);
            assert_eq!(
                versions(&m, "b", "").await,
                [
                    ("k".into(), "e5".into(), false, true),
                    ("k".into(), "".into(), true, false),
                    ("k".into(), "e4".into(), false, false)
                ]
            );
        })
        .await;
    }

    #[tokio::test]
    async fn versioning_keeps_every_version_and_delete_markers_hide_the_key() {
        on_each_database(|m| async move {
            m.create_bucket("b", "t", 1).await.expect("create");
            assert!(
                m.set_versioning("b", Versioning::Enabled)
                    .await
                    .expect("enable")
            );
            assert!(
                !m.set_versioning("nope", Versioning::Enabled)
                    .await
                    .expect("no bucket")
            );
            let v1 = put(&m, &object("b", "k", "e1")).await;
            let v2 = put(&m, &object("b", "k", "e2")).await;
            assert_eq!(v1.versioning, Versioning::Enabled);
            assert!(is_version_id(&v1.version_id) && v1.version_id != NULL_VERSION);
            assert!(v2.version_id > v1.version_id, "ids sort by creation");
            let old = m
                .object_version("b", "k", &v1.version_id)
                .await
                .expect("get")
                .expect("kept");
            assert_eq!((old.object.etag.as_str(), old.is_latest), ("e1", false));
            assert!(
                m.object_version("b", "k", &v2.version_id)
                    .await
                    .expect("get")
                    .expect("latest")
                    .is_latest
            );
            // A delete marker: the key is gone from reads and listings, not from versions.
            let marker = m
                .delete_object("b", "k", 5)
                .await
                .expect("delete")
                .expect("marker");
            assert!(marker.version_id > v2.version_id);
            let latest = m.object("b", "k").await.expect("get").expect("marker");
            assert!(latest.delete_marker && latest.version_id == marker.version_id);
            assert!(m.list("b", "", "", 100).await.expect("list").is_empty());
            assert_eq!(
                versions(&m, "b", "").await,
                [
                    ("k".into(), "".into(), true, true),
                    ("k".into(), "e2".into(), false, false),
                    ("k".into(), "e1".into(), false, false)
                ]
            );
            assert!(!m.delete_empty_bucket("b").await.expect("not empty"));
            // Removing the marker for good brings the key back.
            let removed = m
                .delete_version("b", "k", &marker.version_id)
                .await
                .expect("remove")
                .expect("was there");
            assert!(removed.delete_marker);
            assert_eq!(
                m.object("b", "k").await.expect("get").expect("back").etag,
                "e2"
            );
            // Removing an older version leaves the latest; removing the latest promotes.
            assert_eq!(
                m.delete_version("b", "k", &"0".repeat(32))
                    .await
                    .expect("none"),
                None
            );
            m.delete_version("b", "k", &v2.version_id)
                .await
                .expect("remove")
                .expect("was there");
            let now = m.object("b", "k").await.expect("get").expect("v1");
            assert_eq!(
                (now.etag.as_str(), now.version_id),
                ("e1", v1.version_id.clone())
            );
            let v3 = put(&m, &object("b", "k", "e3")).await;
            assert!(v3.version_id > v1.version_id);
            m.delete_version("b", "k", &v1.version_id)
                .await
                .expect("remove")
                .expect("was there");
            assert_eq!(
                versions(&m, "b", "").await,
                [("k".into(), "e3".into(), false, true)]
            );
            m.delete_version("b", "k", &v3.version_id)
                .await
                .expect("remove")
                .expect("was there");
            assert!(m.object("b", "k").await.expect("get").is_none());
            assert!(m.delete_empty_bucket("b").await.expect("empty now"));
        })
        .await;
    }

    #[tokio::test]
    async fn suspended_writes_replace_the_null_version_and_keep_the_others() {
        on_each_database(|m| async move {
            m.create_bucket("b", "t", 1).await.expect("create");
            // Written before versioning: the `null` version, kept when versioning starts.
            put(&m, &object("b", "k", "e0")).await;
            m.set_versioning("b", Versioning::Enabled)
                .await
                .expect("enable");
            let v1 = put(&m, &object("b", "k", "e1")).await;
            assert_eq!(
                versions(&m, "b", "").await,
                [
                    ("k".into(), "e1".into(), false, true),
                    ("k".into(), "e0".into(), false, false)
                ]
            );
            m.set_versioning("b", Versioning::Suspended)
                .await
                .expect("suspend");
            let s = put(&m, &object("b", "k", "e2")).await;
            assert_eq!(
                (s.version_id.as_str(), s.versioning),
                (NULL_VERSION, Versioning::Suspended)
            );
            // The older `null` (e0) is replaced; e1 stays.
            assert_eq!(
                versions(&m, "b", "").await,
                [
                    ("k".into(), "e2".into(), false, true),
                    ("k".into(), "e1".into(), false, false)
                ]
            );
            put(&m, &object("b", "k", "e3")).await;
            // A delete while suspended is a `null` delete marker, replacing e3.
            let marker = m
                .delete_object("b", "k", 9)
                .await
                .expect("delete")
                .expect("marker");
            assert_eq!(marker.version_id, NULL_VERSION);
            assert_eq!(
                versions(&m, "b", "").await,
                [
                    ("k".into(), "".into(), true, true),
                    ("k".into(), "e1".into(), false, false)
                ]
            );
            m.set_versioning("b", Versioning::Enabled)
                .await
                .expect("enable");
            put(&m, &object("b", "k", "e4")).await;
            let by_null = m
                .object_version("b", "k", NULL_VERSION)
                .await
                .expect("get")
                .expect("the null marker is kept");
            assert!(by_null.object.delete_marker && !by_null.is_latest);
            assert_eq!(
                m.object_version("b", "k", &v1.version_id)
                    .await
                    .expect("get")
                    .expect("v1")
                    .object
                    .etag,
                "e1"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn versions_are_listed_by_key_then_newest_first_from_a_marker() {
        on_each_database(|m| async move {
            m.create_bucket("b", "t", 1).await.expect("create");
            m.set_versioning("b", Versioning::Enabled)
                .await
                .expect("enable");
            let mut ids = Vec::new();
            for (key, etag) in [
                ("a", "a1"),
                ("b/1", "b1"),
                ("a", "a2"),
                ("b/1", "b2"),
                ("c", "c1"),
            ] {
                ids.push((key, put(&m, &object("b", key, etag)).await.version_id));
            }
            let page = |after_key: &'static str, after_version: Option<String>, limit| {
                let m = m.clone();
                async move {
                    m.list_versions("b", "", after_key, after_version.as_deref(), limit)
                        .await
                        .expect("list")
                        .into_iter()
                        .map(|v| v.object.etag)
                        .collect::<Vec<_>>()
                }
            };
            assert_eq!(page("", None, 100).await, ["a2", "a1", "b2", "b1", "c1"]);
            assert_eq!(page("", None, 2).await, ["a2", "a1"]);
            // After a2 (the newest of "a"): a1, then the next keys.
            assert_eq!(page("a", Some(ids[2].1.clone()), 2).await, ["a1", "b2"]);
            // A key marker alone skips every version of that key.
            assert_eq!(page("a", None, 100).await, ["b2", "b1", "c1"]);
            // A version marker that was deleted meanwhile still orders correctly.
            m.delete_version("b", "b/1", &ids[3].1)
                .await
                .expect("remove")
                .expect("was there");
            assert_eq!(page("b/1", Some(ids[3].1.clone()), 100).await, ["b1", "c1"]);
            assert_eq!(
                m.list_versions("b", "b/", "", None, 100)
                    .await
                    .expect("prefix")
                    .len(),
                1
            );
        })
        .await;
    }

    #[tokio::test]
    async fn uploads_are_listed_by_key_then_id_from_a_marker() {
        on_each_database(|m| async move {
            m.create_bucket("b", "t", 1).await.expect("create");
            let mut ids = Vec::new();
            for key in ["b/2", "a", "b/1", "a"] {
                let id = new_upload_id();
                m.create_upload(&Upload {
                    upload_id: id.clone(),
                    bucket: "b".into(),
                    key: key.into(),
                    content_type: None,
                    metadata: vec![],
                    initiated: 1,
                    tags: vec![],
                })
                .await
                .expect("upload");
                ids.push(id);
            }
            let list = |prefix: &'static str, key: &'static str, after: Option<String>, limit| {
                let m = m.clone();
                async move {
                    m.list_uploads("b", prefix, key, after.as_deref(), limit)
                        .await
                        .expect("list")
                        .into_iter()
                        .map(|u| u.upload_id)
                        .collect::<Vec<_>>()
                }
            };
            assert!(ids[1] < ids[3], "ids sort by creation");
            let all = [&ids[1], &ids[3], &ids[2], &ids[0]].map(String::clone);
            assert_eq!(list("", "", None, 100).await, all);
            assert_eq!(list("", "a", Some(ids[1].clone()), 2).await, all[1..3]);
            assert_eq!(list("", "a", None, 100).await, all[2..]);
            assert_eq!(list("b/", "", None, 100).await, all[2..]);
            m.abort_upload(&ids[0]).await.expect("abort");
            assert_eq!(list("b/", "", None, 100).await, all[2..3]);
        })
        .await;
    }

    #[tokio::test]
    async fn acls_tags_and_cors_are_kept_per_bucket() {
        on_each_database(|m| async move {
            let tags = |p: &[(&str, &str)]| {
                p.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                m.create_bucket_with_acl("pub", "t", 1, true)
                    .await
                    .expect("create"),
                Created::Created
            );
            // An existing bucket keeps its ACL.
            assert_eq!(
                m.create_bucket_with_acl("pub", "t", 2, false)
                    .await
                    .expect("again"),
                Created::OwnedByYou
            );
            assert!(
                m.bucket("pub")
                    .await
                    .expect("get")
                    .expect("there")
                    .public_read
            );
            m.create_bucket("priv", "t", 1).await.expect("create");
            assert!(
                !m.bucket("priv")
                    .await
                    .expect("get")
                    .expect("there")
                    .public_read
            );
            assert!(m.set_public_read("priv", true).await.expect("set"));
            assert!(
                m.bucket("priv")
                    .await
                    .expect("get")
                    .expect("there")
                    .public_read
            );
            assert!(!m.set_public_read("nope", true).await.expect("no bucket"));

            assert_eq!(m.bucket_tags("pub").await.expect("tags"), None);
            let set = tags(&[("team", "web"), ("env", "")]);
            assert!(m.set_bucket_tags("pub", Some(&set)).await.expect("set"));
            assert_eq!(m.bucket_tags("pub").await.expect("tags"), Some(set));
            assert!(m.set_bucket_tags("pub", None).await.expect("remove"));
            assert_eq!(m.bucket_tags("pub").await.expect("tags"), None);
            assert!(!m.set_bucket_tags("nope", None).await.expect("no bucket"));

            assert_eq!(m.bucket_cors("nope").await.expect("cors"), None);
            assert_eq!(m.bucket_cors("pub").await.expect("cors"), Some(None));
            assert!(m.set_bucket_cors("pub", Some("[]")).await.expect("set"));
            assert_eq!(
                m.bucket_cors("pub").await.expect("cors"),
                Some(Some("[]".to_owned()))
            );
            assert!(m.set_bucket_cors("pub", None).await.expect("remove"));
            assert_eq!(m.bucket_cors("pub").await.expect("cors"), Some(None));
        })
        .await;
    }

    #[tokio::test]
    async fn tags_are_written_with_their_version_and_follow_it() {
        on_each_database(|m| async move {
            let tags = |p: &[(&str, &str)]| {
                p.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>()
            };
            m.create_bucket("b", "t", 1).await.expect("create");
            m.set_versioning("b", Versioning::Enabled)
                .await
                .expect("enable");
            let v1 = put(
                &m,
                &Object {
                    tags: tags(&[("gen", "1")]),
                    ..object("b", "k", "e1")
                },
            )
            .await;
            let v2 = put(&m, &object("b", "k", "e2")).await;
            let tags_of = |id: String| {
                let m = m.clone();
                async move {
                    m.object_version("b", "k", &id)
                        .await
                        .expect("get")
                        .expect("there")
                        .object
                        .tags
                }
            };
            // The older version kept its tags when it moved to `versions`.
            assert_eq!(tags_of(v1.version_id.clone()).await, tags(&[("gen", "1")]));
            assert_eq!(tags_of(v2.version_id.clone()).await, vec![]);
            // Retagging an older version, then the latest.
            assert!(
                m.set_object_tags("b", "k", &v1.version_id, &tags(&[("gen", "old")]))
                    .await
                    .expect("retag")
            );
            assert!(
                m.set_object_tags("b", "k", &v2.version_id, &tags(&[("gen", "2")]))
                    .await
                    .expect("retag")
            );
            assert_eq!(
                tags_of(v1.version_id.clone()).await,
                tags(&[("gen", "old")])
            );
            assert_eq!(
                m.object("b", "k").await.expect("get").expect("latest").tags,
                tags(&[("gen", "2")])
            );
            // ... which keeps them when a new version comes.
            put(&m, &object("b", "k", "e3")).await;
            assert_eq!(tags_of(v2.version_id.clone()).await, tags(&[("gen", "2")]));
            // No such version, and delete markers have no tags.
            assert!(
                !m.set_object_tags("b", "k", &"0".repeat(32), &[])
                    .await
                    .expect("none")
            );
            let marker = m
                .delete_object("b", "k", 5)
                .await
                .expect("delete")
                .expect("marker");
            assert!(
                !m.set_object_tags("b", "k", &marker.version_id, &tags(&[("a", "b")]))
                    .await
                    .expect("marker")
            );
            // An upload's tags go to the object it completes.
            let upload = Upload {
                upload_id: new_upload_id(),
                bucket: "b".into(),
                key: "up".into(),
                content_type: None,
                metadata: vec![],
                initiated: 1,
                tags: tags(&[("from", "upload")]),
            };
            m.create_upload(&upload).await.expect("upload");
            let read = m
                .upload(&upload.upload_id)
                .await
                .expect("get")
                .expect("there");
            assert_eq!(read.tags, upload.tags);
            m.complete_upload(
                &upload.upload_id,
                &Object {
                    tags: read.tags.clone(),
                    ..object("b", "up", "e-1")
                },
            )
            .await
            .expect("complete")
            .expect("was there");
            assert_eq!(
                m.object("b", "up").await.expect("get").expect("there").tags,
                upload.tags
            );
        })
        .await;
    }

    #[tokio::test]
    async fn checksums_are_written_with_their_version_and_follow_it() {
        on_each_database(|m| async move {
            m.create_bucket("b", "t", 1).await.expect("create");
            m.set_versioning("b", Versioning::Enabled)
                .await
                .expect("enable");
            let v1 = put(
                &m,
                &Object {
                    checksum: Some("CRC32:DUoRhQ==".into()),
                    ..object("b", "k", "e1")
                },
            )
            .await;
            assert_eq!(
                m.object("b", "k")
                    .await
                    .expect("get")
                    .expect("there")
                    .checksum,
                Some("CRC32:DUoRhQ==".into())
            );
            // A newer version without one; the older keeps its own in `versions`.
            let v2 = put(&m, &object("b", "k", "e2")).await;
            let checksum_of = |id: String| {
                let m = m.clone();
                async move {
                    m.object_version("b", "k", &id)
                        .await
                        .expect("get")
                        .expect("there")
                        .object
                        .checksum
                }
            };
            assert_eq!(
                checksum_of(v1.version_id.clone()).await,
                Some("CRC32:DUoRhQ==".into())
            );
            assert_eq!(checksum_of(v2.version_id.clone()).await, None);
            // Removing the latest brings the older back, checksum and all.
            m.delete_version("b", "k", &v2.version_id)
                .await
                .expect("remove")
                .expect("was there");
            assert_eq!(
                m.object("b", "k")
                    .await
                    .expect("get")
                    .expect("there")
                    .checksum,
                Some("CRC32:DUoRhQ==".into())
            );
        })
        .await;
    }

    #[test]
    fn version_ids_are_checked_and_ordered() {
        assert!(is_version_id("null"));
        assert!(is_version_id(&next_version_id("")));
        assert!(!is_version_id("NULL"));
        assert!(!is_version_id(&"A".repeat(32)));
        assert!(!is_version_id("../../etc"));
        assert!(!is_version_id(&"a".repeat(33)));
        // Ordered after the given id even when it is from a clock ahead of ours.
        let ahead = format!("{:016x}{:016x}", u64::MAX / 2, 0);
        let next = next_version_id(&ahead);
        assert!(next > ahead, "{next} after {ahead}");
        assert_ne!(next_version_id(""), next_version_id(""));
    }

    /// Concurrent writers to one key, on a database several connections share: every
    /// versioned write is kept, exactly one `If-None-Match: *` wins.
    async fn concurrent_writers(m: Meta) {
        m.create_bucket("b", "t", 1).await.expect("create");
        m.set_versioning("b", Versioning::Enabled)
            .await
            .expect("enable");
        let writes = (0..12).map(|i| {
            let m = m.clone();
            tokio::spawn(async move { put(&m, &object("b", "k", &format!("e{i}"))).await })
        });
        let mut ids = Vec::new();
        for w in writes {
            ids.push(w.await.expect("joined").version_id);
        }
        let listed = m.list_versions("b", "", "", None, 100).await.expect("list");
        assert_eq!(listed.len(), 12);
        assert_eq!(listed.iter().filter(|v| v.is_latest).count(), 1);
        let latest = m.object("b", "k").await.expect("get").expect("some");
        assert_eq!(Some(&latest.version_id), ids.iter().max());
        let conditional = (0..12).map(|i| {
            let m = m.clone();
            tokio::spawn(async move {
                m.put_object(&object("b", "new", &format!("e{i}")), &Condition::Absent)
                    .await
                    .expect("put")
                    .is_some()
            })
        });
        let mut won = 0;
        for c in conditional {
            won += usize::from(c.await.expect("joined"));
        }
        assert_eq!(won, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_to_one_key_are_serialized() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        concurrent_writers(Meta::open(&url).await.expect("sqlite file")).await;
        on_each_database(|m| async move {
            // The in-memory SQLite has one connection: nothing to race there.
            if m.pool
                .connect_options()
                .database_url
                .scheme()
                .starts_with("postgres")
            {
                concurrent_writers(m).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn block_maps_page_in_key_order_and_rewrite_only_if_unchanged() {
        on_each_database(|m| async move {
            m.create_bucket("b", "t", 1).await.expect("create");
            for key in ["c", "a", "b/1", "b"] {
                m.put_object(&object("b", key, key), &Condition::None)
                    .await
                    .expect("put")
                    .expect("written");
            }
            let upload = new_upload_id();
            m.create_upload(&Upload {
                upload_id: upload.clone(),
                bucket: "b".into(),
                key: "big".into(),
                content_type: None,
                metadata: vec![],
                initiated: 1,
                tags: vec![],
            })
            .await
            .expect("upload");
            for part_number in [10, 2, 1] {
                let part = Part {
                    part_number,
                    size: 3,
                    etag: "p".into(),
                    blocks: object("b", "big", "p").blocks,
                    last_modified: 1,
                };
                assert!(m.put_part(&upload, &part).await.expect("part"));
            }
            let mut keys = Vec::new();
            let mut after: Option<Vec<String>> = None;
            loop {
                let page = m
                    .map_page(MapTable::Objects, after.as_deref(), 3)
                    .await
                    .expect("page");
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                keys.extend(page.into_iter().map(|(k, _)| k[1].clone()));
            }
            assert_eq!(keys, ["a", "b", "b/1", "c"]);
            let parts = m
                .map_page(MapTable::Parts, Some(&[upload.clone(), "1".into()]), 10)
                .await
                .expect("parts");
            let numbers: Vec<&str> = parts.iter().map(|(k, _)| k[1].as_str()).collect();
            assert_eq!(numbers, ["2", "10"], "numeric order after part 1");

            let (key, stored) = m
                .map_page(MapTable::Objects, None, 1)
                .await
                .expect("page")
                .remove(0);
            let mut moved: Vec<BlockRef> = serde_json::from_str(&stored).expect("map");
            moved[0].nodes = vec!["st-9".into()];
            let next = serde_json::to_string(&moved).expect("json");
            assert!(
                !m.rewrite_map(MapTable::Objects, &key, "[]", &next)
                    .await
                    .expect("stale")
            );
            assert!(
                m.rewrite_map(MapTable::Objects, &key, &stored, &next)
                    .await
                    .expect("cas")
            );
            let got = m.object("b", "a").await.expect("read").expect("object");
            assert_eq!(got.blocks[0].nodes, ["st-9"]);
            let (pkey, pstored) = parts[0].clone();
            assert!(
                m.rewrite_map(MapTable::Parts, &pkey, &pstored, &next)
                    .await
                    .expect("part")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn one_holder_at_a_time_has_a_lease_until_it_expires() {
        on_each_database(|m| async move {
            assert!(m.take_lease("gc", "gw-1", 1_000, 500).await.expect("take"));
            assert!(!m.take_lease("gc", "gw-2", 1_200, 500).await.expect("held"));
            assert!(m.take_lease("gc", "gw-1", 1_400, 500).await.expect("renew"));
            assert!(!m.take_lease("gc", "gw-2", 1_899, 500).await.expect("held"));
            assert!(
                m.take_lease("gc", "gw-2", 1_901, 500)
                    .await
                    .expect("expired")
            );
            assert!(
                !m.take_lease("gc", "gw-1", 2_000, 500)
                    .await
                    .expect("gw-2's")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_copy_commits_only_while_its_source_version_is_there() {
        on_each_database(|m| async move {
            m.create_bucket("b", "t", 1).await.expect("create");
            m.put_object(&object("b", "src", "e1"), &Condition::None)
                .await
                .expect("put")
                .expect("written");
            let source = m.object("b", "src").await.expect("read").expect("there");
            let from = VersionRef {
                bucket: "b",
                key: "src",
                version_id: &source.version_id,
                blocks: &source.blocks,
            };
            let copied = m
                .put_object_copy(&object("b", "dst", "e1"), &Condition::None, &from)
                .await
                .expect("copy");
            assert!(matches!(copied, Ok(Some(_))), "{copied:?}");
            m.create_upload(&Upload {
                upload_id: "u1".into(),
                bucket: "b".into(),
                key: "big".into(),
                content_type: None,
                metadata: Vec::new(),
                initiated: 1,
                tags: Vec::new(),
            })
            .await
            .expect("upload");
            let part = Part {
                part_number: 1,
                size: 3,
                etag: "e1".into(),
                blocks: source.blocks.clone(),
                last_modified: 2,
            };
            assert_eq!(
                m.put_part_copy("u1", &part, &from).await.expect("part"),
                Ok(true)
            );
            // The source is overwritten (unversioned: the same version id, `null`, over
            // other blocks) before the next copy commits: the copy is refused, as it would
            // share blocks nothing references any more.
            let mut other = object("b", "src", "e2");
            other.blocks[0].id = "f".repeat(64);
            m.put_object(&other, &Condition::None)
                .await
                .expect("overwrite")
                .expect("written");
            let overwritten = m
                .put_object_copy(&object("b", "stale", "e1"), &Condition::None, &from)
                .await
                .expect("copy");
            assert_eq!(overwritten, Err(SourceGone { overwritten: true }));
            assert!(m.object("b", "stale").await.expect("read").is_none());
            // The source is deleted (unversioned bucket: its row goes) before the next
            // copy commits: the copy is refused, nothing written.
            m.delete_object("b", "src", 3).await.expect("delete");
            let late = m
                .put_object_copy(&object("b", "late", "e1"), &Condition::None, &from)
                .await
                .expect("copy");
            assert_eq!(late, Err(SourceGone { overwritten: false }));
            assert!(m.object("b", "late").await.expect("read").is_none());
            let part2 = Part {
                part_number: 2,
                ..part
            };
            assert_eq!(
                m.put_part_copy("u1", &part2, &from).await.expect("part"),
                Err(SourceGone { overwritten: false })
            );
            assert_eq!(m.parts("u1").await.expect("parts").len(), 1);
        })
        .await;
    }
}
