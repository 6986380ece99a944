//! John Deere organizations of a credential and their sync-management status.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{leaf_time_now, opt_string, Store, StoreResult};

#[derive(Debug, Clone, PartialEq)]
pub struct OrganizationRecord {
    pub provider_org_id: String,
    pub name: String,
    /// `SELECTED`, `PREVIEW` or `BLOCKED`.
    pub status: String,
    pub connected: bool,
    /// Reached through a partnership (John Deere's `member: false`), not as the org's staff.
    pub partner: bool,
    pub management_uri: Option<String>,
    /// The org's data links (rel → uri) as John Deere sent them, JSON.
    pub links: String,
    /// Why the last sync of this organization failed (kept by list updates).
    pub sync_error: Option<String>,
}

fn org_from_row(r: &AnyRow) -> StoreResult<OrganizationRecord> {
    Ok(OrganizationRecord {
        provider_org_id: r.try_get("provider_org_id")?,
        name: r.try_get("name")?,
        status: r.try_get("status")?,
        connected: r.try_get::<i64, _>("connected")? != 0,
        partner: r.try_get::<i64, _>("partner")? != 0,
        management_uri: opt_string(r, "management_uri")?,
        links: r.try_get("links")?,
        sync_error: opt_string(r, "sync_error")?,
    })
}

const ORG_COLUMNS: &str =
    "provider_org_id, name, status, connected, partner, management_uri, links, sync_error";

impl Store {
    /// Replaces the credential's organization list with `orgs` (in John Deere's order) in one
    /// transaction, with the list's change signature (its URL and signature) if given.
    pub async fn replace_organizations(
        &self,
        credential_id: &str,
        orgs: &[OrganizationRecord],
        signature: Option<&(String, String)>,
    ) -> StoreResult<()> {
        // A manual re-sync and a sync job may write the same list at once: upserts in John
        // Deere's order (no duplicate-key failures), retried if they still collide.
        super::retry_conflicts(|| self.replace_organizations_once(credential_id, orgs, signature))
            .await
    }

    /// An existing organization's status follows the selection rules against the row as it is
    /// now, not as the caller read it: a sync that read the list before a user's PATCH never
    /// undoes the user's choice (connected: SELECTED and PREVIEW stay, BLOCKED becomes PREVIEW;
    /// unconnected: BLOCKED).
    async fn replace_organizations_once(
        &self,
        credential_id: &str,
        orgs: &[OrganizationRecord],
        signature: Option<&(String, String)>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let now = leaf_time_now();
        for (position, org) in orgs.iter().enumerate() {
            sqlx::query(
                "INSERT INTO jd_organizations (credential_id, provider_org_id, name, status, connected, \
                 management_uri, links, position, updated_at, partner) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (credential_id, provider_org_id) DO UPDATE SET name = $3, \
                 status = CASE WHEN $5 = 0 THEN 'BLOCKED' WHEN jd_organizations.status = 'BLOCKED' THEN 'PREVIEW' \
                               ELSE jd_organizations.status END, \
                 connected = $5, management_uri = $6, links = $7, position = $8, updated_at = $9, \
                 partner = $10",
            )
            .bind(credential_id)
            .bind(&org.provider_org_id)
            .bind(&org.name)
            .bind(&org.status)
            .bind(i64::from(org.connected))
            .bind(org.management_uri.clone())
            .bind(&org.links)
            .bind(position as i64)
            .bind(now.clone())
            .bind(i64::from(org.partner))
            .execute(&mut *tx)
            .await?;
        }
        // Organizations John Deere no longer lists.
        let keep: Vec<String> = orgs.iter().map(|o| o.provider_org_id.clone()).collect();
        let existing =
            sqlx::query("SELECT provider_org_id FROM jd_organizations WHERE credential_id = $1")
                .bind(credential_id)
                .fetch_all(&mut *tx)
                .await?;
        for row in existing {
            let id: String = row.try_get("provider_org_id")?;
            if !keep.contains(&id) {
                sqlx::query("DELETE FROM jd_organizations WHERE credential_id = $1 AND provider_org_id = $2")
                    .bind(credential_id)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(signature) = signature {
            super::fields::put_signatures_in(
                &mut tx,
                credential_id,
                std::slice::from_ref(signature),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn organizations(&self, credential_id: &str) -> StoreResult<Vec<OrganizationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ORG_COLUMNS} FROM jd_organizations WHERE credential_id = $1 ORDER BY position"
        ))
        .bind(credential_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(org_from_row).collect()
    }

    /// Records (or, with `None`, clears) why an organization's sync failed.
    pub async fn set_organization_sync_error(
        &self,
        credential_id: &str,
        org_id: &str,
        error: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE jd_organizations SET sync_error = $1 WHERE credential_id = $2 AND provider_org_id = $3",
        )
        .bind(error.map(str::to_string))
        .bind(credential_id)
        .bind(org_id)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    /// Sets an org's status when it currently has `from`; false when it does not.
    pub async fn set_organization_status(
        &self,
        credential_id: &str,
        org_id: &str,
        from: &str,
        to: &str,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE jd_organizations SET status = $1, updated_at = $2 \
             WHERE credential_id = $3 AND provider_org_id = $4 AND status = $5",
        )
        .bind(to)
        .bind(leaf_time_now())
        .bind(credential_id)
        .bind(org_id)
        .bind(from)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
