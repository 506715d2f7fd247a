//! The S3 gateways' metadata in a real database: buckets (with their tenant) and the
//! current version of each object with its block map. A SQLite file in `up`; PostgreSQL
//! when several gateways share the load (each gateway is stateless: everything it knows
//! of buckets and objects is here). Keys sort by their bytes, as S3 lists them (SQLite's
//! default collation; `COLLATE "C"` on PostgreSQL).
//!
//! **Atomic visibility:** an object row is inserted or replaced by one statement after
//! every block of it is durable, so a listing or a read sees the old object or the new
//! one, never a half-written one; concurrent writers to one key end in the order their
//! statements commit (the last one wins).

use std::str::FromStr;
use std::time::Duration;

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
    /// The nodes that acknowledged it.
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub tenant: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub public_read: bool,
}

/// The current version of an object.
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
}

impl Meta {
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
        Ok(Meta { pool })
    }

    /// Creates bucket `name` for `tenant`, unless it exists.
    pub async fn create_bucket(
        &self,
        name: &str,
        tenant: &str,
        now_ms: i64,
    ) -> Result<Created, MetaError> {
        let inserted = sqlx::query(
            "INSERT INTO buckets (name, tenant, created_at, public_read) VALUES ($1, $2, $3, 0) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(tenant)
        .bind(now_ms)
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
            "SELECT name, tenant, created_at, public_read FROM buckets WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Bucket {
                name: r.try_get("name")?,
                tenant: r.try_get("tenant")?,
                created_at: r.try_get("created_at")?,
                public_read: r.try_get::<i64, _>("public_read")? != 0,
            })
        })
        .transpose()
    }

    /// `tenant`'s buckets, by name.
    pub async fn buckets(&self, tenant: &str) -> Result<Vec<Bucket>, MetaError> {
        let rows = sqlx::query(
            "SELECT name, tenant, created_at, public_read FROM buckets WHERE tenant = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Bucket {
                    name: r.try_get("name")?,
                    tenant: r.try_get("tenant")?,
                    created_at: r.try_get("created_at")?,
                    public_read: r.try_get::<i64, _>("public_read")? != 0,
                })
            })
            .collect()
    }

    /// Deletes bucket `name` if it holds no object and no upload in progress: `Ok(false)`
    /// when it is not empty.
    pub async fn delete_empty_bucket(&self, name: &str) -> Result<bool, MetaError> {
        // One statement: an object written meanwhile either commits first (and the bucket
        // stays) or finds no bucket (the foreign key refuses it).
        let deleted = sqlx::query(
            "DELETE FROM buckets WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM objects WHERE bucket = $1)
             AND NOT EXISTS (SELECT 1 FROM uploads WHERE bucket = $1)",
        )
        .bind(name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted == 1)
    }

    /// Makes `object` the current version of its key (inserted or replaced at once).
    pub async fn put_object(&self, object: &Object) -> Result<(), MetaError> {
        upsert_object(&self.pool, object).await
    }

    /// Writes `object` only if no object is at its key (`If-None-Match: *`), atomically:
    /// `false` when one is.
    pub async fn put_object_if_absent(&self, object: &Object) -> Result<bool, MetaError> {
        let size = i64::try_from(object.size).map_err(|_| MetaError::Corrupt("size".into()))?;
        let done = sqlx::query(
            "INSERT INTO objects (bucket, key, size, etag, content_type, metadata, last_modified, blocks)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (bucket, key) DO NOTHING",
        )
        .bind(&object.bucket)
        .bind(&object.key)
        .bind(size)
        .bind(&object.etag)
        .bind(object.content_type.as_deref())
        .bind(json(&object.metadata)?)
        .bind(object.last_modified)
        .bind(json(&object.blocks)?)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Replaces the object at `object`'s key only if its current ETag is `etag` (any ETag
    /// when `None`: it must exist), atomically (`If-Match`): `false` otherwise.
    pub async fn replace_object_if(
        &self,
        object: &Object,
        etag: Option<&str>,
    ) -> Result<bool, MetaError> {
        let size = i64::try_from(object.size).map_err(|_| MetaError::Corrupt("size".into()))?;
        let done = sqlx::query(
            "UPDATE objects SET size = $3, etag = $4, content_type = $5, metadata = $6, last_modified = $7, blocks = $8
             WHERE bucket = $1 AND key = $2 AND ($9 IS NULL OR etag = $9)",
        )
        .bind(&object.bucket)
        .bind(&object.key)
        .bind(size)
        .bind(&object.etag)
        .bind(object.content_type.as_deref())
        .bind(json(&object.metadata)?)
        .bind(object.last_modified)
        .bind(json(&object.blocks)?)
        .bind(etag)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    pub async fn object(&self, bucket: &str, key: &str) -> Result<Option<Object>, MetaError> {
        let row = sqlx::query(
            "SELECT bucket, key, size, etag, content_type, metadata, last_modified, blocks FROM objects WHERE bucket = $1 AND key = $2",
        )
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| object_from_row(&r)).transpose()
    }

    /// Removes the object at `key`; `false` when there was none.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, MetaError> {
        let deleted = sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }

    /// Up to `limit` objects of `bucket` whose keys start with `prefix` and sort after
    /// `after`, in key order.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<Object>, MetaError> {
        // Prefix match by range, not LIKE: keys may hold `%` and `_`.
        let rows = sqlx::query(
            "SELECT bucket, key, size, etag, content_type, metadata, last_modified, blocks FROM objects
             WHERE bucket = $1 AND key > $2 AND key >= $3 ORDER BY key LIMIT $4",
        )
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
            "INSERT INTO uploads (upload_id, bucket, key, content_type, metadata, initiated) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&upload.upload_id)
        .bind(&upload.bucket)
        .bind(&upload.key)
        .bind(upload.content_type.as_deref())
        .bind(json(&upload.metadata)?)
        .bind(upload.initiated)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn upload(&self, upload_id: &str) -> Result<Option<Upload>, MetaError> {
        let row = sqlx::query(
            "SELECT upload_id, bucket, key, content_type, metadata, initiated FROM uploads WHERE upload_id = $1",
        )
        .bind(upload_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let metadata: String = r.try_get("metadata")?;
            Ok(Upload {
                upload_id: r.try_get("upload_id")?,
                bucket: r.try_get("bucket")?,
                key: r.try_get("key")?,
                content_type: r.try_get("content_type")?,
                metadata: from_json(&metadata)?,
                initiated: r.try_get("initiated")?,
            })
        })
        .transpose()
    }

    /// Records part `part.part_number` of `upload_id` (replacing an earlier upload of the
    /// same number); `false` when the upload is gone (completed or aborted meanwhile).
    pub async fn put_part(&self, upload_id: &str, part: &Part) -> Result<bool, MetaError> {
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
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
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

    /// Completes `upload_id` as `object`: the object row is written and the upload (with
    /// its parts) removed in one transaction; `false` when the upload is gone already.
    pub async fn complete_upload(
        &self,
        upload_id: &str,
        object: &Object,
    ) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query("DELETE FROM uploads WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM parts WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await?;
        upsert_object(&mut *tx, object).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Abandons `upload_id` and its parts; `false` when there was none.
    pub async fn abort_upload(&self, upload_id: &str) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await?;
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

/// The statement that makes `object` the current version of its key.
async fn upsert_object<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    object: &Object,
) -> Result<(), MetaError> {
    let size = i64::try_from(object.size).map_err(|_| MetaError::Corrupt("size".into()))?;
    sqlx::query(
        "INSERT INTO objects (bucket, key, size, etag, content_type, metadata, last_modified, blocks)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (bucket, key) DO UPDATE SET size = excluded.size, etag = excluded.etag,
           content_type = excluded.content_type, metadata = excluded.metadata,
           last_modified = excluded.last_modified, blocks = excluded.blocks",
    )
    .bind(&object.bucket)
    .bind(&object.key)
    .bind(size)
    .bind(&object.etag)
    .bind(object.content_type.as_deref())
    .bind(json(&object.metadata)?)
    .bind(object.last_modified)
    .bind(json(&object.blocks)?)
    .execute(executor)
    .await?;
    Ok(())
}

fn object_from_row(r: &sqlx::any::AnyRow) -> Result<Object, MetaError> {
    let metadata: String = r.try_get("metadata")?;
    let blocks: String = r.try_get("blocks")?;
    let size: i64 = r.try_get("size")?;
    Ok(Object {
        bucket: r.try_get("bucket")?,
        key: r.try_get("key")?,
        size: u64::try_from(size).map_err(|_| MetaError::Corrupt("negative size".into()))?,
        etag: r.try_get("etag")?,
        content_type: r.try_get("content_type")?,
        metadata: serde_json::from_str(&metadata).map_err(|e| MetaError::Corrupt(e.to_string()))?,
        last_modified: r.try_get("last_modified")?,
        blocks: serde_json::from_str(&blocks).map_err(|e| MetaError::Corrupt(e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bucket: &str, key: &str, etag: &str) -> Object {
        Object {
            bucket: bucket.into(),
            key: key.into(),
            size: 3,
            etag: etag.into(),
            content_type: Some("text/plain".into()),
            metadata: vec![("owner".into(), "ops".into())],
            last_modified: 1_700_000_000_000,
            blocks: vec![BlockRef {
                id: "ab".repeat(32),
                len: 3,
                nodes: vec!["st-1".into()],
            }],
        }
    }

    async fn meta() -> Meta {
        Meta::open("sqlite::memory:").await.expect("meta")
    }

    #[tokio::test]
    async fn bucket_names_are_global_and_owned_by_one_tenant() {
        let m = meta().await;
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
        assert_eq!(
            m.bucket("photos").await.expect("get").expect("some").tenant,
            "shop"
        );
        assert_eq!(m.buckets("rival").await.expect("list"), vec![]);
        assert_eq!(m.buckets("shop").await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn a_bucket_with_objects_is_not_deleted() {
        let m = meta().await;
        m.create_bucket("b", "t", 1).await.expect("create");
        m.put_object(&object("b", "k", "e1")).await.expect("put");
        assert!(!m.delete_empty_bucket("b").await.expect("refused"));
        assert!(m.delete_object("b", "k").await.expect("delete"));
        assert!(m.delete_empty_bucket("b").await.expect("deleted"));
        assert!(m.bucket("b").await.expect("get").is_none());
        assert!(
            m.put_object(&object("b", "k", "e1")).await.is_err(),
            "no bucket, no object"
        );
    }

    #[tokio::test]
    async fn an_object_is_replaced_whole_and_listed_in_byte_order_by_prefix() {
        let m = meta().await;
        m.create_bucket("b", "t", 1).await.expect("create");
        for key in ["a/2", "a/1", "a%", "a_", "b", "a/1/x", "A"] {
            m.put_object(&object("b", key, "e1")).await.expect("put");
        }
        m.put_object(&object("b", "a/1", "e2"))
            .await
            .expect("replace");
        assert_eq!(
            m.object("b", "a/1").await.expect("get").expect("some").etag,
            "e2"
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
    }

    #[tokio::test]
    async fn conditional_writes_are_decided_by_the_statement() {
        let m = meta().await;
        m.create_bucket("b", "t", 1).await.expect("create");
        assert!(
            m.put_object_if_absent(&object("b", "k", "e1"))
                .await
                .expect("first")
        );
        assert!(
            !m.put_object_if_absent(&object("b", "k", "e2"))
                .await
                .expect("second")
        );
        assert_eq!(
            m.object("b", "k").await.expect("get").expect("some").etag,
            "e1"
        );
        assert!(
            !m.replace_object_if(&object("b", "k", "e3"), Some("e2"))
                .await
                .expect("stale")
        );
        assert!(
            m.replace_object_if(&object("b", "k", "e3"), Some("e1"))
                .await
                .expect("current")
        );
        assert!(
            m.replace_object_if(&object("b", "k", "e4"), None)
                .await
                .expect("any")
        );
        assert!(
            !m.replace_object_if(&object("b", "missing", "e1"), None)
                .await
                .expect("missing")
        );
        assert_eq!(
            m.object("b", "k").await.expect("get").expect("some").etag,
            "e4"
        );
    }
}
