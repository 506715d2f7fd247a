//! IP pools and allocations: a CIDR owned by a site (and optionally a line) whose addresses
//! are handed to that site's nodes one by one (IPAM).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError, check_unique};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IpPool {
    /// Slug, e.g. `wuxi-1-telecom-v4`.
    pub id: String,
    /// The site whose nodes the addresses go to.
    pub site: String,
    /// The line (carrier) the addresses are announced on, if the pool belongs to one.
    #[serde(default)]
    pub line: Option<String>,
    /// The pool's network, e.g. `127.0.1.0/24`, without host bits.
    #[schema(value_type = String, example = "127.0.1.0/24")]
    pub cidr: IpNet,
    /// Addresses never handed out (gateways, VIPs, ...).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub reserved: Vec<IpAddr>,
}

/// An address of a pool given to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Allocation {
    pub pool: String,
    #[schema(value_type = String, example = "127.0.1.1")]
    pub address: IpAddr,
    pub node: String,
    /// When it was allocated (RFC 3339).
    pub allocated_at: String,
}

/// Largest pool accepted: a /16 of IPv4 or a /112 of IPv6 would already be far more than a
/// site has; larger prefixes are refused so a typo cannot create a pool of 2^64 addresses.
pub const MAX_POOL_HOST_BITS: u8 = 16;

impl Validate for IpPool {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_id("site", &self.site)?;
        if let Some(l) = &self.line {
            check_id("line", l)?;
        }
        if self.cidr.trunc() != self.cidr {
            return Err(ValidationError::new(
                "cidr",
                format!(
                    "`{}` has host bits set; did you mean `{}`?",
                    self.cidr,
                    self.cidr.trunc()
                ),
            ));
        }
        let host_bits = self.cidr.max_prefix_len() - self.cidr.prefix_len();
        if host_bits > MAX_POOL_HOST_BITS {
            return Err(ValidationError::new(
                "cidr",
                format!(
                    "a pool may hold at most 2^{MAX_POOL_HOST_BITS} addresses (an IPv4 /16 or IPv6 /112); split `{}`",
                    self.cidr
                ),
            ));
        }
        for (i, r) in self.reserved.iter().enumerate() {
            if !self.cidr.contains(r) {
                return Err(ValidationError::new(
                    format!("reserved[{i}]"),
                    format!("{r} is not inside {}", self.cidr),
                ));
            }
        }
        check_unique("reserved", &self.reserved)?;
        Ok(())
    }
}
