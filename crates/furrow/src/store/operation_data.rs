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
    let operations = distinct(operations);
    let request_id = crate::request_context::current();
    let now = now_ms();
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
        put_states_in(conn, leaf_user_id, chunk, JobPending::No).await?;
    }
    Ok(())
}

/// Queues the processing of operations new to furrow, `(operation id, reason)`: their status
/// rows alone, marked for a job that the machine-data lane makes when it has room to run it
/// ([`Store::make_machine_data_jobs`]). An operation never stored has no job to wake.
pub(crate) async fn queue_new_in(
    conn: &mut sqlx::AnyConnection,
    leaf_user_id: &str,
    operations: &[(&str, &str)],
) -> StoreResult<()> {
    for chunk in distinct(operations).chunks(super::MAX_BOUND / 5) {
        put_states_in(conn, leaf_user_id, chunk, JobPending::Yes).await?;
    }
    Ok(())
}

/// One row per operation: PostgreSQL refuses to upsert a row twice in one statement.
fn distinct<'a>(operations: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut seen = std::collections::HashSet::new();
    operations
        .iter()
        .copied()
        .filter(|(id, _)| seen.insert(*id))
        .collect()
}

/// Whether a queued operation still needs its job made.
#[derive(Clone, Copy)]
enum JobPending {
    Yes,
    No,
}

/// Sets operations' states to `QUEUED`, each with its reason as an event.
async fn put_states_in(
    conn: &mut sqlx::AnyConnection,
    leaf_user_id: &str,
    operations: &[(&str, &str)],
    pending: JobPending,
) -> StoreResult<()> {
    let ids: Vec<&str> = operations.iter().map(|(id, _)| *id).collect();
    let sql = "SELECT operation_id, events FROM operation_data WHERE operation_id IN ({list})";
    let mut events = std::collections::HashMap::new();
    for row in super::fetch_in(conn, sql, &[], &ids).await? {
        events.insert(
            row.try_get::<String, _>("operation_id")?,
            row.try_get::<String, _>("events")?,
        );
    }
    let pending = match pending {
        JobPending::Yes => 1,
        JobPending::No => 0,
    };
    let sql = super::positional(conn, &format!(
        "INSERT INTO operation_data (operation_id, leaf_user_id, status, attempts, events, updated_at, job_pending) VALUES {} \
         ON CONFLICT (operation_id) DO UPDATE SET status = 'QUEUED', attempts = 0, message = NULL, \
         events = excluded.events, updated_at = excluded.updated_at, job_pending = excluded.job_pending",
        super::value_rows(operations.len(), 4, |p| format!(
            "{}, {}, 'QUEUED', 0, {}, {}, {pending}",
            p[0], p[1], p[2], p[3]
        ))
    ));
    let time = leaf_time_now();
    let mut states = sqlx::query(&sql);
    for (operation_id, reason) in operations {
        let before = events.get(*operation_id).map_or("[]", String::as_str);
        states = states
            .bind(*operation_id)
            .bind(leaf_user_id)
            .bind(with_event(before, reason))
            .bind(time.clone());
    }
    states.execute(&mut *conn).await?;
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

    /// Makes the jobs of up to `limit` operations queued without one ([`queue_new_in`]), the
    /// longest queued first, in one transaction; returns how many it made. An operation whose
    /// user has no credential left stays `QUEUED` without a job, as one whose job went with its
    /// credential does.
    pub async fn make_machine_data_jobs(&self, limit: i64) -> StoreResult<usize> {
        if limit <= 0 {
            return Ok(0);
        }
        // Looked for first by a plain read: the engine asks whenever the lane is short of due
        // jobs, and on SQLite a write transaction takes the one write lock even to find nothing.
        let any_pending =
            sqlx::query("SELECT operation_id FROM operation_data WHERE job_pending = 1 LIMIT 1")
                .fetch_optional(self.pool())
                .await?
                .is_some();
        if !any_pending {
            return Ok(0);
        }
        super::retry_conflicts(|| async {
            let mut tx = self.begin_write().await?;
            let rows = sqlx::query(
                "SELECT od.operation_id, c.id AS credential_id FROM operation_data od \
                 LEFT JOIN jd_credentials c ON c.leaf_user_id = od.leaf_user_id \
                 WHERE od.job_pending = 1 ORDER BY od.updated_at LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                return Ok(0);
            }
            let mut operations = Vec::with_capacity(rows.len());
            let mut jobs = Vec::with_capacity(rows.len());
            for row in &rows {
                let operation_id: String = row.try_get("operation_id")?;
                if let Some(credential_id) = opt_string(row, "credential_id")? {
                    jobs.push((operation_id.clone(), credential_id));
                }
                operations.push(operation_id);
            }
            let now = now_ms();
            for chunk in jobs.chunks(super::MAX_BOUND / 4) {
                let sql = super::positional(&tx, &format!(
                    "INSERT INTO jobs (id, kind, credential_id, run_at_ms, attempts, machine_data) VALUES {} \
                     ON CONFLICT (kind, credential_id) DO NOTHING",
                    super::value_rows(chunk.len(), 4, |p| format!(
                        "{}, {}, {}, {}, 0, 1",
                        p[0], p[1], p[2], p[3]
                    ))
                ));
                let mut insert = sqlx::query(&sql);
                for (operation_id, credential_id) in chunk {
                    insert = insert
                        .bind(uuid::Uuid::now_v7().to_string())
                        .bind(format!("{OPERATION_DATA_JOB_PREFIX}{operation_id}"))
                        .bind(credential_id.as_str())
                        .bind(now);
                }
                insert.execute(&mut *tx).await?;
            }
            let ids: Vec<&str> = operations.iter().map(String::as_str).collect();
            super::fetch_in(
                &mut tx,
                "UPDATE operation_data SET job_pending = 0 WHERE operation_id IN ({list})",
                &[],
                &ids,
            )
            .await?;
            tx.commit().await?;
            Ok(jobs.len())
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OperationRecord, OperationsWrite};

    fn operation(n: usize, hash: &str) -> OperationRecord {
        OperationRecord {
            id: format!("op{n}"),
            leaf_user_id: "u-c1".into(),
            field_id: "f1".into(),
            provider_operation_id: format!("jd-op{n}"),
            operation_type: "harvested".into(),
            crop_season: None,
            start_time: None,
            end_time: None,
            start_ms: None,
            end_ms: None,
            data: "{}".into(),
            data_hash: hash.into(),
            deleted_on_provider: false,
            provider_modified_ms: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    async fn write(store: &Store, ops: Vec<OperationRecord>) {
        let write = OperationsWrite {
            upserts: ops,
            ..Default::default()
        };
        store
            .write_operations("u-c1", "c1", &write, |_| Default::default())
            .await
            .unwrap();
    }

    /// Credential `c1` (of user `u-c1`) and its field `f1`, which the operations belong to.
    async fn credential_and_field(store: &Store) {
        crate::store::test_credential(store, "c1").await;
        sqlx::query(
            "INSERT INTO fields (id, leaf_user_id, organization_id, provider_field_id, name, deleted_on_provider, created_at, updated_at) \
             VALUES ('f1', 'u-c1', 'org1', 'jd-f1', 'North', 0, 't', 't')",
        )
        .execute(store.pool())
        .await
        .unwrap();
    }

    /// `(machine-data jobs, operations waiting for one)`.
    async fn queue(store: &Store) -> (i64, i64) {
        let count = |sql: &'static str| async move {
            sqlx::query(sql)
                .fetch_one(store.pool())
                .await
                .unwrap()
                .try_get::<i64, _>("n")
                .unwrap()
        };
        (
            count("SELECT COUNT(*) AS n FROM jobs WHERE machine_data = 1").await,
            count("SELECT COUNT(*) AS n FROM operation_data WHERE job_pending = 1").await,
        )
    }

    /// New operations are queued for processing without jobs; their jobs are made as many at
    /// a time as asked, once each. A changed operation's job is made (or woken) with its write.
    /// One whose credential is gone gets none and stays queued.
    async fn new_operations_get_their_jobs_on_demand(store: &Store) {
        credential_and_field(store).await;
        write(store, (1..=3).map(|n| operation(n, "a")).collect()).await;
        assert_eq!(queue(store).await, (0, 3));
        for n in 1..=3 {
            let state = store
                .operation_data(&format!("op{n}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(state.status, "QUEUED");
            assert!(
                state.events.contains("queued: new operation"),
                "{}",
                state.events
            );
        }
        let gauges = store.gauges().await.unwrap();
        assert!(gauges.jobs.contains(&("opdata", 3, 3)), "{:?}", gauges.jobs);

        assert_eq!(store.make_machine_data_jobs(2).await.unwrap(), 2);
        assert_eq!(queue(store).await, (2, 1));
        assert_eq!(store.make_machine_data_jobs(5).await.unwrap(), 1);
        assert_eq!(queue(store).await, (3, 0));
        assert_eq!(store.make_machine_data_jobs(5).await.unwrap(), 0);
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT kind FROM jobs WHERE machine_data = 1 AND credential_id = 'c1' ORDER BY kind",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(kinds, ["opdata:op1", "opdata:op2", "opdata:op3"]);

        // Changed, and new beside it: the changed one's job is there at once, once.
        write(store, vec![operation(1, "b"), operation(4, "a")]).await;
        assert_eq!(queue(store).await, (3, 1));
        let woken: i64 = sqlx::query_scalar("SELECT woken FROM jobs WHERE kind = 'opdata:op1'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(woken, 1);

        // The credential gone (its jobs with it): nothing to make a job for.
        sqlx::query("DELETE FROM jd_credentials WHERE id = 'c1'")
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(store.make_machine_data_jobs(5).await.unwrap(), 0);
        assert_eq!(queue(store).await, (0, 0));
        let state = store.operation_data("op4").await.unwrap().unwrap();
        assert_eq!(state.status, "QUEUED");
    }

    /// An operation stored under an id of an earlier scheme keeps it when it is read again
    /// under its new-row id: updated in place (not a second row), alerted and queued under the
    /// stored id. A new operation is stored under its record's id.
    async fn stored_operations_keep_their_ids(store: &Store) {
        credential_and_field(store).await;
        write(store, vec![operation(1, "a")]).await;
        let renamed = |n: usize, hash: &str| OperationRecord {
            id: format!("new-op{n}"),
            ..operation(n, hash)
        };
        let alerted = std::sync::Mutex::new(Vec::new());
        let write = OperationsWrite {
            upserts: vec![renamed(1, "b"), renamed(2, "a")],
            ..Default::default()
        };
        let written = store
            .write_operations("u-c1", "c1", &write, |id| {
                alerted.lock().unwrap().push(id.to_string());
                Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            written.changes,
            [crate::store::Change::Updated, crate::store::Change::Created]
        );
        assert_eq!(*alerted.lock().unwrap(), ["op1", "new-op2"]);
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, provider_operation_id, data_hash FROM operations ORDER BY provider_operation_id",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let expected = [("op1", "jd-op1", "b"), ("new-op2", "jd-op2", "a")]
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
        assert_eq!(rows, expected);
        let state = store.operation_data("op1").await.unwrap().unwrap();
        assert!(
            state
                .events
                .contains("queued: the operation changed on John Deere"),
            "{}",
            state.events
        );
        assert!(store.operation_data("new-op2").await.unwrap().is_some());
        assert!(store.operation_data("new-op1").await.unwrap().is_none());
    }

    crate::store::test_on_both_databases!(
        stored_operations_keep_their_ids,
        stored_operations_keep_their_ids_on_sqlite,
        stored_operations_keep_their_ids_on_postgres
    );

    crate::store::test_on_both_databases!(
        new_operations_get_their_jobs_on_demand,
        new_operations_get_their_jobs_on_demand_on_sqlite,
        new_operations_get_their_jobs_on_demand_on_postgres
    );
}
