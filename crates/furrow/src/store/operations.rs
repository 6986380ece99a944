//! Synced field operations.

use sqlx::any::AnyRow;
use sqlx::Row;

use std::collections::HashSet;

use super::{leaf_time_now, opt_string, Change, Filters, Store, StoreResult};

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

/// What reads of field operations change, written in one transaction (see
/// `Store::write_operations`).
#[derive(Debug, Default)]
pub struct OperationsWrite {
    /// Operations read. A new one is stored under its record's id; one stored before keeps
    /// the id it has.
    pub upserts: Vec<OperationRecord>,
    /// John Deere ids of operations John Deere lists as deleted.
    pub deleted: Vec<String>,
    /// Fields whose operations were read whole: `(field id, the John Deere ids listed)`; the
    /// field's other live operations were deleted on John Deere.
    pub complete: Vec<(String, HashSet<String>)>,
    /// `(collection url, signature)` of the reads, stored with what they read.
    pub signatures: Vec<(String, String)>,
}

/// What `Store::write_operations` did.
#[derive(Debug, Default)]
pub struct OperationsWritten {
    /// Each upsert's outcome, in order.
    pub changes: Vec<Change>,
    /// Operations newly marked deleted on John Deere.
    pub deleted: usize,
}

pub(super) const COLUMNS: &str = "o.id, o.leaf_user_id, o.field_id, o.provider_operation_id, o.operation_type, o.crop_season, \
    o.start_time, o.end_time, o.start_ms, o.end_ms, o.data, o.data_hash, o.deleted_on_provider, o.provider_modified_ms, o.created_at, o.updated_at";

impl Store {
    /// Writes what reads of the grower `user`'s field operations changed, in one transaction:
    /// each operation is inserted or updated (rows change only when the content did, and never
    /// back to an older version: a slow poll finishing after a webhook's fresher read), with
    /// the alerts for its outcome (`alerts` of the stored id); a new or changed operation's
    /// machine data is queued for processing by `credential_id` (whose token fetches it; a new
    /// one's job is made later, see `Store::make_machine_data_jobs`); deletions are marked; the
    /// signatures the operations were read under are stored last. Returns each upsert's
    /// outcome, in order.
    pub async fn write_operations(
        &self,
        user: &str,
        credential_id: &str,
        write: &OperationsWrite,
        alerts: impl Fn(&str) -> super::ChangeAlerts,
    ) -> StoreResult<OperationsWritten> {
        let mut tx = self.begin_write().await?;
        let provider_ids: Vec<&str> = write
            .upserts
            .iter()
            .map(|op| op.provider_operation_id.as_str())
            .collect();
        let stored = stored_ids_in(&mut tx, user, &provider_ids).await?;
        let ids: Vec<&str> = write
            .upserts
            .iter()
            .map(|op| {
                stored
                    .get(&op.provider_operation_id)
                    .map_or(op.id.as_str(), String::as_str)
            })
            .collect();
        let latest: Vec<(&str, &OperationRecord)> = super::last_of_each(&ids)
            .into_iter()
            .map(|i| (ids[i], &write.upserts[i]))
            .collect();
        let mut changed = HashSet::new();
        for chunk in latest.chunks(super::MAX_BOUND / UPSERT_WIDTH) {
            changed.extend(upsert_in(&mut tx, chunk).await?);
        }
        let changes: Vec<Change> = write
            .upserts
            .iter()
            .zip(&ids)
            .map(|(op, id)| {
                let existed = stored.contains_key(&op.provider_operation_id);
                Change::of_upsert(existed, u64::from(changed.contains(*id)))
            })
            .collect();
        let alerts: Vec<(super::ChangeAlerts, Change)> = ids
            .iter()
            .zip(&changes)
            .filter(|(_, change)| **change != Change::Unchanged)
            .map(|(id, change)| (alerts(id), *change))
            .collect();
        let deliveries = alerts
            .iter()
            .flat_map(|(alerts, change)| alerts.for_change(*change));
        super::alerts::queue_in(&mut tx, deliveries).await?;
        // A new operation's processing is queued without its job (made when the machine-data
        // lane has room); a changed one's job is woken, as it may be running.
        let (mut new, mut changed_ops) = (Vec::new(), Vec::new());
        for (id, change) in ids.iter().zip(&changes) {
            match change {
                Change::Created => new.push((*id, "queued: new operation")),
                Change::Updated => {
                    changed_ops.push((*id, "queued: the operation changed on John Deere"))
                }
                Change::Unchanged => {}
            }
        }
        super::operation_data::queue_new_in(&mut tx, user, &new).await?;
        super::operation_data::queue_many_in(&mut tx, user, credential_id, &changed_ops).await?;
        let mut deleted = 0;
        for provider_id in &write.deleted {
            deleted += usize::from(mark_deleted_in(&mut tx, user, provider_id).await?);
        }
        let complete: Vec<&str> = write.complete.iter().map(|(f, _)| f.as_str()).collect();
        for (field_id, provider_id) in live_in(&mut tx, &complete).await? {
            let listed = write
                .complete
                .iter()
                .any(|(f, ids)| *f == field_id && ids.contains(&provider_id));
            if !listed {
                deleted += usize::from(mark_deleted_in(&mut tx, user, &provider_id).await?);
            }
        }
        super::fields::put_signatures_in(&mut tx, credential_id, &write.signatures).await?;
        tx.commit().await?;
        Ok(OperationsWritten { changes, deleted })
    }

    pub async fn mark_operation_deleted(
        &self,
        user: &str,
        provider_operation_id: &str,
    ) -> StoreResult<bool> {
        let mut conn = self.writer().await?;
        mark_deleted_in(&mut conn, user, provider_operation_id).await
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

/// Values bound per operation in a multi-row upsert (the time twice: each placeholder once).
const UPSERT_WIDTH: usize = 15;

/// Upserts `(id, operation)` pairs in one statement (the id is a new row's; a stored row keeps
/// its own); returns the ids of those inserted or changed.
async fn upsert_in(
    conn: &mut sqlx::AnyConnection,
    ops: &[(&str, &OperationRecord)],
) -> StoreResult<Vec<String>> {
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    let sql = super::positional(conn, &format!(
        "INSERT INTO operations (id, leaf_user_id, field_id, provider_operation_id, operation_type, crop_season, \
         start_time, end_time, start_ms, end_ms, data, data_hash, provider_modified_ms, created_at, \
         deleted_on_provider, updated_at) \
         VALUES {} \
         ON CONFLICT (leaf_user_id, provider_operation_id) DO UPDATE SET field_id = excluded.field_id, operation_type = excluded.operation_type, \
         crop_season = excluded.crop_season, start_time = excluded.start_time, end_time = excluded.end_time, \
         start_ms = excluded.start_ms, end_ms = excluded.end_ms, data = excluded.data, data_hash = excluded.data_hash, \
         deleted_on_provider = 0, provider_modified_ms = excluded.provider_modified_ms, updated_at = excluded.updated_at \
         WHERE (operations.data_hash <> excluded.data_hash OR operations.deleted_on_provider <> 0 \
                OR operations.field_id <> excluded.field_id) \
         AND (operations.provider_modified_ms IS NULL \
              OR operations.provider_modified_ms <= COALESCE(excluded.provider_modified_ms, operations.provider_modified_ms)) \
         RETURNING id",
        // Not deleted; updated when created.
        super::value_rows(ops.len(), UPSERT_WIDTH, |p| format!(
            "{}, 0, {}",
            p[..UPSERT_WIDTH - 1].join(", "),
            p[UPSERT_WIDTH - 1]
        ))
    ));
    let now = leaf_time_now();
    let mut query = sqlx::query(&sql);
    for (id, op) in ops {
        query = query
            .bind(*id)
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
            .bind(now.clone())
            .bind(now.clone());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

async fn mark_deleted_in(
    conn: &mut sqlx::AnyConnection,
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
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The ids of the grower's stored operations among these John Deere ids, by John Deere id.
async fn stored_ids_in(
    conn: &mut sqlx::AnyConnection,
    user: &str,
    provider_ids: &[&str],
) -> StoreResult<std::collections::HashMap<String, String>> {
    let sql = "SELECT v.column1 AS provider_operation_id, (SELECT o.id FROM operations o \
               WHERE o.leaf_user_id = {after} AND o.provider_operation_id = v.column1) AS id \
               FROM (VALUES {keys}) AS v";
    let mut stored = std::collections::HashMap::new();
    for r in super::fetch_each(conn, sql, provider_ids, user).await? {
        if let Some(id) = r.try_get::<Option<String>, _>("id")? {
            stored.insert(r.try_get("provider_operation_id")?, id);
        }
    }
    Ok(stored)
}

/// The live operations of these fields: `(field id, John Deere id)`.
async fn live_in(
    conn: &mut sqlx::AnyConnection,
    field_ids: &[&str],
) -> StoreResult<Vec<(String, String)>> {
    let sql = "SELECT field_id, provider_operation_id FROM operations \
               WHERE deleted_on_provider = 0 AND field_id IN ({list})";
    super::fetch_in(conn, sql, &[], field_ids)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("field_id")?, r.try_get("provider_operation_id")?)))
        .collect()
}
