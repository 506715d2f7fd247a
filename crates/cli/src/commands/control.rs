//! `lingjing control`: the control plane alone, on SQLite or PostgreSQL.

use anyhow::{Context, bail};
use lingjing_control::{ControlConfig, Store};

use crate::args::ControlArgs;

pub async fn run(args: ControlArgs) -> anyhow::Result<()> {
    let token = match (&args.token_file, std::env::var("LINGJING_OPERATOR_TOKEN")) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?
            .trim()
            .to_owned(),
        (None, Ok(t)) => t.trim().to_owned(),
        (None, Err(_)) => {
            bail!("give the operator token with --token-file FILE or LINGJING_OPERATOR_TOKEN")
        }
    };
    if token.len() < 16 {
        bail!("the operator token must be at least 16 characters");
    }
    let store = Store::open(&args.db)
        .await
        .with_context(|| format!("cannot open the database {}", args.db))?;
    let http =
        lingjing_control::server::HttpOptions {
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(lingjing_control::server::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            limits: lingjing_control::server::ServerLimits {
                max_connections: args.max_connections as usize,
                ..Default::default()
            },
            mount: Some(super::console()),
            relay: match args.artifact_relay {
                true => Some(lingjing_control::server::RelaySettings {
                    upstream: args.artifact_relay_upstream.clone(),
                    ca_pem: match &args.artifact_relay_ca {
                        Some(path) => Some(std::fs::read_to_string(path).with_context(|| {
                            format!("cannot read the relay CA {}", path.display())
                        })?),
                        None => None,
                    },
                }),
                false => None,
            },
        };
    if http.tls.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "serving the control API in plain HTTP on a non-loopback address: give --tls-cert and --tls-key");
    }
    let handle = lingjing_control::serve_with(
        ControlConfig {
            listen: args.listen,
            operator_token: token,
            zone: args.zone,
            health: Some(args.health.config()),
            storage: args.storage.policy(),
            meter_retention_days: args.meter_retention_days,
            policy: args.trust.policy(&[])?,
        },
        http,
        store,
    )
    .await?;
    eprintln!(
        "lingjing control plane on {} (Ctrl-C to stop)",
        handle.url()
    );
    super::shutdown_signal().await;
    eprintln!("shutting down");
    handle.shutdown().await?;
    Ok(())
}
