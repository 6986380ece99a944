//! The processing of operations' machine data: its state per operation, the durable job that
//! does it (`opdata:{operation id}` in the jobs table), and what it produced.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{leaf_time_now, now_ms, opt_string, Store, StoreResult};

/// Job kinds of machine-data processing start with this; the operation's id follows.
pub const OPERATION_DATA_JOB_PREFIX: &str = "opdata:";

/// Events kept per operation.
const EVENTS_KEPT: usize = 20;

#[derive(Debug, Clone, PartialEq)]
pub struct OperationDataRecord {
    pub operation_id: String,
    pub leaf_user_id: String,
    /// `QUEUED`, `PROCESSING`, `PROCESSED`, `FAILED`, `NO_DATA`.
    pub status: String,
    pub attempts: i64,
    pub message: Option<String>,
    /// JSON array of `{time, message}`.
    pub events: String,
    pub standard_key: Option<String>,
    pub filtered_key: Option<String>,
    pub summary: Option<String>,
    pub units: Option<String>,
    pub images: Option<String>,
    pub coverage: Option<f64>,
    pub points: Option<i64>,
    pub filtered_points: Option<i64>,
    pub removed: Option<String>,
    pub processed_at: Option<String>,
    pub updated_at: String,
}

/// What a finished processing produced.
#[derive(Debug, Clone)]
pub struct ProcessedData {
    pub standard_key: String,
    pub filtered_key: Option<String>,
    pub summary: String,
    pub units: String,
    pub images: String,
    pub coverage: Option<f64>,
    pub points: i64,
    pub filtered_points: Option<i64>,
    pub removed: String,
}

#[derive(Debug, Clone, Default)]
pub struct FieldNames {
    pub field: Option<String>,
    pub farm: Option<String>,
    pub grower: Option<String>,
}

fn record_from(r: &AnyRow) -> StoreResult<OperationDataRecord> {
    Ok(OperationDataRecord {
        operation_id: r.try_get("operation_id")?,
        leaf_user_id: r.try_get("leaf_user_id")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        message: opt_string(r, "message")?,
        events: r.try_get("events")?,
        standard_key: opt_string(r, "standard_key")?,
        filtered_key: opt_string(r, "filtered_key")?,
        summary: opt_string(r, "summary")?,
        units: opt_string(r, "units")?,
        images: opt_string(r, "images")?,
        coverage: r.try_get("coverage")?,
        points: r.try_get("points")?,
        filtered_points: r.try_get("filtered_points")?,
        removed: opt_string(r, "removed")?,
        processed_at: opt_string(r, "processed_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn with_event(events: &str, message: &str) -> String {
    let mut list: Vec<serde_json::Value> = serde_json::from_str(events).unwrap_or_default();
    list.push(serde_json::json!({"time": leaf_time_now(), "message": message}));
    let skip = list.len().saturating_sub(EVENTS_KEPT);
    serde_json::Value::Array(list.split_off(skip)).to_string()
}

/// Queues (or re-queues) an operation's processing on `conn`, inside the caller's transaction:
/// a job due now and the state `QUEUED`. What an earlier processing produced stays readable
/// until the new one replaces it.
pub(crate) async fn queue_in(
    conn: &mut sqlx::AnyConnection,
    operation_id: &str,
    leaf_user_id: &str,
    credential_id: &str,
    reason: &str,
) -> StoreResult<()> {
    queue_many_in(conn, leaf_user_id, credential_id, &[(operation_id, reason)]).await
}

/// `queue_in` for several of one user's operations, `(operation id, reason)`, in three
/// statements per few hundred operations.
pub(crate) async fn queue_many_in(
    conn: &mut sqlx::AnyConnection,
    leaf_user_id: &str,
    credential_id: &str,
    operations: &[(&str, &str)],
) -> StoreResult<()> {
    // One row per operation: PostgreSQL refuses to upsert a row twice in one statement.
    let mut seen = std::collections::HashSet::new();
    let operations: Vec<(&str, &str)> = operations
        .iter()
        .copied()
        .filter(|(id, _)| seen.insert(*id))
        .collect();
    let request_id = crate::request_context::current();
    let (now, time) = (now_ms(), leaf_time_now());
    for chunk in operations.chunks(super::MAX_BOUND / 5) {
        let sql = super::positional(conn, &format!(
            "INSERT INTO jobs (id, kind, credential_id, run_at_ms, attempts, request_id, machine_data) VALUES {} \
             ON CONFLICT (kind, credential_id) DO UPDATE SET run_at_ms = excluded.run_at_ms, attempts = 0, \
             woken = 1, request_id = excluded.request_id",
            super::value_rows(chunk.len(), 5, |p| format!(
                "{}, {}, {}, {}, 0, {}, 1",
                p[0], p[1], p[2], p[3], p[4]
            ))
        ));
        let mut jobs = sqlx::query(&sql);
        for (operation_id, _) in chunk {
            jobs = jobs
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(format!("{OPERATION_DATA_JOB_PREFIX}{operation_id}"))
                .bind(credential_id)
                .bind(now)
                .bind(request_id.clone());
        }
        jobs.execute(&mut *conn).await?;

        let ids: Vec<&str> = chunk.iter().map(|(id, _)| *id).collect();
        let sql = "SELECT operation_id, events FROM operation_data WHERE operation_id IN ({list})";
        let mut events = std::collections::HashMap::new();
        for row in super::fetch_in(conn, sql, &[], &ids).await? {
            events.insert(
                row.try_get::<String, _>("operation_id")?,
                row.try_get::<String, _>("events")?,
            );
        }
        let sql = super::positional(conn, &format!(
            "INSERT INTO operation_data (operation_id, leaf_user_id, status, attempts, events, updated_at) VALUES {} \
             ON CONFLICT (operation_id) DO UPDATE SET status = 'QUEUED', attempts = 0, message = NULL, \
             events = excluded.events, updated_at = excluded.updated_at",
            super::value_rows(chunk.len(), 4, |p| format!(
                "{}, {}, 'QUEUED', 0, {}, {}",
                p[0], p[1], p[2], p[3]
            ))
        ));
        let mut states = sqlx::query(&sql);
        for (operation_id, reason) in chunk {
            let before = events.get(*operation_id).map_or("[]", String::as_str);
            states = states
                .bind(*operation_id)
                .bind(leaf_user_id)
                .bind(with_event(before, reason))
                .bind(time.clone());
        }
        states.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A finished job goes, unless the operation changed again while it ran (woken): then it is
/// released to run once more.
async fn release_in(conn: &mut sqlx::AnyConnection, job_id: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM jobs WHERE id = $1 AND woken = 0")
        .bind(job_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_until_ms = NULL, woken = 0 WHERE id = $1",
    )
    .bind(job_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    pub async fn operation_data(
        &self,
        operation_id: &str,
    ) -> StoreResult<Option<OperationDataRecord>> {
        let row = sqlx::query("SELECT * FROM operation_data WHERE operation_id = $1")
            .bind(operation_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(record_from).transpose()
    }

    /// Queues an operation's processing again (Leaf's reprocess).
    pub async fn queue_operation_data(
        &self,
        operation_id: &str,
        leaf_user_id: &str,
        credential_id: &str,
        reason: &str,
    ) -> StoreResult<()> {
        super::retry_conflicts(|| async {
            let mut tx = self.begin_write().await?;
            queue_in(&mut tx, operation_id, leaf_user_id, credential_id, reason).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Records a step of the processing: its state, a message, and an event.
    pub async fn note_operation_data(
        &self,
        operation_id: &str,
        status: &str,
        attempts: i64,
        message: &str,
    ) -> StoreResult<()> {
        let Some(current) = self.operation_data(operation_id).await? else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE operation_data SET status = $1, attempts = $2, message = $3, events = $4, updated_at = $5 \
             WHERE operation_id = $6",
        )
        .bind(status)
        .bind(attempts)
        .bind(message)
        .bind(with_event(&current.events, message))
        .bind(leaf_time_now())
        .bind(operation_id)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    /// Stores a finished processing, removes its job and queues `alerts`, in one transaction.
    pub async fn finish_operation_data(
        &self,
        operation_id: &str,
        job_id: &str,
        data: &ProcessedData,
        alerts: &super::Deliveries,
    ) -> StoreResult<()> {
        let current = self.operation_data(operation_id).await?;
        let events = with_event(
            current.as_ref().map_or("[]", |c| c.events.as_str()),
            &format!("processed: {} points", data.points),
        );
        let mut tx = self.begin_write().await?;
        release_in(&mut tx, job_id).await?;
        let now = leaf_time_now();
        sqlx::query(
            "UPDATE operation_data SET status = 'PROCESSED', message = NULL, events = $1, standard_key = $2, \
             filtered_key = $3, summary = $4, units = $5, images = $6, coverage = $7, points = $8, \
             filtered_points = $9, removed = $10, processed_at = $11, updated_at = $11 WHERE operation_id = $12",
        )
        .bind(events)
        .bind(&data.standard_key)
        .bind(data.filtered_key.clone())
        .bind(&data.summary)
        .bind(&data.units)
        .bind(&data.images)
        .bind(data.coverage)
        .bind(data.points)
        .bind(data.filtered_points)
        .bind(&data.removed)
        .bind(now)
        .bind(operation_id)
        .execute(&mut *tx)
        .await?;
        super::alerts::queue_in(&mut tx, alerts).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends an operation's processing without data (`NO_DATA` or `FAILED`) and removes its job.
    pub async fn end_operation_data(
        &self,
        operation_id: &str,
        job_id: &str,
        status: &str,
        attempts: i64,
        message: &str,
    ) -> StoreResult<()> {
        self.note_operation_data(operation_id, status, attempts, message)
            .await?;
        let mut tx = self.begin_write().await?;
        release_in(&mut tx, job_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The names of a field, its farm and grower (John Deere's client).
    pub async fn field_names(&self, field_id: &str) -> StoreResult<FieldNames> {
        let row = sqlx::query(
            "SELECT f.name AS field, fa.name AS farm, g.name AS grower FROM fields f \
             LEFT JOIN farms fa ON fa.leaf_user_id = f.leaf_user_id AND fa.provider_farm_id = f.provider_farm_id \
             LEFT JOIN growers g ON g.leaf_user_id = f.leaf_user_id AND g.provider_grower_id = fa.provider_grower_id \
             WHERE f.id = $1",
        )
        .bind(field_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some(r) => FieldNames {
                field: opt_string(&r, "field")?,
                farm: opt_string(&r, "farm")?,
                grower: opt_string(&r, "grower")?,
            },
            None => FieldNames::default(),
        })
    }

    /// Any operation by id, whoever owns it (the engine's read).
    pub async fn operation_by_id(&self, id: &str) -> StoreResult<Option<super::OperationRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM operations o WHERE o.id = $1",
            super::operations::COLUMNS
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref()
            .map(super::operations::operation_from)
            .transpose()
    }
}
