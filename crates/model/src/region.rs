//! Regions: the tree (country > province > city > county) that sites sit in and that DNS
//! uses to judge nearness, each with a tier (core, regional, edge).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError, check_name};

/// A node of the region tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Slug, e.g. `cn-js-wuxi`.
    pub id: String,
    /// Display name, e.g. `Wuxi`.
    pub name: String,
    /// The enclosing region; `None` only for a root (a country).
    #[serde(default)]
    pub parent: Option<String>,
    pub level: RegionLevel,
    /// The tier of the sites in this region.
    #[serde(default)]
    pub tier: Tier,
}

/// How large a region is; a child is always smaller than its parent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RegionLevel {
    Country,
    Province,
    City,
    County,
}

/// Where a site stands in the caching hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Central data centres.
    Core,
    /// Regional IDCs that act as parents of the edge.
    Regional,
    /// Lower-tier (county and district) sites.
    #[default]
    Edge,
}

impl Validate for Region {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_name("name", &self.name)?;
        if let Some(parent) = &self.parent {
            check_id("parent", parent)?;
            if parent == &self.id {
                return Err(ValidationError::new(
                    "parent",
                    "a region cannot be its own parent",
                ));
            }
        } else if self.level != RegionLevel::Country {
            return Err(ValidationError::new(
                "parent",
                "only a country may have no parent region",
            ));
        }
        Ok(())
    }
}
