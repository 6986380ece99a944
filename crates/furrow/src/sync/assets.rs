//! Syncing an organization's machines, implements and operators (Leaf's assets), each kind when
//! its `*AutoSync` configuration is on.

use std::collections::{BTreeMap, HashSet};

use deere::models::{Equipment, HasLinks, OrgOperator};
use serde_json::{json, Value};

use super::fields::{Read, Run, SyncError};
use crate::store::{AssetKind, AssetRecord, ChangeAlerts};

/// Which kinds of asset a user's configuration syncs.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssetSync {
    pub machines: bool,
    pub implements: bool,
    pub operators: bool,
}

impl AssetSync {
    pub fn from_config(config: &serde_json::Map<String, Value>) -> Self {
        let on = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
        Self {
            machines: on("machinesAutoSync"),
            implements: on("implementsAutoSync"),
            operators: on("operatorsAutoSync"),
        }
    }

    /// The organization's collections to read: (John Deere's link rel, kind).
    pub fn collections(&self) -> Vec<(&'static str, AssetKind)> {
        [
            (self.machines, "machines", AssetKind::Machine),
            (self.implements, "implements", AssetKind::Implement),
            (self.operators, "operators", AssetKind::Operator),
        ]
        .into_iter()
        .filter(|(on, ..)| *on)
        .map(|(_, rel, kind)| (rel, kind))
        .collect()
    }

    /// Whether an organization with these links has assets to sync.
    pub fn wanted(&self, links: &BTreeMap<String, String>) -> bool {
        self.collections()
            .iter()
            .any(|(rel, _)| links.contains_key(*rel))
    }
}

/// Leaf's fields of a machine or implement (beyond id, user and origin).
fn equipment_data(kind: AssetKind, org: &str, e: &Equipment) -> Value {
    let name = |n: &Option<deere::models::Named>| n.as_ref().and_then(|n| n.name.clone());
    let mut data = json!({
        "provider": crate::onboarding::JOHN_DEERE,
        "providerOrganizationId": org,
        "serialNumber": e.serial_number,
        "model": name(&e.model),
        "make": name(&e.make),
        "category": name(&e.equipment_type),
    });
    match kind {
        AssetKind::Machine => {
            data["providerMachineId"] = json!(e.id);
            data["vin"] = json!(e.vin.clone().or_else(|| e.serial_number.clone()));
            data["modelYear"] = json!(e.model_year.as_deref().and_then(|y| y.parse::<i64>().ok()));
        }
        _ => {
            data["providerImplementId"] = json!(e.id);
            // furrow's: the machine it is attached to, which links it to that machine's operations.
            data["providerMachineId"] = json!(e.machine.as_ref().map(|m| m.id.clone()));
        }
    }
    data
}

fn operator_data(org: &str, o: &OrgOperator) -> Value {
    json!({
        "provider": crate::onboarding::JOHN_DEERE,
        "providerOperatorId": o.id,
        "providerOrganizationId": org,
        "license": Value::Null,
        "updatedTime": o.date_modified,
        "status": if o.archived { "ARCHIVED" } else { "ACTIVE" },
    })
}

impl Run<'_> {
    /// An organization's assets of the configured kinds.
    pub(super) async fn assets(
        &mut self,
        org_id: &str,
        links: &BTreeMap<String, String>,
    ) -> Result<(), SyncError> {
        for (rel, kind) in self.asset_sync.collections() {
            let Some(uri) = links.get(rel) else {
                continue;
            };
            match kind {
                AssetKind::Operator => {
                    // Archived operators too, so that one archived on John Deere shows as such.
                    let uri = format!(
                        "{uri}{}recordFilter=ALL",
                        if uri.contains('?') { '&' } else { '?' }
                    );
                    let read = self.read::<OrgOperator>(&uri).await?;
                    self.apply_assets(org_id, kind, read, |o| {
                        let name = o.name.clone().unwrap_or_default();
                        (o.id.clone(), name, operator_data(org_id, o))
                    })
                    .await?;
                }
                _ => {
                    let read = self.read::<Equipment>(uri).await?;
                    self.apply_assets(org_id, kind, read, |e| {
                        let name = e.name.clone().unwrap_or_default();
                        (e.id.clone(), name, equipment_data(kind, org_id, e))
                    })
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Stores one collection of assets as read (a delta, or the whole list: then what is
    /// missing was deleted on John Deere), with Leaf's alerts.
    async fn apply_assets<T: HasLinks>(
        &mut self,
        org_id: &str,
        kind: AssetKind,
        read: Read<T>,
        describe: impl Fn(&T) -> (String, String, Value),
    ) -> Result<(), SyncError> {
        let user = self.cred.leaf_user_id.clone();
        let Read::Items(items, full, pending) = read else {
            return Ok(());
        };
        let mut seen = HashSet::new();
        for item in &items {
            let (provider_id, name, data) = describe(item);
            if item.is_deleted() {
                self.state
                    .store
                    .mark_asset_deleted(&user, kind, &provider_id)
                    .await?;
                continue;
            }
            seen.insert(provider_id.clone());
            let record =
                AssetRecord::synced(&user, kind, org_id, &provider_id, &name, data.to_string());
            let alerts = self.asset_alerts(kind, &record.id);
            self.state.store.upsert_asset(&record, &alerts).await?;
            self.counts.assets += 1;
        }
        if full {
            for gone in self.state.store.live_asset_ids(&user, kind, org_id).await? {
                if !seen.contains(&gone) {
                    self.state
                        .store
                        .mark_asset_deleted(&user, kind, &gone)
                        .await?;
                }
            }
        }
        self.commit(pending).await?;
        Ok(())
    }

    /// Leaf's alerts for a machine or an implement (Leaf has none for operators).
    fn asset_alerts(&self, kind: AssetKind, id: &str) -> ChangeAlerts {
        let user = &self.cred.leaf_user_id;
        let (created, updated, key) = match kind {
            AssetKind::Machine => ("machineCreated", "machineUpdated", "machineId"),
            AssetKind::Implement => ("implementCreated", "implementUpdated", "implementId"),
            AssetKind::Operator => return ChangeAlerts::default(),
        };
        let payload = json!({ key: id, "leafUserId": user });
        ChangeAlerts {
            created: self.alerts(created, payload.clone()),
            updated: self.alerts(updated, payload),
        }
    }
}
