//! Sites: data centres and edge PoPs, each in a region, connected to some lines, with a
//! bandwidth capacity and (for edge sites) the regional parent site their caches fill from.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError, check_name, check_unique};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Slug, e.g. `wuxi-1`.
    pub id: String,
    pub name: String,
    /// The region the site is in.
    pub region: String,
    /// The lines (carriers) the site is connected to.
    #[serde(default)]
    pub lines: Vec<String>,
    /// Upstream bandwidth of the site in Mbit/s.
    #[serde(default)]
    pub bandwidth_mbps: u64,
    /// The site whose parent-cache nodes this site's edge nodes fill from.
    #[serde(default)]
    pub parent: Option<String>,
}

impl Validate for Site {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_name("name", &self.name)?;
        check_id("region", &self.region)?;
        for (i, l) in self.lines.iter().enumerate() {
            check_id(&format!("lines[{i}]"), l)?;
        }
        check_unique("lines", &self.lines)?;
        if let Some(p) = &self.parent {
            check_id("parent", p)?;
            if p == &self.id {
                return Err(ValidationError::new(
                    "parent",
                    "a site cannot be its own parent",
                ));
            }
        }
        Ok(())
    }
}
