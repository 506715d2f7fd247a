//! The platform settings that views, checks and snapshots read: the DNS zone, the
//! operator's trust policy and the control plane's own endpoint. Data only, shared by the
//! API, the resource checks and the snapshot builder.

/// What the API needs to build views (and the snapshot builder to build snapshots).
#[derive(Debug, Clone)]
pub struct ViewContext {
    /// The platform DNS zone, e.g. `cdn.lingjing.test.`.
    pub zone: String,
    /// The operator's trust settings (allowed origin networks, reserved labels, ...).
    pub policy: crate::policy::TrustPolicy,
    /// Where this control plane's API listens: never a tenant's origin.
    pub control_endpoint: Option<std::net::SocketAddr>,
    /// How object storage keeps blocks.
    pub storage: lingjing_model::snapshot::StoragePolicy,
    /// How long metering samples are kept (and how late one is still taken), in days.
    pub meter_retention_days: u32,
    /// The edges' artefact relay: the upstream URL and CA they use (none: off).
    pub relay: Option<(String, Option<String>)>,
}
