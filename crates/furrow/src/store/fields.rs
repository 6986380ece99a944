//! Synced growers, farms, fields and boundaries; change signatures; sync status.
//!
//! Ids are derived from (Leaf user, John Deere id), so an upsert is idempotent and two runs of
//! a sync produce the same rows. Updates only touch rows whose content changed.

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{leaf_time_now, opt_string, Change, Filters, Store, StoreResult};

/// A stable positive id (fits a JSON number exactly) for a Leaf grower or farm.
pub fn stable_int_id(leaf_user_id: &str, kind: &str, provider_id: &str) -> i64 {
    let digest = Sha256::digest(format!("{leaf_user_id}|{kind}|{provider_id}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) >> 11) as i64 // 53 bits
}

/// The Leaf id of a user's farm, from John Deere's farm id.
pub fn stable_int_id_for_farm(leaf_user_id: &str, provider_farm_id: &str) -> i64 {
    stable_int_id(leaf_user_id, "farm", provider_farm_id)
}

/// The Leaf id of a user's grower, from John Deere's client id.
pub fn stable_int_id_for_grower(leaf_user_id: &str, provider_client_id: &str) -> i64 {
    stable_int_id(leaf_user_id, "grower", provider_client_id)
}

/// Hex SHA-256 of a text (boundary geometry), to tell a changed shape from an unchanged one.
pub fn content_hash(text: &str) -> String {
    content_hash_bytes(text.as_bytes())
}

/// Hex SHA-256 of bytes.
pub fn content_hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stable UUID (version 4 in form, a hash in substance): the ids of rows made before
/// [`grower_uuid`], and of files and assets, which are still looked up by it.
pub fn stable_uuid(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("|").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A stable UUID for a new row of one grower's (`user`): fields, boundaries, operations. Its
/// first six bytes come from the grower alone, so one grower's rows sit together in every
/// index of ids. (With ids hashed whole, each new operation changed a page of its own in the
/// id indexes of `operations` and `operation_data`: in SQLite's write-ahead log, those two
/// indexes were 31 % of a first sync's writes.) Version 8 (RFC 9562's custom UUID), as the
/// bytes are not random. Rows made before keep their ids: writers look those up.
pub fn grower_uuid(user: &str, parts: &[&str]) -> String {
    let grower = Sha256::digest(user.as_bytes());
    let row = Sha256::digest(format!("{user}|{}", parts.join("|")).as_bytes());
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&grower[..6]);
    bytes[6..].copy_from_slice(&row[..10]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[derive(Debug, Clone, PartialEq)]
pub struct GrowerRecord {
    pub id: i64,
    pub leaf_user_id: String,
    pub organization_id: String,
    pub provider_grower_id: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FarmRecord {
    pub id: i64,
    pub leaf_user_id: String,
    pub organization_id: String,
    pub provider_farm_id: String,
    pub name: String,
    pub provider_grower_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldRecord {
    pub id: String,
    pub leaf_user_id: String,
    pub organization_id: String,
    pub provider_field_id: String,
    pub name: String,
    pub provider_farm_id: Option<String>,
    pub deleted_on_provider: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Leaf's `status`: `PREVIEW`, `WAITING` or `PROCESSED`.
    pub sync_state: String,
    /// `JohnDeere` (synced) or `Leaf` (created by the user in furrow).
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BoundaryRecord {
    pub id: String,
    pub field_id: String,
    pub provider_boundary_id: String,
    /// ACTIVE | INACTIVE | OUTDATED_ON_PROVIDER | DELETED_ON_PROVIDER
    pub status: String,
    /// ACTIVE | INACTIVE, as John Deere says.
    pub provider_status: String,
    /// GeoJSON MultiPolygon.
    pub geometry: String,
    pub geometry_hash: String,
    pub area_ha: f64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default)]
pub struct FieldFilter {
    pub leaf_user_id: Option<String>,
    pub farm_id: Option<i64>,
    pub include_deleted: bool,
}

/// A Leaf user's sync progress.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncStatus {
    /// `IDLE`, `QUEUED`, `RUNNING`, `DONE`, `FAILED`
    pub state: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// JSON object of counts per resource.
    pub counts: String,
    pub last_error: Option<String>,
}

fn grower_from(r: &AnyRow) -> StoreResult<GrowerRecord> {
    Ok(GrowerRecord {
        id: r.try_get("id")?,
        leaf_user_id: r.try_get("leaf_user_id")?,
        organization_id: r.try_get("organization_id")?,
        provider_grower_id: r.try_get("provider_grower_id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn farm_from(r: &AnyRow) -> StoreResult<FarmRecord> {
    Ok(FarmRecord {
        id: r.try_get("id")?,
        leaf_user_id: r.try_get("leaf_user_id")?,
        organization_id: r.try_get("organization_id")?,
        provider_farm_id: r.try_get("provider_farm_id")?,
        name: r.try_get("name")?,
        provider_grower_id: opt_string(r, "provider_grower_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn field_from(r: &AnyRow) -> StoreResult<FieldRecord> {
    Ok(FieldRecord {
        id: r.try_get("id")?,
        leaf_user_id: r.try_get("leaf_user_id")?,
        organization_id: r.try_get("organization_id")?,
        provider_field_id: r.try_get("provider_field_id")?,
        name: r.try_get("name")?,
        provider_farm_id: opt_string(r, "provider_farm_id")?,
        deleted_on_provider: r.try_get::<i64, _>("deleted_on_provider")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        sync_state: r.try_get("sync_state")?,
        origin: r.try_get("origin")?,
    })
}

fn boundary_from(r: &AnyRow) -> StoreResult<BoundaryRecord> {
    Ok(BoundaryRecord {
        id: r.try_get("id")?,
        field_id: r.try_get("field_id")?,
        provider_boundary_id: r.try_get("provider_boundary_id")?,
        status: r.try_get("status")?,
        provider_status: r.try_get("provider_status")?,
        geometry: r.try_get("geometry")?,
        geometry_hash: r.try_get("geometry_hash")?,
        area_ha: r.try_get("area_ha")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const FIELD_COLUMNS: &str =
    "f.id, f.leaf_user_id, f.organization_id, f.provider_field_id, f.name, \
    f.provider_farm_id, f.deleted_on_provider, f.created_at, f.updated_at, f.sync_state, f.origin";
const BOUNDARY_COLUMNS: &str =
    "id, field_id, provider_boundary_id, status, provider_status, geometry, \
    geometry_hash, area_ha, created_at, updated_at";

/// A change to a field's boundaries, planned from what John Deere lists.
#[derive(Debug)]
pub enum BoundaryChange {
    /// A boundary furrow holds under its own id (a user's field's) takes John Deere's id.
    Adopt {
        id: String,
        provider_boundary_id: String,
    },
    /// A known boundary's status and John Deere's status of it.
    Status {
        id: String,
        status: String,
        provider_status: String,
    },
    /// A new boundary (or a new shape under a known John Deere id), alerted if it is new.
    Insert {
        record: BoundaryRecord,
        alerts: super::Deliveries,
    },
    /// Boundaries replaced on John Deere become `OUTDATED_ON_PROVIDER`, alerted if any changed.
    Outdate {
        ids: Vec<String>,
        alerts: super::Deliveries,
    },
}

/// What reads of fields' boundaries change, written in one transaction (see
/// `Store::write_boundaries`).
#[derive(Debug, Default)]
pub struct BoundariesWrite {
    pub changes: Vec<BoundaryChange>,
    /// Fields waiting to be read whole whose boundaries are now in: they become PROCESSED.
    pub processed: Vec<String>,
    /// `(collection url, signature)` of the reads, stored with what they read.
    pub signatures: Vec<(String, String)>,
}

/// An organization's growers (John Deere clients: id, name) and farms (id, name, client id) to
/// write, with the signatures of the collections they came from.
#[derive(Debug, Default)]
pub struct GrowersAndFarms<'a> {
    pub growers: Vec<(&'a str, &'a str)>,
    pub farms: Vec<(&'a str, &'a str, Option<&'a str>)>,
    pub signatures: Vec<(String, String)>,
}

/// A field as read from John Deere, to store for a Leaf user.
#[derive(Debug, Clone, Copy)]
pub struct FieldWrite<'a> {
    pub user: &'a str,
    pub org: &'a str,
    pub provider_id: &'a str,
    pub name: &'a str,
    pub provider_farm_id: Option<&'a str>,
    /// The field's `fieldOperation` link.
    pub operations_uri: Option<&'a str>,
    /// The field's `boundaries` link.
    pub boundaries_uri: Option<&'a str>,
    /// A new field starts in PREVIEW (customDataSync) rather than PROCESSED.
    pub preview: bool,
}

impl Store {
    /// An organization's lists as read, in one transaction: its growers and farms with their
    /// collections' signatures, and its fields inserted or updated (un-deleting those John
    /// Deere lists again). `alerts` (given furrow's field id) are queued with each field, for
    /// its outcome. Returns each field's id, outcome and sync state (`PREVIEW`, `WAITING`,
    /// `PROCESSED`), in order. (Two transactions were two waits for the write lock between a
    /// new grower's lists and its first fields.)
    pub async fn write_organization_lists(
        &self,
        credential_id: &str,
        user: &str,
        org: &str,
        growers_and_farms: &GrowersAndFarms<'_>,
        fields: &[FieldWrite<'_>],
        alerts: impl Fn(&str) -> super::ChangeAlerts,
    ) -> StoreResult<Vec<(String, Change, String)>> {
        let GrowersAndFarms {
            growers,
            farms,
            signatures,
        } = growers_and_farms;
        if growers.is_empty() && farms.is_empty() && signatures.is_empty() && fields.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        growers_and_farms_in(&mut tx, credential_id, user, org, growers_and_farms).await?;
        if fields.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let existing = field_ids_for_upsert_in(&mut tx, fields).await?;
        let ids: Vec<String> = fields
            .iter()
            .zip(&existing)
            .map(|(field, existing)| {
                existing
                    .clone()
                    .unwrap_or_else(|| grower_uuid(field.user, &["field", field.provider_id]))
            })
            .collect();
        let latest = super::last_of_each(&ids);
        let rows: Vec<(&str, &FieldWrite<'_>)> = latest
            .iter()
            .map(|&i| (ids[i].as_str(), &fields[i]))
            .collect();
        let now = leaf_time_now();
        let mut changed = std::collections::HashSet::new();
        for chunk in rows.chunks(super::MAX_BOUND / FIELD_UPSERT_WIDTH) {
            changed.extend(upsert_fields_in(&mut tx, chunk, &now).await?);
        }
        // The boundaries link is bookkeeping, not a change of the field: no alert, no
        // updatedTime. (A new field was inserted with it.)
        let links: Vec<(&str, Option<&str>)> = latest
            .iter()
            .filter(|&&i| existing[i].is_some())
            .map(|&i| (ids[i].as_str(), fields[i].boundaries_uri))
            .collect();
        for chunk in links.chunks(super::MAX_BOUND / 2) {
            let sql = super::positional(&tx, &format!(
                "WITH v (id, uri) AS (VALUES {}) UPDATE fields SET boundaries_uri = v.uri FROM v \
                 WHERE fields.id = v.id AND COALESCE(fields.boundaries_uri, '') <> COALESCE(v.uri, '')",
                super::value_rows(chunk.len(), 2, |p| p.join(", "))
            ));
            let mut query = sqlx::query(&sql);
            for (id, uri) in chunk {
                query = query.bind(*id).bind(uri.map(str::to_string));
            }
            query.execute(&mut *tx).await?;
        }
        let written: Vec<(String, Change)> = ids
            .into_iter()
            .zip(&existing)
            .map(|(id, existing)| {
                let change =
                    Change::of_upsert(existing.is_some(), u64::from(changed.contains(&id)));
                (id, change)
            })
            .collect();
        // A field read twice in one write alerts once.
        let alerts: Vec<(super::ChangeAlerts, Change)> = latest
            .iter()
            .map(|&i| (alerts(&written[i].0), written[i].1))
            .collect();
        let deliveries = alerts
            .iter()
            .flat_map(|(alerts, change)| alerts.for_change(*change));
        super::alerts::queue_in(&mut tx, deliveries).await?;
        let ids: Vec<&str> = written.iter().map(|(id, _)| id.as_str()).collect();
        let sql = "SELECT id, sync_state FROM fields WHERE id IN ({list})";
        let mut states = std::collections::HashMap::new();
        for row in super::fetch_in(&mut tx, sql, &[], &ids).await? {
            states.insert(
                row.try_get::<String, _>("id")?,
                row.try_get::<String, _>("sync_state")?,
            );
        }
        tx.commit().await?;
        Ok(written
            .into_iter()
            .map(|(id, change)| {
                let state = states.remove(&id).unwrap_or_default();
                (id, change, state)
            })
            .collect())
    }

    /// Marks a field deleted on John Deere, and its current boundaries DELETED_ON_PROVIDER.
    pub async fn mark_field_deleted(&self, user: &str, provider_id: &str) -> StoreResult<bool> {
        let Some(id) = self.field_id_for_provider(user, provider_id).await? else {
            return Ok(false);
        };
        let now = leaf_time_now();
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE fields SET deleted_on_provider = 1, updated_at = $1 WHERE id = $2 AND deleted_on_provider = 0")
            .bind(now.clone())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE boundaries SET status = 'DELETED_ON_PROVIDER', updated_at = $1 WHERE field_id = $2 AND status IN ('ACTIVE', 'INACTIVE')",
        )
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// furrow's id of the user's field with this John Deere id (synced, or written back).
    pub async fn field_id_for_provider(
        &self,
        user: &str,
        provider_id: &str,
    ) -> StoreResult<Option<String>> {
        let row =
            sqlx::query("SELECT id FROM fields WHERE leaf_user_id = $1 AND provider_field_id = $2")
                .bind(user)
                .bind(provider_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// Claims a user's own field for sending to organization `org`: `false` when it was sent (or
    /// is being sent) already. Until John Deere's id is known, the field waits under the
    /// organization with its own id as the provider's.
    pub async fn claim_field_for_sending(&self, field_id: &str, org: &str) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE fields SET organization_id = $1 WHERE id = $2 AND origin = 'Leaf' AND organization_id = ''",
        )
        .bind(org)
        .bind(field_id)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Undoes the claim when John Deere refused to create the field.
    pub async fn release_field_claim(&self, field_id: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE fields SET organization_id = '' WHERE id = $1 AND origin = 'Leaf' AND provider_field_id = id",
        )
        .bind(field_id)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    /// A field the user creates (Leaf's "create a field"), with its boundary as the active one
    /// and its alerts, in one transaction. `false` when the id is taken.
    pub async fn create_user_field(
        &self,
        user: &str,
        id: &str,
        name: &str,
        geometry: &str,
        area_ha: f64,
        alerts: &[(String, String)],
    ) -> StoreResult<bool> {
        if self.exists("fields", id).await? {
            return Ok(false);
        }
        let now = leaf_time_now();
        let boundary_id = stable_uuid(&[id, "boundary", &content_hash(geometry)]);
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO fields (id, leaf_user_id, organization_id, provider_field_id, name, provider_farm_id, deleted_on_provider, \
             created_at, updated_at, sync_state, origin) VALUES ($1, $2, '', $1, $3, NULL, 0, $4, $4, 'PROCESSED', 'Leaf')",
        )
        .bind(id)
        .bind(user)
        .bind(name)
        .bind(now.clone())
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO boundaries ({BOUNDARY_COLUMNS}) VALUES ($1, $2, $1, 'ACTIVE', 'ACTIVE', $3, $4, $5, $6, $6)"
        ))
        .bind(&boundary_id)
        .bind(id)
        .bind(geometry)
        .bind(content_hash(geometry))
        .bind(area_ha)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        super::alerts::queue_in(&mut tx, alerts).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records that a user's field now exists in John Deere (written back): its organization
    /// and John Deere's field id, so the next sync reads that field into this one; and, once
    /// sent, its active boundary's id on John Deere.
    pub async fn link_user_field(
        &self,
        field_id: &str,
        org: &str,
        provider_field_id: &str,
        provider_boundary_id: Option<&str>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE fields SET organization_id = $1, provider_field_id = $2, updated_at = $3 \
             WHERE id = $4 AND origin = 'Leaf'",
        )
        .bind(org)
        .bind(provider_field_id)
        .bind(leaf_time_now())
        .bind(field_id)
        .execute(&mut *tx)
        .await?;
        if let Some(boundary) = provider_boundary_id {
            sqlx::query(
                "UPDATE boundaries SET provider_boundary_id = $1 WHERE field_id = $2 AND status = 'ACTIVE'",
            )
            .bind(boundary)
            .bind(field_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The provider ids of a user's live fields in one organization.
    pub async fn live_field_ids(&self, user: &str, org: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT provider_field_id FROM fields WHERE leaf_user_id = $1 AND organization_id = $2 AND deleted_on_provider = 0 \
             AND provider_field_id <> id",
        )
        .bind(user)
        .bind(org)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get("provider_field_id")?))
            .collect()
    }

    /// (field id, fieldOperation link) of a user's live fields in one organization.
    pub async fn field_operation_links(
        &self,
        user: &str,
        org: &str,
    ) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT id, operations_uri FROM fields WHERE leaf_user_id = $1 AND organization_id = $2 \
             AND deleted_on_provider = 0 AND operations_uri IS NOT NULL AND sync_state = 'PROCESSED' ORDER BY id",
        )
        .bind(user)
        .bind(org)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("operations_uri")?)))
            .collect()
    }

    /// A field's sync state (`PREVIEW`, `WAITING`, `PROCESSED`).
    pub async fn field_sync_state(&self, field_id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT sync_state FROM fields WHERE id = $1")
            .bind(field_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("sync_state")).transpose()?)
    }

    /// The live fields of an organization waiting to be read whole: (field id, boundaries link).
    pub async fn waiting_fields(
        &self,
        user: &str,
        org: &str,
    ) -> StoreResult<Vec<(String, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT id, boundaries_uri FROM fields WHERE leaf_user_id = $1 AND organization_id = $2 \
             AND deleted_on_provider = 0 AND sync_state = 'WAITING' ORDER BY id",
        )
        .bind(user)
        .bind(org)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, opt_string(r, "boundaries_uri")?)))
            .collect()
    }

    /// PREVIEW → WAITING for the given fields of a user (all of them: `None`); how many changed.
    pub async fn enable_preview_fields(
        &self,
        user: &str,
        field_ids: Option<&[String]>,
    ) -> StoreResult<u64> {
        let mut changed = 0;
        match field_ids {
            None => {
                // Asked at the start of every sync run, and nearly always there is none: an
                // update, even of no row, waits for SQLite's write lock.
                let any = sqlx::query(
                    "SELECT 1 AS one FROM fields WHERE leaf_user_id = $1 AND sync_state = 'PREVIEW' LIMIT 1",
                )
                .bind(user)
                .fetch_optional(self.pool())
                .await?;
                if any.is_none() {
                    return Ok(0);
                }
                changed += sqlx::query(
                    "UPDATE fields SET sync_state = 'WAITING' WHERE leaf_user_id = $1 AND sync_state = 'PREVIEW'",
                )
                .bind(user)
                .execute(&mut *self.writer().await?)
                .await?
                .rows_affected();
            }
            Some(ids) => {
                let mut tx = self.begin_write().await?;
                for id in ids {
                    changed += sqlx::query(
                        "UPDATE fields SET sync_state = 'WAITING' WHERE id = $1 AND leaf_user_id = $2 AND sync_state = 'PREVIEW'",
                    )
                    .bind(id)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
            }
        }
        Ok(changed)
    }

    /// The live fields of the owner's growers (Leaf's integer ids), by user: a grower's fields
    /// are those of its farms.
    pub async fn fields_of_growers(
        &self,
        owner: &str,
        grower_ids: &[i64],
    ) -> StoreResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        for grower in grower_ids {
            let rows = sqlx::query(
                "SELECT f.leaf_user_id AS leaf_user_id, f.id AS id FROM fields f \
                 JOIN farms fa ON fa.leaf_user_id = f.leaf_user_id AND fa.provider_farm_id = f.provider_farm_id \
                 JOIN growers g ON g.leaf_user_id = fa.leaf_user_id AND g.provider_grower_id = fa.provider_grower_id \
                 JOIN leaf_users u ON u.id = f.leaf_user_id \
                 WHERE g.id = $1 AND u.owner_id = $2 AND f.deleted_on_provider = 0",
            )
            .bind(*grower)
            .bind(owner)
            .fetch_all(self.pool())
            .await?;
            for r in rows {
                out.push((r.try_get("leaf_user_id")?, r.try_get("id")?));
            }
        }
        Ok(out)
    }

    pub async fn boundaries_of(&self, field_id: &str) -> StoreResult<Vec<BoundaryRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BOUNDARY_COLUMNS} FROM boundaries WHERE field_id = $1 ORDER BY created_at, id"
        ))
        .bind(field_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(boundary_from).collect()
    }

    /// The boundaries of these fields, by field, oldest first.
    pub async fn boundaries_of_fields(
        &self,
        field_ids: &[&str],
    ) -> StoreResult<std::collections::HashMap<String, Vec<BoundaryRecord>>> {
        let mut by_field: std::collections::HashMap<String, Vec<BoundaryRecord>> =
            std::collections::HashMap::new();
        let mut conn = self.pool().acquire().await?;
        let sql = format!(
            "SELECT {BOUNDARY_COLUMNS} FROM boundaries WHERE field_id IN ({{list}}) ORDER BY created_at, id"
        );
        for row in super::fetch_in(&mut conn, &sql, &[], field_ids).await? {
            let b = boundary_from(&row)?;
            by_field.entry(b.field_id.clone()).or_default().push(b);
        }
        Ok(by_field)
    }

    /// Writes planned changes to fields' boundaries in one transaction, with the alerts they
    /// carry, marks the fields now read whole PROCESSED, and stores the signatures the
    /// boundaries were read under last.
    pub async fn write_boundaries(
        &self,
        credential_id: &str,
        write: &BoundariesWrite,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let mut inserts = Vec::new();
        for change in &write.changes {
            match change {
                BoundaryChange::Adopt {
                    id,
                    provider_boundary_id,
                } => {
                    sqlx::query(
                        "UPDATE boundaries SET provider_boundary_id = $1 WHERE id = $2 AND provider_boundary_id = id",
                    )
                    .bind(provider_boundary_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                BoundaryChange::Status {
                    id,
                    status,
                    provider_status,
                } => {
                    sqlx::query(
                        "UPDATE boundaries SET status = $1, provider_status = $2, updated_at = $3 WHERE id = $4 \
                         AND (status <> $1 OR provider_status <> $2)",
                    )
                    .bind(status)
                    .bind(provider_status)
                    .bind(leaf_time_now())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                // Inserted together below: new rows, which no other change touches.
                BoundaryChange::Insert { record, alerts } => inserts.push((record, alerts)),
                BoundaryChange::Outdate { ids, alerts } => {
                    let mut changed = false;
                    for id in ids {
                        let r = sqlx::query(
                            "UPDATE boundaries SET status = 'OUTDATED_ON_PROVIDER', provider_status = 'INACTIVE', updated_at = $1 \
                             WHERE id = $2 AND status <> 'OUTDATED_ON_PROVIDER'",
                        )
                        .bind(leaf_time_now())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        changed |= r.rows_affected() > 0;
                    }
                    if changed {
                        super::alerts::queue_in(&mut tx, alerts).await?;
                    }
                }
            }
        }
        let mut inserted = std::collections::HashSet::new();
        for chunk in inserts.chunks(super::MAX_BOUND / 10) {
            let sql = super::positional(&tx, &format!(
                "INSERT INTO boundaries ({BOUNDARY_COLUMNS}) VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
                super::value_rows(chunk.len(), 10, |p| p.join(", "))
            ));
            let mut query = sqlx::query(&sql);
            for (b, _) in chunk {
                query = query
                    .bind(&b.id)
                    .bind(&b.field_id)
                    .bind(&b.provider_boundary_id)
                    .bind(&b.status)
                    .bind(&b.provider_status)
                    .bind(&b.geometry)
                    .bind(&b.geometry_hash)
                    .bind(b.area_ha)
                    .bind(&b.created_at)
                    .bind(&b.updated_at);
            }
            for row in query.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<String, _>("id")?);
            }
        }
        let alerts = inserts
            .iter()
            .filter(|(b, _)| inserted.contains(&b.id))
            .flat_map(|(_, alerts)| alerts.iter());
        super::alerts::queue_in(&mut tx, alerts).await?;
        let processed: Vec<&str> = write.processed.iter().map(String::as_str).collect();
        for chunk in processed.chunks(super::MAX_BOUND) {
            let sql = super::positional(&tx, &format!(
                "UPDATE fields SET sync_state = 'PROCESSED' WHERE id IN ({}) AND sync_state <> 'PROCESSED'",
                super::placeholders(1, chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
        put_signatures_in(&mut tx, credential_id, &write.signatures).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The stored signatures of a credential's collections (those that have one), or `None`
    /// when the credential is gone (deleted while its sync ran): one statement for both, as
    /// every batch of a sync's reads asks them together.
    pub async fn signatures(
        &self,
        credential_id: &str,
        urls: &[String],
    ) -> StoreResult<Option<std::collections::HashMap<String, String>>> {
        let mut conn = self.pool().acquire().await?;
        if urls.is_empty() {
            let found = sqlx::query("SELECT id FROM jd_credentials WHERE id = $1")
                .bind(credential_id)
                .fetch_optional(&mut *conn)
                .await?;
            return Ok(found.map(|_| Default::default()));
        }
        // A row per URL, its signature NULL when it has none; none at all when the credential
        // is gone.
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let sql = "SELECT v.column1 AS url, (SELECT s.signature FROM deere_signatures s \
                   WHERE s.credential_id = c.id AND s.url = v.column1) AS signature \
                   FROM (VALUES {keys}) AS v, jd_credentials c WHERE c.id = {after}";
        let rows = super::fetch_each(&mut conn, sql, &urls, credential_id).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut signatures = std::collections::HashMap::new();
        for r in &rows {
            if let (Some(url), Some(signature)) = (
                r.try_get::<Option<String>, _>("url")?,
                r.try_get::<Option<String>, _>("signature")?,
            ) {
                signatures.insert(url, signature);
            }
        }
        Ok(Some(signatures))
    }

    pub async fn put_signature(
        &self,
        credential_id: &str,
        url: &str,
        signature: &str,
    ) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        let signature = [(url.to_string(), signature.to_string())];
        put_signatures_in(&mut conn, credential_id, &signature).await
    }

    pub async fn sync_status(&self, user: &str) -> StoreResult<Option<SyncStatus>> {
        let row = sqlx::query("SELECT state, started_at, finished_at, counts, last_error FROM sync_status WHERE leaf_user_id = $1")
            .bind(user)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(SyncStatus {
                state: r.try_get("state")?,
                started_at: opt_string(&r, "started_at")?,
                finished_at: opt_string(&r, "finished_at")?,
                counts: r.try_get("counts")?,
                last_error: opt_string(&r, "last_error")?,
            })
        })
        .transpose()
    }

    /// On the writer connection, as every write: on a reader connection it waited for SQLite's
    /// write lock in the busy handler, holding one of the two readers meanwhile (up to 430 ms,
    /// a tenth of them over a millisecond, in a 50-grower sync).
    pub async fn put_sync_status(&self, user: &str, s: &SyncStatus) -> StoreResult<()> {
        sync_status_in(&mut *self.writer().await?, user, s).await
    }

    /// A page of the owner's fields and the total.
    pub async fn list_fields(
        &self,
        owner: &str,
        filter: &FieldFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<FieldRecord>, i64)> {
        let mut filters = Filters::default()
            .eq("u.owner_id", Some(owner))
            .eq("f.leaf_user_id", filter.leaf_user_id.as_deref());
        if !filter.include_deleted {
            filters = filters.raw("f.deleted_on_provider = 0");
        }
        if let Some(farm) = filter.farm_id {
            // Farm ids are ours, derived from the provider farm id: match through the farms table.
            filters = filters.raw(format!(
                "f.provider_farm_id IN (SELECT provider_farm_id FROM farms WHERE id = {farm} AND leaf_user_id = f.leaf_user_id)"
            ));
        }
        let from = "FROM fields f JOIN leaf_users u ON u.id = f.leaf_user_id";
        let (rows, total) = self
            .page(
                FIELD_COLUMNS,
                from,
                &filters,
                "f.created_at, f.id",
                offset,
                limit,
            )
            .await?;
        Ok((
            rows.iter().map(field_from).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    pub async fn field(
        &self,
        owner: &str,
        user: &str,
        id: &str,
    ) -> StoreResult<Option<FieldRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {FIELD_COLUMNS} FROM fields f JOIN leaf_users u ON u.id = f.leaf_user_id \
             WHERE f.id = $1 AND f.leaf_user_id = $2 AND u.owner_id = $3"
        ))
        .bind(id)
        .bind(user)
        .bind(owner)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(field_from).transpose()
    }

    pub async fn list_farms(
        &self,
        owner: &str,
        user: Option<&str>,
    ) -> StoreResult<Vec<FarmRecord>> {
        let rows = sqlx::query(
            "SELECT fa.id, fa.leaf_user_id, fa.organization_id, fa.provider_farm_id, fa.name, fa.provider_grower_id, \
             fa.created_at, fa.updated_at FROM farms fa JOIN leaf_users u ON u.id = fa.leaf_user_id \
             WHERE u.owner_id = $1 AND ($2 = '' OR fa.leaf_user_id = $2) ORDER BY fa.created_at, fa.id",
        )
        .bind(owner)
        .bind(user.unwrap_or("").to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(farm_from).collect()
    }

    pub async fn list_growers(
        &self,
        owner: &str,
        user: Option<&str>,
    ) -> StoreResult<Vec<GrowerRecord>> {
        let rows = sqlx::query(
            "SELECT g.id, g.leaf_user_id, g.organization_id, g.provider_grower_id, g.name, g.created_at, g.updated_at \
             FROM growers g JOIN leaf_users u ON u.id = g.leaf_user_id \
             WHERE u.owner_id = $1 AND ($2 = '' OR g.leaf_user_id = $2) ORDER BY g.created_at, g.id",
        )
        .bind(owner)
        .bind(user.unwrap_or("").to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(grower_from).collect()
    }
}

/// Writes a user's sync status on `conn` (inside the caller's transaction).
pub(crate) async fn sync_status_in(
    conn: &mut sqlx::AnyConnection,
    user: &str,
    s: &SyncStatus,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sync_status (leaf_user_id, state, started_at, finished_at, counts, last_error) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (leaf_user_id) DO UPDATE SET state = $2, \
         started_at = $3, finished_at = $4, counts = $5, last_error = $6",
    )
    .bind(user)
    .bind(&s.state)
    .bind(s.started_at.clone())
    .bind(s.finished_at.clone())
    .bind(&s.counts)
    .bind(s.last_error.clone())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One Leaf user's synced John Deere data in numbers (Leaf's integrations summary).
#[derive(Debug, Clone)]
pub struct IntegrationSummary {
    pub leaf_user_id: String,
    pub growers: i64,
    pub farms: i64,
    /// Fields still on John Deere (deleted ones are not counted).
    pub fields: i64,
    /// When the user's last sync finished.
    pub sync_reference_time: Option<String>,
}

impl Store {
    /// A page of the owner's users with John Deere credentials, with their counts, oldest
    /// user first; `user` narrows it to one.
    pub async fn integration_summaries(
        &self,
        owner: &str,
        user: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<IntegrationSummary>, i64)> {
        let rows = sqlx::query(
            "SELECT u.id AS leaf_user_id, \
             (SELECT COUNT(*) FROM growers g WHERE g.leaf_user_id = u.id) AS growers, \
             (SELECT COUNT(*) FROM farms f WHERE f.leaf_user_id = u.id) AS farms, \
             (SELECT COUNT(*) FROM fields d WHERE d.leaf_user_id = u.id AND d.deleted_on_provider = 0) AS fields, \
             s.finished_at AS finished_at \
             FROM leaf_users u JOIN jd_credentials c ON c.leaf_user_id = u.id \
             LEFT JOIN sync_status s ON s.leaf_user_id = u.id \
             WHERE u.owner_id = $1 AND ($2 = '' OR u.id = $2) \
             ORDER BY u.created_at, u.id LIMIT $3 OFFSET $4",
        )
        .bind(owner)
        .bind(user.unwrap_or(""))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM leaf_users u JOIN jd_credentials c ON c.leaf_user_id = u.id \
             WHERE u.owner_id = $1 AND ($2 = '' OR u.id = $2)",
        )
        .bind(owner)
        .bind(user.unwrap_or(""))
        .fetch_one(self.pool())
        .await?
        .try_get("n")?;
        let summaries = rows
            .iter()
            .map(|r| {
                Ok(IntegrationSummary {
                    leaf_user_id: r.try_get("leaf_user_id")?,
                    growers: r.try_get("growers")?,
                    farms: r.try_get("farms")?,
                    fields: r.try_get("fields")?,
                    sync_reference_time: opt_string(r, "finished_at")?,
                })
            })
            .collect::<StoreResult<_>>()?;
        Ok((summaries, total))
    }
}

/// An organization's growers and farms, with the signatures of the collections they were read
/// from, on `conn` (a name that did not change writes nothing).
async fn growers_and_farms_in(
    conn: &mut sqlx::AnyConnection,
    credential_id: &str,
    user: &str,
    org: &str,
    write: &GrowersAndFarms<'_>,
) -> StoreResult<()> {
    let now = leaf_time_now();
    // One row per grower and per farm, the last read: PostgreSQL refuses to upsert a row
    // twice in one statement.
    let growers: std::collections::BTreeMap<i64, (&str, &str)> = write
        .growers
        .iter()
        .map(|&(provider_id, name)| {
            (
                stable_int_id(user, "grower", provider_id),
                (provider_id, name),
            )
        })
        .collect();
    let farms: std::collections::BTreeMap<i64, (&str, &str, Option<&str>)> = write
        .farms
        .iter()
        .map(|&(provider_id, name, grower)| {
            (
                stable_int_id(user, "farm", provider_id),
                (provider_id, name, grower),
            )
        })
        .collect();
    let growers: Vec<_> = growers.into_iter().collect();
    for chunk in growers.chunks(super::MAX_BOUND / 7) {
        let sql = super::positional(conn, &format!(
            "INSERT INTO growers (id, leaf_user_id, organization_id, provider_grower_id, name, created_at, updated_at) \
             VALUES {} ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at \
             WHERE growers.name <> excluded.name",
            super::value_rows(chunk.len(), 7, |p| p.join(", "))
        ));
        let mut query = sqlx::query(&sql);
        for (id, (provider_id, name)) in chunk {
            query = query
                .bind(*id)
                .bind(user)
                .bind(org)
                .bind(*provider_id)
                .bind(*name)
                .bind(&now)
                .bind(&now);
        }
        query.execute(&mut *conn).await?;
    }
    let farms: Vec<_> = farms.into_iter().collect();
    for chunk in farms.chunks(super::MAX_BOUND / 8) {
        let sql = super::positional(conn, &format!(
            "INSERT INTO farms (id, leaf_user_id, organization_id, provider_farm_id, name, provider_grower_id, created_at, updated_at) \
             VALUES {} ON CONFLICT (id) DO UPDATE SET name = excluded.name, provider_grower_id = excluded.provider_grower_id, \
             updated_at = excluded.updated_at \
             WHERE farms.name <> excluded.name OR COALESCE(farms.provider_grower_id, '') <> COALESCE(excluded.provider_grower_id, '')",
            super::value_rows(chunk.len(), 8, |p| p.join(", "))
        ));
        let mut query = sqlx::query(&sql);
        for (id, (provider_id, name, grower)) in chunk {
            query = query
                .bind(*id)
                .bind(user)
                .bind(org)
                .bind(*provider_id)
                .bind(*name)
                .bind(grower.map(str::to_string))
                .bind(&now)
                .bind(&now);
        }
        query.execute(&mut *conn).await?;
    }
    put_signatures_in(conn, credential_id, &write.signatures).await
}

/// Stores collections' signatures `(url, signature)` on `conn`: inside the caller's transaction,
/// with the items read under them, so a signature never outlives a write that did not commit.
pub(crate) async fn put_signatures_in(
    conn: &mut sqlx::AnyConnection,
    credential_id: &str,
    signatures: &[(String, String)],
) -> StoreResult<()> {
    // One row per collection: PostgreSQL refuses to upsert a row twice in one statement.
    let latest: std::collections::HashMap<&String, &String> =
        signatures.iter().map(|(url, sig)| (url, sig)).collect();
    let signatures: Vec<(&String, &String)> = latest.into_iter().collect();
    for chunk in signatures.chunks(super::MAX_BOUND / 3) {
        let sql = super::positional(
            conn,
            &format!(
                "INSERT INTO deere_signatures (credential_id, url, signature) VALUES {} \
             ON CONFLICT (credential_id, url) DO UPDATE SET signature = excluded.signature",
                super::value_rows(chunk.len(), 3, |p| p.join(", "))
            ),
        );
        let mut query = sqlx::query(&sql);
        for (url, signature) in chunk {
            query = query.bind(credential_id).bind(url).bind(signature);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Values bound per field in a multi-row upsert.
const FIELD_UPSERT_WIDTH: usize = 11;

/// Upserts fields `(furrow id, field)` in one statement (a field whose name, farm, operations
/// link and John Deere id are as stored, and not deleted, is left alone); returns the ids of
/// those inserted or changed.
async fn upsert_fields_in(
    conn: &mut sqlx::AnyConnection,
    fields: &[(&str, &FieldWrite<'_>)],
    now: &str,
) -> StoreResult<Vec<String>> {
    let sql = super::positional(conn, &format!(
        "INSERT INTO fields (id, leaf_user_id, organization_id, provider_field_id, name, provider_farm_id, deleted_on_provider, \
         created_at, updated_at, operations_uri, sync_state, boundaries_uri) VALUES {} \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, provider_farm_id = excluded.provider_farm_id, \
         deleted_on_provider = 0, updated_at = excluded.updated_at, operations_uri = excluded.operations_uri, \
         provider_field_id = excluded.provider_field_id \
         WHERE fields.name <> excluded.name OR COALESCE(fields.provider_farm_id, '') <> COALESCE(excluded.provider_farm_id, '') \
         OR fields.deleted_on_provider <> 0 OR COALESCE(fields.operations_uri, '') <> COALESCE(excluded.operations_uri, '') \
         OR fields.provider_field_id <> excluded.provider_field_id \
         RETURNING id",
        // Not deleted; updated when created.
        super::value_rows(fields.len(), FIELD_UPSERT_WIDTH, |p| format!(
            "{}, 0, {}",
            p[..6].join(", "),
            p[6..].join(", ")
        ))
    ));
    let mut query = sqlx::query(&sql);
    for (id, field) in fields {
        query = query
            .bind(*id)
            .bind(field.user)
            .bind(field.org)
            .bind(field.provider_id)
            .bind(field.name)
            .bind(field.provider_farm_id.map(str::to_string))
            .bind(now.to_string())
            .bind(now.to_string())
            .bind(field.operations_uri.map(str::to_string))
            .bind(if field.preview {
                "PREVIEW"
            } else {
                "PROCESSED"
            })
            .bind(field.boundaries_uri.map(str::to_string));
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

/// The fields John Deere's fields are read into, in order: the one with its id, or else the
/// user's own field being sent to that organization under that name (John Deere's event for
/// a field furrow is creating can arrive before furrow has its id; names are unique in an
/// organization), or none (a new field).
async fn field_ids_for_upsert_in(
    conn: &mut sqlx::AnyConnection,
    fields: &[FieldWrite<'_>],
) -> StoreResult<Vec<Option<String>>> {
    let mut by_provider = std::collections::HashMap::new();
    let mut users: Vec<&str> = fields.iter().map(|f| f.user).collect();
    users.dedup();
    for user in users {
        let ids: Vec<&str> = fields
            .iter()
            .filter(|f| f.user == user)
            .map(|f| f.provider_id)
            .collect();
        let sql = "SELECT v.column1 AS provider_field_id, (SELECT f.id FROM fields f \
                   WHERE f.leaf_user_id = {after} AND f.provider_field_id = v.column1) AS id \
                   FROM (VALUES {keys}) AS v";
        for row in super::fetch_each(conn, sql, &ids, user).await? {
            if let Some(id) = row.try_get::<Option<String>, _>("id")? {
                let provider: String = row.try_get("provider_field_id")?;
                by_provider.insert((user, provider), id);
            }
        }
    }
    // The user's own fields waiting for John Deere's ids, by (user, organization, name).
    let mut pending = std::collections::HashMap::new();
    let mut asked = std::collections::HashSet::new();
    for f in fields {
        let known = by_provider.contains_key(&(f.user, f.provider_id.to_string()));
        if known || !asked.insert((f.user, f.org)) {
            continue;
        }
        let rows = sqlx::query(
            "SELECT id, name FROM fields WHERE leaf_user_id = $1 AND organization_id = $2 \
             AND origin = 'Leaf' AND provider_field_id = id",
        )
        .bind(f.user)
        .bind(f.org)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let name: String = row.try_get("name")?;
            pending.insert((f.user, f.org, name), row.try_get::<String, _>("id")?);
        }
    }
    Ok(fields
        .iter()
        .map(|f| {
            by_provider
                .get(&(f.user, f.provider_id.to_string()))
                .or_else(|| pending.get(&(f.user, f.org, f.name.to_string())))
                .cloned()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    /// A grower's new-row ids are stable, distinct per row and per grower, and share their
    /// first six bytes with the grower's other rows (so they sit together in an index).
    #[test]
    fn a_growers_ids_share_a_prefix() {
        let a1 = grower_uuid("user-a", &["operation", "1"]);
        let a2 = grower_uuid("user-a", &["field", "1"]);
        let b1 = grower_uuid("user-b", &["operation", "1"]);
        assert_eq!(a1, grower_uuid("user-a", &["operation", "1"]));
        assert_ne!(a1, a2);
        assert_ne!(a1, b1);
        assert_eq!(a1[..13], a2[..13], "{a1} {a2}");
        assert_ne!(a1[..13], b1[..13], "{a1} {b1}");
        let parsed = uuid::Uuid::parse_str(&a1).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }

    /// A sync's reads get their stored signatures and learn in the same statement whether the
    /// credential is still there (deleted, its sync stops): with URLs, without, and once gone.
    async fn signatures_end_with_their_credential(store: &Store) {
        crate::store::test_credential(store, "c").await;
        store
            .put_signature("c", "https://d/fields", "s1")
            .await
            .unwrap();
        store
            .put_signature("c", "https://d/farms", "s2")
            .await
            .unwrap();
        let urls = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let found = store
            .signatures("c", &urls(&["https://d/fields", "https://d/clients"]))
            .await
            .unwrap()
            .expect("the credential is there");
        assert_eq!(found.len(), 1);
        assert_eq!(found["https://d/fields"], "s1");
        let none_stored = store
            .signatures("c", &urls(&["https://d/clients"]))
            .await
            .unwrap();
        assert_eq!(none_stored, Some(HashMap::new()));
        assert_eq!(
            store.signatures("c", &[]).await.unwrap(),
            Some(HashMap::new())
        );
        assert_eq!(
            store
                .signatures("gone", &urls(&["https://d/fields"]))
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.signatures("gone", &[]).await.unwrap(), None);
        sqlx::query("DELETE FROM jd_credentials WHERE id = 'c'")
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(
            store
                .signatures("c", &urls(&["https://d/fields"]))
                .await
                .unwrap(),
            None
        );
    }

    crate::store::test_on_both_databases!(
        signatures_end_with_their_credential,
        signatures_end_with_their_credential_on_sqlite,
        signatures_end_with_their_credential_on_postgres
    );

    /// A sync status written while another write holds the writer waits its turn there, not
    /// on one of the readers (in SQLite's busy handler), which stay free for everyone's reads.
    #[tokio::test]
    async fn a_status_write_waiting_for_the_writer_holds_no_reader() {
        let store = crate::store::temp_sqlite_store("status-writer").await;
        store.create_owner("o", "o@example.com", "x").await.unwrap();
        store
            .insert_user("o", "u", &crate::store::UserWrite::default())
            .await
            .unwrap();
        let held = store.begin_write().await.unwrap();
        let status = SyncStatus {
            state: "RUNNING".into(),
            started_at: None,
            finished_at: None,
            counts: "{}".into(),
            last_error: None,
        };
        let writing = tokio::spawn({
            let store = store.clone();
            async move { store.put_sync_status("u", &status).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let both_readers = async {
            let first = store.pool().acquire().await;
            let second = store.pool().acquire().await;
            first.is_ok() && second.is_ok()
        };
        let free = tokio::time::timeout(Duration::from_secs(2), both_readers).await;
        assert_eq!(free, Ok(true), "the waiting status write held a reader");
        assert!(!writing.is_finished(), "wrote while the writer was held");
        held.commit().await.unwrap();
        writing.await.unwrap().unwrap();
        assert_eq!(
            store.sync_status("u").await.unwrap().unwrap().state,
            "RUNNING"
        );
    }
}
