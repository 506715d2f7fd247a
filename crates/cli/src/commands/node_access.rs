//! `lingjing node join-token ID` and `lingjing node revoke ID`: the operator's side of node
//! credentials (a node exchanges the join token for its own credential at first start).

use serde_json::Value;

use super::resources::explain;
use crate::args::{Global, NodeCmd};
use crate::context::client;

pub async fn run(global: &Global, cmd: NodeCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    match cmd {
        NodeCmd::JoinToken { id, ttl_s } => {
            let t: Value = c
                .post(
                    &format!("/v1/nodes/{id}/join-token?ttl_s={ttl_s}"),
                    &serde_json::json!({}),
                )
                .await
                .map_err(explain)?;
            if global.json {
                println!("{}", serde_json::to_string_pretty(&t)?);
                return Ok(());
            }
            let token = t["join_token"].as_str().unwrap_or_default();
            println!("{token}");
            eprintln!(
                "join token for node {id}, valid once until {}:\n  lingjing edge --node {id} --join-token {token} ...   (or lingjing dns)\nThe node keeps the credential it gets for it in its state directory.",
                t["expires_at"].as_str().unwrap_or("?")
            );
        }
        NodeCmd::Revoke { id } => {
            let r: Value = c
                .post(&format!("/v1/nodes/{id}/revoke"), &serde_json::json!({}))
                .await
                .map_err(explain)?;
            if global.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            let n = r["credentials"].as_u64().unwrap_or(0);
            println!(
                "{id}: {}; {} unused join token(s) revoked",
                if n > 0 {
                    format!("{n} credential(s) revoked (the node is refused from now on)")
                } else {
                    "had no credential".to_owned()
                },
                r["join_tokens"]
            );
        }
        other => anyhow::bail!("not a node credential command: {other:?}"),
    }
    Ok(())
}
