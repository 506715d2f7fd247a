//! Rating: usage samples in, invoices out. Pure functions over plain data (no I/O, no
//! clock), money in exact decimals (`rust_decimal`), never floats.
//!
//! - [`month`]: billing months and their 5-minute intervals.
//! - [`percentile`]: 95th percentiles and transfer totals of 5-minute samples.
//! - [`plan`]: price plans and their validation.
//! - [`invoice`]: rating a tenant's month into an invoice (CSV and HTML too).
//! - [`segments`]: the operator's revenue, cost and margin per segment and site.

pub mod error;
pub mod invoice;
pub mod month;
pub mod percentile;
pub mod plan;
mod render;
pub mod segments;
mod sla;

pub use error::BillingError;
pub use invoice::{
    CabinetUse, Category, Invoice, Line, Outage, Uptime, Usage, rate, round_money, to_csv, to_html,
};
pub use month::{INTERVAL_MS, Month};
pub use percentile::{Direction, Percentile, Sample, percentile95, transfer_bytes};
pub use plan::{BandwidthCommit, CdnRate, ColocationRate, CreditStep, Plan, SlaTerms, StorageRate};
pub use segments::{
    CostBasis, CostItem, CostLine, Revenue, Segment, SegmentLine, SegmentReport, SiteLine,
    SiteTraffic, Totals, segment_report,
};

#[cfg(test)]
mod test_util {
    use rust_decimal::Decimal;

    use crate::{CreditStep, Month, SlaTerms};

    /// A decimal from its literal (tests only).
    pub(crate) fn d(s: &str) -> Decimal {
        s.parse().expect("decimal literal")
    }

    /// The month the tests bill: 30 days, 8,640 intervals.
    pub(crate) const NOVEMBER: Month = Month {
        year: 2026,
        month: 11,
    };

    /// 99.90%: 10% credit below it, 25% below 99.0%.
    pub(crate) fn sla_terms() -> SlaTerms {
        SlaTerms {
            target_percent: d("99.90"),
            schedule: vec![
                CreditStep {
                    below_percent: d("99.90"),
                    credit_percent: d("10"),
                },
                CreditStep {
                    below_percent: d("99.0"),
                    credit_percent: d("25"),
                },
            ],
        }
    }
}
