//! Static DNS records of the platform zone: one owner name per record set, never a
//! service's name, and a CNAME alone at its name.

use lingjing_model::DnsRecord;
use lingjing_model::record::{APEX, RecordType};
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{Resource, ViewContext};
use crate::error::{ApiError, StoreError};
use crate::store;

/// The owner name a record is stored under: its labels, lowercase, or `@`.
fn record_owner(r: &DnsRecord) -> String {
    let labels = r.owner_labels();
    if labels.is_empty() {
        APEX.to_owned()
    } else {
        labels.join(".")
    }
}

/// A static record with its full name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DnsRecordView {
    #[serde(flatten)]
    pub record: DnsRecord,
    /// The absolute name it answers for, e.g. `api.cdn.lingjing.test.`.
    pub fqdn: String,
}

impl Resource for DnsRecord {
    const KIND: &'static str = "record";
    const PLURAL: &'static str = "dns-records";
    const TABLE: &'static str = "dns_records";
    type View = DnsRecordView;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("name", Some(record_owner(self))),
            ("rtype", Some(self.rtype.as_str().to_owned())),
        ]
    }
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        let owner = record_owner(self);
        if store::services::service_exists(&mut *conn, &owner).await? {
            return Err(ApiError::Conflict {
                code: "name_taken",
                message: format!(
                    "`{owner}` is the DNS name of service `{owner}`, steered by the GSLB; choose another name"
                ),
                field: Some("name".into()),
            });
        }
        for (id, rtype) in store::records::other_records_named(conn, &owner, &self.id).await? {
            let message = if rtype == self.rtype.as_str() {
                format!("record `{id}` already holds `{owner}` {rtype}; add the values there")
            } else if rtype == RecordType::Cname.as_str() || self.rtype == RecordType::Cname {
                format!(
                    "`{owner}` has record `{id}` ({rtype}); a CNAME cannot share its name with other records (RFC 1034 §3.6.2)"
                )
            } else {
                continue;
            };
            return Err(ApiError::Conflict {
                code: "name_taken",
                message,
                field: Some("name".into()),
            });
        }
        Ok(())
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items
            .into_iter()
            .map(|record| {
                let owner = record_owner(&record);
                let fqdn = if owner == APEX {
                    ctx.zone.clone()
                } else {
                    format!("{owner}.{}", ctx.zone)
                };
                DnsRecordView { record, fqdn }
            })
            .collect())
    }
}
