//! Durable jobs with leases: a replica claims a due job by a conditional update, so at most one
//! replica runs a job at a time; a crashed replica's lease simply runs out.

use sqlx::Row;

use super::{now_ms, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    pub kind: String,
    pub credential_id: String,
    pub attempts: i64,
    /// The API request that queued or woke it.
    pub request_id: Option<String>,
    /// Claimed from another replica whose lease had run out (it died or stalled).
    pub taken_over: bool,
}

/// Which jobs a claim takes: each lane has slots of its own in a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Token upkeep, sync runs and their parts; at most `parts_per_credential` of one
    /// credential's sync parts hold a lease at once.
    Sync {
        parts_per_credential: i64,
        /// Only jobs of credentials with nothing of their kind running (no part running, for
        /// a part; no job at all, for the others): the slots kept for accounts just starting.
        idle_credentials_only: bool,
    },
    /// Machine-data processing (long exports and parsing, which must never hold up
    /// credentials and syncs).
    MachineData,
}

impl Lane {
    /// The query of a claim's candidates in this lane (binds: now, limit, then for the sync
    /// lane the parts cap and how many top candidates to check against it), and the cap.
    fn candidates_sql(self) -> (String, Option<i64>) {
        let due = "d.run_at_ms <= $1 AND (d.lease_until_ms IS NULL OR d.lease_until_ms < $1)";
        match self {
            Lane::MachineData => (
                format!("SELECT d.id FROM jobs d WHERE d.machine_data = 1 AND {due} ORDER BY d.run_at_ms LIMIT $2"),
                None,
            ),
            // Each credential's load is counted by window aggregates over one scan of the
            // lane (a join of the jobs with their per-credential counts, on a fresh table with
            // no statistics yet, was planned as a nested loop re-aggregating the lane per
            // candidate: up to a second per claim on PostgreSQL). The candidates are ranked, and
            // only the top few are checked against their credential's cap: a claim is as cheap
            // with thousands of due parts as with a few. Jobs not yet due (every credential's
            // next token upkeep and sync run) are left out of the counts: they were more than
            // half of the rows ranked in a 500-grower first sync, and a claim then took 8-11 ms
            // of PostgreSQL's CPU, 4 ms without them (a running job is one that was due).
            Lane::Sync {
                parts_per_credential,
                idle_credentials_only,
            } => (
                format!(
                    "SELECT t.id FROM ( \
                       SELECT c.*, ROW_NUMBER() OVER (PARTITION BY c.credential_id, c.is_part \
                                                      ORDER BY c.later_part, c.run_at_ms, c.id) AS nth FROM ( \
                         SELECT d.id, d.credential_id, d.run_at_ms, d.parts_running, d.jobs, d.is_part, d.later_part, \
                                CASE WHEN d.is_part = 1 THEN d.parts_running ELSE d.all_running END AS running \
                         FROM ( \
                           SELECT j.id, j.credential_id, j.run_at_ms, j.lease_until_ms, \
                                  COUNT(*) OVER per_credential AS jobs, \
                                  SUM(CASE WHEN j.lease_until_ms >= $1 THEN 1 ELSE 0 END) OVER per_credential AS all_running, \
                                  SUM(CASE WHEN j.lease_until_ms >= $1 AND j.kind LIKE 'part:%' THEN 1 ELSE 0 END) \
                                    OVER per_credential AS parts_running, \
                                  CASE WHEN j.kind LIKE 'part:%' THEN 1 ELSE 0 END AS is_part, \
                                  CASE WHEN j.kind LIKE 'part:%/fields' THEN 0 ELSE 1 END AS later_part \
                           FROM jobs j WHERE j.machine_data = 0 AND j.run_at_ms <= $1 \
                           WINDOW per_credential AS (PARTITION BY j.credential_id)) d \
                         WHERE {due} AND (d.is_part = 0 OR d.parts_running < $3) \
                         ORDER BY running, d.is_part, d.jobs, d.later_part, d.run_at_ms LIMIT $4) c) t \
                     WHERE (t.is_part = 0 OR t.nth + t.parts_running <= $3){idle} \
                     ORDER BY t.running, t.is_part, t.jobs, t.later_part, t.run_at_ms LIMIT $2",
                    idle = if idle_credentials_only { " AND t.running = 0" } else { "" }
                ),
                Some(parts_per_credential.max(1)),
            ),
        }
    }
}

fn claimed_job(row: &sqlx::any::AnyRow) -> StoreResult<ClaimedJob> {
    Ok(ClaimedJob {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        credential_id: row.try_get("credential_id")?,
        attempts: row.try_get("attempts")?,
        request_id: super::opt_string(row, "request_id")?,
        taken_over: super::opt_string(row, "previous_lease_owner")?.is_some(),
    })
}

impl Store {
    /// Claims up to `limit` due jobs of `lane` for `owner` (a replica id) until
    /// `lease_until_ms`: candidates are chosen by a read, then leased by an update that checks
    /// the lease condition again, so that when two replicas race for a row only one gets it.
    ///
    /// Sync lane: a credential's parts are claimed only up to its cap (counting those already
    /// leased), so that a claim never takes parts that would have to wait. Then fair share:
    /// jobs of credentials with the fewest jobs running go first; then a credential's own jobs
    /// (which start its sync) before sync parts; then credentials with the least left to do
    /// (fewest jobs due or running: a small account's two parts before a large one's dozen);
    /// then fields parts before the others (an account's first data is its fields); then the
    /// longest due. A grower connected while large accounts sync does not queue behind all of
    /// their parts.
    /// Machine data goes in the order it was queued: its lane holds a job per operation, too
    /// many to rank by account on every claim (and exports wait on John Deere, not on us).
    pub async fn claim_jobs(
        &self,
        owner: &str,
        lease_until_ms: i64,
        limit: i64,
        lane: Lane,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let now = now_ms();
        // The candidates, by a plain read: ranking them must not hold SQLite's write lock.
        let (sql, cap) = lane.candidates_sql();
        let chosen = self.candidates(&sql, now, limit, cap).await?;
        let owner = owner.to_string();
        let rows = self
            .lease_chosen(
                &chosen,
                "UPDATE jobs SET lease_owner = $1, lease_until_ms = $2, woken = 0, \
                 previous_lease_owner = lease_owner \
                 WHERE id IN ({ids}) \
                 AND run_at_ms <= $3 AND (lease_until_ms IS NULL OR lease_until_ms < $3) \
                 RETURNING id, kind, credential_id, attempts, request_id, previous_lease_owner",
                3,
                move |q| q.bind(owner).bind(lease_until_ms).bind(now),
            )
            .await?;
        rows.iter().map(claimed_job).collect()
    }

    /// Runs a claim's candidates query (or an `EXPLAIN` of it) with its binds.
    async fn candidates(
        &self,
        sql: &str,
        now: i64,
        limit: i64,
        cap: Option<i64>,
    ) -> StoreResult<Vec<String>> {
        let mut query = sqlx::query_scalar(sql).bind(now).bind(limit);
        if let Some(cap) = cap {
            // The top candidates checked against their caps: enough that a claim is rarely
            // short for the parts of one credential beyond its cap.
            query = query.bind(cap).bind(limit.saturating_mul(cap + 1));
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    /// Claims one credential's due job of `kind` for `owner`, as [`Store::claim_jobs`] would:
    /// `None` when it is not due or another claim holds it.
    pub async fn claim_job_of(
        &self,
        owner: &str,
        lease_until_ms: i64,
        credential_id: &str,
        kind: &str,
    ) -> StoreResult<Option<ClaimedJob>> {
        let row = sqlx::query(
            "UPDATE jobs SET lease_owner = $1, lease_until_ms = $2, woken = 0, \
             previous_lease_owner = lease_owner \
             WHERE credential_id = $3 AND kind = $4 \
             AND run_at_ms <= $5 AND (lease_until_ms IS NULL OR lease_until_ms < $5) \
             RETURNING id, kind, credential_id, attempts, request_id, previous_lease_owner",
        )
        .bind(owner)
        .bind(lease_until_ms)
        .bind(credential_id)
        .bind(kind)
        .bind(now_ms())
        .fetch_optional(&mut *self.writer_as(super::WriteClass::Lease).await?)
        .await?;
        row.as_ref().map(claimed_job).transpose()
    }

    /// Whether a due job of the sync lane other than a part waits for a claim, of a credential
    /// other than this one: such a job (a grower's sync run, a token's upkeep) ranks before any
    /// part, so a sync run then leaves its first part to the claims rather than going on with it.
    pub async fn others_waiting_before_parts(&self, credential_id: &str) -> StoreResult<bool> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT 1 AS one FROM jobs WHERE machine_data = 0 AND run_at_ms <= $1 \
             AND (lease_until_ms IS NULL OR lease_until_ms < $1) \
             AND kind NOT LIKE 'part:%' AND credential_id <> $2 LIMIT 1",
        )
        .bind(now)
        .bind(credential_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Releases a job and schedules its next run (only if this replica still holds it).
    pub async fn reschedule_job(
        &self,
        id: &str,
        owner: &str,
        run_at_ms: i64,
        attempts: i64,
        last_error: Option<&str>,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET run_at_ms = CASE WHEN woken <> 0 THEN run_at_ms ELSE $1 END, attempts = $2, \
             request_id = CASE WHEN woken <> 0 THEN request_id ELSE NULL END, \
             last_error = $3, lease_owner = NULL, lease_until_ms = NULL, woken = 0 \
             WHERE id = $4 AND lease_owner = $5",
        )
        .bind(run_at_ms)
        .bind(attempts)
        .bind(last_error.map(str::to_string))
        .bind(id)
        .bind(owner)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Gives up every lease `owner` holds (a replica shutting down, its jobs stopped): the
    /// jobs are due again at once for any replica. Returns how many were released.
    pub async fn release_leases(&self, owner: &str) -> StoreResult<u64> {
        let r = sqlx::query(
            "UPDATE jobs SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected())
    }

    /// Makes one of a credential's jobs due now (a manual sync). A job running under a lease
    /// finishes first and then runs again at once (its reschedule keeps a wake-up that came
    /// in while it ran: the change that prompted it may have come after the run read it).
    pub async fn wake_job(&self, credential_id: &str, kind: &str) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET run_at_ms = $1, woken = 1, request_id = $4 WHERE credential_id = $2 AND kind = $3",
        )
        .bind(now_ms())
        .bind(credential_id)
        .bind(kind)
        .bind(crate::request_context::current())
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One credential (with its user and owner) and its due jobs of these kinds.
    async fn credential_with_jobs(store: &Store, cred: &str, kinds: &[&str]) {
        crate::store::test_credential(store, cred).await;
        for (n, kind) in kinds.iter().enumerate() {
            sqlx::query("INSERT INTO jobs (id, kind, credential_id, run_at_ms, attempts) VALUES ($1, $2, $3, $4, 0)")
                .bind(format!("{cred}-{n}"))
                .bind(*kind)
                .bind(cred)
                .bind(n as i64)
                .execute(store.pool())
                .await
                .unwrap();
        }
    }

    fn kinds(jobs: &[ClaimedJob], cred: &str) -> Vec<String> {
        let mut kinds: Vec<String> = jobs
            .iter()
            .filter(|j| j.credential_id == cred)
            .map(|j| j.kind.clone())
            .collect();
        kinds.sort();
        kinds
    }

    /// A new credential's first sync run is leased by name (started beside the slots): once,
    /// and then no claim takes it, nor a second lease by name; a job not due is not leased.
    #[tokio::test]
    async fn a_credentials_job_is_leased_by_name_once() {
        let store = crate::store::temp_sqlite_store("jobs-by-name").await;
        let lease = now_ms() + 60_000;
        credential_with_jobs(&store, "new", &["sync", "credential"]).await;
        let job = store
            .claim_job_of("r1", lease, "new", "sync")
            .await
            .unwrap()
            .expect("the due sync job");
        assert_eq!((job.id.as_str(), job.kind.as_str()), ("new-0", "sync"));
        assert!(!job.taken_over);
        assert!(store
            .claim_job_of("r2", lease, "new", "sync")
            .await
            .unwrap()
            .is_none());
        let lane = Lane::Sync {
            parts_per_credential: 4,
            idle_credentials_only: false,
        };
        let claimed = store.claim_jobs("r2", lease, 10, lane).await.unwrap();
        assert_eq!(kinds(&claimed, "new"), ["credential"]);
        // Not due yet: left alone.
        sqlx::query("UPDATE jobs SET lease_owner = NULL, lease_until_ms = NULL, run_at_ms = $1 WHERE id = 'new-0'")
            .bind(now_ms() + 60_000)
            .execute(store.pool())
            .await
            .unwrap();
        assert!(store
            .claim_job_of("r1", lease, "new", "sync")
            .await
            .unwrap()
            .is_none());
    }

    /// A new grower's sync run queues its parts as its last step, still leased: its first part
    /// goes before those of credentials with parts already running, not behind every
    /// credential with nothing leased at all.
    #[tokio::test]
    async fn a_part_ranks_by_the_parts_running_not_by_its_own_sync_run() {
        let store = crate::store::temp_sqlite_store("jobs-rank").await;
        let lease = now_ms() + 60_000;
        let lane = Lane::Sync {
            parts_per_credential: 4,
            idle_credentials_only: false,
        };
        credential_with_jobs(&store, "busy", &["part:1/fields", "part:2/fields"]).await;
        credential_with_jobs(&store, "new", &["sync"]).await;
        // One of the busy credential's parts runs, and the new credential's sync run.
        sqlx::query("UPDATE jobs SET lease_owner = 'r0', lease_until_ms = $1 WHERE id IN ('busy-0', 'new-0')")
            .bind(lease)
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO jobs (id, kind, credential_id, run_at_ms, attempts) VALUES ('new-1', 'part:9/fields', 'new', 5, 0)")
            .execute(store.pool())
            .await
            .unwrap();
        // The slots kept for idle credentials take the new credential's part, and not the
        // busy one's, however many are free.
        let idle_lane = Lane::Sync {
            parts_per_credential: 4,
            idle_credentials_only: true,
        };
        let next = store.claim_jobs("r1", lease, 10, idle_lane).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].id, "new-1", "claimed {next:?}");
        assert!(store
            .claim_jobs("r1", lease, 10, idle_lane)
            .await
            .unwrap()
            .is_empty());
        let next = store.claim_jobs("r1", lease, 10, lane).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].id, "busy-1", "claimed {next:?}");
    }

    /// A credential's jobs not yet due (its next token upkeep and sync run, which every
    /// credential has) do not count as work left: of two credentials with one due part each,
    /// the one with more jobs scheduled for later does not wait behind the other, and the one
    /// with more due parts does.
    #[tokio::test]
    async fn jobs_not_yet_due_do_not_rank_a_credential_later() {
        let store = crate::store::temp_sqlite_store("jobs-later").await;
        let lease = now_ms() + 60_000;
        let lane = Lane::Sync {
            parts_per_credential: 1,
            idle_credentials_only: false,
        };
        credential_with_jobs(&store, "planned", &["part:1/fields"]).await;
        credential_with_jobs(&store, "busy", &["part:1/fields", "part:2/fields"]).await;
        credential_with_jobs(&store, "plain", &["part:1/fields"]).await;
        for kind in ["credential", "sync"] {
            sqlx::query("INSERT INTO jobs (id, kind, credential_id, run_at_ms, attempts) VALUES ($1, $2, 'planned', $3, 0)")
                .bind(format!("planned-{kind}"))
                .bind(kind)
                .bind(now_ms() + 3_600_000)
                .execute(store.pool())
                .await
                .unwrap();
        }
        // The plain credential's part was due last: the planned one's goes before it, as the
        // longest due of the credentials with the least left to do, and both before the busy
        // credential's.
        sqlx::query("UPDATE jobs SET run_at_ms = 5 WHERE credential_id = 'plain'")
            .execute(store.pool())
            .await
            .unwrap();
        let mut order = Vec::new();
        for _ in 0..3 {
            let claimed = store.claim_jobs("r1", lease, 1, lane).await.unwrap();
            order.extend(claimed.into_iter().map(|j| j.credential_id));
        }
        assert_eq!(order, ["planned", "plain", "busy"]);
    }

    /// On a fresh PostgreSQL table (no statistics yet, as in a new deployment's first syncs) a
    /// sync-lane claim still handles each job once per step of its plan, not once per
    /// candidate: no plan node's rows times loops, summed, exceed the nodes times the jobs. (A
    /// join of the jobs with their per-credential counts was planned as a nested loop here,
    /// re-counting the lane for each candidate.)
    #[tokio::test]
    async fn a_claim_reads_each_job_once_on_a_fresh_postgres_table() {
        let db = crate::store::TempPostgres::new().await;
        let store = &db.store;
        let (credentials, per_credential) = (500, 4);
        for sql in [
            "INSERT INTO api_owners (id, email, password_hash, created_at) VALUES ('o', 'o@x', '-', '2026-01-01T00:00:00Z')",
            "INSERT INTO leaf_users (id, owner_id, created_at) \
             SELECT 'u-' || n, 'o', '2026-01-01T00:00:00Z' FROM generate_series(1, $1) n",
            "INSERT INTO jd_credentials (id, leaf_user_id, client_key, client_secret_enc, refresh_token_enc, scopes, environment, status, created_at, version) \
             SELECT 'c-' || n, 'u-' || n, 'k', '-', '-', '', 'STAGE', 'OK', '2026-01-01T00:00:00Z', 1 FROM generate_series(1, $1) n",
            // Each credential's first part runs; the others are due.
            "INSERT INTO jobs (id, kind, credential_id, run_at_ms, attempts, lease_owner, lease_until_ms) \
             SELECT 'j-' || n || '-' || k, 'part:' || k || '/fields', 'c-' || n, k, 0, \
                    CASE WHEN k = 1 THEN 'r0' END, CASE WHEN k = 1 THEN $3 END \
             FROM generate_series(1, $1) n, generate_series(1, $2) k",
        ] {
            sqlx::query(sql)
                .bind(credentials)
                .bind(per_credential)
                .bind(now_ms() + 60_000)
                .execute(store.pool())
                .await
                .unwrap();
        }
        let jobs = (credentials * per_credential) as i64;
        let lane = Lane::Sync {
            parts_per_credential: 4,
            idle_credentials_only: false,
        };
        let (sql, cap) = lane.candidates_sql();
        let plan = store
            .candidates(&format!("EXPLAIN (ANALYZE) {sql}"), now_ms(), 16, cap)
            .await
            .unwrap();
        let handled: Vec<i64> = plan
            .iter()
            .filter_map(|line| {
                let actual = &line[line.find("(actual ")?..];
                let figure = |name: &str| -> Option<i64> {
                    let at = actual.find(name)? + name.len();
                    actual[at..]
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                };
                Some(figure(" rows=")? * figure(" loops=")?)
            })
            .collect();
        assert!(handled.len() > 3, "a plan with its steps: {plan:#?}");
        assert!(
            handled.iter().sum::<i64>() <= handled.len() as i64 * jobs,
            "{} rows handled over {} steps for {jobs} jobs: {plan:#?}",
            handled.iter().sum::<i64>(),
            handled.len()
        );
        // And it claims: every credential has a part running, so the oldest due of the least
        // loaded go first, up to the limit.
        assert_eq!(
            store
                .claim_jobs("r1", now_ms() + 60_000, 16, lane)
                .await
                .unwrap()
                .len(),
            16
        );
        db.finish().await;
    }

    /// A sync run goes on with its first fields part in its own slot: the part's job is
    /// inserted leased to the run's replica, so no claim (here or at another replica) takes it,
    /// while the run's other parts are claimed as usual.
    #[tokio::test]
    async fn a_run_starts_with_its_first_fields_part_leased_to_its_replica() {
        let store = crate::store::temp_sqlite_store("jobs-first-part").await;
        credential_with_jobs(&store, "new", &[]).await;
        let lease = now_ms() + 60_000;
        let status = crate::store::SyncStatus {
            state: "RUNNING".into(),
            started_at: None,
            finished_at: None,
            counts: "{}".into(),
            last_error: None,
        };
        let parts = ["9/files", "1/fields", "2/fields"].map(String::from);
        // Another grower's sync run waiting for a slot goes before any part; leased, it does not.
        credential_with_jobs(&store, "other", &["sync"]).await;
        assert!(store.others_waiting_before_parts("new").await.unwrap());
        assert!(!store.others_waiting_before_parts("other").await.unwrap());
        let lane = Lane::Sync {
            parts_per_credential: 10,
            idle_credentials_only: false,
        };
        let claimed = store.claim_jobs("r1", lease, 10, lane).await.unwrap();
        assert_eq!(kinds(&claimed, "other"), ["sync"]);
        assert!(!store.others_waiting_before_parts("new").await.unwrap());

        let first = store
            .start_sync_parts(
                "new",
                "u-new",
                "run-1",
                &parts,
                "{}",
                &status,
                Some(("r0", lease)),
            )
            .await
            .unwrap()
            .expect("the first fields part");
        assert_eq!(first.kind, "part:1/fields");
        assert_eq!((first.attempts, first.taken_over), (0, false));
        let others = store.claim_jobs("r1", lease, 10, lane).await.unwrap();
        assert_eq!(kinds(&others, "new"), ["part:2/fields", "part:9/files"]);
        assert!(others.iter().all(|j| j.id != first.id));

        // Without a lease to give, every part waits for a claim.
        let again = store
            .start_sync_parts("new", "u-new", "run-2", &parts, "{}", &status, None)
            .await
            .unwrap();
        assert!(again.is_none());
        let all = store.claim_jobs("r1", lease, 10, lane).await.unwrap();
        assert_eq!(
            kinds(&all, "new"),
            ["part:1/fields", "part:2/fields", "part:9/files"]
        );
    }

    #[tokio::test]
    async fn a_claim_takes_no_more_of_a_credentials_parts_than_its_cap() {
        let store = crate::store::temp_sqlite_store("jobs").await;
        let parts = [
            "part:1/fields",
            "part:1/files",
            "part:2/fields",
            "part:2/files",
            "part:3/fields",
        ];
        let mut large = vec!["refresh"];
        large.extend(parts);
        credential_with_jobs(&store, "large", &large).await;
        credential_with_jobs(&store, "small", &parts[..2]).await;
        let lease = now_ms() + 60_000;
        let lane = Lane::Sync {
            parts_per_credential: 2,
            idle_credentials_only: false,
        };

        let first = store.claim_jobs("r1", lease, 100, lane).await.unwrap();
        // The credential's own job, and its parts up to the cap: fields parts (its first data)
        // before an older files part, then the oldest due.
        assert_eq!(
            kinds(&first, "large"),
            ["part:1/fields", "part:2/fields", "refresh"]
        );
        assert_eq!(kinds(&first, "small"), ["part:1/fields", "part:1/files"]);
        // With two of its parts leased, none more until one finishes.
        assert!(store
            .claim_jobs("r2", lease, 100, lane)
            .await
            .unwrap()
            .is_empty());
        let done = first
            .iter()
            .find(|j| j.kind == "part:1/fields" && j.credential_id == "large")
            .unwrap();
        sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(&done.id)
            .execute(store.pool())
            .await
            .unwrap();
        let next = store.claim_jobs("r2", lease, 100, lane).await.unwrap();
        assert_eq!(kinds(&next, "large"), ["part:3/fields"]);
        assert!(kinds(&next, "small").is_empty());

        // Parts leased beyond the cap (by two replicas' claims at once) wait by position: the
        // lowest ids go on, so some always do.
        assert_eq!(
            store.parts_leased_before("large", "large-3").await.unwrap(),
            0
        );
        assert_eq!(
            store.parts_leased_before("large", "large-5").await.unwrap(),
            1
        );
        // (large-1 finished; large-3 and large-5, its fields parts, are leased.)
        assert_eq!(
            store.parts_leased_before("large", "large-9").await.unwrap(),
            2
        );

        // The machine-data lane is apart: none of these jobs is in it.
        assert!(store
            .claim_jobs("r3", lease, 100, Lane::MachineData)
            .await
            .unwrap()
            .is_empty());
    }
}
