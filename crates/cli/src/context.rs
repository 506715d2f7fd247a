//! Where commands send their requests: endpoint, CA and token from flags, the
//! environment, or the `lingjing up` data directory (which holds `endpoint`, `ca.pem` and
//! `operator.token`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use lingjing_client::Client;

use crate::args::Global;

/// The name of the operator token file in a data directory.
pub const TOKEN_FILE: &str = "operator.token";
/// The CA certificate `lingjing up` makes, in its data directory.
pub const CA_FILE: &str = "ca.pem";
/// The control plane URL `lingjing up` serves, in its data directory.
pub const ENDPOINT_FILE: &str = "endpoint";
/// The control plane URL when nothing else says.
pub const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:7700";

pub fn client(global: &Global) -> anyhow::Result<Client> {
    let token = token(global)?;
    Client::with_ca(&endpoint(global), &token, ca(global).as_deref())
        .context("bad --endpoint or --ca")
}

/// The endpoint from --endpoint, LINGJING_ENDPOINT, the data directory, or the default.
pub fn endpoint(global: &Global) -> String {
    if let Some(e) = &global.endpoint {
        return e.clone();
    }
    std::fs::read_to_string(global.data_dir.join(ENDPOINT_FILE))
        .ok()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
}

/// The CA file from --ca, LINGJING_CA, or the data directory's when it has one.
pub fn ca(global: &Global) -> Option<PathBuf> {
    if let Some(ca) = &global.ca {
        return Some(ca.clone());
    }
    let path = global.data_dir.join(CA_FILE);
    path.is_file().then_some(path)
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
