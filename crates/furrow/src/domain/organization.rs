//! Organization selection rules (Leaf's sync management).

use deere::models::{HasLinks, OrgConnection, Organization};

use crate::store::OrganizationRecord;

/// Leaf's organization status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgStatus {
    /// Everything available is synced.
    Selected,
    /// Only the organization record itself.
    Preview,
    /// Not connected to the app, or lacking permissions: fix it through `managementUri`.
    Blocked,
}

impl OrgStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Selected => "SELECTED",
            Self::Preview => "PREVIEW",
            Self::Blocked => "BLOCKED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "SELECTED" => Some(Self::Selected),
            "PREVIEW" => Some(Self::Preview),
            "BLOCKED" => Some(Self::Blocked),
            _ => None,
        }
    }
}

/// Which of a credential's organizations its sync reads: never BLOCKED ones; with Leaf's
/// `organizationDataSync: SELECTED_ONLY` only SELECTED ones; partner organizations only with
/// `syncPartnerData`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrgSelection {
    pub selected_only: bool,
    pub partners: bool,
}

impl OrgSelection {
    pub fn syncs(&self, org: &OrganizationRecord) -> bool {
        org.status != OrgStatus::Blocked.as_str()
            && (!self.selected_only || org.status == OrgStatus::Selected.as_str())
            && (self.partners || !org.partner)
    }
}

/// Data link rels kept for the sync.
const DATA_RELS: [&str; 8] = [
    "clients",
    "farms",
    "fields",
    "boundaries",
    "files",
    "machines",
    "implements",
    "operators",
];

/// Merges John Deere's current organization list with what was stored: new connected orgs start
/// as PREVIEW, unconnected ones are BLOCKED, a BLOCKED org that got connected becomes PREVIEW,
/// SELECTED and PREVIEW are kept while the org stays connected.
pub fn merge(previous: &[OrganizationRecord], fresh: &[Organization]) -> Vec<OrganizationRecord> {
    fresh
        .iter()
        .map(|org| {
            let before = previous.iter().find(|p| p.provider_org_id == org.id);
            let (connected, management_uri) = match org.connection() {
                OrgConnection::Connected { manage_uri } => (true, Some(manage_uri)),
                OrgConnection::NotConnected { connect_uri } => (false, Some(connect_uri)),
                OrgConnection::Unknown => (false, None),
            };
            let status = match (connected, before.and_then(|b| OrgStatus::parse(&b.status))) {
                (false, _) => OrgStatus::Blocked,
                (true, Some(OrgStatus::Selected)) => OrgStatus::Selected,
                (true, _) => OrgStatus::Preview,
            };
            let links: serde_json::Map<String, serde_json::Value> = DATA_RELS
                .iter()
                .filter_map(|rel| {
                    org.link(rel)
                        .map(|uri| (rel.to_string(), serde_json::Value::String(uri.to_string())))
                })
                .collect();
            OrganizationRecord {
                provider_org_id: org.id.clone(),
                name: org.name.clone(),
                status: status.as_str().into(),
                connected,
                partner: !org.member,
                management_uri,
                links: serde_json::Value::Object(links).to_string(),
                sync_error: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(id: &str, rel: &str) -> Organization {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": format!("Org {id}"), "member": true,
            "links": [{"rel": rel, "uri": format!("https://connections.example/{rel}/{id}")},
                      {"rel": "fields", "uri": format!("https://api.example/organizations/{id}/fields")}]
        }))
        .unwrap()
    }

    #[test]
    fn statuses_follow_connections_and_keep_choices() {
        let first = merge(
            &[],
            &[org("1", "manage_connections"), org("2", "connections")],
        );
        assert_eq!(first[0].status, "PREVIEW");
        assert_eq!(first[1].status, "BLOCKED");
        assert!(first[0].links.contains("/organizations/1/fields"));

        let mut chosen = first.clone();
        chosen[0].status = "SELECTED".into();
        let second = merge(
            &chosen,
            &[
                org("1", "manage_connections"),
                org("2", "manage_connections"),
            ],
        );
        assert_eq!(second[0].status, "SELECTED", "a choice survives a re-sync");
        assert_eq!(
            second[1].status, "PREVIEW",
            "a BLOCKED org that got connected becomes PREVIEW"
        );

        let third = merge(&second, &[org("1", "connections")]);
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].status, "BLOCKED", "a withdrawn org is BLOCKED");
    }
}
