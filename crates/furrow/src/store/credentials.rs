//! John Deere credentials (secrets as ciphertexts) and their event log.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, opt_string, Store, StoreResult};

/// A credential row. `*_enc` fields are ciphertexts from [`crate::crypto::Keyring`].
#[derive(Debug, Clone)]
pub struct CredentialRecord {
    pub id: String,
    pub leaf_user_id: String,
    pub client_key: String,
    pub client_secret_enc: String,
    pub refresh_token_enc: String,
    pub access_token_enc: Option<String>,
    pub access_expires_ms: Option<i64>,
    pub scopes: String,
    pub environment: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub created_at: String,
    pub last_refresh_ms: Option<i64>,
    pub last_check_ms: Option<i64>,
    /// Bumped by every token write; writes compare it (a stale writer changes nothing).
    pub version: i64,
}

/// The result of a token call, ready to store.
#[derive(Debug, Clone)]
pub struct TokenWrite {
    pub access_token_enc: String,
    pub access_expires_ms: i64,
    /// `None`: the response had no refresh token, keep the stored one.
    pub refresh_token_enc: Option<String>,
    pub scopes: String,
    pub status: String,
    pub status_reason: Option<String>,
}

/// Releasing a job as part of another write.
#[derive(Debug, Clone, Copy)]
pub struct JobReschedule<'a> {
    pub job_id: &'a str,
    pub owner: &'a str,
    pub run_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub method: Option<String>,
    pub url: Option<String>,
    pub status_code: Option<i64>,
    pub headers: String,
    pub body: String,
}

impl NewEvent {
    /// An event that is not an HTTP exchange: furrow's own note (a status change, a browser
    /// connection attempt).
    pub fn note(body: serde_json::Value) -> Self {
        Self {
            method: None,
            url: None,
            status_code: None,
            headers: "{}".into(),
            body: body.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: String,
    pub created_at: String,
    pub method: Option<String>,
    pub url: Option<String>,
    pub status_code: Option<i64>,
    pub headers: String,
    pub body: String,
}

/// Leaf user id → (owner id, credential, valid until ms).
type CacheMap = std::collections::HashMap<String, (String, CredentialRecord, i64)>;

/// Recently read credentials by Leaf user id, with their owner. Holds ciphertexts only.
#[derive(Debug, Clone, Default)]
pub(crate) struct CredentialCache {
    ttl_ms: i64,
    entries: std::sync::Arc<std::sync::Mutex<CacheMap>>,
}

impl CredentialCache {
    pub(crate) fn new(ttl_ms: u64) -> Self {
        Self {
            ttl_ms: ttl_ms as i64,
            entries: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheMap> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, owner: &str, user: &str) -> Option<CredentialRecord> {
        if self.ttl_ms == 0 {
            return None;
        }
        let now = now_ms();
        self.lock()
            .get(user)
            .filter(|(o, _, until)| o == owner && *until > now)
            .map(|(_, c, _)| c.clone())
    }

    fn put(&self, owner: &str, record: &CredentialRecord) {
        if self.ttl_ms == 0 {
            return;
        }
        let now = now_ms();
        let mut entries = self.lock();
        if entries.len() > 100_000 {
            entries.retain(|_, (_, _, until)| *until > now);
        }
        entries.insert(
            record.leaf_user_id.clone(),
            (owner.to_string(), record.clone(), now + self.ttl_ms),
        );
    }

    pub(crate) fn forget_user(&self, user: &str) {
        self.lock().remove(user);
    }

    fn forget_credential(&self, id: &str) {
        self.lock().retain(|_, (_, c, _)| c.id != id);
    }
}

const CREDENTIAL_COLUMNS: &str = "c.id, c.leaf_user_id, c.client_key, c.client_secret_enc, \
    c.refresh_token_enc, c.access_token_enc, c.access_expires_ms, c.scopes, c.environment, \
    c.status, c.status_reason, c.created_at, c.last_refresh_ms, c.last_check_ms, c.version";

fn credential_from_row(r: &AnyRow) -> StoreResult<CredentialRecord> {
    Ok(CredentialRecord {
        id: r.try_get("id")?,
        leaf_user_id: r.try_get("leaf_user_id")?,
        client_key: r.try_get("client_key")?,
        client_secret_enc: r.try_get("client_secret_enc")?,
        refresh_token_enc: r.try_get("refresh_token_enc")?,
        access_token_enc: opt_string(r, "access_token_enc")?,
        access_expires_ms: r.try_get("access_expires_ms")?,
        scopes: r.try_get("scopes")?,
        environment: r.try_get("environment")?,
        status: r.try_get("status")?,
        status_reason: opt_string(r, "status_reason")?,
        created_at: r.try_get("created_at")?,
        last_refresh_ms: r.try_get("last_refresh_ms")?,
        last_check_ms: r.try_get("last_check_ms")?,
        version: r.try_get("version")?,
    })
}

impl Store {
    /// Stores a credential for a user, replacing (and so deleting the events and jobs of) any
    /// previous one, and schedules its maintenance job — all in one transaction. Returns the
    /// URIs of the replaced credential's event subscriptions, to remove on John Deere.
    pub async fn replace_credential(
        &self,
        credential: &CredentialRecord,
        events: &[NewEvent],
        next_run_ms: i64,
        alerts: &[(String, String)],
    ) -> StoreResult<Vec<String>> {
        self.credentials.forget_user(&credential.leaf_user_id);
        let replaced = super::retry_conflicts(|| {
            self.replace_credential_once(credential, events, next_run_ms, alerts)
        })
        .await;
        // Again once written (see set_status).
        self.credentials.forget_user(&credential.leaf_user_id);
        replaced
    }

    async fn replace_credential_once(
        &self,
        credential: &CredentialRecord,
        events: &[NewEvent],
        next_run_ms: i64,
        alerts: &[(String, String)],
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let subscriptions = super::webhooks::take_subscriptions_in(
            &mut tx,
            self.backend(),
            &credential.leaf_user_id,
        )
        .await?;
        sqlx::query("DELETE FROM jd_credentials WHERE leaf_user_id = $1")
            .bind(&credential.leaf_user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO jd_credentials (id, leaf_user_id, client_key, client_secret_enc, refresh_token_enc, \
             access_token_enc, access_expires_ms, scopes, environment, status, status_reason, created_at, \
             last_refresh_ms, last_check_ms, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&credential.id)
        .bind(&credential.leaf_user_id)
        .bind(&credential.client_key)
        .bind(&credential.client_secret_enc)
        .bind(&credential.refresh_token_enc)
        .bind(credential.access_token_enc.clone())
        .bind(credential.access_expires_ms)
        .bind(&credential.scopes)
        .bind(&credential.environment)
        .bind(&credential.status)
        .bind(credential.status_reason.clone())
        .bind(&credential.created_at)
        .bind(credential.last_refresh_ms)
        .bind(credential.last_check_ms)
        .bind(credential.version)
        .execute(&mut *tx)
        .await?;
        for event in events {
            insert_event(&mut tx, &credential.id, event).await?;
        }
        // Two jobs per credential: keeping it alive, and syncing its data (due at once).
        for (kind, run_at) in [("credential", next_run_ms), ("sync", super::now_ms())] {
            sqlx::query("INSERT INTO jobs (id, kind, credential_id, run_at_ms, attempts, request_id) VALUES ($1, $2, $3, $4, 0, $5)")
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(kind)
                .bind(&credential.id)
                .bind(run_at)
                .bind(crate::request_context::current())
                .execute(&mut *tx)
                .await?;
        }
        super::alerts::queue_in(&mut tx, alerts).await?;
        tx.commit().await?;
        Ok(subscriptions)
    }

    /// The credential of a Leaf user the caller has checked the owner of.
    pub async fn credential_of(&self, user: &str) -> StoreResult<Option<CredentialRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM jd_credentials c WHERE c.leaf_user_id = $1"
        ))
        .bind(user)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(credential_from_row).transpose()
    }

    /// The credential of an owner's Leaf user.
    pub async fn credential_of_user(
        &self,
        owner: &str,
        user: &str,
    ) -> StoreResult<Option<CredentialRecord>> {
        if let Some(cached) = self.credentials.get(owner, user) {
            return Ok(Some(cached));
        }
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM jd_credentials c JOIN leaf_users u ON u.id = c.leaf_user_id \
             WHERE c.leaf_user_id = $1 AND u.owner_id = $2"
        ))
        .bind(user)
        .bind(owner)
        .fetch_optional(self.pool())
        .await?;
        let record = row.as_ref().map(credential_from_row).transpose()?;
        if let Some(r) = &record {
            self.credentials.put(owner, r);
        }
        Ok(record)
    }

    /// A credential by id, for the engine (no owner scope: the engine works for every owner).
    pub async fn credential(&self, id: &str) -> StoreResult<Option<CredentialRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM jd_credentials c WHERE c.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(credential_from_row).transpose()
    }

    pub async fn all_credentials(&self) -> StoreResult<Vec<CredentialRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM jd_credentials c"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(credential_from_row).collect()
    }

    /// Deletes an owner's user's credential with its events and jobs. Returns the URIs of its
    /// event subscriptions (to remove on John Deere), or `None` when there was no credential.
    pub async fn delete_credential(
        &self,
        owner: &str,
        user: &str,
    ) -> StoreResult<Option<Vec<String>>> {
        self.credentials.forget_user(user);
        let deleted = super::retry_conflicts(|| self.delete_credential_once(owner, user)).await;
        // Again once deleted (see set_status).
        self.credentials.forget_user(user);
        deleted
    }

    async fn delete_credential_once(
        &self,
        owner: &str,
        user: &str,
    ) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.begin_write().await?;
        if !super::users::owns_in(&mut tx, owner, user).await? {
            return Ok(None);
        }
        let subscriptions =
            super::webhooks::take_subscriptions_in(&mut tx, self.backend(), user).await?;
        let r = sqlx::query("DELETE FROM jd_credentials WHERE leaf_user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((r.rows_affected() == 1).then_some(subscriptions))
    }

    /// Stores a token response — the new access token and, when present, the new refresh
    /// token, together — if the credential is still at `expected_version`. Returns whether it
    /// was written (false: the credential was deleted, replaced or written by someone else).
    /// With `reschedule`, the job is released and rescheduled in the same transaction.
    pub async fn write_tokens(
        &self,
        id: &str,
        expected_version: i64,
        tokens: &TokenWrite,
        events: &[NewEvent],
        reschedule: Option<JobReschedule<'_>>,
        alerts: &[(String, String)],
    ) -> StoreResult<bool> {
        self.credentials.forget_credential(id);
        let commit = TokenCommit {
            id: id.to_string(),
            expected_version,
            tokens: tokens.clone(),
            events: events.to_vec(),
            reschedule: reschedule
                .map(|j| (j.job_id.to_string(), j.owner.to_string(), j.run_at_ms)),
            alerts: alerts.to_vec(),
        };
        let (reply, result) = tokio::sync::oneshot::channel();
        self.token_commits.push(commit, reply);
        {
            // Group commit: whoever holds the lock writes everything queued meanwhile in one
            // transaction. Many refreshes finishing together cost one commit, not one each.
            let _leader = self.token_commits.leader.lock().await;
            let batch = self.token_commits.take();
            if !batch.is_empty() {
                self.commit_token_batch(batch).await;
            }
        }
        let written = result
            .await
            .unwrap_or(Err(super::StoreError::Database(sqlx::Error::WorkerCrashed)));
        // Again once written (see set_status).
        self.credentials.forget_credential(id);
        written
    }

    async fn commit_token_batch(&self, batch: Vec<(TokenCommit, TokenReply)>) {
        let together = async {
            let mut tx = self.begin_write().await?;
            let mut written = Vec::with_capacity(batch.len());
            for (commit, _) in &batch {
                written.push(write_tokens_in(&mut tx, commit).await?);
            }
            tx.commit().await?;
            Ok::<_, super::StoreError>(written)
        }
        .await;
        match together {
            Ok(written) => {
                for ((_, reply), ok) in batch.into_iter().zip(written) {
                    let _ = reply.send(Ok(ok));
                }
            }
            // One bad write must not fail the others: each alone, with its own outcome.
            Err(_) if batch.len() > 1 => {
                for (commit, reply) in batch {
                    let _ = reply.send(self.write_tokens_alone(&commit).await);
                }
            }
            Err(e) => {
                if let Some((_, reply)) = batch.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    async fn write_tokens_alone(&self, commit: &TokenCommit) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let written = write_tokens_in(&mut tx, commit).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Sets the status (and records events) if the credential still exists at `expected_version`.
    pub async fn set_status(
        &self,
        id: &str,
        expected_version: i64,
        status: &str,
        reason: Option<&str>,
        events: &[NewEvent],
        alerts: &[(String, String)],
    ) -> StoreResult<bool> {
        self.credentials.forget_credential(id);
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE jd_credentials SET status = $1, status_reason = $2, last_check_ms = $3 \
             WHERE id = $4 AND version = $5",
        )
        .bind(status)
        .bind(reason.map(str::to_string))
        .bind(now_ms())
        .bind(id)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        for event in events {
            insert_event(&mut tx, id, event).await?;
        }
        super::alerts::queue_in(&mut tx, alerts).await?;
        tx.commit().await?;
        // Again after the commit: a read between the first forget and the commit cached the old
        // row (an API read then showed the old status until the cache expired).
        self.credentials.forget_credential(id);
        Ok(true)
    }

    /// Rewraps one credential's secrets if its ciphertexts are unchanged (key rotation).
    pub async fn rewrap_credential(
        &self,
        old: &CredentialRecord,
        client_secret_enc: &str,
        refresh_token_enc: &str,
        access_token_enc: Option<&str>,
    ) -> StoreResult<bool> {
        self.credentials.forget_credential(&old.id);
        let r = sqlx::query(
            "UPDATE jd_credentials SET client_secret_enc = $1, refresh_token_enc = $2, access_token_enc = $3 \
             WHERE id = $4 AND client_secret_enc = $5 AND refresh_token_enc = $6 \
             AND COALESCE(access_token_enc, '') = $7",
        )
        .bind(client_secret_enc)
        .bind(refresh_token_enc)
        .bind(access_token_enc.map(str::to_string))
        .bind(&old.id)
        .bind(&old.client_secret_enc)
        .bind(&old.refresh_token_enc)
        .bind(old.access_token_enc.clone().unwrap_or_default())
        .execute(&mut *self.writer().await?)
        .await?;
        self.credentials.forget_credential(&old.id);
        Ok(r.rows_affected() == 1)
    }

    pub async fn add_events(&self, credential_id: &str, events: &[NewEvent]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for event in events {
            insert_event(&mut tx, credential_id, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A page of a credential's events and the total.
    pub async fn list_events(
        &self,
        credential_id: &str,
        newest_first: bool,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<EventRecord>, i64)> {
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM credential_events WHERE credential_id = $1")
                .bind(credential_id)
                .fetch_one(self.pool())
                .await?
                .try_get("n")?;
        let order = if newest_first { "DESC" } else { "ASC" };
        let rows = sqlx::query(&format!(
            "SELECT id, created_at, method, url, status_code, headers, body FROM credential_events \
             WHERE credential_id = $1 ORDER BY created_us {order}, id {order} LIMIT $2 OFFSET $3"
        ))
        .bind(credential_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let events = rows
            .iter()
            .map(|r| {
                Ok(EventRecord {
                    id: r.try_get("id")?,
                    created_at: r.try_get("created_at")?,
                    method: opt_string(r, "method")?,
                    url: opt_string(r, "url")?,
                    status_code: r.try_get("status_code")?,
                    headers: r.try_get("headers")?,
                    body: r.try_get("body")?,
                })
            })
            .collect::<StoreResult<_>>()?;
        Ok((events, total))
    }

    /// Deletes events older than `before_ms`; returns how many.
    pub async fn delete_events_before(&self, before_ms: i64) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM credential_events WHERE created_us < $1")
            .bind(before_ms.saturating_mul(1000))
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(r.rows_affected())
    }
}

async fn insert_event(
    tx: &mut sqlx::AnyConnection,
    credential_id: &str,
    event: &NewEvent,
) -> StoreResult<()> {
    // Microsecond-distinct timestamps keep "newest first" stable for events of one call.
    let now = chrono::Utc::now();
    sqlx::query(
        "INSERT INTO credential_events (id, credential_id, created_at, created_us, method, url, status_code, headers, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(credential_id)
    .bind(super::leaf_time(now))
    .bind(now.timestamp_micros())
    .bind(event.method.clone())
    .bind(event.url.clone())
    .bind(event.status_code)
    .bind(&event.headers)
    .bind(&event.body)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// One token write, owned, waiting for a group commit.
#[derive(Debug)]
pub(super) struct TokenCommit {
    id: String,
    expected_version: i64,
    tokens: TokenWrite,
    events: Vec<NewEvent>,
    /// (job id, lease owner, next run) of the job to release with the write.
    reschedule: Option<(String, String, i64)>,
    alerts: Vec<(String, String)>,
}

type TokenReply = tokio::sync::oneshot::Sender<StoreResult<bool>>;

/// Token writes queued for the next group commit.
#[derive(Default)]
pub(super) struct TokenCommits {
    queue: std::sync::Mutex<Vec<(TokenCommit, TokenReply)>>,
    leader: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenCommits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCommits").finish_non_exhaustive()
    }
}

impl TokenCommits {
    fn push(&self, commit: TokenCommit, reply: TokenReply) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((commit, reply));
    }

    fn take(&self) -> Vec<(TokenCommit, TokenReply)> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Writes one token response if the credential is still at its expected version; false (and
/// nothing written) otherwise. Runs inside the caller's transaction.
async fn write_tokens_in(conn: &mut sqlx::AnyConnection, c: &TokenCommit) -> StoreResult<bool> {
    let tokens = &c.tokens;
    let r = sqlx::query(
        "UPDATE jd_credentials SET access_token_enc = $1, access_expires_ms = $2, \
         refresh_token_enc = COALESCE($3, refresh_token_enc), scopes = $4, status = $5, status_reason = $6, \
         last_refresh_ms = $7, last_check_ms = $7, version = version + 1 WHERE id = $8 AND version = $9",
    )
    .bind(&tokens.access_token_enc)
    .bind(tokens.access_expires_ms)
    .bind(tokens.refresh_token_enc.clone())
    .bind(&tokens.scopes)
    .bind(&tokens.status)
    .bind(tokens.status_reason.clone())
    .bind(now_ms())
    .bind(&c.id)
    .bind(c.expected_version)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    for event in &c.events {
        insert_event(conn, &c.id, event).await?;
    }
    if let Some((job_id, owner, run_at_ms)) = &c.reschedule {
        sqlx::query(
            "UPDATE jobs SET run_at_ms = CASE WHEN woken <> 0 THEN run_at_ms ELSE $1 END, attempts = 0, \
             request_id = CASE WHEN woken <> 0 THEN request_id ELSE NULL END, \
             last_error = NULL, lease_owner = NULL, lease_until_ms = NULL, woken = 0 \
             WHERE id = $2 AND lease_owner = $3",
        )
        .bind(*run_at_ms)
        .bind(job_id)
        .bind(owner)
        .execute(&mut *conn)
        .await?;
    }
    super::alerts::queue_in(conn, &c.alerts).await?;
    Ok(true)
}
