//! Domain-control checks: reads the `_lingjing-challenge.<name>` TXT record of a hostname
//! through the operator's resolver (`--challenge-resolver`, or the system's), uncached, so
//! a record a tenant just published is seen.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

/// The TXT strings published at `name` (each record's strings joined, as RFC 7208 does).
pub async fn txt(resolver: Option<SocketAddr>, name: &str) -> Result<Vec<String>, String> {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(3);
    opts.attempts = 2;
    let builder = match resolver {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let config = ResolverConfig::from_parts(
                None,
                Vec::new(),
                vec![NameServerConfig::new(addr.ip(), true, vec![udp, tcp])],
            );
            Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
        None => Resolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?,
    };
    let resolver = builder
        .with_options(opts)
        .build()
        .map_err(|e| format!("cannot set up the resolver: {e}"))?;
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let lookup = match resolver.txt_lookup(fqdn.as_str()).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
        Err(e) => return Err(format!("TXT lookup of `{name}` failed: {e}")),
    };
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}
