//! Grower onboarding: app registrations (Leaf's app keys), magic links and OAuth flows.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, opt_string, Store, StoreResult};

/// An owner's John Deere application, as registered with furrow.
#[derive(Debug, Clone)]
pub struct AppKeyRecord {
    pub id: String,
    pub owner_id: String,
    pub provider: String,
    pub app_name: String,
    pub client_environment: String,
    pub client_key: String,
    pub client_secret_enc: String,
    /// Space-separated; empty = furrow's default set.
    pub scopes: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct MagicLinkRecord {
    pub id: String,
    pub owner_id: String,
    pub leaf_user_id: String,
    pub app_key_id: String,
    pub widget: String,
    /// JSON object.
    pub settings: String,
    /// JSON array.
    pub allowed_providers: String,
    pub return_url: Option<String>,
    pub max_usage: i64,
    pub usage_count: i64,
    pub created_at: String,
    pub expires_at_ms: i64,
    pub last_accessed_ms: Option<i64>,
}

/// Where a flow is; see the migration for the meaning of each phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowPhase {
    New,
    Authorizing,
    Exchanging,
    Connecting,
    Done,
    Failed,
}

impl FlowPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Authorizing => "AUTHORIZING",
            Self::Exchanging => "EXCHANGING",
            Self::Connecting => "CONNECTING",
            Self::Done => "DONE",
            Self::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuthFlowRecord {
    pub id: String,
    pub state_hash: String,
    pub browser_hash: Option<String>,
    pub owner_id: String,
    pub leaf_user_id: String,
    pub magic_link_id: Option<String>,
    pub client_key: String,
    pub client_secret_enc: String,
    pub client_environment: String,
    pub scopes: String,
    pub pkce_verifier_enc: String,
    pub return_url: Option<String>,
    pub phase: String,
    /// JSON, once DONE or FAILED.
    pub outcome: Option<String>,
    pub created_at: String,
    pub expires_at_ms: i64,
}

const APP_KEY_COLUMNS: &str = "id, owner_id, provider, app_name, client_environment, client_key, \
     client_secret_enc, scopes, created_at";
const MAGIC_LINK_COLUMNS: &str = "id, owner_id, leaf_user_id, app_key_id, widget, settings, \
     allowed_providers, return_url, max_usage, usage_count, created_at, expires_at_ms, last_accessed_ms";
const FLOW_COLUMNS: &str = "id, state_hash, browser_hash, owner_id, leaf_user_id, magic_link_id, \
     client_key, client_secret_enc, client_environment, scopes, pkce_verifier_enc, return_url, phase, \
     outcome, created_at, expires_at_ms";

fn app_key_from_row(r: &AnyRow) -> StoreResult<AppKeyRecord> {
    Ok(AppKeyRecord {
        id: r.try_get("id")?,
        owner_id: r.try_get("owner_id")?,
        provider: r.try_get("provider")?,
        app_name: r.try_get("app_name")?,
        client_environment: r.try_get("client_environment")?,
        client_key: r.try_get("client_key")?,
        client_secret_enc: r.try_get("client_secret_enc")?,
        scopes: r.try_get("scopes")?,
        created_at: r.try_get("created_at")?,
    })
}

fn magic_link_from_row(r: &AnyRow) -> StoreResult<MagicLinkRecord> {
    Ok(MagicLinkRecord {
        id: r.try_get("id")?,
        owner_id: r.try_get("owner_id")?,
        leaf_user_id: r.try_get("leaf_user_id")?,
        app_key_id: r.try_get("app_key_id")?,
        widget: r.try_get("widget")?,
        settings: r.try_get("settings")?,
        allowed_providers: r.try_get("allowed_providers")?,
        return_url: opt_string(r, "return_url")?,
        max_usage: r.try_get("max_usage")?,
        usage_count: r.try_get("usage_count")?,
        created_at: r.try_get("created_at")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
        last_accessed_ms: r.try_get("last_accessed_ms")?,
    })
}

fn flow_from_row(r: &AnyRow) -> StoreResult<OAuthFlowRecord> {
    Ok(OAuthFlowRecord {
        id: r.try_get("id")?,
        state_hash: r.try_get("state_hash")?,
        browser_hash: opt_string(r, "browser_hash")?,
        owner_id: r.try_get("owner_id")?,
        leaf_user_id: r.try_get("leaf_user_id")?,
        magic_link_id: opt_string(r, "magic_link_id")?,
        client_key: r.try_get("client_key")?,
        client_secret_enc: r.try_get("client_secret_enc")?,
        client_environment: r.try_get("client_environment")?,
        scopes: r.try_get("scopes")?,
        pkce_verifier_enc: r.try_get("pkce_verifier_enc")?,
        return_url: opt_string(r, "return_url")?,
        phase: r.try_get("phase")?,
        outcome: opt_string(r, "outcome")?,
        created_at: r.try_get("created_at")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
    })
}

impl Store {
    /// Stores an app registration, replacing the key, secret and scopes of the one with the
    /// same name and environment. `true` when it is new.
    pub async fn put_app_key(&self, key: &AppKeyRecord) -> StoreResult<bool> {
        let existed = self
            .app_key(
                &key.owner_id,
                &key.provider,
                &key.app_name,
                &key.client_environment,
            )
            .await?
            .is_some();
        sqlx::query(&format!(
            "INSERT INTO app_keys ({APP_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (owner_id, provider, app_name, client_environment) DO UPDATE SET \
             client_key = excluded.client_key, client_secret_enc = excluded.client_secret_enc, \
             scopes = excluded.scopes"
        ))
        .bind(&key.id)
        .bind(&key.owner_id)
        .bind(&key.provider)
        .bind(&key.app_name)
        .bind(&key.client_environment)
        .bind(&key.client_key)
        .bind(&key.client_secret_enc)
        .bind(&key.scopes)
        .bind(&key.created_at)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(!existed)
    }

    pub async fn app_key(
        &self,
        owner: &str,
        provider: &str,
        app_name: &str,
        environment: &str,
    ) -> StoreResult<Option<AppKeyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {APP_KEY_COLUMNS} FROM app_keys WHERE owner_id = $1 AND provider = $2 \
             AND app_name = $3 AND client_environment = $4"
        ))
        .bind(owner)
        .bind(provider)
        .bind(app_name)
        .bind(environment)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(app_key_from_row).transpose()
    }

    pub async fn app_key_by_id(&self, id: &str) -> StoreResult<Option<AppKeyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {APP_KEY_COLUMNS} FROM app_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(app_key_from_row).transpose()
    }

    /// An owner's app registrations, of one provider or all, oldest first.
    pub async fn app_keys(
        &self,
        owner: &str,
        provider: Option<&str>,
    ) -> StoreResult<Vec<AppKeyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {APP_KEY_COLUMNS} FROM app_keys WHERE owner_id = $1 \
             AND ($2 = '' OR provider = $2) ORDER BY created_at, app_name, client_environment"
        ))
        .bind(owner)
        .bind(provider.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(app_key_from_row).collect()
    }

    /// Deletes a registration and the magic links made with it.
    pub async fn delete_app_key(
        &self,
        owner: &str,
        provider: &str,
        app_name: &str,
        environment: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM magic_links WHERE app_key_id IN (SELECT id FROM app_keys WHERE \
             owner_id = $1 AND provider = $2 AND app_name = $3 AND client_environment = $4)",
        )
        .bind(owner)
        .bind(provider)
        .bind(app_name)
        .bind(environment)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query(
            "DELETE FROM app_keys WHERE owner_id = $1 AND provider = $2 AND app_name = $3 \
             AND client_environment = $4",
        )
        .bind(owner)
        .bind(provider)
        .bind(app_name)
        .bind(environment)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn insert_magic_link(&self, link: &MagicLinkRecord) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO magic_links ({MAGIC_LINK_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&link.id)
        .bind(&link.owner_id)
        .bind(&link.leaf_user_id)
        .bind(&link.app_key_id)
        .bind(&link.widget)
        .bind(&link.settings)
        .bind(&link.allowed_providers)
        .bind(link.return_url.clone())
        .bind(link.max_usage)
        .bind(link.usage_count)
        .bind(&link.created_at)
        .bind(link.expires_at_ms)
        .bind(link.last_accessed_ms)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    /// A magic link by id; `owner` narrows it to one API owner (`None`: the public page).
    pub async fn magic_link(
        &self,
        owner: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<MagicLinkRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {MAGIC_LINK_COLUMNS} FROM magic_links WHERE id = $1 AND ($2 = '' OR owner_id = $2)"
        ))
        .bind(id)
        .bind(owner.unwrap_or(""))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(magic_link_from_row).transpose()
    }

    /// One page of an owner's magic links, newest first, and how many there are.
    pub async fn magic_links(
        &self,
        owner: &str,
        widget: &str,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<MagicLinkRecord>, i64)> {
        let rows = sqlx::query(&format!(
            "SELECT {MAGIC_LINK_COLUMNS} FROM magic_links WHERE owner_id = $1 AND widget = $2 \
             ORDER BY created_at DESC, id LIMIT $3 OFFSET $4"
        ))
        .bind(owner)
        .bind(widget)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM magic_links WHERE owner_id = $1 AND widget = $2",
        )
        .bind(owner)
        .bind(widget)
        .fetch_one(self.pool())
        .await?
        .try_get("n")?;
        let links = rows
            .iter()
            .map(magic_link_from_row)
            .collect::<StoreResult<_>>()?;
        Ok((links, total))
    }

    pub async fn delete_magic_link(&self, owner: &str, id: &str) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM magic_links WHERE id = $1 AND owner_id = $2")
            .bind(id)
            .bind(owner)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn touch_magic_link(&self, id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE magic_links SET last_accessed_ms = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(())
    }

    /// Starts a flow from a magic link: counts one use — only while the link is unexpired and
    /// not used up — and stores the flow, in one transaction. `false`: nothing was written.
    pub async fn start_magic_link_flow(&self, flow: &OAuthFlowRecord) -> StoreResult<bool> {
        let Some(link_id) = flow.magic_link_id.as_deref() else {
            return Ok(false);
        };
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let used = sqlx::query(
            "UPDATE magic_links SET usage_count = usage_count + 1, last_accessed_ms = $1 \
             WHERE id = $2 AND usage_count < max_usage AND expires_at_ms > $1",
        )
        .bind(now)
        .bind(link_id)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Ok(false);
        }
        insert_flow(&mut tx, flow).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn insert_flow(&self, flow: &OAuthFlowRecord) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        insert_flow(&mut tx, flow).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn flow(&self, id: &str) -> StoreResult<Option<OAuthFlowRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {FLOW_COLUMNS} FROM oauth_flows WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(flow_from_row).transpose()
    }

    pub async fn flow_by_state(&self, state_hash: &str) -> StoreResult<Option<OAuthFlowRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {FLOW_COLUMNS} FROM oauth_flows WHERE state_hash = $1"
        ))
        .bind(state_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(flow_from_row).transpose()
    }

    /// Moves a flow on from `from` (compare-and-swap, so each step happens once); binds the
    /// browser when `browser_hash` is given, records the outcome when given. `false`: the flow
    /// was not in `from` (used, or moved on by another request).
    pub async fn advance_flow(
        &self,
        id: &str,
        from: FlowPhase,
        to: FlowPhase,
        browser_hash: Option<&str>,
        outcome: Option<&str>,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE oauth_flows SET phase = $1, browser_hash = COALESCE($2, browser_hash), \
             outcome = COALESCE($3, outcome), updated_ms = $4 WHERE id = $5 AND phase = $6",
        )
        .bind(to.as_str())
        .bind(browser_hash)
        .bind(outcome)
        .bind(now_ms())
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A NEW flow's browser arrives: its state and PKCE verifier are made now and it is bound
    /// to that browser. `false`: the flow had already been started.
    pub async fn authorize_flow(
        &self,
        id: &str,
        state_hash: &str,
        pkce_verifier_enc: &str,
        browser_hash: &str,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE oauth_flows SET phase = $1, state_hash = $2, pkce_verifier_enc = $3, \
             browser_hash = $4, updated_ms = $5 WHERE id = $6 AND phase = $7",
        )
        .bind(FlowPhase::Authorizing.as_str())
        .bind(state_hash)
        .bind(pkce_verifier_enc)
        .bind(browser_hash)
        .bind(now_ms())
        .bind(id)
        .bind(FlowPhase::New.as_str())
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Removes flows that expired before `before_ms` (retention).
    pub async fn delete_flows_before(&self, before_ms: i64) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM oauth_flows WHERE expires_at_ms < $1")
            .bind(before_ms)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(r.rows_affected())
    }

    /// Every app key's and live flow's ciphertexts, for re-encryption after a key rotation:
    /// (table, id, column, ciphertext).
    pub async fn onboarding_secrets(
        &self,
    ) -> StoreResult<Vec<(&'static str, String, &'static str, String)>> {
        let mut out = Vec::new();
        for (table, column) in ONBOARDING_SECRET_COLUMNS {
            let rows = sqlx::query(&format!("SELECT id, {column} AS value FROM {table}"))
                .fetch_all(self.pool())
                .await?;
            for r in rows {
                out.push((table, r.try_get("id")?, column, r.try_get("value")?));
            }
        }
        Ok(out)
    }

    /// Replaces one ciphertext if unchanged since it was read.
    pub async fn rewrap_onboarding_secret(
        &self,
        table: &str,
        id: &str,
        column: &str,
        old: &str,
        new: &str,
    ) -> StoreResult<bool> {
        if !ONBOARDING_SECRET_COLUMNS.contains(&(table, column)) {
            return Ok(false);
        }
        let r = sqlx::query(&format!(
            "UPDATE {table} SET {column} = $1 WHERE id = $2 AND {column} = $3"
        ))
        .bind(new)
        .bind(id)
        .bind(old)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// The encrypted columns of this module's tables (fixed names: they are put into SQL).
const ONBOARDING_SECRET_COLUMNS: [(&str, &str); 3] = [
    ("app_keys", "client_secret_enc"),
    ("oauth_flows", "client_secret_enc"),
    ("oauth_flows", "pkce_verifier_enc"),
];

async fn insert_flow(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    flow: &OAuthFlowRecord,
) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO oauth_flows ({FLOW_COLUMNS}, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    ))
    .bind(&flow.id)
    .bind(&flow.state_hash)
    .bind(flow.browser_hash.clone())
    .bind(&flow.owner_id)
    .bind(&flow.leaf_user_id)
    .bind(flow.magic_link_id.clone())
    .bind(&flow.client_key)
    .bind(&flow.client_secret_enc)
    .bind(&flow.client_environment)
    .bind(&flow.scopes)
    .bind(&flow.pkce_verifier_enc)
    .bind(flow.return_url.clone())
    .bind(&flow.phase)
    .bind(flow.outcome.clone())
    .bind(&flow.created_at)
    .bind(flow.expires_at_ms)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
