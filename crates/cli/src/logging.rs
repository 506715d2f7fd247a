//! Structured logs with `tracing`: human-readable by default, JSON with `--log-format json`;
//! the level comes from `RUST_LOG` (default `info` for servers, `warn` for commands). The
//! `s3s` crate logs every refused S3 request (a 404, a missing signature) at ERROR; by
//! default it is silenced: the gateway logs its own failures.

use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

pub fn init(format: LogFormat, server: bool) {
    let default = if server {
        "info,s3s=off"
    } else {
        "warn,s3s=off"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
