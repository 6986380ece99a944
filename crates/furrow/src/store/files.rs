//! Synced machine files (metadata; the bytes are in the file store under `storage_key`).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{leaf_time_now, opt_string, Deliveries, Filters, Store, StoreResult};

#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: String,
    pub leaf_user_id: String,
    pub organization_id: String,
    pub provider_file_id: String,
    pub name: String,
    pub file_type: Option<String>,
    pub size_bytes: i64,
    pub provider_created_time: Option<String>,
    pub provider_modified_time: Option<String>,
    pub created_ms: Option<i64>,
    /// `processed` (bytes stored), `processing` (not yet downloadable), `failed`.
    pub status: String,
    pub sha256: Option<String>,
    pub storage_key: Option<String>,
    pub deleted_on_provider: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub leaf_user_id: Option<String>,
    pub organization_id: Option<String>,
    pub status: Option<String>,
    /// Files created by John Deere at or after / at or before (ms).
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

fn file_from(r: &AnyRow) -> StoreResult<FileRecord> {
    Ok(FileRecord {
        id: r.try_get("id")?,
        leaf_user_id: r.try_get("leaf_user_id")?,
        organization_id: r.try_get("organization_id")?,
        provider_file_id: r.try_get("provider_file_id")?,
        name: r.try_get("name")?,
        file_type: opt_string(r, "file_type")?,
        size_bytes: r.try_get("size_bytes")?,
        provider_created_time: opt_string(r, "provider_created_time")?,
        provider_modified_time: opt_string(r, "provider_modified_time")?,
        created_ms: r.try_get("created_ms")?,
        status: r.try_get("status")?,
        sha256: opt_string(r, "sha256")?,
        storage_key: opt_string(r, "storage_key")?,
        deleted_on_provider: r.try_get::<i64, _>("deleted_on_provider")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const COLUMNS: &str = "m.id, m.leaf_user_id, m.organization_id, m.provider_file_id, m.name, m.file_type, m.size_bytes, \
    m.provider_created_time, m.provider_modified_time, m.created_ms, m.status, m.sha256, m.storage_key, \
    m.deleted_on_provider, m.created_at, m.updated_at";

impl Store {
    /// The stored file for a John Deere file id, if any.
    pub async fn file_by_provider_id(
        &self,
        user: &str,
        provider_file_id: &str,
    ) -> StoreResult<Option<FileRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM machine_files m WHERE m.leaf_user_id = $1 AND m.provider_file_id = $2"
        ))
        .bind(user)
        .bind(provider_file_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(file_from).transpose()
    }

    /// Inserts or updates files, each with the alerts to queue for it, in one transaction.
    pub async fn upsert_files(&self, files: &[(FileRecord, Deliveries)]) -> StoreResult<()> {
        self.upsert_files_with_signature(files, None).await
    }

    /// [`Store::upsert_files`], storing in the same transaction `signature`: `(credential id,
    /// (collection url, signature))` of the listing the files came from.
    pub async fn upsert_files_with_signature(
        &self,
        files: &[(FileRecord, Deliveries)],
        signature: Option<(&str, (String, String))>,
    ) -> StoreResult<()> {
        if files.is_empty() {
            if let Some((credential_id, (url, signature))) = signature {
                return self.put_signature(credential_id, &url, &signature).await;
            }
            return Ok(());
        }
        let now = leaf_time_now();
        let ids: Vec<&str> = files.iter().map(|(f, _)| f.id.as_str()).collect();
        let latest: Vec<&FileRecord> = super::last_of_each(&ids)
            .into_iter()
            .map(|i| &files[i].0)
            .collect();
        let mut tx = self.begin_write().await?;
        for chunk in latest.chunks(super::MAX_BOUND / 15) {
            let sql = super::positional(&tx, &format!(
                "INSERT INTO machine_files (id, leaf_user_id, organization_id, provider_file_id, name, file_type, size_bytes, \
                 provider_created_time, provider_modified_time, created_ms, status, sha256, storage_key, deleted_on_provider, \
                 created_at, updated_at) VALUES {} \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, file_type = excluded.file_type, size_bytes = excluded.size_bytes, \
                 provider_created_time = excluded.provider_created_time, provider_modified_time = excluded.provider_modified_time, \
                 created_ms = excluded.created_ms, status = excluded.status, sha256 = excluded.sha256, \
                 storage_key = excluded.storage_key, deleted_on_provider = 0, updated_at = excluded.updated_at",
                // Not deleted; updated when created.
                super::value_rows(chunk.len(), 15, |p| format!("{}, 0, {}", p[..13].join(", "), p[13..].join(", ")))
            ));
            let mut query = sqlx::query(&sql);
            for f in chunk {
                query = query
                    .bind(&f.id)
                    .bind(&f.leaf_user_id)
                    .bind(&f.organization_id)
                    .bind(&f.provider_file_id)
                    .bind(&f.name)
                    .bind(f.file_type.clone())
                    .bind(f.size_bytes)
                    .bind(f.provider_created_time.clone())
                    .bind(f.provider_modified_time.clone())
                    .bind(f.created_ms)
                    .bind(&f.status)
                    .bind(f.sha256.clone())
                    .bind(f.storage_key.clone())
                    .bind(&now)
                    .bind(&now);
            }
            query.execute(&mut *tx).await?;
        }
        super::alerts::queue_in(&mut tx, files.iter().flat_map(|(_, alerts)| alerts)).await?;
        if let Some((credential_id, signature)) = signature {
            super::fields::put_signatures_in(&mut tx, credential_id, &[signature]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn mark_file_deleted(&self, user: &str, provider_file_id: &str) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE machine_files SET deleted_on_provider = 1, updated_at = $1 \
             WHERE leaf_user_id = $2 AND provider_file_id = $3 AND deleted_on_provider = 0",
        )
        .bind(leaf_time_now())
        .bind(user)
        .bind(provider_file_id)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn live_file_ids(&self, user: &str, org: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT provider_file_id FROM machine_files WHERE leaf_user_id = $1 AND organization_id = $2 AND deleted_on_provider = 0",
        )
        .bind(user)
        .bind(org)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get("provider_file_id")?))
            .collect()
    }

    pub async fn list_files(
        &self,
        owner: &str,
        filter: &FileFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<FileRecord>, i64)> {
        let mut filters = Filters::default()
            .eq("u.owner_id", Some(owner))
            .raw("m.deleted_on_provider = 0")
            .eq("m.leaf_user_id", filter.leaf_user_id.as_deref())
            .eq("m.organization_id", filter.organization_id.as_deref())
            .eq("m.status", filter.status.as_deref());
        if let Some(from) = filter.from_ms {
            filters = filters.raw(format!("m.created_ms >= {from}"));
        }
        if let Some(until) = filter.until_ms {
            filters = filters.raw(format!("m.created_ms <= {until}"));
        }
        let from = "FROM machine_files m JOIN leaf_users u ON u.id = m.leaf_user_id";
        let (rows, total) = self
            .page(
                COLUMNS,
                from,
                &filters,
                "m.created_ms DESC, m.id",
                offset,
                limit,
            )
            .await?;
        Ok((
            rows.iter().map(file_from).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    pub async fn file(&self, owner: &str, id: &str) -> StoreResult<Option<FileRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM machine_files m JOIN leaf_users u ON u.id = m.leaf_user_id WHERE m.id = $1 AND u.owner_id = $2"
        ))
        .bind(id)
        .bind(owner)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(file_from).transpose()
    }
}
