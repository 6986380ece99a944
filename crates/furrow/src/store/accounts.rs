//! API owners, failed-login throttling, and instance-wide secrets.

use sqlx::Row;

use super::{leaf_time_now, now_ms, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct OwnerRecord {
    pub id: String,
    pub email: String,
    pub password_hash: String,
}

/// Failed logins for one username: after `FREE_ATTEMPTS` failures each further attempt must
/// wait twice as long as the previous one (capped), whatever replica it reaches.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    pub failures: i64,
    pub locked_until_ms: i64,
}

pub const FREE_ATTEMPTS: i64 = 5;
const MAX_LOCK_MS: i64 = 15 * 60 * 1000;

impl Store {
    /// Creates an owner; `false` when the email is taken.
    pub async fn create_owner(
        &self,
        id: &str,
        email: &str,
        password_hash: &str,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO api_owners (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(id)
        .bind(email)
        .bind(password_hash)
        .bind(leaf_time_now())
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn owner_by_email(&self, email: &str) -> StoreResult<Option<OwnerRecord>> {
        let row = sqlx::query("SELECT id, email, password_hash FROM api_owners WHERE email = $1")
            .bind(email)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(OwnerRecord {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                password_hash: r.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    pub async fn owner_email(&self, id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT email FROM api_owners WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("email")).transpose()?)
    }

    pub async fn owner_exists(&self, id: &str) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT id FROM api_owners WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .is_some())
    }

    pub async fn login_throttle(&self, email: &str) -> StoreResult<Option<LoginThrottle>> {
        let row =
            sqlx::query("SELECT failures, locked_until_ms FROM login_failures WHERE email = $1")
                .bind(email)
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| {
            Ok(LoginThrottle {
                failures: r.try_get("failures")?,
                locked_until_ms: r.try_get("locked_until_ms")?,
            })
        })
        .transpose()
    }

    /// Records a failure and returns the new lock (0 while under the free attempts).
    pub async fn record_login_failure(&self, email: &str) -> StoreResult<LoginThrottle> {
        let previous = self.login_throttle(email).await?.map_or(0, |t| t.failures);
        let failures = previous + 1;
        let locked_until_ms = if failures > FREE_ATTEMPTS {
            let exp = (failures - FREE_ATTEMPTS - 1).min(20) as u32;
            now_ms() + (1000i64 << exp).min(MAX_LOCK_MS)
        } else {
            0
        };
        sqlx::query(
            "INSERT INTO login_failures (email, failures, locked_until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (email) DO UPDATE SET failures = $2, locked_until_ms = $3",
        )
        .bind(email)
        .bind(failures)
        .bind(locked_until_ms)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(LoginThrottle {
            failures,
            locked_until_ms,
        })
    }

    pub async fn clear_login_failures(&self, email: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE email = $1")
            .bind(email)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(())
    }

    /// Returns the stored value of an instance secret, inserting `candidate` when there is none
    /// (first replica wins; the others read its value).
    pub async fn instance_secret(&self, name: &str, candidate_enc: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO instance_secrets (name, value_enc) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(candidate_enc)
            .execute(&mut *self.writer().await?)
            .await?;
        let row = sqlx::query("SELECT value_enc FROM instance_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("value_enc")?)
    }

    pub async fn instance_secrets(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, value_enc FROM instance_secrets")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("value_enc")?)))
            .collect()
    }

    /// Replaces an instance secret's ciphertext if it is still `old` (key rotation).
    pub async fn rewrap_instance_secret(
        &self,
        name: &str,
        old: &str,
        new: &str,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE instance_secrets SET value_enc = $1 WHERE name = $2 AND value_enc = $3",
        )
        .bind(new)
        .bind(name)
        .bind(old)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
