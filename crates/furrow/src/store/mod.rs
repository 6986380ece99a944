//! Persistence through sqlx's `Any` driver: one code path, one set of SQL, for SQLite and
//! PostgreSQL. Placeholders are `$1, $2, …` in increasing order of first use (both engines
//! accept that form); types are TEXT and BIGINT only.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{AnyPool, Row};
use writer_line::{WriteClass, WriterLine, WriterTurn};

mod accounts;
mod alerts;
mod assets;
mod budgets;
mod configs;
mod credentials;
mod fields;
mod files;
mod gauges;
mod jobs;
mod onboarding;
mod operation_data;
mod operations;
mod organizations;
mod parts;
mod users;
mod webhooks;
mod writer_line;

pub use accounts::{LoginThrottle, OwnerRecord};
pub use alerts::{ChangeAlerts, Deliveries, DeliveryRecord, FailedCall, WebhookRecord};
pub use assets::{AssetKind, AssetRecord};
pub use credentials::{CredentialRecord, EventRecord, JobReschedule, NewEvent, TokenWrite};
pub use fields::{
    content_hash, content_hash_bytes, grower_uuid, hex, stable_int_id_for_farm,
    stable_int_id_for_grower, stable_uuid, BoundariesWrite, BoundaryChange, BoundaryRecord,
    FarmRecord, FieldFilter, FieldRecord, FieldWrite, GrowerRecord, GrowersAndFarms,
    IntegrationSummary, SyncStatus,
};
pub use files::{FileFilter, FileRecord};
pub use gauges::{job_family, Gauges, JOB_FAMILIES};
pub use jobs::{ClaimedJob, Lane};
pub use onboarding::{AppKeyRecord, FlowPhase, MagicLinkRecord, OAuthFlowRecord};
pub use operation_data::{OperationDataRecord, ProcessedData, OPERATION_DATA_JOB_PREFIX};
pub use operations::{OperationFilter, OperationRecord, OperationsWrite, OperationsWritten};
pub use organizations::OrganizationRecord;
pub use parts::{SyncPart, PART_JOB_PREFIX};
pub use users::{UserFilter, UserRecord, UserWrite};
pub use webhooks::{InboxItem, NewInboxItem, SubscriptionRecord};

const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_core", include_str!("../../migrations/0001_core.sql")),
    (
        "0002_organizations_configs",
        include_str!("../../migrations/0002_organizations_configs.sql"),
    ),
    (
        "0003_fields",
        include_str!("../../migrations/0003_fields.sql"),
    ),
    (
        "0004_operations",
        include_str!("../../migrations/0004_operations.sql"),
    ),
    (
        "0005_files",
        include_str!("../../migrations/0005_files.sql"),
    ),
    (
        "0006_alerts",
        include_str!("../../migrations/0006_alerts.sql"),
    ),
    (
        "0007_deere_webhooks",
        include_str!("../../migrations/0007_deere_webhooks.sql"),
    ),
    (
        "0008_operation_data",
        include_str!("../../migrations/0008_operation_data.sql"),
    ),
    (
        "0009_onboarding",
        include_str!("../../migrations/0009_onboarding.sql"),
    ),
    (
        "0010_preview_fields",
        include_str!("../../migrations/0010_preview_fields.sql"),
    ),
    (
        "0011_partner_orgs",
        include_str!("../../migrations/0011_partner_orgs.sql"),
    ),
    (
        "0012_job_request_ids",
        include_str!("../../migrations/0012_job_request_ids.sql"),
    ),
    (
        "0013_job_lease_takeovers",
        include_str!("../../migrations/0013_job_lease_takeovers.sql"),
    ),
    (
        "0014_sync_part_progress",
        include_str!("../../migrations/0014_sync_part_progress.sql"),
    ),
    (
        "0015_rate_budgets",
        include_str!("../../migrations/0015_rate_budgets.sql"),
    ),
    (
        "0016_sync_indexes",
        include_str!("../../migrations/0016_sync_indexes.sql"),
    ),
    (
        "0017_assets",
        include_str!("../../migrations/0017_assets.sql"),
    ),
    (
        "0018_user_fields",
        include_str!("../../migrations/0018_user_fields.sql"),
    ),
    (
        "0019_job_lanes",
        include_str!("../../migrations/0019_job_lanes.sql"),
    ),
    (
        "0020_fewer_job_indexes",
        include_str!("../../migrations/0020_fewer_job_indexes.sql"),
    ),
    (
        "0021_subscriptions_per_event_type",
        include_str!("../../migrations/0021_subscriptions_per_event_type.sql"),
    ),
    (
        "0022_machine_data_jobs_on_demand",
        include_str!("../../migrations/0022_machine_data_jobs_on_demand.sql"),
    ),
    (
        "0023_postgres_fewer_user_checks",
        include_str!("../../migrations/0023_postgres_fewer_user_checks.sql"),
    ),
];

/// The first line of a migration that only PostgreSQL runs; SQLite records it as applied.
const POSTGRES_ONLY: &str = "-- PostgreSQL only";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration {name} failed: {source}")]
    Migration { name: String, source: sqlx::Error },
    #[error("unsupported database URL (use sqlite:// or postgres://)")]
    UnsupportedUrl,
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite: the one connection every write takes turns on (see `writes`, `begin_write`).
    writer: Option<AnyPool>,
    /// PostgreSQL: the connections of work that gives way (see [`giving_way`]).
    giving_way_pool: Option<AnyPool>,
    /// PostgreSQL: the connections of work ahead (see [`ahead`]).
    ahead_pool: Option<AnyPool>,
    backend: Backend,
    credentials: credentials::CredentialCache,
    token_commits: std::sync::Arc<credentials::TokenCommits>,
    /// SQLite file: while any clone of the store lives, its checkpointer runs.
    _checkpoints: Option<std::sync::Arc<()>>,
    /// SQLite: the line for the writer connection (leases first, work giving way last).
    writer_line: std::sync::Arc<WriterLine>,
}

/// How the work in progress takes its turn at the database, when not as everyone else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// [`ahead`]: someone waits for it.
    Ahead,
    /// [`giving_way`]: bulk work that can wait.
    GivingWay,
}

/// The turn of the work in progress: fixed, or ahead only while a condition holds (asked at
/// each statement).
#[derive(Clone)]
enum TurnScope {
    Fixed(Turn),
    AheadWhile(std::sync::Arc<dyn Fn() -> bool + Send + Sync>),
}

tokio::task_local! {
    static TURN: TurnScope;
}

/// Runs `work` ahead of everyone else's at the database: an API request being answered, a
/// change of the rate budget (every request of its key may wait for it), and the work of a
/// grower connected moments ago, on its way to its first data. On SQLite its
/// writes take their turn for the writer connection before any other write but a claim's
/// lease; on PostgreSQL it has a few connections of its own ([`AHEAD_CONNECTIONS`]), so it
/// never queues for a connection behind a large sync's statements. (Right after 500 growers
/// were connected at once, a new grower's credentials `POST` took 0.11–0.29 s against 0.05
/// alone, nearly all of it in its three writes and the reads between them.)
pub async fn ahead<F: std::future::Future>(work: F) -> F::Output {
    TURN.scope(TurnScope::Fixed(Turn::Ahead), work).await
}

/// Runs `work` ahead of everyone else's at the database (as [`ahead`]) while `still` holds,
/// asked at each statement; afterwards as everyone else's. A grower's sync work is ahead while
/// it is one of the newest: decided once per job, a grower that was one of them when its job
/// began stayed ahead to the job's end however many growers connected after it.
pub async fn ahead_while<F: std::future::Future>(
    still: impl Fn() -> bool + Send + Sync + 'static,
    work: F,
) -> F::Output {
    TURN.scope(TurnScope::AheadWhile(std::sync::Arc::new(still)), work)
        .await
}

/// Runs `work` giving way at the database to everyone else's. On SQLite, at most one of all
/// such work's write transactions waits for the writer connection at a time, and only once no
/// other write waits for it, so any other write waits for the one writing, not for the whole
/// queue (nor, mostly, for a bulk transaction queued just before it). On PostgreSQL, such
/// work has a few connections of its own ([`BULK_CONNECTIONS`]), so it never holds
/// or queues for the connections everyone else's work needs. Bulk work (a sync part of an
/// account that has been syncing for a while) runs so; a grower just connected, an API request,
/// token upkeep are never queued behind it. (With all writes in one queue, a new grower's first
/// sync made a dozen writes each waiting about 200 ms behind a 500-grower sync's on SQLite; on
/// PostgreSQL, each of its statements waited about 30 ms for one of the pool's connections.)
pub async fn giving_way<F: std::future::Future>(work: F) -> F::Output {
    TURN.scope(TurnScope::Fixed(Turn::GivingWay), work).await
}

/// PostgreSQL connections a replica opens for everything but work ahead or giving way.
pub const POSTGRES_CONNECTIONS: u32 = 16;
/// The default of `database_bulk_connections`: PostgreSQL connections of work giving way. Few:
/// on a database server beside furrow, each more of them running bulk statements at once took
/// CPU from everything else. 500 growers on 2 cores: a new grower's first data in 2.7-4.0 times
/// its time alone with 12, 1.6-2.4 with 4; the first sync took as long either way.
pub const BULK_CONNECTIONS: u32 = 4;
/// The default of `database_ahead_connections`: PostgreSQL connections of work ahead
/// ([`ahead`]): API requests, the rate budget's draws and the newest growers' syncs, mostly
/// short statements. With 4, on a slow 2-core machine, 500 credentials posted 32 at once
/// queued for them (144-177 ms per statement; the budget's draws, which every request of the
/// key may wait for, 122-164 ms) and took 26-31 s; with 8, 7.5-10.6 s.
pub const AHEAD_CONNECTIONS: u32 = 8;

/// How many PostgreSQL connections a replica keeps for work that does not take its turn as
/// everyone else's (besides the [`POSTGRES_CONNECTIONS`] for the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresConnections {
    /// For work giving way ([`giving_way`]).
    pub bulk: u32,
    /// For work ahead ([`ahead`]).
    pub ahead: u32,
}

impl Default for PostgresConnections {
    fn default() -> Self {
        Self {
            bulk: BULK_CONNECTIONS,
            ahead: AHEAD_CONNECTIONS,
        }
    }
}

/// How the work in progress takes its turn, if not as everyone else's.
fn turn_now() -> Option<Turn> {
    TURN.try_with(|scope| match scope {
        TurnScope::Fixed(turn) => Some(*turn),
        TurnScope::AheadWhile(still) => still().then_some(Turn::Ahead),
    })
    .ok()
    .flatten()
}

/// The class of a write made now, other than a lease.
fn write_class_now() -> WriteClass {
    match turn_now() {
        Some(Turn::Ahead) => WriteClass::Ahead,
        Some(Turn::GivingWay) => WriteClass::GivingWay,
        None => WriteClass::Other,
    }
}

/// A PostgreSQL connection idle this long is pinged before it is handed out again.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// PostgreSQL connections are pinged before use only after sitting idle (the server, or a
/// proxy, may have closed one meanwhile): one kept busy was just answering. sqlx's default,
/// a ping at every acquire, was a round trip to the server per statement or transaction, and a
/// wait for the server's turn on the CPU before each: without it, furrow used 0.48-0.52 s of
/// CPU per 1,000 requests of a 500-grower sync against 0.53-0.57.
fn postgres_checks(options: AnyPoolOptions) -> AnyPoolOptions {
    options
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    use sqlx::Connection;
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// How often the SQLite checkpointer copies the write-ahead log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// The write-ahead log's size (4 KiB pages) past which the checkpointer starts it over.
const WAL_RESTART_FRAMES: i64 = 16_384;

impl Store {
    /// Connects; SQLite files get WAL, a busy timeout and foreign keys.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, PostgresConnections::default()).await
    }

    /// Connects with `connections` of their own for work giving way and work ahead on
    /// PostgreSQL (unused on SQLite).
    pub async fn connect_with(url: &str, connections: PostgresConnections) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        if backend == Backend::Sqlite {
            if let Some(path) = sqlite_path(url) {
                if let Some(dir) = std::path::Path::new(&path).parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
            }
        }
        let options = || AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let sqlite = |options: AnyPoolOptions| {
            // A connection to a local file cannot have been dropped by a server: pinging it
            // before each use (sqlx's default) cost the writer a round trip to its thread per
            // transaction, for nothing.
            options.test_before_acquire(false).after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    // Checkpoints are the checkpointer's (`spawn_checkpointer`), not the job of
                    // whichever commit crosses the log's threshold.
                    conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                    // A restarted log is cut back to this size (64 MiB) rather than kept whole.
                    conn.execute("PRAGMA journal_size_limit = 67108864").await?;
                    // A multi-row upsert's statement journal (what undoes the statement alone
                    // should it fail) stays in memory: spilled to a temporary file, its writes
                    // were about 6 % of the SQLite threads' CPU, under the write lock.
                    conn.execute("PRAGMA temp_store = MEMORY").await?;
                    Ok(())
                })
            })
        };
        let (pool, writer, giving_way_pool, ahead_pool, checkpoints) = match backend {
            // SQLite takes one writer at a time, and each sqlx-sqlite connection is a thread:
            // two connections measured fastest here (fewer context switches, no lock waits).
            // Writes (`writes`, `begin_write`) have a connection of their own, so they queue for
            // it in order instead of in SQLite's busy handler, which sleeps a whole connection
            // (and every reader waiting for one) while the lock is held.
            // Code must never hold one connection while acquiring another.
            Backend::Sqlite => {
                let pool = sqlite(options().max_connections(2)).connect(url).await?;
                // (An in-memory database is one per connection: no writer of its own, and no
                // write-ahead log to checkpoint.)
                let (writer, checkpoints) = match sqlite_path(url) {
                    Some(_) => {
                        let writer = sqlite(options().max_connections(1)).connect(url).await?;
                        let checkpointer =
                            sqlite(options().max_connections(1)).connect(url).await?;
                        let alive = std::sync::Arc::new(());
                        spawn_checkpointer(
                            checkpointer,
                            writer.clone(),
                            std::sync::Arc::downgrade(&alive),
                        );
                        (Some(writer), Some(alive))
                    }
                    None => (None, None),
                };
                (pool, writer, None, None, checkpoints)
            }
            Backend::Postgres => {
                let postgres = |connections: u32| {
                    postgres_checks(options())
                        .max_connections(connections)
                        .connect(url)
                };
                (
                    postgres(POSTGRES_CONNECTIONS).await?,
                    None,
                    Some(postgres(connections.bulk.max(1)).await?),
                    Some(postgres(connections.ahead.max(1)).await?),
                    None,
                )
            }
        };
        Ok(Self {
            pool,
            writer,
            giving_way_pool,
            ahead_pool,
            backend,
            credentials: credentials::CredentialCache::default(),
            token_commits: Default::default(),
            _checkpoints: checkpoints,
            writer_line: Default::default(),
        })
    }

    /// Serve credential reads from memory for up to `ttl_ms` (0: never). Writes through this
    /// store invalidate at once; another replica's writes show after at most `ttl_ms`.
    pub fn with_credential_cache(mut self, ttl_ms: u64) -> Self {
        self.credentials = credentials::CredentialCache::new(ttl_ms);
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where reads go (and, on PostgreSQL, writes): inside [`ahead`] or [`giving_way`] on
    /// PostgreSQL, the pool of that work's own.
    pub fn pool(&self) -> &AnyPool {
        let own = match turn_now() {
            Some(Turn::Ahead) => self.ahead_pool.as_ref(),
            Some(Turn::GivingWay) => self.giving_way_pool.as_ref(),
            None => None,
        };
        own.unwrap_or(&self.pool)
    }

    /// Where writes go. On a SQLite file, the writer connection that every write takes turns
    /// on: a write on another connection waits for SQLite's lock in its busy handler, which
    /// sleeps and polls, and under a steady queue of writers on the writer connection such a
    /// write lost the race again and again (a new grower's few writes took seconds while a
    /// large sync ran).
    fn writes(&self) -> &AnyPool {
        self.writer.as_ref().unwrap_or_else(|| self.pool())
    }

    /// A connection for single write statements (transactions: [`Store::begin_write`]). Work
    /// giving way joins the SQLite writer's queue one at a time here as for a transaction: its
    /// single writes (a part's progress, signatures, subscriptions) went straight into the
    /// queue, so a new grower's write still waited behind dozens of them.
    pub(crate) async fn writer(&self) -> StoreResult<PoolConnection<sqlx::Any>> {
        self.writer_as(write_class_now()).await
    }

    /// [`Store::writer`] for a write of the given class.
    async fn writer_as(&self, class: WriteClass) -> StoreResult<PoolConnection<sqlx::Any>> {
        let started = std::time::Instant::now();
        // Held until this write has the writer, as in `begin_write`.
        let _turn = self.writer_turn(class).await;
        let conn = self.writes().acquire().await?;
        record_write_wait(started);
        Ok(conn)
    }

    /// This write's place in line for the SQLite writer ([`WriterLine`]); on PostgreSQL, none
    /// (no line of furrow's own).
    async fn writer_turn(&self, class: WriteClass) -> Option<WriterTurn> {
        match self.backend {
            Backend::Postgres => None,
            Backend::Sqlite => Some(self.writer_line.turn(class).await),
        }
    }

    /// Applies pending migrations (idempotent; safe from several replicas at once because
    /// each migration and its record commit in one transaction). A migration whose first line
    /// is [`POSTGRES_ONLY`] is recorded on SQLite without running.
    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            .execute(&self.pool)
            .await?;
        for (name, sql) in MIGRATIONS {
            let applied = sqlx::query("SELECT name FROM schema_migrations WHERE name = $1")
                .bind(*name)
                .fetch_optional(&self.pool)
                .await?
                .is_some();
            if applied {
                continue;
            }
            let fail = |source| StoreError::Migration {
                name: name.to_string(),
                source,
            };
            let mut tx = self.pool.begin().await.map_err(fail)?;
            // Comments go first: they may contain semicolons.
            let sql = if sql.starts_with(POSTGRES_ONLY) && self.backend == Backend::Sqlite {
                String::new()
            } else {
                strip_comments(sql)
            };
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            sqlx::query("INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)")
                .bind(*name)
                .bind(leaf_time_now())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
        }
        Ok(())
    }
}

fn strip_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// A conflict with a concurrent transaction (PostgreSQL deadlock or serialization failure,
/// SQLite busy): the statement did nothing and can be run again.
fn is_transient_conflict(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
                || db.message().contains("database is locked")
        }
        _ => false,
    }
}

/// Runs a write again (up to three times) when it lost a conflict with a background job, so
/// an API caller never sees a 500 for a race they did not cause.
pub(crate) async fn retry_conflicts<T, F, Fut>(mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if tries < 3 && is_transient_conflict(&e) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20 * tries)).await;
            }
            other => return other,
        }
    }
}

/// A WHERE clause from optional filters; text values are bound as `$1, $2, …` in order.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    conditions: Vec<String>,
    texts: Vec<String>,
}

impl Filters {
    /// `column = $n` when `value` is set.
    pub(crate) fn eq(mut self, column: &str, value: Option<&str>) -> Self {
        if let Some(v) = value {
            self.texts.push(v.to_string());
            self.conditions
                .push(format!("{column} = ${}", self.texts.len()));
        }
        self
    }

    /// A condition without user text (constants, integers already parsed).
    pub(crate) fn raw(mut self, condition: impl Into<String>) -> Self {
        self.conditions.push(condition.into());
        self
    }

    fn clause(&self) -> String {
        if self.conditions.is_empty() {
            "1 = 1".into()
        } else {
            self.conditions.join(" AND ")
        }
    }
}

impl Store {
    /// One page of `SELECT {columns} {from} WHERE {filters} ORDER BY {order}` and the total.
    pub(crate) async fn page(
        &self,
        columns: &str,
        from: &str,
        filters: &Filters,
        order: &str,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AnyRow>, i64)> {
        let clause = filters.clause();
        let count_sql = format!("SELECT COUNT(*) AS n {from} WHERE {clause}");
        let mut count = sqlx::query(&count_sql);
        for t in &filters.texts {
            count = count.bind(t.clone());
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("n")?;
        let n = filters.texts.len();
        let page_sql = format!(
            "SELECT {columns} {from} WHERE {clause} ORDER BY {order} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut page = sqlx::query(&page_sql);
        for t in &filters.texts {
            page = page.bind(t.clone());
        }
        let rows = page.bind(limit).bind(offset).fetch_all(&self.pool).await?;
        Ok((rows, total))
    }
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

impl Change {
    /// The outcome of an upsert that touched `rows` rows (an update that changed nothing
    /// touches none) of a row that `existed` before it.
    fn of_upsert(existed: bool, rows: u64) -> Self {
        match (existed, rows) {
            (false, _) => Self::Created,
            (true, 0) => Self::Unchanged,
            (true, _) => Self::Updated,
        }
    }
}

/// Starts the write-ahead log over. This process's writes pause meanwhile (the writer
/// connection is held); another process's writers make it give up within a short busy timeout,
/// to try again at the next tick, rather than hold this one's writes up.
async fn restart_log(checkpointer: &AnyPool, writer: &AnyPool) -> StoreResult<()> {
    use sqlx::Executor;
    // (The checkpointer's connection is its own: acquiring it waits for nobody.)
    let mut conn = checkpointer.acquire().await?;
    conn.execute("PRAGMA busy_timeout = 200").await?;
    let _paused = writer.acquire().await?;
    conn.execute("PRAGMA wal_checkpoint(RESTART)").await?;
    Ok(())
}

/// Copies SQLite's write-ahead log into the database every [`CHECKPOINT_EVERY`], on a connection
/// of its own, until the store is gone. Left to SQLite, the commit that crossed the log's
/// threshold ran the checkpoint (copying and syncing megabytes) on the one writer connection,
/// and every queued write waited for it: a fifth of the writer's time in the sync benchmark.
/// A passive checkpoint takes no write lock, so writers go on meanwhile. But the log starts
/// over only once it is copied whole, which never happens while writes keep coming: past
/// [`WAL_RESTART_FRAMES`] the checkpointer restarts it between two writes (little is
/// left to copy by then; see [`restart_log`]).
fn spawn_checkpointer(checkpointer: AnyPool, writer: AnyPool, alive: std::sync::Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.upgrade().is_none() {
                break;
            }
            // (busy, frames in the log, frames copied); busy when another process's
            // checkpointer is at it (replicas sharing the file).
            let passive = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&checkpointer)
                .await;
            let frames = match passive {
                Ok((_, frames, _)) => frames,
                Err(e) => {
                    tracing::debug!(error = %e, "checkpoint skipped");
                    continue;
                }
            };
            if frames > WAL_RESTART_FRAMES {
                if let Err(e) = restart_log(&checkpointer, &writer).await {
                    tracing::debug!(error = %e, "write-ahead log not restarted");
                }
            }
        }
        checkpointer.close().await;
    });
}

impl Store {
    /// A transaction for writes. On SQLite it takes the write lock at its start (`BEGIN
    /// IMMEDIATE`, waiting up to the busy timeout), so it may read before it writes: a deferred
    /// transaction that read first is refused the lock without waiting once another connection
    /// has written.
    ///
    /// How long it waited is recorded ([`record_write_wait`]): on SQLite, the queue for the one
    /// writer, which is where a busy database makes everything slow.
    pub(crate) async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        let started = std::time::Instant::now();
        let tx = match self.backend {
            Backend::Sqlite => {
                // Held until this transaction has the writer: only then does the next write in
                // the line get its turn.
                let _turn = self.writer_turn(write_class_now()).await;
                self.writes().begin_with("BEGIN IMMEDIATE").await?
            }
            Backend::Postgres => self.pool().begin().await?,
        };
        record_write_wait(started);
        Ok(tx)
    }
}

/// Records how long a write waited for its connection (`furrow_db_write_wait_seconds`), by
/// how its work takes its turn: ahead ([`ahead`]: an API request, a grower just connected),
/// giving way ([`giving_way`]), or as everyone else's (`work="other"`: token upkeep, syncs of
/// accounts still new).
fn record_write_wait(started: std::time::Instant) {
    let work = match turn_now() {
        Some(Turn::Ahead) => "ahead",
        Some(Turn::GivingWay) => "giving_way",
        None => "other",
    };
    metrics::histogram!("furrow_db_write_wait_seconds", "work" => work)
        .record(started.elapsed().as_secs_f64());
}

/// Values bound in one `IN (…)` list or multi-row `VALUES` at most (well under SQLite's and
/// PostgreSQL's limits on bound parameters per statement).
pub(crate) const MAX_BOUND: usize = 900;

/// The rows of `sql` for every value of `list`, a few hundred values per statement: `sql`
/// holds `{list}` where the `IN` list goes, and binds the `leading` values first.
pub(crate) async fn fetch_in(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    leading: &[&str],
    list: &[&str],
) -> StoreResult<Vec<AnyRow>> {
    let mut rows = Vec::new();
    for chunk in list.chunks(MAX_BOUND) {
        let sql = positional(
            conn,
            &sql.replace("{list}", &placeholders(leading.len() + 1, chunk.len())),
        );
        let mut query = sqlx::query(&sql);
        for value in leading.iter().chain(chunk) {
            query = query.bind(*value);
        }
        rows.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// The rows of `sql` for `keys`, a batch of [`MAX_BOUND`] at a time: `{keys}` in `sql` is where
/// a `(VALUES …)` of them goes (bound first; a key is `column1` of it) and `{after}` the
/// placeholder of `after` (bound last). For a lookup of each key on a whole unique key, in a
/// subquery per key: with `IN (…)` beside the key's leading column, PostgreSQL planned by that
/// column alone while the table's statistics were still those of an empty table (a new
/// install's first large sync) and compared every row it matched with the list — 50-90 ms a
/// batch of 64 under load, where a lookup per key takes about 1 ms for them all.
pub(crate) async fn fetch_each(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    keys: &[&str],
    after: &str,
) -> StoreResult<Vec<AnyRow>> {
    let mut rows = Vec::new();
    for chunk in keys.chunks(MAX_BOUND - 1) {
        let sql = sql
            .replace("{keys}", &value_rows(chunk.len(), 1, |v| v[0].clone()))
            .replace("{after}", &format!("${}", chunk.len() + 1));
        let sql = positional(conn, &sql);
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(*key);
        }
        rows.extend(query.bind(after).fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// The positions of `keys` whose key does not come again later, in order: what a multi-row
/// upsert writes when a batch holds an item twice (the last read wins; PostgreSQL refuses to
/// upsert one row twice in a statement).
pub(crate) fn last_of_each<K: Eq + std::hash::Hash>(keys: &[K]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    let mut last: Vec<usize> = (0..keys.len())
        .rev()
        .filter(|&i| seen.insert(&keys[i]))
        .collect();
    last.reverse();
    last
}

/// `$from, $from+1, …`: `n` placeholders for values bound in order.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sql` as it goes to `conn`: on SQLite, numbered placeholders that appear once each and in
/// order (`$1, $2, …`, as [`value_rows`] and [`fetch_in`] write them) become anonymous ones
/// (`?`), bound in the same order. sqlx-sqlite finds a numbered placeholder's value by its
/// name, which SQLite looks up by scanning them all: with the thousand values of a page's
/// multi-row upsert, that was a seventh of the write connection's time, all of it holding
/// the one write lock. Any other SQL is left as it is.
pub(crate) fn positional(conn: &sqlx::AnyConnection, sql: &str) -> String {
    match conn.backend_name() {
        "SQLite" => anonymous_placeholders(sql).unwrap_or_else(|| sql.to_string()),
        _ => sql.to_string(),
    }
}

/// `sql` with `$1, $2, …` made `?`, if they appear in that order, once each (outside quotes).
fn anonymous_placeholders(sql: &str) -> Option<String> {
    let mut out = String::with_capacity(sql.len());
    let (mut rest, mut next, mut quoted) = (sql, 1usize, false);
    while let Some(at) = rest.find(['$', '\'']) {
        out.push_str(&rest[..at]);
        let (mark, tail) = rest[at..].split_at(1);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if mark == "'" {
            quoted = !quoted;
        } else if !quoted && digits > 0 {
            if tail[..digits].parse::<usize>().ok()? != next {
                return None;
            }
            out.push('?');
            next += 1;
            rest = &tail[digits..];
            continue;
        }
        out.push_str(mark);
        rest = tail;
    }
    out.push_str(rest);
    Some(out)
}

/// `rows` tuples for a multi-row `VALUES`, of `width` placeholders each, numbered on from `$1`;
/// `shape` writes a tuple's contents from its placeholders (to add constants). A value wanted
/// twice is bound twice: placeholders used once each, in order, go to SQLite as anonymous ones
/// ([`positional`]).
pub(crate) fn value_rows(rows: usize, width: usize, shape: impl Fn(&[String]) -> String) -> String {
    (0..rows)
        .map(|r| {
            let values: Vec<String> = (r * width + 1..=(r + 1) * width)
                .map(|i| format!("${i}"))
                .collect();
            format!("({})", shape(&values))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A bound query, to add values to before it runs.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

impl Store {
    /// Leases the rows of `ids` (candidates a claim chose with a plain read) with `update`,
    /// which holds `{ids}` where their `IN` list goes, binds its own values first through
    /// `leading` (`$1..$leading_count`) and re-checks the lease condition, so rows another
    /// replica leased in between are skipped. Returns the updated rows, in the order of `ids`.
    ///
    /// Why not one `UPDATE … WHERE id IN (SELECT …)`: SQLite holds its one write lock for the
    /// whole statement, so every other writer waited while a claim ranked its candidates.
    pub(crate) async fn lease_chosen(
        &self,
        ids: &[String],
        update: &str,
        leading_count: usize,
        leading: impl for<'q> FnOnce(AnyQuery<'q>) -> AnyQuery<'q>,
    ) -> StoreResult<Vec<AnyRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = update.replace("{ids}", &placeholders(leading_count + 1, ids.len()));
        let mut query = leading(sqlx::query(&sql));
        for id in ids {
            query = query.bind(id.as_str());
        }
        // Leases go first in the writer's line: a claim's slots stand empty until it is done.
        let mut rows = query
            .fetch_all(&mut *self.writer_as(WriteClass::Lease).await?)
            .await?;
        let position = |row: &AnyRow| {
            let id: String = row.try_get("id").unwrap_or_default();
            ids.iter().position(|i| *i == id)
        };
        rows.sort_by_key(position);
        Ok(rows)
    }

    /// Whether a row with this id exists (tables with a TEXT `id`; names are ours, not input).
    pub(crate) async fn exists(&self, table: &str, id: &str) -> StoreResult<bool> {
        Ok(
            sqlx::query(&format!("SELECT 1 AS one FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Leaf's time format: `yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'`, UTC.
pub fn leaf_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn leaf_time_now() -> String {
    leaf_time(chrono::Utc::now())
}

pub fn leaf_time_from_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(leaf_time)
        .unwrap_or_default()
}

pub(crate) fn opt_string(row: &AnyRow, column: &str) -> StoreResult<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}

/// A migrated store on a fresh SQLite file, for unit tests (an in-memory database would be one
/// per pooled connection).
#[cfg(test)]
pub(crate) async fn temp_sqlite_store(name: &str) -> Store {
    let path = std::env::temp_dir().join(format!("furrow-{name}-{}.db", uuid::Uuid::new_v4()));
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

/// A credential `cred` for unit tests, with its user (`u-{cred}`) and API owner (`o-{cred}`).
#[cfg(test)]
pub(crate) async fn test_credential(store: &Store, cred: &str) {
    let at = "2026-01-01T00:00:00Z";
    for sql in [
        format!("INSERT INTO api_owners (id, email, password_hash, created_at) VALUES ('o-{cred}', '{cred}@x', '-', '{at}')"),
        format!("INSERT INTO leaf_users (id, owner_id, created_at) VALUES ('u-{cred}', 'o-{cred}', '{at}')"),
        format!(
            "INSERT INTO jd_credentials (id, leaf_user_id, client_key, client_secret_enc, refresh_token_enc, scopes, environment, status, created_at, version) \
             VALUES ('{cred}', 'u-{cred}', 'k', '-', '-', '', 'STAGE', 'OK', '{at}', 1)"
        ),
    ] {
        sqlx::query(&sql).execute(store.pool()).await.unwrap();
    }
}

/// Two unit tests of an async store scenario (`async fn(&Store)`): `$sqlite` on a new SQLite
/// file, `$postgres` on a new PostgreSQL database ([`TempPostgres`]).
#[cfg(test)]
macro_rules! test_on_both_databases {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $scenario(&crate::store::temp_sqlite_store(stringify!($scenario)).await).await;
        }

        #[tokio::test]
        async fn $postgres() {
            let db = crate::store::TempPostgres::new().await;
            $scenario(&db.store).await;
            db.finish().await;
        }
    };
}
#[cfg(test)]
pub(crate) use test_on_both_databases;

/// A migrated store on a new database of the machine's PostgreSQL server
/// (`FURROW_TEST_POSTGRES_URL`, by default the `postgres` database on 127.0.0.1:5432), for unit
/// tests of what only PostgreSQL's planner does. [`TempPostgres::finish`] drops the database.
#[cfg(test)]
pub(crate) struct TempPostgres {
    pub store: Store,
    admin: String,
    name: String,
}

#[cfg(test)]
impl TempPostgres {
    pub async fn new() -> Self {
        let admin = std::env::var("FURROW_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("furrow_unit_{}", uuid::Uuid::new_v4().simple());
        Self::admin_statement(&admin, &format!("CREATE DATABASE {name}")).await;
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&format!("/{name}"));
        let store = Store::connect(url.as_str()).await.unwrap();
        store.migrate().await.unwrap();
        Self { store, admin, name }
    }

    pub async fn finish(self) {
        self.store.pool().close().await;
        Self::admin_statement(
            &self.admin,
            &format!("DROP DATABASE {} WITH (FORCE)", self.name),
        )
        .await;
    }

    async fn admin_statement(admin: &str, sql: &str) {
        sqlx::any::install_default_drivers();
        let pool = AnyPool::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {admin}: {e}"));
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_of_each_key_is_kept_in_order() {
        assert_eq!(last_of_each(&["a", "b", "a", "c", "b"]), [2, 3, 4]);
        assert_eq!(last_of_each::<&str>(&[]), Vec::<usize>::new());
    }

    #[test]
    fn placeholders_used_once_each_in_order_become_anonymous() {
        assert_eq!(
            anonymous_placeholders("INSERT INTO t VALUES ($1, 'a$1', 0, $2), ($3, '', $4)")
                .as_deref(),
            Some("INSERT INTO t VALUES (?, 'a$1', 0, ?), (?, '', ?)")
        );
        assert_eq!(
            anonymous_placeholders("SELECT x FROM t WHERE id IN ($1, $2) AND y = 'it''s $3'")
                .as_deref(),
            Some("SELECT x FROM t WHERE id IN (?, ?) AND y = 'it''s $3'")
        );
        // Repeated, out of order, or skipping one: the numbers are needed.
        for kept in [
            "UPDATE t SET a = $1 WHERE b = $1",
            "UPDATE t SET a = $2 WHERE b = $1",
            "UPDATE t SET a = $1 WHERE b = $3",
        ] {
            assert_eq!(anonymous_placeholders(kept), None, "{kept}");
        }
    }

    #[tokio::test]
    async fn work_ahead_while_a_condition_holds_is_ahead_only_then() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let still = std::sync::Arc::new(AtomicBool::new(true));
        let asked = still.clone();
        ahead_while(move || asked.load(Ordering::SeqCst), async {
            assert_eq!(write_class_now(), WriteClass::Ahead);
            // Work inside that gives way does, whatever the condition.
            giving_way(async { assert_eq!(write_class_now(), WriteClass::GivingWay) }).await;
            // Asked again at the next write: no longer ahead.
            still.store(false, Ordering::SeqCst);
            assert_eq!(write_class_now(), WriteClass::Other);
            assert_eq!(turn_now(), None);
            ahead(async { assert_eq!(write_class_now(), WriteClass::Ahead) }).await;
        })
        .await;
        assert_eq!(write_class_now(), WriteClass::Other);
    }

    /// The order in which writes that arrive one after another behind a held transaction get
    /// the writer: `(name, gives way)` in order of arrival, as transactions
    /// ([`Store::begin_write`]) or single statements ([`Store::writer`]).
    async fn writer_queue_order(
        single: bool,
        arrivals: &[(&'static str, WriteClass)],
    ) -> Vec<&'static str> {
        let store = temp_sqlite_store(if single {
            "giving-way-single"
        } else {
            "giving-way"
        })
        .await;
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = store.begin_write().await.unwrap();
        let write = |name: &'static str, class: WriteClass| {
            let (store, order) = (store.clone(), order.clone());
            async move {
                if single {
                    let _conn = match class {
                        WriteClass::Lease => store.writer_as(class).await.unwrap(),
                        _ => store.writer().await.unwrap(),
                    };
                    order.lock().unwrap().push(name);
                } else {
                    let tx = store.begin_write().await.unwrap();
                    order.lock().unwrap().push(name);
                    tx.commit().await.unwrap();
                }
            }
        };
        let mut tasks = Vec::new();
        for &(name, class) in arrivals {
            tasks.push(match class {
                WriteClass::GivingWay => tokio::spawn(giving_way(write(name, class))),
                WriteClass::Ahead => tokio::spawn(ahead(write(name, class))),
                WriteClass::Lease | WriteClass::Other => tokio::spawn(write(name, class)),
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        held.commit().await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        order
    }

    const THREE_BULK_THEN_URGENT: [(&str, WriteClass); 4] = [
        ("bulk 1", WriteClass::GivingWay),
        ("bulk 2", WriteClass::GivingWay),
        ("bulk 3", WriteClass::GivingWay),
        ("urgent", WriteClass::Other),
    ];

    /// Work giving way has one place at a time in the writer's queue: a write of other work
    /// that comes after three of its transactions queued waits for at most one of them.
    #[tokio::test]
    async fn a_write_waits_for_at_most_one_transaction_of_work_giving_way() {
        assert_eq!(
            writer_queue_order(false, &THREE_BULK_THEN_URGENT).await,
            ["bulk 1", "urgent", "bulk 2", "bulk 3"]
        );
    }

    /// The same holds for single write statements of work giving way (a part's progress,
    /// signatures): they once went straight into the writer's queue.
    #[tokio::test]
    async fn a_write_waits_for_at_most_one_single_write_of_work_giving_way() {
        assert_eq!(
            writer_queue_order(true, &THREE_BULK_THEN_URGENT).await,
            ["bulk 1", "urgent", "bulk 2", "bulk 3"]
        );
    }

    /// Work giving way takes its place in the writer's queue only while no other write waits:
    /// a write of other work that comes after it still goes first.
    #[tokio::test]
    async fn work_giving_way_lets_writes_waiting_or_coming_meanwhile_go_first() {
        assert_eq!(
            writer_queue_order(
                false,
                &[
                    ("urgent 1", WriteClass::Other),
                    ("bulk", WriteClass::GivingWay),
                    ("urgent 2", WriteClass::Other)
                ]
            )
            .await,
            ["urgent 1", "urgent 2", "bulk"]
        );
    }

    /// A claim's lease goes before every other write waiting: the slots it fills stand empty
    /// until it is done.
    #[tokio::test]
    async fn a_lease_goes_before_the_writes_waiting() {
        assert_eq!(
            writer_queue_order(
                true,
                &[
                    ("bulk", WriteClass::GivingWay),
                    ("other 1", WriteClass::Other),
                    ("other 2", WriteClass::Other),
                    ("lease", WriteClass::Lease)
                ]
            )
            .await,
            ["bulk", "lease", "other 1", "other 2"]
        );
    }

    /// Work ahead (an API request, the newest growers' syncs) goes before every other write
    /// waiting but a claim's lease (a single statement), as single statements and as
    /// transactions.
    #[tokio::test]
    async fn work_ahead_goes_before_the_writes_waiting_after_a_lease() {
        // The first to come has the one place in the pool's queue already.
        let arrivals = [
            ("first", WriteClass::Other),
            ("other", WriteClass::Other),
            ("bulk", WriteClass::GivingWay),
            ("ahead", WriteClass::Ahead),
            ("lease", WriteClass::Lease),
        ];
        assert_eq!(
            writer_queue_order(true, &arrivals).await,
            ["first", "lease", "ahead", "other", "bulk"]
        );
        assert_eq!(
            writer_queue_order(false, &arrivals[..4]).await,
            ["first", "ahead", "other", "bulk"]
        );
    }

    /// A multi-row upsert through [`positional`] binds each value where it was meant to go.
    #[tokio::test]
    async fn anonymous_placeholders_bind_in_order_on_sqlite() {
        let store = temp_sqlite_store("positional").await;
        let mut conn = store.pool().acquire().await.unwrap();
        sqlx::query("CREATE TABLE t (a TEXT, b INTEGER, c TEXT)")
            .execute(&mut *conn)
            .await
            .unwrap();
        let sql = positional(
            &conn,
            &format!(
                "INSERT INTO t (a, b, c) VALUES {}",
                value_rows(2, 3, |p| p.join(", "))
            ),
        );
        assert!(!sql.contains('$'), "{sql}");
        sqlx::query(&sql)
            .bind("x")
            .bind(1i64)
            .bind("y")
            .bind("z")
            .bind(2i64)
            .bind(Option::<String>::None)
            .execute(&mut *conn)
            .await
            .unwrap();
        let rows: Vec<(String, i64, Option<String>)> =
            sqlx::query_as("SELECT a, b, c FROM t ORDER BY b")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        assert_eq!(
            rows,
            vec![("x".into(), 1, Some("y".into())), ("z".into(), 2, None)]
        );
    }

    /// With SQLite's own checkpoints off, what is written reaches the database file only through
    /// the checkpointer.
    #[tokio::test]
    async fn the_checkpointer_copies_the_log_into_the_database() {
        let dir = std::env::temp_dir().join(format!("furrow-wal-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("furrow.db");
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE filler (body TEXT NOT NULL)")
            .execute(store.pool())
            .await
            .unwrap();
        let file_size = || std::fs::metadata(&path).unwrap().len();
        let before = file_size();
        // 2 MiB: under SQLite's own threshold (1,000 pages), so only ours can copy it.
        let mut tx = store.begin_write().await.unwrap();
        for _ in 0..64 {
            sqlx::query("INSERT INTO filler (body) VALUES ($1)")
                .bind("x".repeat(32 * 1024))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let copied = async {
            while file_size() < before + 2 * 1024 * 1024 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), copied)
            .await
            .expect("the database file never received the log's pages");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
