//! Price plans (CDN, storage, colocation rates; SLA terms) and their validation.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::BillingError;
use crate::percentile::Direction;

/// Most decimal places a price may have.
pub const MAX_PRICE_SCALE: u32 = 6;

/// Most steps an SLA credit schedule may have.
pub const MAX_SLA_STEPS: usize = 10;

/// A tenant's price plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// 1..=63 chars of `a-z0-9-`, not starting or ending with `-`.
    pub id: String,
    /// Display name, 1..=200 characters.
    pub name: String,
    /// ISO 4217 code: three ASCII uppercase letters.
    pub currency: String,
    /// Tax rate as a fraction (0.06 for 6%), 0 <= rate < 1.
    pub tax_rate: Decimal,
    /// CDN pricing; `None`: no CDN charges.
    #[serde(default)]
    pub cdn: Option<CdnRate>,
    /// Object storage pricing; `None`: no storage charges.
    #[serde(default)]
    pub storage: Option<StorageRate>,
    /// Colocation pricing; `None`: no colocation charges.
    #[serde(default)]
    pub colocation: Option<ColocationRate>,
    /// Service level and credits; `None`: no SLA.
    #[serde(default)]
    pub sla: Option<SlaTerms>,
}

/// How CDN traffic is priced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CdnRate {
    /// Burstable: a monthly commit fee, overage per Mbps of the 95th percentile above it.
    Percentile95 {
        /// Which traffic's 95th percentile is billed.
        direction: Direction,
        /// Mbps included in the commit fee.
        commit_mbps: Decimal,
        /// Monthly fee for the commit.
        commit_fee: Decimal,
        /// Price per Mbps above the commit.
        overage_per_mbps: Decimal,
    },
    /// Volume: a monthly commit fee, overage per GB (10^9 bytes) out above it.
    Transfer {
        /// GB included in the commit fee.
        commit_gb: Decimal,
        /// Monthly fee for the commit.
        commit_fee: Decimal,
        /// Price per GB above the commit.
        overage_per_gb: Decimal,
    },
}

/// Object storage prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageRate {
    /// Price per GB stored for a whole month (averaged over the month's intervals).
    pub per_gb_month: Decimal,
    /// Price per 10,000 requests.
    pub per_10k_requests: Decimal,
    /// Price per GB sent out.
    pub egress_per_gb: Decimal,
}

/// Colocation prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ColocationRate {
    /// Price per cabinet for a whole month (prorated by the assignment).
    pub per_cabinet_month: Decimal,
    /// Price per contracted kW for a whole month (prorated by the assignment).
    pub per_kw_month: Decimal,
    /// Optional bandwidth commit on the tenant's cross-connects/uplinks.
    #[serde(default)]
    pub bandwidth: Option<BandwidthCommit>,
}

/// A 95th-percentile bandwidth commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BandwidthCommit {
    /// Which traffic's 95th percentile is billed.
    pub direction: Direction,
    /// Mbps included in the commit fee.
    pub commit_mbps: Decimal,
    /// Monthly fee for the commit.
    pub commit_fee: Decimal,
    /// Price per Mbps above the commit.
    pub overage_per_mbps: Decimal,
}

/// Service level target and the credits owed below it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaTerms {
    /// Monthly uptime promised, in percent (99.90).
    pub target_percent: Decimal,
    /// Credit steps, highest `below_percent` first.
    pub schedule: Vec<CreditStep>,
}

/// Uptime below `below_percent` earns `credit_percent` of the category's charges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditStep {
    /// The step applies when uptime is strictly below this, in percent.
    pub below_percent: Decimal,
    /// Credit, in percent of the category's charges.
    pub credit_percent: Decimal,
}

impl Plan {
    /// Checks every field; the error names the first bad one.
    pub fn check(&self) -> Result<(), BillingError> {
        check_id(&self.id)?;
        check_name(&self.name)?;
        check_currency(&self.currency)?;
        check_tax_rate(self.tax_rate)?;
        if let Some(cdn) = &self.cdn {
            cdn.check("cdn")?;
        }
        if let Some(storage) = &self.storage {
            storage.check("storage")?;
        }
        if let Some(colocation) = &self.colocation {
            colocation.check("colocation")?;
        }
        if let Some(sla) = &self.sla {
            sla.check("sla")?;
        }
        Ok(())
    }
}

impl CdnRate {
    fn check(&self, at: &str) -> Result<(), BillingError> {
        match self {
            CdnRate::Percentile95 {
                commit_mbps,
                commit_fee,
                overage_per_mbps,
                ..
            } => {
                quantity(&format!("{at}.commit_mbps"), *commit_mbps)?;
                price(&format!("{at}.commit_fee"), *commit_fee)?;
                price(&format!("{at}.overage_per_mbps"), *overage_per_mbps)
            }
            CdnRate::Transfer {
                commit_gb,
                commit_fee,
                overage_per_gb,
            } => {
                quantity(&format!("{at}.commit_gb"), *commit_gb)?;
                price(&format!("{at}.commit_fee"), *commit_fee)?;
                price(&format!("{at}.overage_per_gb"), *overage_per_gb)
            }
        }
    }
}

impl StorageRate {
    fn check(&self, at: &str) -> Result<(), BillingError> {
        price(&format!("{at}.per_gb_month"), self.per_gb_month)?;
        price(&format!("{at}.per_10k_requests"), self.per_10k_requests)?;
        price(&format!("{at}.egress_per_gb"), self.egress_per_gb)
    }
}

impl ColocationRate {
    fn check(&self, at: &str) -> Result<(), BillingError> {
        price(&format!("{at}.per_cabinet_month"), self.per_cabinet_month)?;
        price(&format!("{at}.per_kw_month"), self.per_kw_month)?;
        match &self.bandwidth {
            Some(bandwidth) => bandwidth.check(&format!("{at}.bandwidth")),
            None => Ok(()),
        }
    }
}

impl BandwidthCommit {
    fn check(&self, at: &str) -> Result<(), BillingError> {
        quantity(&format!("{at}.commit_mbps"), self.commit_mbps)?;
        price(&format!("{at}.commit_fee"), self.commit_fee)?;
        price(&format!("{at}.overage_per_mbps"), self.overage_per_mbps)
    }
}

impl SlaTerms {
    fn check(&self, at: &str) -> Result<(), BillingError> {
        percent(&format!("{at}.target_percent"), self.target_percent)?;
        let field = format!("{at}.schedule");
        if self.schedule.is_empty() || self.schedule.len() > MAX_SLA_STEPS {
            return Err(invalid(
                &field,
                format!("must have 1..={MAX_SLA_STEPS} steps"),
            ));
        }
        for (i, step) in self.schedule.iter().enumerate() {
            step.check(&format!("{field}[{i}]"), self.target_percent)?;
        }
        for (i, pair) in self.schedule.windows(2).enumerate() {
            check_step_order(&format!("{field}[{}]", i + 1), &pair[0], &pair[1])?;
        }
        Ok(())
    }
}

impl CreditStep {
    fn check(&self, at: &str, target: Decimal) -> Result<(), BillingError> {
        let below = format!("{at}.below_percent");
        percent(&below, self.below_percent)?;
        if self.below_percent > target {
            return Err(invalid(
                &below,
                format!("must be at most the target {target}"),
            ));
        }
        percent(&format!("{at}.credit_percent"), self.credit_percent)
    }
}

/// Steps go down in uptime and never down in credit.
fn check_step_order(at: &str, prev: &CreditStep, step: &CreditStep) -> Result<(), BillingError> {
    if step.below_percent >= prev.below_percent {
        return Err(invalid(
            &format!("{at}.below_percent"),
            format!("must be below the previous step's {}", prev.below_percent),
        ));
    }
    if step.credit_percent < prev.credit_percent {
        return Err(invalid(
            &format!("{at}.credit_percent"),
            format!(
                "must be at least the previous step's {}",
                prev.credit_percent
            ),
        ));
    }
    Ok(())
}

fn invalid(field: &str, message: impl Into<String>) -> BillingError {
    BillingError::invalid(field, message)
}

fn check_id(id: &str) -> Result<(), BillingError> {
    let chars_ok = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if id.is_empty() || id.len() > 63 || !chars_ok {
        return Err(invalid("id", "must be 1..=63 characters of a-z, 0-9 and -"));
    }
    if id.starts_with('-') || id.ends_with('-') {
        return Err(invalid("id", "must not start or end with -"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), BillingError> {
    match name.chars().count() {
        1..=200 => Ok(()),
        _ => Err(invalid("name", "must be 1..=200 characters")),
    }
}

fn check_currency(currency: &str) -> Result<(), BillingError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(invalid(
            "currency",
            "must be an ISO 4217 code: 3 letters A-Z",
        ))
    }
}

fn check_tax_rate(rate: Decimal) -> Result<(), BillingError> {
    if rate < Decimal::ZERO || rate >= Decimal::ONE {
        return Err(invalid("tax_rate", "must be at least 0 and below 1"));
    }
    Ok(())
}

/// 10^12: every price and commit quantity is below this.
fn limit() -> Decimal {
    Decimal::from(1_000_000_000_000i64)
}

/// A price: >= 0, below 10^12, at most 6 decimal places (trailing zeros do not count).
fn price(field: &str, value: Decimal) -> Result<(), BillingError> {
    quantity(field, value)?;
    if value.normalize().scale() > MAX_PRICE_SCALE {
        return Err(invalid(
            field,
            format!("must have at most {MAX_PRICE_SCALE} decimal places"),
        ));
    }
    Ok(())
}

/// A commit quantity: >= 0 and below 10^12.
fn quantity(field: &str, value: Decimal) -> Result<(), BillingError> {
    if value < Decimal::ZERO {
        return Err(invalid(field, "must be at least 0"));
    }
    if value >= limit() {
        return Err(invalid(field, "must be below 1000000000000"));
    }
    Ok(())
}

/// A percentage in (0, 100].
fn percent(field: &str, value: Decimal) -> Result<(), BillingError> {
    if value <= Decimal::ZERO || value > Decimal::ONE_HUNDRED {
        return Err(invalid(field, "must be above 0 and at most 100"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{d, sla_terms};

    fn good_plan() -> Plan {
        Plan {
            id: "cdn-pro-2026".into(),
            name: "CDN Pro <2026>".into(),
            currency: "CNY".into(),
            tax_rate: d("0.06"),
            cdn: Some(CdnRate::Percentile95 {
                direction: Direction::Out,
                commit_mbps: d("100"),
                commit_fee: d("1000.00"),
                overage_per_mbps: d("12.5"),
            }),
            storage: Some(StorageRate {
                per_gb_month: d("0.12"),
                per_10k_requests: d("0.01"),
                egress_per_gb: d("0.5"),
            }),
            colocation: Some(ColocationRate {
                per_cabinet_month: d("3000"),
                per_kw_month: d("450"),
                bandwidth: Some(BandwidthCommit {
                    direction: Direction::Max,
                    commit_mbps: d("50"),
                    commit_fee: d("500"),
                    overage_per_mbps: d("20"),
                }),
            }),
            sla: Some(sla_terms()),
        }
    }

    fn field_of(plan: &Plan) -> String {
        match plan.check() {
            Err(BillingError::Invalid { field, .. }) => field,
            Ok(()) => "ok".into(),
        }
    }

    fn rejects(field: &str, change: impl FnOnce(&mut Plan)) {
        let mut plan = good_plan();
        change(&mut plan);
        assert_eq!(field_of(&plan), field);
    }

    fn cdn(plan: &mut Plan) -> (&mut Decimal, &mut Decimal, &mut Decimal) {
        match plan.cdn.as_mut() {
            Some(CdnRate::Percentile95 {
                commit_mbps,
                commit_fee,
                overage_per_mbps,
                ..
            }) => (commit_mbps, commit_fee, overage_per_mbps),
            _ => panic!("test plan has a percentile CDN rate"),
        }
    }

    fn colo(plan: &mut Plan) -> &mut ColocationRate {
        plan.colocation.as_mut().expect("colocation")
    }

    fn sla(plan: &mut Plan) -> &mut SlaTerms {
        plan.sla.as_mut().expect("sla")
    }

    #[test]
    fn good_plan_passes() {
        assert_eq!(good_plan().check(), Ok(()));
        let bare = Plan {
            cdn: None,
            storage: None,
            colocation: None,
            sla: None,
            ..good_plan()
        };
        assert_eq!(bare.check(), Ok(()));
        let transfer = Plan {
            cdn: Some(CdnRate::Transfer {
                commit_gb: d("0"),
                commit_fee: d("0"),
                overage_per_gb: d("0.000001"),
            }),
            ..good_plan()
        };
        assert_eq!(transfer.check(), Ok(()));
        // Trailing zeros are not decimal places of the value.
        let mut zeros = good_plan();
        *cdn(&mut zeros).2 = d("12.50000000");
        assert_eq!(zeros.check(), Ok(()));
    }

    #[test]
    fn refuses_bad_identity_fields() {
        for id in ["", "-a", "a-", "A", "a_b", "a.b", "ä", &"a".repeat(64)] {
            rejects("id", |p| p.id = id.into());
        }
        rejects("ok", |p| p.id = "a".repeat(63));
        rejects("ok", |p| p.id = "a-0".into());
        rejects("name", |p| p.name = String::new());
        rejects("name", |p| p.name = "é".repeat(201));
        rejects("ok", |p| p.name = "é".repeat(200));
        for currency in ["cny", "CN", "CNYY", "C1Y", "ÄBC", ""] {
            rejects("currency", |p| p.currency = currency.into());
        }
        rejects("tax_rate", |p| p.tax_rate = d("-0.01"));
        rejects("tax_rate", |p| p.tax_rate = d("1"));
        rejects("ok", |p| p.tax_rate = d("0"));
        rejects("ok", |p| p.tax_rate = d("0.999"));
    }

    #[test]
    fn refuses_bad_prices() {
        rejects("cdn.overage_per_mbps", |p| *cdn(p).2 = d("-1"));
        rejects("cdn.overage_per_mbps", |p| *cdn(p).2 = d("0.0000001"));
        rejects("cdn.commit_fee", |p| *cdn(p).1 = d("1000000000000"));
        rejects("ok", |p| *cdn(p).1 = d("999999999999.999999"));
        rejects("cdn.commit_mbps", |p| *cdn(p).0 = d("-0.5"));
        rejects("cdn.commit_gb", |p| {
            p.cdn = Some(CdnRate::Transfer {
                commit_gb: d("-1"),
                commit_fee: d("1"),
                overage_per_gb: d("1"),
            })
        });
        rejects("cdn.overage_per_gb", |p| {
            p.cdn = Some(CdnRate::Transfer {
                commit_gb: d("1"),
                commit_fee: d("1"),
                overage_per_gb: d("-1"),
            })
        });
        rejects("storage.per_gb_month", |p| {
            p.storage.as_mut().expect("storage").per_gb_month = d("-1")
        });
        rejects("storage.per_10k_requests", |p| {
            p.storage.as_mut().expect("storage").per_10k_requests = d("0.1234567")
        });
        rejects("storage.egress_per_gb", |p| {
            p.storage.as_mut().expect("storage").egress_per_gb = d("-2")
        });
        rejects("colocation.per_cabinet_month", |p| {
            colo(p).per_cabinet_month = d("-3000")
        });
        rejects("colocation.per_kw_month", |p| {
            colo(p).per_kw_month = d("1e12")
        });
        rejects("colocation.bandwidth.commit_mbps", |p| {
            colo(p).bandwidth.as_mut().expect("bw").commit_mbps = d("-1")
        });
        rejects("colocation.bandwidth.commit_fee", |p| {
            colo(p).bandwidth.as_mut().expect("bw").commit_fee = d("-1")
        });
        rejects("colocation.bandwidth.overage_per_mbps", |p| {
            colo(p).bandwidth.as_mut().expect("bw").overage_per_mbps = d("-1")
        });
    }

    #[test]
    fn refuses_bad_sla_terms() {
        rejects("sla.target_percent", |p| sla(p).target_percent = d("0"));
        rejects("sla.target_percent", |p| {
            sla(p).target_percent = d("100.01")
        });
        rejects("ok", |p| sla(p).target_percent = d("100"));
        rejects("sla.schedule", |p| sla(p).schedule.clear());
        rejects("sla.schedule", |p| {
            sla(p).schedule = (0..11)
                .map(|i| CreditStep {
                    below_percent: d("99") - Decimal::from(i),
                    credit_percent: d("10"),
                })
                .collect()
        });
        rejects("sla.schedule[0].below_percent", |p| {
            sla(p).schedule[0].below_percent = d("99.95")
        });
        rejects("sla.schedule[1].below_percent", |p| {
            sla(p).schedule[1].below_percent = d("0")
        });
        rejects("sla.schedule[1].credit_percent", |p| {
            sla(p).schedule[1].credit_percent = d("0")
        });
        rejects("sla.schedule[0].credit_percent", |p| {
            sla(p).schedule[0].credit_percent = d("101")
        });
        // Not sorted by below_percent descending.
        rejects("sla.schedule[1].below_percent", |p| {
            sla(p).schedule.reverse()
        });
        rejects("sla.schedule[1].below_percent", |p| {
            sla(p).schedule[1].below_percent = d("99.9")
        });
        // A lower uptime must not get a smaller credit.
        rejects("sla.schedule[1].credit_percent", |p| {
            sla(p).schedule[1].credit_percent = d("5")
        });
        rejects("ok", |p| sla(p).schedule[1].credit_percent = d("10"));
    }

    #[test]
    fn json_round_trip_with_decimal_strings() {
        let plan = good_plan();
        let json = serde_json::to_value(&plan).expect("serialize");
        assert_eq!(json["tax_rate"], "0.06");
        assert_eq!(json["cdn"]["kind"], "percentile95");
        assert_eq!(json["cdn"]["direction"], "out");
        assert_eq!(json["cdn"]["overage_per_mbps"], "12.5");
        assert_eq!(json["sla"]["schedule"][0]["below_percent"], "99.90");
        let back: Plan = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, plan);
    }

    #[test]
    fn json_input_is_strict() {
        let minimal = r#"{"id":"p","name":"P","currency":"EUR","tax_rate":"0.2",
            "cdn":{"kind":"transfer","commit_gb":"1000","commit_fee":"10","overage_per_gb":"0.01"}}"#;
        let plan: Plan = serde_json::from_str(minimal).expect("minimal plan");
        assert_eq!(plan.tax_rate, d("0.2"));
        assert_eq!(plan.storage, None);
        assert_eq!(plan.check(), Ok(()));
        let unknown = r#"{"id":"p","name":"P","currency":"EUR","tax_rate":"0.2","extra":1}"#;
        assert!(serde_json::from_str::<Plan>(unknown).is_err());
        let unknown_in_variant = r#"{"id":"p","name":"P","currency":"EUR","tax_rate":"0.2",
            "cdn":{"kind":"transfer","commit_gb":"1","commit_fee":"1","overage_per_gb":"1","x":2}}"#;
        assert!(serde_json::from_str::<Plan>(unknown_in_variant).is_err());
        let bad_kind = r#"{"id":"p","name":"P","currency":"EUR","tax_rate":"0.2",
            "cdn":{"kind":"flat","commit_fee":"1"}}"#;
        assert!(serde_json::from_str::<Plan>(bad_kind).is_err());
    }
}
