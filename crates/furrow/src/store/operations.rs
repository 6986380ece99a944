//! Synced field operations.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{leaf_time_now, opt_string, Filters, Store, StoreResult};

#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    pub id: String,
    pub leaf_user_id: String,
    pub field_id: String,
    pub provider_operation_id: String,
    /// Leaf's type: `planted`, `applied`, `harvested`, `tillage` (or John Deere's word).
    pub operation_type: String,
    pub crop_season: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Crops, varieties, products, machines, operators and measurement totals, JSON.
    pub data: String,
    pub data_hash: String,
    pub deleted_on_provider: bool,
    /// John Deere's `modifiedTime` (ms), when given.
    pub provider_modified_ms: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default)]
pub struct OperationFilter {
    pub leaf_user_id: Option<String>,
    pub field_id: Option<String>,
    pub operation_type: Option<String>,
    /// Operations ending at or after this time (ms).
    pub start_ms: Option<i64>,
    /// Operations starting at or before this time (ms).
    pub end_ms: Option<i64>,
}

pub(super) fn operation_from(r: &AnyRow) -> StoreResult<OperationRecord> {
    Ok(OperationRecord {
        id: r.try_get("id")?,
        leaf_user_id: r.try_get("leaf_user_id")?,
        field_id: r.try_get("field_id")?,
        provider_operation_id: r.try_get("provider_operation_id")?,
        operation_type: r.try_get("operation_type")?,
        crop_season: opt_string(r, "crop_season")?,
        start_time: opt_string(r, "start_time")?,
        end_time: opt_string(r, "end_time")?,
        start_ms: r.try_get("start_ms")?,
        end_ms: r.try_get("end_ms")?,
        data: r.try_get("data")?,
        data_hash: r.try_get("data_hash")?,
        deleted_on_provider: r.try_get::<i64, _>("deleted_on_provider")? != 0,
        provider_modified_ms: r.try_get("provider_modified_ms")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub(super) const COLUMNS: &str = "o.id, o.leaf_user_id, o.field_id, o.provider_operation_id, o.operation_type, o.crop_season, \
    o.start_time, o.end_time, o.start_ms, o.end_ms, o.data, o.data_hash, o.deleted_on_provider, o.provider_modified_ms, o.created_at, o.updated_at";

impl Store {
    /// Inserts or updates an operation; rows change only when the content did, and never back
    /// to an older version (a slow poll finishing after a webhook's fresher read).
    /// `alerts` are queued in the same transaction, for the outcome.
    /// A new or changed operation's machine data is queued for processing by `process_for`
    /// (the credential whose token fetches it), in the same transaction.
    pub async fn upsert_operation(
        &self,
        op: &OperationRecord,
        alerts: &super::ChangeAlerts,
        process_for: Option<&str>,
    ) -> StoreResult<super::Change> {
        // Read before the transaction: on SQLite a transaction that reads first cannot take the
        // write lock once another connection wrote (SQLITE_BUSY without waiting).
        let existed = self.exists("operations", &op.id).await?;
        let mut tx = self.pool().begin().await?;
        let now = leaf_time_now();
        let r = sqlx::query(
            "INSERT INTO operations (id, leaf_user_id, field_id, provider_operation_id, operation_type, crop_season, \
             start_time, end_time, start_ms, end_ms, data, data_hash, deleted_on_provider, provider_modified_ms, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13, $14, $14) \
             ON CONFLICT (id) DO UPDATE SET field_id = $3, operation_type = $5, crop_season = $6, start_time = $7, \
             end_time = $8, start_ms = $9, end_ms = $10, data = $11, data_hash = $12, deleted_on_provider = 0, \
             provider_modified_ms = $13, updated_at = $14 \
             WHERE (operations.data_hash <> $12 OR operations.deleted_on_provider <> 0 OR operations.field_id <> $3) \
             AND (operations.provider_modified_ms IS NULL \
                  OR operations.provider_modified_ms <= COALESCE($13, operations.provider_modified_ms))",
        )
        .bind(&op.id)
        .bind(&op.leaf_user_id)
        .bind(&op.field_id)
        .bind(&op.provider_operation_id)
        .bind(&op.operation_type)
        .bind(op.crop_season.clone())
        .bind(op.start_time.clone())
        .bind(op.end_time.clone())
        .bind(op.start_ms)
        .bind(op.end_ms)
        .bind(&op.data)
        .bind(&op.data_hash)
        .bind(op.provider_modified_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let change = if existed {
            super::Change::from_rows(r.rows_affected())
        } else {
            super::Change::Created
        };
        super::alerts::queue_in(&mut tx, alerts.for_change(change)).await?;
        if let (Some(credential_id), super::Change::Created | super::Change::Updated) =
            (process_for, change)
        {
            let reason = if change == super::Change::Created {
                "queued: new operation"
            } else {
                "queued: the operation changed on John Deere"
            };
            super::operation_data::queue_in(
                &mut tx,
                &op.id,
                &op.leaf_user_id,
                credential_id,
                reason,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(change)
    }

    pub async fn mark_operation_deleted(
        &self,
        user: &str,
        provider_operation_id: &str,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE operations SET deleted_on_provider = 1, updated_at = $1 \
             WHERE leaf_user_id = $2 AND provider_operation_id = $3 AND deleted_on_provider = 0",
        )
        .bind(leaf_time_now())
        .bind(user)
        .bind(provider_operation_id)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn live_operation_ids(&self, field_id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT provider_operation_id FROM operations WHERE field_id = $1 AND deleted_on_provider = 0")
            .bind(field_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get("provider_operation_id")?))
            .collect()
    }

    /// A page of the owner's live operations (newest first) and the total.
    pub async fn list_operations(
        &self,
        owner: &str,
        filter: &OperationFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<OperationRecord>, i64)> {
        let mut filters = Filters::default()
            .eq("u.owner_id", Some(owner))
            .raw("o.deleted_on_provider = 0")
            .eq("o.leaf_user_id", filter.leaf_user_id.as_deref())
            .eq("o.field_id", filter.field_id.as_deref())
            .eq("o.operation_type", filter.operation_type.as_deref());
        if let Some(start) = filter.start_ms {
            filters = filters.raw(format!("o.end_ms >= {start}"));
        }
        if let Some(end) = filter.end_ms {
            filters = filters.raw(format!("o.start_ms <= {end}"));
        }
        let from = "FROM operations o JOIN leaf_users u ON u.id = o.leaf_user_id";
        let (rows, total) = self
            .page(
                COLUMNS,
                from,
                &filters,
                "o.start_ms DESC, o.id",
                offset,
                limit,
            )
            .await?;
        Ok((
            rows.iter()
                .map(operation_from)
                .collect::<StoreResult<_>>()?,
            total,
        ))
    }

    pub async fn operation(&self, owner: &str, id: &str) -> StoreResult<Option<OperationRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM operations o JOIN leaf_users u ON u.id = o.leaf_user_id WHERE o.id = $1 AND u.owner_id = $2"
        ))
        .bind(id)
        .bind(owner)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(operation_from).transpose()
    }
}
