//! Stored configuration overrides: one JSON object per owner (leaf_user_id '') and per user.

use serde_json::{Map, Value};
use sqlx::Row;

use super::{Store, StoreResult};
use crate::domain::config::effective;

impl Store {
    /// The configuration a user's work runs with: the defaults, overridden by the owner's
    /// layer and then the user's, read in one statement (an unknown user gets the defaults).
    pub async fn effective_config(&self, leaf_user_id: &str) -> StoreResult<Map<String, Value>> {
        let row = sqlx::query(
            "SELECT o.body AS owner_body, u.body AS user_body FROM leaf_users l \
             LEFT JOIN configs o ON o.owner_id = l.owner_id AND o.leaf_user_id = '' \
             LEFT JOIN configs u ON u.owner_id = l.owner_id AND u.leaf_user_id = l.id \
             WHERE l.id = $1",
        )
        .bind(leaf_user_id)
        .fetch_optional(self.pool())
        .await?;
        let layer = |column: &str| -> StoreResult<Option<Map<String, Value>>> {
            let body: Option<String> = match &row {
                Some(row) => row.try_get(column)?,
                None => None,
            };
            Ok(body
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|v| match v {
                    Value::Object(map) => Some(map),
                    _ => None,
                }))
        };
        Ok(effective(
            layer("owner_body")?.as_ref(),
            layer("user_body")?.as_ref(),
        ))
    }

    /// The keys set at this level, as a JSON object string.
    pub async fn config(&self, owner: &str, leaf_user_id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT body FROM configs WHERE owner_id = $1 AND leaf_user_id = $2")
            .bind(owner)
            .bind(leaf_user_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("body")).transpose()?)
    }

    pub async fn put_config(&self, owner: &str, leaf_user_id: &str, body: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO configs (owner_id, leaf_user_id, body) VALUES ($1, $2, $3) \
             ON CONFLICT (owner_id, leaf_user_id) DO UPDATE SET body = $3",
        )
        .bind(owner)
        .bind(leaf_user_id)
        .bind(body)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    pub async fn delete_config(&self, owner: &str, leaf_user_id: &str) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM configs WHERE owner_id = $1 AND leaf_user_id = $2")
            .bind(owner)
            .bind(leaf_user_id)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
