//! Application webhooks (Leaf alerts), their durable outbox and failed calls.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{leaf_time_now, now_ms, opt_string, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub url: String,
    pub secret_enc: String,
    /// JSON array of event types.
    pub events: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: String,
    pub webhook_id: String,
    pub body: String,
    pub attempts: i64,
}

#[derive(Debug, Clone)]
pub struct FailedCall {
    pub url: String,
    pub status: Option<i64>,
    pub response: Option<String>,
    pub connection_error: Option<String>,
    pub request_body: String,
    pub created_at: String,
}

fn webhook_from(r: &AnyRow) -> StoreResult<WebhookRecord> {
    Ok(WebhookRecord {
        id: r.try_get("id")?,
        owner_id: r.try_get("owner_id")?,
        name: r.try_get("name")?,
        url: r.try_get("url")?,
        secret_enc: r.try_get("secret_enc")?,
        events: r.try_get("events")?,
        created_at: r.try_get("created_at")?,
    })
}

const WEBHOOK_COLUMNS: &str = "id, owner_id, name, url, secret_enc, events, created_at";

impl Store {
    pub async fn insert_webhook(&self, w: &WebhookRecord) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO alert_webhooks ({WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&w.id)
        .bind(&w.owner_id)
        .bind(&w.name)
        .bind(&w.url)
        .bind(&w.secret_enc)
        .bind(&w.events)
        .bind(&w.created_at)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    pub async fn webhooks(&self, owner: &str) -> StoreResult<Vec<WebhookRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM alert_webhooks WHERE owner_id = $1 ORDER BY created_at, id"
        ))
        .bind(owner)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(webhook_from).collect()
    }

    /// The webhooks of a user's owner, without a read of the owner first.
    pub async fn webhooks_of_user(&self, user: &str) -> StoreResult<Vec<WebhookRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM alert_webhooks \
             WHERE owner_id = (SELECT owner_id FROM leaf_users WHERE id = $1) ORDER BY created_at, id"
        ))
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(webhook_from).collect()
    }

    pub async fn webhook(&self, id: &str) -> StoreResult<Option<WebhookRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM alert_webhooks WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(webhook_from).transpose()
    }

    pub async fn delete_webhook(&self, owner: &str, id: &str) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM alert_webhooks WHERE id = $1 AND owner_id = $2")
            .bind(id)
            .bind(owner)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Queues one delivery (due now).
    pub async fn enqueue_delivery(&self, webhook_id: &str, body: &str) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        queue_in(&mut conn, &[(webhook_id.to_string(), body.to_string())]).await
    }

    /// Claims due deliveries until `lease_until_ms` (chosen by a read, leased by a conditional
    /// update, like jobs).
    pub async fn claim_deliveries(
        &self,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let now = now_ms();
        let chosen: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM alert_deliveries WHERE state = 'pending' AND next_attempt_ms <= $1 \
             AND (lease_until_ms IS NULL OR lease_until_ms < $1) ORDER BY next_attempt_ms LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let rows = self
            .lease_chosen(
                &chosen,
                "UPDATE alert_deliveries SET lease_until_ms = $1 \
                 WHERE id IN ({ids}) AND state = 'pending' AND (lease_until_ms IS NULL OR lease_until_ms < $2) \
                 RETURNING id, webhook_id, body, attempts",
                2,
                move |q| q.bind(lease_until_ms).bind(now),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRecord {
                    id: r.try_get("id")?,
                    webhook_id: r.try_get("webhook_id")?,
                    body: r.try_get("body")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Records the outcome of an attempt: delivered, retried at `retry_at_ms`, or given up.
    pub async fn finish_delivery(
        &self,
        id: &str,
        state: &str,
        attempts: i64,
        retry_at_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE alert_deliveries SET state = $1, attempts = $2, next_attempt_ms = $3, lease_until_ms = NULL WHERE id = $4",
        )
        .bind(state)
        .bind(attempts)
        .bind(retry_at_ms)
        .bind(id)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    pub async fn record_failed_call(
        &self,
        owner: &str,
        webhook_id: &str,
        call: &FailedCall,
    ) -> StoreResult<()> {
        let now = chrono::Utc::now();
        sqlx::query(
            "INSERT INTO alert_failed_calls (id, owner_id, webhook_id, url, status, response, connection_error, \
             request_body, created_at, created_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(owner)
        .bind(webhook_id)
        .bind(&call.url)
        .bind(call.status)
        .bind(call.response.clone())
        .bind(call.connection_error.clone())
        .bind(&call.request_body)
        .bind(super::leaf_time(now))
        .bind(now.timestamp_micros())
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    pub async fn failed_calls(
        &self,
        owner: &str,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<FailedCall>, i64)> {
        let filters = super::Filters::default().eq("owner_id", Some(owner));
        let (rows, total) = self
            .page(
                "url, status, response, connection_error, request_body, created_at",
                "FROM alert_failed_calls",
                &filters,
                "created_us DESC, id",
                offset,
                limit,
            )
            .await?;
        let calls = rows
            .iter()
            .map(|r| {
                Ok(FailedCall {
                    url: r.try_get("url")?,
                    status: r.try_get("status")?,
                    response: opt_string(r, "response")?,
                    connection_error: opt_string(r, "connection_error")?,
                    request_body: r.try_get("request_body")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<StoreResult<_>>()?;
        Ok((calls, total))
    }
}

/// Alert deliveries, `(webhook id, body)`, to queue together with the change they report.
pub type Deliveries = Vec<(String, String)>;

/// The alerts for an upsert whose outcome is not known in advance.
#[derive(Debug, Default)]
pub struct ChangeAlerts {
    pub created: Deliveries,
    pub updated: Deliveries,
}

impl ChangeAlerts {
    pub fn for_change(&self, change: super::Change) -> &[(String, String)] {
        match change {
            super::Change::Created => &self.created,
            super::Change::Updated => &self.updated,
            super::Change::Unchanged => &[],
        }
    }
}

/// Queues deliveries (due now) on `conn`: inside the caller's transaction, an alert is stored
/// if and only if the change it reports is. A few hundred go in one statement: on SQLite the
/// one write lock is held from statement to statement, so each statement saved is time every
/// other writer would have waited.
pub(crate) async fn queue_in<'a>(
    conn: &mut sqlx::AnyConnection,
    deliveries: impl IntoIterator<Item = &'a (String, String)>,
) -> StoreResult<()> {
    let deliveries: Vec<&(String, String)> = deliveries.into_iter().collect();
    let (now, created_at) = (now_ms(), leaf_time_now());
    for chunk in deliveries.chunks(super::MAX_BOUND / 5) {
        let sql = super::positional(
            conn,
            &format!(
                "INSERT INTO alert_deliveries (id, webhook_id, body, attempts, next_attempt_ms, state, created_at) VALUES {}",
                super::value_rows(chunk.len(), 5, |p| format!(
                    "{}, {}, {}, 0, {}, 'pending', {}",
                    p[0], p[1], p[2], p[3], p[4]
                ))
            ),
        );
        let mut query = sqlx::query(&sql);
        for (webhook_id, body) in chunk {
            query = query
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(webhook_id)
                .bind(body)
                .bind(now)
                .bind(created_at.clone());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
