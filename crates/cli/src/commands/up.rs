//! `lingjing up`: the whole platform on one machine: the control plane on SQLite in the
//! data directory, the demo origin, and the demo topology seeded once.

use std::path::Path;

use anyhow::Context;
use lingjing_client::Client;
use lingjing_control::{ControlConfig, Store};
use lingjing_demo::{OriginConfig, demo_topology};

use crate::args::{Global, UpArgs};
use crate::context::TOKEN_FILE;

/// Reads the operator token from the data dir, creating one on first start.
fn operator_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = lingjing_control::auth::random_hex(24);
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    writeln!(f, "{text}")?;
    f.sync_all()
}

pub async fn run(global: &Global, args: UpArgs) -> anyhow::Result<()> {
    let data_dir = &global.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let token = operator_token(data_dir)?;
    let db = data_dir.join("lingjing.db");
    let store = Store::open_sqlite_file(&db)
        .await
        .with_context(|| format!("cannot open {}", db.display()))?;
    let control = lingjing_control::serve(
        ControlConfig {
            listen: args.listen,
            operator_token: token.clone(),
            zone: args.zone.clone(),
        },
        store,
    )
    .await?;
    let origin = lingjing_demo::serve(OriginConfig {
        listen: args.origin_listen,
        ..OriginConfig::default()
    })
    .await
    .with_context(|| {
        format!(
            "cannot start the demo origin on {} (pick another with --origin-listen)",
            args.origin_listen
        )
    })?;

    let client = Client::new(&control.url(), &token)?;
    let created = crate::seed::seed(&client, &demo_topology(origin.addr()))
        .await
        .context("seeding the demo topology failed")?;
    if created > 0 {
        tracing::info!(created, "demo topology seeded");
    }

    let api = control.url();
    println!(
        "\nLingjing is up.\n\
         \n  control plane   {api}   (OpenAPI: {api}/v1/openapi.json)\
         \n  demo origin     http://{origin}/\
         \n  data directory  {dir}\
         \n  operator token  {token}   (also in {dir}/{TOKEN_FILE})\
         \n\nTry:\
         \n  lingjing site list            (cargo run --release -- site list)\
         \n  curl -H \"Authorization: Bearer $(cat {dir}/{TOKEN_FILE})\" {api}/v1/sites\
         \n  curl -i http://{origin}/\
         \n\nCtrl-C stops everything.",
        origin = origin.addr(),
        dir = data_dir.display(),
    );

    crate::commands::shutdown_signal().await;
    eprintln!("shutting down");
    origin.shutdown().await.ok();
    control.shutdown().await?;
    Ok(())
}
