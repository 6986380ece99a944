//! John Deere event subscriptions and the inbox of verified deliveries.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{leaf_time_now, now_ms, Store, StoreResult};

/// An organization and event type covered by an event subscription furrow created on John
/// Deere (one subscription covers the credential's organizations for one event type).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub id: String,
    pub credential_id: String,
    pub provider_org_id: String,
    pub event_type: String,
    pub provider_subscription_id: String,
    /// John Deere's `self` link of the subscription (used to remove it).
    pub subscription_uri: String,
    /// Hex SHA-256 of the subscription's token; the token itself is never stored.
    pub token_sha256: String,
    pub created_at: String,
}

/// A verified delivered event, to queue.
#[derive(Debug, Clone)]
pub struct NewInboxItem {
    pub credential_id: String,
    pub provider_org_id: String,
    pub event_type: String,
    pub target_resource: String,
}

/// A claimed inbox row.
#[derive(Debug, Clone)]
pub struct InboxItem {
    pub id: String,
    pub credential_id: String,
    pub provider_org_id: String,
    pub event_type: String,
    pub target_resource: String,
    pub generation: i64,
    pub attempts: i64,
    pub received_ms: i64,
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, credential_id, provider_org_id, event_type, provider_subscription_id, \
    subscription_uri, token_sha256, created_at";

fn subscription_from(r: &AnyRow) -> StoreResult<SubscriptionRecord> {
    Ok(SubscriptionRecord {
        id: r.try_get("id")?,
        credential_id: r.try_get("credential_id")?,
        provider_org_id: r.try_get("provider_org_id")?,
        event_type: r.try_get("event_type")?,
        provider_subscription_id: r.try_get("provider_subscription_id")?,
        subscription_uri: r.try_get("subscription_uri")?,
        token_sha256: r.try_get("token_sha256")?,
        created_at: r.try_get("created_at")?,
    })
}

impl SubscriptionRecord {
    pub fn new(
        credential_id: &str,
        org: &str,
        event_type: &str,
        provider_subscription_id: &str,
        subscription_uri: &str,
        token_sha256: &str,
    ) -> SubscriptionRecord {
        SubscriptionRecord {
            id: uuid::Uuid::new_v4().to_string(),
            credential_id: credential_id.into(),
            provider_org_id: org.into(),
            event_type: event_type.into(),
            provider_subscription_id: provider_subscription_id.into(),
            subscription_uri: subscription_uri.into(),
            token_sha256: token_sha256.into(),
            created_at: leaf_time_now(),
        }
    }
}

impl Store {
    /// Stores subscriptions furrow created at John Deere for one credential, all in one write,
    /// if the credentials still exist. `false` when they were deleted meanwhile (nothing is
    /// stored): the caller removes them from John Deere (the deletion's own clean-up read the
    /// subscriptions before these existed).
    pub async fn insert_subscriptions(
        &self,
        subscriptions: &[SubscriptionRecord],
    ) -> StoreResult<bool> {
        let Some(first) = subscriptions.first() else {
            return Ok(true);
        };
        let credential_id = &first.credential_id;
        debug_assert!(subscriptions
            .iter()
            .all(|s| &s.credential_id == credential_id));
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 AS one FROM jd_credentials WHERE id = $1")
            .bind(credential_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(false);
        }
        let sql = format!(
            "INSERT INTO deere_subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES {}",
            super::value_rows(subscriptions.len(), 8, |p| p.join(", "))
        );
        let sql = super::positional(&tx, &sql);
        let mut insert = sqlx::query(&sql);
        for s in subscriptions {
            insert = insert
                .bind(&s.id)
                .bind(&s.credential_id)
                .bind(&s.provider_org_id)
                .bind(&s.event_type)
                .bind(&s.provider_subscription_id)
                .bind(&s.subscription_uri)
                .bind(&s.token_sha256)
                .bind(&s.created_at);
        }
        match insert.execute(&mut *tx).await {
            Ok(_) => {
                tx.commit().await?;
                Ok(true)
            }
            // PostgreSQL: the credentials were deleted between the check and the foreign key's
            // (the deletion held them locked): gone all the same.
            Err(sqlx::Error::Database(e))
                if e.kind() == sqlx::error::ErrorKind::ForeignKeyViolation =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn subscriptions(&self, credential_id: &str) -> StoreResult<Vec<SubscriptionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM deere_subscriptions WHERE credential_id = $1 \
             ORDER BY provider_org_id, event_type"
        ))
        .bind(credential_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(subscription_from).collect()
    }

    /// The rows of the subscription whose token has this SHA-256: one per organization it
    /// covers (none for a token furrow did not give out).
    pub async fn subscriptions_by_token(
        &self,
        token_sha256: &str,
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM deere_subscriptions WHERE token_sha256 = $1"
        ))
        .bind(token_sha256)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(subscription_from).collect()
    }

    /// Forgets a John Deere subscription: the rows of every organization it covered.
    pub async fn delete_subscription(
        &self,
        credential_id: &str,
        provider_subscription_id: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM deere_subscriptions WHERE credential_id = $1 AND provider_subscription_id = $2",
        )
        .bind(credential_id)
        .bind(provider_subscription_id)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    /// Queues verified events, all or none. An event for a resource already waiting bumps that
    /// row's generation (so a fetch running now is followed by another) instead of adding one.
    pub async fn enqueue_inbox(&self, items: &[NewInboxItem]) -> StoreResult<()> {
        super::retry_conflicts(|| self.enqueue_inbox_once(items)).await
    }

    async fn enqueue_inbox_once(&self, items: &[NewInboxItem]) -> StoreResult<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        for item in items {
            sqlx::query(
                "INSERT INTO deere_inbox (id, credential_id, provider_org_id, event_type, target_resource, \
                 generation, attempts, next_attempt_ms, received_ms) VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $6) \
                 ON CONFLICT (credential_id, target_resource) DO UPDATE SET \
                 generation = deere_inbox.generation + 1, attempts = 0, next_attempt_ms = $6",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&item.credential_id)
            .bind(&item.provider_org_id)
            .bind(&item.event_type)
            .bind(&item.target_resource)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Claims due inbox rows until `lease_until_ms` (chosen by a read, leased by a conditional
    /// update, like jobs).
    pub async fn claim_inbox(
        &self,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<InboxItem>> {
        let now = now_ms();
        let chosen: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM deere_inbox WHERE next_attempt_ms <= $1 \
             AND (lease_until_ms IS NULL OR lease_until_ms < $1) ORDER BY next_attempt_ms LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let rows = self
            .lease_chosen(
                &chosen,
                "UPDATE deere_inbox SET lease_until_ms = $1 \
                 WHERE id IN ({ids}) AND (lease_until_ms IS NULL OR lease_until_ms < $2) \
                 RETURNING id, credential_id, provider_org_id, event_type, target_resource, generation, attempts, received_ms",
                2,
                move |q| q.bind(lease_until_ms).bind(now),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(InboxItem {
                    id: r.try_get("id")?,
                    credential_id: r.try_get("credential_id")?,
                    provider_org_id: r.try_get("provider_org_id")?,
                    event_type: r.try_get("event_type")?,
                    target_resource: r.try_get("target_resource")?,
                    generation: r.try_get("generation")?,
                    attempts: r.try_get("attempts")?,
                    received_ms: r.try_get("received_ms")?,
                })
            })
            .collect()
    }

    /// Done with a row: removed, unless a newer delivery for the resource arrived meanwhile, in
    /// which case it is released to run again.
    pub async fn finish_inbox(&self, item: &InboxItem) -> StoreResult<()> {
        let r = sqlx::query("DELETE FROM deere_inbox WHERE id = $1 AND generation = $2")
            .bind(&item.id)
            .bind(item.generation)
            .execute(&mut *self.writer().await?)
            .await?;
        if r.rows_affected() == 0 {
            sqlx::query("UPDATE deere_inbox SET lease_until_ms = NULL WHERE id = $1")
                .bind(&item.id)
                .execute(&mut *self.writer().await?)
                .await?;
        }
        Ok(())
    }

    /// Releases a row to be tried again at `retry_at_ms`.
    pub async fn retry_inbox(&self, id: &str, attempts: i64, retry_at_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE deere_inbox SET attempts = $1, next_attempt_ms = $2, lease_until_ms = NULL WHERE id = $3",
        )
        .bind(attempts)
        .bind(retry_at_ms)
        .bind(id)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    /// Rows waiting (for the sync status and tests).
    pub async fn inbox_len(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM deere_inbox")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }
}

/// Deletes the subscription records of `user`'s credentials inside `conn`'s transaction (one
/// that deletes or replaces those credentials) and returns their URIs, each once, to be
/// removed on John Deere. On PostgreSQL the credentials are locked first (SQLite's write transaction holds the
/// whole database): a sync subscribing meanwhile either committed first, and its subscription
/// is among those returned, or finds the credentials gone and removes its subscription itself.
/// Read before the transaction instead, a subscription created in between went with the
/// credentials' rows and stayed on John Deere.
pub(crate) async fn take_subscriptions_in(
    conn: &mut sqlx::AnyConnection,
    backend: super::Backend,
    user: &str,
) -> StoreResult<Vec<String>> {
    if backend == super::Backend::Postgres {
        sqlx::query("SELECT id FROM jd_credentials WHERE leaf_user_id = $1 FOR UPDATE")
            .bind(user)
            .fetch_all(&mut *conn)
            .await?;
    }
    let rows = sqlx::query(
        "DELETE FROM deere_subscriptions WHERE credential_id IN \
         (SELECT id FROM jd_credentials WHERE leaf_user_id = $1) RETURNING subscription_uri",
    )
    .bind(user)
    .fetch_all(&mut *conn)
    .await?;
    let mut uris = rows
        .iter()
        .map(|r| r.try_get("subscription_uri"))
        .collect::<Result<Vec<String>, _>>()?;
    // A subscription covering several organizations has a row for each.
    uris.sort_unstable();
    uris.dedup();
    Ok(uris)
}
