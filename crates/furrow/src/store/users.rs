//! Leaf users, always scoped to their API owner.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{leaf_time_now, opt_string, Filters, Store, StoreResult};

#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub external_id: Option<String>,
    pub created_at: String,
}

/// The writable fields of a Leaf user.
#[derive(Debug, Clone, Default)]
pub struct UserWrite {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub email: Option<String>,
    pub name: Option<String>,
    pub external_id: Option<String>,
}

fn user_from_row(r: &AnyRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: r.try_get("id")?,
        name: opt_string(r, "name")?,
        email: opt_string(r, "email")?,
        phone: opt_string(r, "phone")?,
        address: opt_string(r, "address")?,
        external_id: opt_string(r, "external_id")?,
        created_at: r.try_get("created_at")?,
    })
}

const USER_COLUMNS: &str = "id, name, email, phone, address, external_id, created_at";

impl Store {
    pub async fn insert_user(
        &self,
        owner: &str,
        id: &str,
        user: &UserWrite,
    ) -> StoreResult<UserRecord> {
        let created_at = leaf_time_now();
        sqlx::query(
            "INSERT INTO leaf_users (id, owner_id, name, email, phone, address, external_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(owner)
        .bind(user.name.clone())
        .bind(user.email.clone())
        .bind(user.phone.clone())
        .bind(user.address.clone())
        .bind(user.external_id.clone())
        .bind(created_at.clone())
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(UserRecord {
            id: id.to_string(),
            name: user.name.clone(),
            email: user.email.clone(),
            phone: user.phone.clone(),
            address: user.address.clone(),
            external_id: user.external_id.clone(),
            created_at,
        })
    }

    pub async fn user(&self, owner: &str, id: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM leaf_users WHERE id = $1 AND owner_id = $2"
        ))
        .bind(id)
        .bind(owner)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The owner of a Leaf user (for the engine, which works across owners).
    pub async fn owner_of_user(&self, id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT owner_id FROM leaf_users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("owner_id")).transpose()?)
    }

    /// Overwrites every field; `false` when the user is not the owner's.
    pub async fn update_user(&self, owner: &str, id: &str, user: &UserWrite) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE leaf_users SET name = $1, email = $2, phone = $3, address = $4, external_id = $5 \
             WHERE id = $6 AND owner_id = $7",
        )
        .bind(user.name.clone())
        .bind(user.email.clone())
        .bind(user.phone.clone())
        .bind(user.address.clone())
        .bind(user.external_id.clone())
        .bind(id)
        .bind(owner)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes the user; its credentials, events and jobs go with it (foreign keys cascade).
    /// Returns the URIs of the user's credential's event subscriptions (to remove on John
    /// Deere), or `None` when the owner has no such user.
    pub async fn delete_user(&self, owner: &str, id: &str) -> StoreResult<Option<Vec<String>>> {
        self.credentials.forget_user(id);
        let deleted = super::retry_conflicts(|| self.delete_user_once(owner, id)).await;
        // Again once deleted: a read meanwhile may have cached the credential.
        self.credentials.forget_user(id);
        deleted
    }

    async fn delete_user_once(&self, owner: &str, id: &str) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.begin_write().await?;
        if !owns_in(&mut tx, owner, id).await? {
            return Ok(None);
        }
        let subscriptions =
            super::webhooks::take_subscriptions_in(&mut tx, self.backend(), id).await?;
        let r = sqlx::query("DELETE FROM leaf_users WHERE id = $1 AND owner_id = $2")
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM configs WHERE owner_id = $1 AND leaf_user_id = $2")
            .bind(owner)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((r.rows_affected() == 1).then_some(subscriptions))
    }

    /// A page of the owner's users, oldest first, and the total count.
    pub async fn list_users(
        &self,
        owner: &str,
        filter: &UserFilter,
        sort: &str,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<UserRecord>, i64)> {
        let filters = Filters::default()
            .eq("owner_id", Some(owner))
            .eq("email", filter.email.as_deref())
            .eq("name", filter.name.as_deref())
            .eq("external_id", filter.external_id.as_deref());
        let order = format!("{sort}, id");
        let (rows, total) = self
            .page(
                USER_COLUMNS,
                "FROM leaf_users",
                &filters,
                &order,
                offset,
                limit,
            )
            .await?;
        let users = rows.iter().map(user_from_row).collect::<StoreResult<_>>()?;
        Ok((users, total))
    }
}

/// Whether `owner` has the user `user`, read on `conn` (inside the caller's transaction).
pub(crate) async fn owns_in(
    conn: &mut sqlx::AnyConnection,
    owner: &str,
    user: &str,
) -> StoreResult<bool> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT id FROM leaf_users WHERE id = $1 AND owner_id = $2")
            .bind(user)
            .bind(owner)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}
