//! Leaf's assets: machines, implements and operators.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{leaf_time_now, opt_string, stable_uuid, Change, Filters, Store, StoreResult};

/// The three kinds of asset Leaf serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    Machine,
    Implement,
    Operator,
}

impl AssetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Machine => "machine",
            Self::Implement => "implement",
            Self::Operator => "operator",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssetRecord {
    pub id: String,
    pub leaf_user_id: String,
    pub kind: String,
    /// `PROVIDER_POOLED` (synced from John Deere) or `USER_CREATED`.
    pub origin_type: String,
    /// John Deere's organization and id; `None` for a user's own machine.
    pub organization_id: Option<String>,
    pub provider_asset_id: Option<String>,
    pub name: String,
    /// The kind's own fields as Leaf shows them (`serialNumber`, `make`, `license`, ...), JSON.
    pub data: String,
    pub deleted_on_provider: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl AssetRecord {
    /// A synced asset: its id follows from the user and John Deere's id, so a sync run twice
    /// (or by two replicas) writes one row.
    pub fn synced(
        user: &str,
        kind: AssetKind,
        org: &str,
        provider_id: &str,
        name: &str,
        data: String,
    ) -> Self {
        let now = leaf_time_now();
        Self {
            id: stable_uuid(&[user, kind.as_str(), provider_id]),
            leaf_user_id: user.to_string(),
            kind: kind.as_str().to_string(),
            origin_type: "PROVIDER_POOLED".into(),
            organization_id: Some(org.to_string()),
            provider_asset_id: Some(provider_id.to_string()),
            name: name.to_string(),
            data,
            deleted_on_provider: false,
            created_at: now.clone(),
            updated_at: now,
        }
    }
}

fn asset_from(r: &AnyRow) -> StoreResult<AssetRecord> {
    Ok(AssetRecord {
        id: r.try_get("id")?,
        leaf_user_id: r.try_get("leaf_user_id")?,
        kind: r.try_get("kind")?,
        origin_type: r.try_get("origin_type")?,
        organization_id: opt_string(r, "organization_id")?,
        provider_asset_id: opt_string(r, "provider_asset_id")?,
        name: r.try_get("name")?,
        data: r.try_get("data")?,
        deleted_on_provider: r.try_get::<i64, _>("deleted_on_provider")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const COLUMNS: &str =
    "a.id, a.leaf_user_id, a.kind, a.origin_type, a.organization_id, a.provider_asset_id, \
    a.name, a.data, a.deleted_on_provider, a.created_at, a.updated_at";

impl Store {
    /// Inserts or updates an asset; the row changes only when its content did. `alerts` are
    /// queued in the same transaction, for the outcome.
    pub async fn upsert_asset(
        &self,
        asset: &AssetRecord,
        alerts: &super::ChangeAlerts,
    ) -> StoreResult<Change> {
        // Read before the transaction (see upsert_operation).
        let existed = self.exists("assets", &asset.id).await?;
        let hash = super::content_hash(&format!("{}\n{}", asset.name, asset.data));
        // Kept in columns too, to filter on.
        let data: serde_json::Value = serde_json::from_str(&asset.data).unwrap_or_default();
        let text = |key: &str| data.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let mut tx = self.begin_write().await?;
        let now = leaf_time_now();
        let r = sqlx::query(
            "INSERT INTO assets (id, leaf_user_id, kind, origin_type, organization_id, provider_asset_id, name, data, \
             data_hash, deleted_on_provider, created_at, updated_at, serial_number, vin) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10, $11, $12) \
             ON CONFLICT (id) DO UPDATE SET name = $7, data = $8, data_hash = $9, deleted_on_provider = 0, \
             organization_id = $5, updated_at = $10, serial_number = $11, vin = $12 \
             WHERE assets.data_hash <> $9 OR assets.deleted_on_provider <> 0",
        )
        .bind(&asset.id)
        .bind(&asset.leaf_user_id)
        .bind(&asset.kind)
        .bind(&asset.origin_type)
        .bind(asset.organization_id.clone())
        .bind(asset.provider_asset_id.clone())
        .bind(&asset.name)
        .bind(&asset.data)
        .bind(hash)
        .bind(now)
        .bind(text("serialNumber"))
        .bind(text("vin"))
        .execute(&mut *tx)
        .await?;
        let change = Change::of_upsert(existed, r.rows_affected());
        super::alerts::queue_in(&mut tx, alerts.for_change(change)).await?;
        tx.commit().await?;
        Ok(change)
    }

    /// Marks a synced asset gone from John Deere (no longer listed).
    pub async fn mark_asset_deleted(
        &self,
        user: &str,
        kind: AssetKind,
        provider_id: &str,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE assets SET deleted_on_provider = 1, updated_at = $1 WHERE id = $2 AND deleted_on_provider = 0",
        )
        .bind(leaf_time_now())
        .bind(stable_uuid(&[user, kind.as_str(), provider_id]))
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// John Deere's ids of a user's live synced assets of one kind in one organization.
    pub async fn live_asset_ids(
        &self,
        user: &str,
        kind: AssetKind,
        org: &str,
    ) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT provider_asset_id FROM assets WHERE leaf_user_id = $1 AND kind = $2 AND organization_id = $3 \
             AND deleted_on_provider = 0 AND provider_asset_id IS NOT NULL",
        )
        .bind(user)
        .bind(kind.as_str())
        .bind(org)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get("provider_asset_id")?))
            .collect()
    }

    /// A page of the owner's live assets of one kind (oldest first) and the total. `filters`
    /// are (column, value) pairs on the asset's own columns.
    pub async fn list_assets(
        &self,
        owner: &str,
        kind: AssetKind,
        filters: &[(&str, Option<&str>)],
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AssetRecord>, i64)> {
        let mut where_ = Filters::default()
            .eq("u.owner_id", Some(owner))
            .eq("a.kind", Some(kind.as_str()))
            .raw("a.deleted_on_provider = 0");
        for (column, value) in filters {
            where_ = where_.eq(&format!("a.{column}"), *value);
        }
        let from = "FROM assets a JOIN leaf_users u ON u.id = a.leaf_user_id";
        let (rows, total) = self
            .page(COLUMNS, from, &where_, "a.created_at, a.id", offset, limit)
            .await?;
        Ok((
            rows.iter().map(asset_from).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    /// One of the owner's assets, by furrow's id, within one user.
    pub async fn asset(
        &self,
        owner: &str,
        user: &str,
        kind: AssetKind,
        id: &str,
    ) -> StoreResult<Option<AssetRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM assets a JOIN leaf_users u ON u.id = a.leaf_user_id \
             WHERE a.id = $1 AND a.kind = $2 AND a.leaf_user_id = $3 AND u.owner_id = $4 AND a.deleted_on_provider = 0"
        ))
        .bind(id)
        .bind(kind.as_str())
        .bind(user)
        .bind(owner)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(asset_from).transpose()
    }

    /// Every live asset of one kind of a user (a grower's implements: a handful).
    pub async fn assets_of_user(
        &self,
        user: &str,
        kind: AssetKind,
    ) -> StoreResult<Vec<AssetRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM assets a WHERE a.leaf_user_id = $1 AND a.kind = $2 AND a.deleted_on_provider = 0 \
             ORDER BY a.created_at, a.id"
        ))
        .bind(user)
        .bind(kind.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(asset_from).collect()
    }

    /// furrow's ids of a user's live synced assets of one kind with these John Deere ids.
    pub async fn asset_ids_by_provider_ids(
        &self,
        user: &str,
        kind: AssetKind,
        provider_ids: &[String],
    ) -> StoreResult<Vec<String>> {
        let mut ids = Vec::new();
        for provider_id in provider_ids {
            let id = stable_uuid(&[user, kind.as_str(), provider_id]);
            let live = sqlx::query(
                "SELECT 1 AS one FROM assets WHERE id = $1 AND deleted_on_provider = 0",
            )
            .bind(&id)
            .fetch_optional(self.pool())
            .await?
            .is_some();
            if live && !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Deletes a user's own asset (synced ones are John Deere's); with its alerts.
    pub async fn delete_user_asset(
        &self,
        id: &str,
        alerts: &[(String, String)],
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM assets WHERE id = $1 AND origin_type = 'USER_CREATED'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 1 {
            super::alerts::queue_in(&mut tx, alerts).await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }
}
