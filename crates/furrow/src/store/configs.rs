//! Stored configuration overrides: one JSON object per owner (leaf_user_id '') and per user.

use sqlx::Row;

use super::{Store, StoreResult};

impl Store {
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
