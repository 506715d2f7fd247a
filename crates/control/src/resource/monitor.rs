//! IDC monitoring's resources, all the operator's: sensors (at a site, in a room, maybe
//! in a cabinet and for a tenant), receivers of alerts (webhook secrets and relay
//! passwords write-only) and
//! silences.

use lingjing_model::monitor::{Receiver, Sensor, Silence};
use lingjing_model::{Site, Tenant};
use sqlx::AnyConnection;

use super::{Reference, Resource, ViewContext, reference};
use crate::error::StoreError;

impl Resource for Sensor {
    const KIND: &'static str = "sensor";
    const PLURAL: &'static str = "sensors";
    const TABLE: &'static str = "sensors";
    type View = Sensor;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![("site_id", Some(self.site.clone()))]
    }
    fn references(&self) -> Vec<Reference> {
        let mut refs = vec![reference::<Site>("site", &self.site)];
        if let Some(c) = &self.cabinet {
            refs.push(reference::<lingjing_model::colocation::Cabinet>(
                "cabinet", c,
            ));
        }
        if let Some(t) = &self.tenant {
            refs.push(reference::<Tenant>("tenant", t));
        }
        refs
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items)
    }
}

impl Resource for Receiver {
    const KIND: &'static str = "receiver";
    const PLURAL: &'static str = "receivers";
    const TABLE: &'static str = "receivers";
    type View = Receiver;

    fn id(&self) -> &str {
        &self.id
    }
    fn references(&self) -> Vec<Reference> {
        let mut refs: Vec<Reference> = self
            .sites
            .iter()
            .enumerate()
            .map(|(i, s)| reference::<Site>(format!("sites[{i}]"), s))
            .collect();
        refs.extend(
            self.tenants
                .iter()
                .enumerate()
                .map(|(i, t)| reference::<Tenant>(format!("tenants[{i}]"), t)),
        );
        refs
    }
    fn keep_secrets(&mut self, existing: &Self) {
        if self.secret.is_empty() && self.url.is_some() {
            self.secret = existing.secret.clone();
        }
        if let (Some(new), Some(old)) = (self.email.as_mut(), existing.email.as_ref())
            && new.password.is_empty()
            && new.username.is_some()
        {
            new.password = old.password.clone();
        }
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items
            .into_iter()
            .map(|mut r| {
                r.secret.clear();
                if let Some(e) = r.email.as_mut() {
                    e.password.clear();
                }
                r
            })
            .collect())
    }
}

impl Resource for Silence {
    const KIND: &'static str = "silence";
    const PLURAL: &'static str = "silences";
    const TABLE: &'static str = "silences";
    type View = Silence;

    fn id(&self) -> &str {
        &self.id
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items)
    }
}
