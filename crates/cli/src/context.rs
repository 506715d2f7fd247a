//! Where operator commands send their requests: endpoint and token from flags, the
//! environment, or the `lingjing up` data directory.

use anyhow::{Context, bail};
use lingjing_client::Client;

use crate::args::Global;

/// The name of the operator token file in a data directory.
pub const TOKEN_FILE: &str = "operator.token";

pub fn client(global: &Global) -> anyhow::Result<Client> {
    let token = token(global)?;
    Client::new(&global.endpoint, &token).context("bad --endpoint")
}

/// The token from --token, LINGJING_TOKEN or the data directory.
pub fn token(global: &Global) -> anyhow::Result<String> {
    Ok(match &global.token {
        Some(t) => t.clone(),
        None => {
            let path = global.data_dir.join(TOKEN_FILE);
            match std::fs::read_to_string(&path) {
                Ok(t) => t.trim().to_owned(),
                Err(_) => bail!(
                    "no token: pass --token or set LINGJING_TOKEN (or run from the directory holding {}, made by `lingjing up`)",
                    path.display()
                ),
            }
        }
    })
}
