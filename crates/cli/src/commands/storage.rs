//! `lingjing storage`: one storage node, serving its blocks to the S3 gateways.

use anyhow::{Context, bail};
use lingjing_storage::node::NodeConfig;

use crate::args::{Global, StorageArgs};

pub async fn run(global: &Global, args: StorageArgs) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| {
            format!(
                "cannot read the cluster token from {}",
                args.token_file.display()
            )
        })?
        .trim()
        .to_owned();
    if token.is_empty() {
        bail!(
            "{} is empty: put the cluster token the gateways present in it",
            args.token_file.display()
        );
    }
    let data_dir = args.blocks_dir.clone().unwrap_or_else(|| {
        global
            .data_dir
            .join(format!("storage-{}", args.node))
            .join("blocks")
    });
    if !data_dir.exists() {
        // Tenants' data: only this user may read it.
        lingjing_client::fs::ensure_private_dir(&data_dir).with_context(|| {
            format!("cannot create the blocks directory {}", data_dir.display())
        })?;
    }
    let handle = lingjing_storage::start(NodeConfig {
        node_id: args.node.clone(),
        listen: args.listen,
        data_dir: data_dir.clone(),
        token,
        max_block_bytes: args.max_block_mb * 1024 * 1024,
    })
    .await?;
    eprintln!(
        "lingjing storage {} serving blocks in {} on http://{} (Ctrl-C to stop)",
        args.node,
        data_dir.display(),
        handle.addr()
    );
    super::shutdown_signal().await;
    eprintln!("shutting down");
    handle.shutdown().await;
    Ok(())
}
