//! Test support shared by the store suite and the end-to-end crash test: a throwaway
//! PostgreSQL database on the server `LINGJING_TEST_POSTGRES` names, created for one run
//! and dropped after it, also when the run fails. Not used by the product.

use std::future::Future;

use sqlx::Connection;

/// The environment variable holding a PostgreSQL server URL for tests.
pub const POSTGRES_ENV: &str = "LINGJING_TEST_POSTGRES";

/// Runs `run` with the URL of a fresh database on the `LINGJING_TEST_POSTGRES` server and
/// drops the database afterwards; a panic in `run` is resumed after the drop. Without the
/// variable, prints that `what` was skipped and returns.
///
/// Panics when the server cannot be reached or the database cannot be created: a test
/// that asked for PostgreSQL must not pass without it.
pub async fn with_scratch_postgres<F, Fut>(what: &str, run: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            eprintln!(
                "skipped: set {POSTGRES_ENV}=postgres://USER@HOST:PORT/DB to run {what} on PostgreSQL"
            );
            return;
        }
    };
    let name = format!(
        "lingjing_test_{}_{}",
        std::process::id(),
        crate::time::now_ms()
    );
    let mut admin = match sqlx::PgConnection::connect(&url).await {
        Ok(c) => c,
        Err(e) => panic!("connect to {POSTGRES_ENV} ({url}): {e}"),
    };
    if let Err(e) = sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
    {
        panic!("create the test database {name}: {e}");
    }
    // Run as its own task so that the database is dropped even when it fails.
    let result = tokio::spawn(run(with_database(&url, &name))).await;
    let dropped = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    if let Err(e) = dropped {
        eprintln!("could not drop the test database {name}: {e}");
    }
    let _ = admin.close().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let end = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{db}", &base[..end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_urls_are_rewritten() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t"),
            "postgres://postgres@127.0.0.1:5432/t"
        );
        assert_eq!(
            with_database("postgresql://u:p@db:5432?sslmode=disable", "t"),
            "postgresql://u:p@db:5432/t?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://db/a?x=1&y=2", "t"),
            "postgres://db/t?x=1&y=2"
        );
    }
}
