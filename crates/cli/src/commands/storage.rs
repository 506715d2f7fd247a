//! `lingjing storage`: one storage node, serving its blocks to the S3 gateways; and
//! `lingjing s3`: an S3 gateway over storage nodes.

use std::path::Path;

use anyhow::{Context, bail};
use lingjing_storage::gateway::{GatewayConfig, S3Key};
use lingjing_storage::node::NodeConfig;
use lingjing_storage::placement::NodeRef;

use crate::args::{Global, S3Args, StorageArgs};

/// The cluster token in `path` (one line, not empty).
fn cluster_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the cluster token from {}", path.display()))?
        .trim()
        .to_owned();
    if token.is_empty() {
        bail!(
            "{} is empty: put the cluster token the gateways and storage nodes share in it",
            path.display()
        );
    }
    Ok(token)
}

pub async fn run(global: &Global, args: StorageArgs) -> anyhow::Result<()> {
    let token = cluster_token(&args.token_file)?;
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

/// A storage node given as `ID@SITE=ADDR`.
fn node_ref(spec: &str) -> anyhow::Result<NodeRef> {
    let parsed = spec.split_once('=').and_then(|(name, addr)| {
        let (id, site) = name.split_once('@')?;
        Some((id, site, addr.parse().ok()?))
    });
    match parsed {
        Some((id, site, addr)) if !id.is_empty() && !site.is_empty() => Ok(NodeRef {
            id: id.to_owned(),
            site: site.to_owned(),
            addr,
        }),
        _ => bail!(
            "--node {spec:?}: give a storage node as ID@SITE=ADDR, e.g. st-1@wuxi=127.0.0.1:7810"
        ),
    }
}

/// The access keys in `path`: `ACCESS_KEY SECRET TENANT` per line (`#` comments).
fn s3_keys(path: &Path) -> anyhow::Result<Vec<S3Key>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the access keys from {}", path.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [access_key, secret, tenant] = fields[..] else {
            bail!(
                "{}:{}: expected ACCESS_KEY SECRET TENANT",
                path.display(),
                n + 1
            );
        };
        keys.push(S3Key {
            access_key: access_key.to_owned(),
            secret: secret.to_owned(),
            tenant: tenant.to_owned(),
        });
    }
    if keys.is_empty() {
        bail!(
            "{} has no access keys: add a line ACCESS_KEY SECRET TENANT",
            path.display()
        );
    }
    Ok(keys)
}

pub async fn gateway(global: &Global, args: S3Args) -> anyhow::Result<()> {
    let nodes = args
        .nodes
        .iter()
        .map(|s| node_ref(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let meta_url = match &args.meta_url {
        Some(url) => url.clone(),
        None => {
            let dir = global.data_dir.join("s3");
            lingjing_client::fs::ensure_private_dir(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            format!("sqlite://{}", dir.join("meta.db").display())
        }
    };
    let handle = lingjing_storage::gateway::start(GatewayConfig {
        listen: args.listen,
        domain: args.domain.clone(),
        meta_url,
        nodes,
        replicas: usize::try_from(args.replicas).unwrap_or(3),
        cluster_token: cluster_token(&args.token_file)?,
        block_bytes: usize::try_from(args.block_kb * 1024).unwrap_or(1 << 20),
        keys: s3_keys(&args.keys_file)?,
    })
    .await?;
    eprintln!(
        "lingjing s3 serving http://{} (virtual hosts *.{}) (Ctrl-C to stop)",
        handle.addr(),
        args.domain
    );
    super::shutdown_signal().await;
    eprintln!("shutting down");
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_nodes_are_given_as_id_at_site_equals_address() {
        let n = node_ref("st-1@wuxi=127.0.0.1:7811").expect("parses");
        assert_eq!((n.id.as_str(), n.site.as_str()), ("st-1", "wuxi"));
        assert_eq!(n.addr.port(), 7811);
        for bad in [
            "st-1=127.0.0.1:7811",
            "@wuxi=127.0.0.1:1",
            "st-1@=127.0.0.1:1",
            "st-1@wuxi=nowhere",
            "st-1@wuxi",
        ] {
            let err = node_ref(bad).expect_err(bad).to_string();
            assert!(err.contains("ID@SITE=ADDR"), "{err}");
        }
    }

    #[test]
    fn key_files_hold_access_key_secret_and_tenant_per_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "# demo\nAK1 secret-1 shop\n\nAK2 secret-2 rival\n").expect("write");
        let keys = s3_keys(&path).expect("parses");
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (keys[1].access_key.as_str(), keys[1].tenant.as_str()),
            ("AK2", "rival")
        );
        std::fs::write(&path, "AK1 secret-1\n").expect("write");
        assert!(
            s3_keys(&path)
                .expect_err("short line")
                .to_string()
                .contains(":1: expected")
        );
        std::fs::write(&path, "# nothing\n").expect("write");
        assert!(s3_keys(&path).is_err());
    }
}
