//! Syncing one credential's growers, farms, fields and boundaries from John Deere.
//!
//! Incremental: every collection URL is read with its stored `x-deere-signature`; an unchanged
//! account costs one 304 per collection. A field's boundaries are read only when the field
//! changed. Idempotent: upserts keyed by John Deere ids.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use deere::models::{
    Boundary, Client, Farm, Field, FieldOperation, FieldOperationType, File, HasLinks, Organization,
};
use deere::{AccessToken, ApiClient, DeereError, Listing};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::domain::credential::CredentialStatus;
use crate::domain::organization::OrgSelection;
use crate::store::{
    leaf_time_now, BoundariesWrite, BoundaryChange, BoundaryRecord, ChangeAlerts, CredentialRecord,
    Deliveries, FieldWrite, GrowersAndFarms, OperationRecord, OperationsWrite, StoreError,
    SyncStatus,
};
use crate::sync::link::Authorized;
use crate::sync::pacing::Standing;
use crate::sync::Slot;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("credentials are {0}")]
    NotReady(String),
    #[error("John Deere: {0}")]
    Deere(#[from] DeereError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("file store: {0}")]
    Io(String),
    /// A first part in one of the newest growers' slots stopped (before its first request, or
    /// after its grower's first data), the slot given up: the part is queued again for the
    /// other slots.
    #[error("the slot was handed back to a newer grower")]
    HandedBack,
}

/// Counts of what one run read and changed.
#[derive(Debug, Default, Clone)]
pub struct SyncCounts {
    pub organizations: usize,
    pub growers: usize,
    pub farms: usize,
    pub fields: usize,
    pub fields_deleted: usize,
    pub boundaries: usize,
    pub operations: usize,
    pub operations_deleted: usize,
    pub files: usize,
    pub files_deleted: usize,
    /// Machines, implements and operators read (with their `*AutoSync` on).
    pub assets: usize,
    pub requests_not_modified: usize,
    pub organizations_failed: Vec<String>,
    /// How changes reach furrow: `WEBHOOKS`, `POLLING` (with the reason) or `DISABLED`, as
    /// the sync run decided it; none for a part's own counts (a part showed `DISABLED`, "turned
    /// off", while the run had subscribed).
    pub webhooks: Option<crate::sync::webhooks::WebhookMode>,
}

impl SyncCounts {
    /// Adds what was read to `furrow_sync_items_total`.
    fn record_metrics(&self) {
        for (kind, count) in [
            ("growers", self.growers),
            ("farms", self.farms),
            ("fields", self.fields),
            ("boundaries", self.boundaries),
            ("operations", self.operations),
            ("files", self.files),
            ("assets", self.assets),
        ] {
            crate::metrics::sync_items(kind, count);
        }
    }

    pub fn to_json(&self) -> Value {
        let mut counts = json!({
            "organizations": self.organizations, "growers": self.growers, "farms": self.farms,
            "fields": self.fields, "fieldsDeleted": self.fields_deleted, "boundaries": self.boundaries,
            "operations": self.operations, "operationsDeleted": self.operations_deleted,
            "files": self.files, "filesDeleted": self.files_deleted, "assets": self.assets,
            "notModified": self.requests_not_modified, "organizationsFailed": self.organizations_failed,
        });
        if let (Some(mode), Value::Object(counts)) = (&self.webhooks, &mut counts) {
            counts.insert("webhooks".into(), mode.state().into());
            counts.insert("webhooksDetail".into(), mode.detail().into());
        }
        counts
    }
}

/// One credential's work against John Deere: a full sync, or one delivered event.
pub(super) struct Run<'a> {
    pub(super) state: &'a AppState,
    pub(super) api: ApiClient,
    pub(super) token: AccessToken,
    pub(super) cred: &'a CredentialRecord,
    auth: Authorized,
    pub(super) counts: SyncCounts,
    /// With operations on: only operations ending after this (ms) are kept.
    pub(super) operations_since_ms: Option<i64>,
    /// With operations on: operationsProcessingRange (months), which the operations lists'
    /// signatures are stored under ([`Reader::signature_key`]).
    operations_range_months: Option<i64>,
    /// The owner's alert webhooks: (id, subscribed events), loaded once per run.
    hooks: Vec<(String, Vec<String>)>,
    /// customDataSync: new fields arrive as PREVIEW.
    custom_data_sync: bool,
    /// Which assets (machines, implements, operators) are synced.
    pub(super) asset_sync: crate::sync::assets::AssetSync,
    /// Requests made to John Deere's collections so far.
    requests: u64,
    /// When this run is a part of a sync run: where its live figures go.
    progress: Option<PartProgress>,
    /// A first part in one of the newest growers' slots ([`crate::sync::NewestSlot`]): given
    /// up before its first request or when its first data is stored, the part is queued again.
    newest_slot: Option<crate::sync::NewestSlot>,
}

/// Where a running part reports how far it has got, and when it last did (at most once a
/// second, so the figures cost one small write per second of work).
struct PartProgress {
    part: String,
    run_id: String,
    started: std::time::Instant,
    started_ms: i64,
    /// When the figures were last written, and the requests then (for the current rate).
    written: Option<(std::time::Instant, u64)>,
}

/// What a signed read returned.
pub(super) enum Read<T> {
    NotModified,
    /// Items, whether this is the full list (first read or a signature reset), and the new
    /// signature to store once the items are processed.
    Items(Vec<T>, bool, Pending),
}

/// A signature to store after its collection was processed completely: a sync killed half-way
/// through a collection reads it again, whole, next time.
#[must_use]
pub(super) struct Pending(Option<(String, String)>);

/// A file to record, with the alerts its outcome raises.
type FileChange = (crate::store::FileRecord, Deliveries);

/// A collection about to be read: its URL, its signature key, the signature stored for it.
type PreparedRead = (url::Url, String, Option<String>);

/// An organization's clients, farms and fields, each when the organization links it.
struct OrgLists {
    clients: Option<Read<Client>>,
    farms: Option<Read<Farm>>,
    fields: Option<Read<Field>>,
}

impl<'a> Run<'a> {
    /// Opens a run for a credential that has a working access token.
    pub(super) fn open(state: &'a AppState, cred: &'a CredentialRecord) -> Result<Self, SyncError> {
        let Some(auth) = Authorized::open(state, cred)? else {
            let reason = match cred.status.as_str() {
                s if s == CredentialStatus::Unauthenticated.as_str() => s.to_string(),
                _ => "without an access token".to_string(),
            };
            return Err(SyncError::NotReady(reason));
        };
        Ok(Run {
            state,
            api: auth.api().clone(),
            token: auth.token.clone(),
            cred,
            auth,
            counts: SyncCounts::default(),
            operations_since_ms: None,
            operations_range_months: None,
            hooks: Vec::new(),
            custom_data_sync: false,
            asset_sync: Default::default(),
            requests: 0,
            progress: None,
            newest_slot: None,
        })
    }

    /// Whether this first part ran in one of the newest growers' slots and the slot was given
    /// up (its grower no longer one of them).
    fn newest_slot_given_up(&self) -> bool {
        self.newest_slot.as_ref().is_some_and(|slot| !slot.held())
    }

    /// Items read so far (what the sync status shows as a part's progress).
    fn items(&self) -> usize {
        let c = &self.counts;
        c.growers + c.farms + c.fields + c.boundaries + c.operations + c.files + c.assets
    }

    /// Writes the part's figures (items and requests so far, and the current request rate) if
    /// a second has passed since the part started or since they were last written.
    async fn report_progress(&mut self) -> Result<(), SyncError> {
        let Some(figures) = self.progress_figures(false) else {
            return Ok(());
        };
        let progress = self.progress.as_ref().expect("figures come from it");
        self.state
            .store
            .set_part_progress(&self.cred.id, &progress.part, &progress.run_id, &figures)
            .await?;
        Ok(())
    }

    /// The part's figures (a JSON object) as [`Run::report_progress`] writes them, counted as
    /// written; `None` within a second of the last unless `force`, or outside a part.
    fn progress_figures(&mut self, force: bool) -> Option<String> {
        let (items, requests) = (self.items(), self.requests);
        let progress = self.progress.as_mut()?;
        let now = std::time::Instant::now();
        let (since, requests_then) = progress.written.unwrap_or((progress.started, 0));
        if !force && now.duration_since(since) < std::time::Duration::from_secs(1) {
            return None;
        }
        progress.written = Some((now, requests));
        // The current rate: over the last second or so, not since the part started.
        let seconds = now.duration_since(since).as_secs_f64();
        let rate = if seconds > 0.0 {
            ((requests - requests_then) as f64 / seconds * 10.0).round() / 10.0
        } else {
            0.0
        };
        let figures = json!({
            "items": items,
            "requests": requests,
            "requestsPerSecond": rate,
            "startedTime": crate::store::leaf_time_from_ms(progress.started_ms),
            "updatedTime": crate::store::leaf_time_now(),
        });
        Some(figures.to_string())
    }

    /// Loads the owner's alert webhooks and the effective configuration (two reads at once);
    /// returns which organizations sync.
    pub(super) async fn load_config(&mut self) -> Result<OrgSelection, SyncError> {
        let store = &self.state.store;
        let user = &self.cred.leaf_user_id;
        let (config, hooks) = tokio::try_join!(store.effective_config(user), self.owner_hooks())?;
        self.hooks = hooks;
        Ok(self.apply_config(&config))
    }

    /// The owner's alert webhooks: (id, subscribed events).
    async fn owner_hooks(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        Ok(self
            .state
            .store
            .webhooks_of_user(&self.cred.leaf_user_id)
            .await?
            .into_iter()
            .map(|w| (w.id, serde_json::from_str(&w.events).unwrap_or_default()))
            .collect())
    }

    /// Takes what the run does from the effective configuration; returns which organizations
    /// sync.
    fn apply_config(&mut self, config: &serde_json::Map<String, Value>) -> OrgSelection {
        if config
            .get("operationsAutoSync")
            .and_then(Value::as_bool)
            .unwrap_or(true)
        {
            // operationsProcessingRange is in months; a month counts as 30.44 days.
            let months = config
                .get("operationsProcessingRange")
                .and_then(Value::as_i64)
                .unwrap_or(12);
            self.operations_since_ms = Some(crate::store::now_ms() - months * 2_630_016_000);
            self.operations_range_months = Some(months);
        }
        self.custom_data_sync = config
            .get("customDataSync")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.asset_sync = crate::sync::assets::AssetSync::from_config(config);
        OrgSelection {
            selected_only: config.get("organizationDataSync").and_then(Value::as_str)
                == Some("SELECTED_ONLY"),
            partners: config
                .get("syncPartnerData")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// Stores the exchanges so far as the credential's events (failed ones are what an
    /// application needs to see).
    pub(super) async fn flush_events(&self) -> Result<(), SyncError> {
        Ok(self.auth.flush_events(self.state, &self.cred.id).await?)
    }

    /// Reads one collection (with its stored signature, every page), counted.
    pub(super) async fn read<T: DeserializeOwned>(
        &mut self,
        uri: &str,
    ) -> Result<Read<T>, SyncError> {
        let prepared = self.prepare_reads(&[uri.to_string()]).await?.pop();
        let (url, key, stored) = prepared.expect("one read per link");
        let (read, pages) = read_collection::<T>(&self.api, &self.token, &url, key, stored).await?;
        self.count_read(&read, pages);
        self.report_progress().await?;
        Ok(read)
    }

    /// An organization's clients, farms and fields (each when linked), read at once: the
    /// three do not depend on each other, and one after another they were three waits on John
    /// Deere in every organization's sync.
    async fn read_org_lists(
        &mut self,
        links: &BTreeMap<String, String>,
    ) -> Result<OrgLists, SyncError> {
        let uris: Vec<String> = [
            links.get("clients").cloned(),
            links.get("farms").cloned(),
            links.get("fields").map(|uri| with_embed(uri, "farms")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut requests = self.prepare_reads(&uris).await?.into_iter();
        let mut next = |linked: bool| linked.then(|| requests.next()).flatten();
        let (clients, farms, fields) = (
            next(links.contains_key("clients")),
            next(links.contains_key("farms")),
            next(links.contains_key("fields")),
        );
        let (api, token) = (&self.api, &self.token);
        let (clients, farms, fields) = tokio::try_join!(
            read_linked::<Client>(api, token, clients),
            read_linked::<Farm>(api, token, farms),
            read_linked::<Field>(api, token, fields),
        )?;
        if let Some((read, pages)) = &clients {
            self.count_read(read, *pages);
        }
        if let Some((read, pages)) = &farms {
            self.count_read(read, *pages);
        }
        if let Some((read, pages)) = &fields {
            self.count_read(read, *pages);
        }
        self.report_progress().await?;
        Ok(OrgLists {
            clients: clients.map(|(r, _)| r),
            farms: farms.map(|(r, _)| r),
            fields: fields.map(|(r, _)| r),
        })
    }

    /// Before reads: stops if the credentials were deleted, and pairs each link with its URL,
    /// its signature key and the stored signature.
    async fn prepare_reads(&self, uris: &[String]) -> Result<Vec<PreparedRead>, SyncError> {
        self.reader().prepare(uris).await
    }

    /// What reads need apart from the run, so that they can go on while the run stores.
    fn reader(&self) -> Reader<'a> {
        Reader {
            state: self.state,
            cred_id: &self.cred.id,
            client_key: &self.cred.client_key,
            account: &self.cred.leaf_user_id,
            api: self.api.clone(),
            token: self.token.clone(),
            operations_range_months: self.operations_range_months,
        }
    }

    /// Reads collections a chunk of links at a time and hands each chunk's reads over in order
    /// once they are all in, several reads at once across chunks ([`Reader::reads_wanted`]):
    /// the part stores one chunk while the next ones are read, instead of waiting on John
    /// Deere and on the database in turn. The returned future does the reading; run it beside the one that takes
    /// the chunks ([`Run::ready_chunks`]).
    fn read_ahead<T: DeserializeOwned + Send + 'static>(
        &self,
        chunks: Vec<Vec<String>>,
    ) -> (impl std::future::Future<Output = ()> + 'a, ReadChunks<T>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(MOST_CHUNKS_PER_WRITE);
        (self.reader().read_chunks(chunks, sender), receiver)
    }

    /// The reads of the chunks [`Run::read_ahead`] has ready, counted — the next one (waited
    /// for) and those already in behind it, up to [`Run::chunks_per_write`] — with the items
    /// they were read for, taken off the front of `left` (the part's items in chunks of
    /// [`READ_CHUNK`]). The part stores them together.
    async fn ready_chunks<'l, X, T>(
        &mut self,
        chunks: &mut ReadChunks<T>,
        left: &mut &'l [X],
    ) -> Result<(&'l [X], Vec<Read<T>>), SyncError> {
        let first = chunks
            .recv()
            .await
            .expect("the reader sends every chunk or stops at an error it sends")?;
        let mut ready = vec![first];
        while ready.len() < self.chunks_per_write() {
            match chunks.try_recv() {
                Ok(reads) => ready.push(reads?),
                Err(_) => break, // none in yet
            }
        }
        let (batch, rest) = left.split_at((ready.len() * READ_CHUNK).min(left.len()));
        *left = rest;
        let mut out = Vec::new();
        for (read, pages) in ready.into_iter().flatten() {
            self.count_read(&read, pages);
            out.push(read);
        }
        self.report_progress().await?;
        Ok((batch, out))
    }

    /// Chunks of reads stored in one write at most. On PostgreSQL, where a commit waits for
    /// its flush to disk (100-150 ms each under a large first sync, measured) and growers'
    /// writes go on side by side, what came in meanwhile goes in one write: the writes grow
    /// instead of holding the reads back. On SQLite, whose commits do not wait for the disk
    /// (write-ahead log, `synchronous = NORMAL`) and whose one writer every grower waits for,
    /// a write stays one chunk: a grower just connected waited up to 0.3 s for its first
    /// fields behind the longer writes (measured).
    fn chunks_per_write(&self) -> usize {
        match self.state.store.backend() {
            crate::store::Backend::Postgres => MOST_CHUNKS_PER_WRITE,
            crate::store::Backend::Sqlite => 1,
        }
    }

    /// Counts a read's requests (`pages`), and whether John Deere answered "not modified".
    fn count_read<T>(&mut self, read: &Read<T>, pages: u32) {
        if matches!(read, Read::NotModified) {
            self.counts.requests_not_modified += 1;
        }
        self.requests += u64::from(pages);
    }

    /// The Leaf alert for every webhook subscribed to `event_type`, to queue with the change.
    pub(super) fn alerts(&self, event_type: &str, payload: Value) -> Deliveries {
        let subscribed: Vec<&String> = self
            .hooks
            .iter()
            .filter(|(_, events)| events.iter().any(|e| e == event_type))
            .map(|(id, _)| id)
            .collect();
        let Value::Object(map) = payload else {
            return Vec::new();
        };
        if subscribed.is_empty() {
            return Vec::new();
        }
        let body = crate::sync::alerts::event_body(event_type, map);
        subscribed
            .into_iter()
            .map(|id| (id.clone(), body.clone()))
            .collect()
    }

    pub(super) async fn commit(&self, pending: Pending) -> Result<(), SyncError> {
        if let Some((key, signature)) = pending.0 {
            self.state
                .store
                .put_signature(&self.cred.id, &key, &signature)
                .await?;
        }
        Ok(())
    }

    /// An organization's growers, farms, fields, boundaries and operations (files are a part
    /// of their own).
    async fn organization(
        &mut self,
        org_id: &str,
        links: &BTreeMap<String, String>,
    ) -> Result<(), SyncError> {
        let user = self.cred.leaf_user_id.clone();
        if self.newest_slot_given_up() {
            return Err(SyncError::HandedBack); // nothing read yet
        }
        let OrgLists {
            clients,
            farms,
            fields,
        } = self.read_org_lists(links).await?;
        // Growers and farms with their collections' signatures, written with the fields.
        let mut write = GrowersAndFarms::default();
        if let Some(Read::Items(clients, _, Pending(signature))) = &clients {
            write.growers = clients
                .iter()
                .filter(|c| !c.is_deleted())
                .map(|c| (c.id.as_str(), c.name.as_str()))
                .collect();
            write.signatures.extend(signature.clone());
        }
        if let Some(Read::Items(farms, _, Pending(signature))) = &farms {
            write.farms = farms
                .iter()
                .filter(|f| !f.is_deleted())
                .map(|f| {
                    let grower = f.client_uri.as_deref().and_then(|u| u.rsplit('/').next());
                    (f.id.as_str(), f.name.as_str(), grower)
                })
                .collect();
            write.signatures.extend(signature.clone());
        }
        let (listed, read) = match fields {
            Some(Read::Items(fields, full, pending)) => (fields, Some((full, pending))),
            _ => (Vec::new(), None),
        };
        let mut seen = HashSet::new();
        let mut live = Vec::new();
        for f in &listed {
            if f.is_deleted() {
                if self.state.store.mark_field_deleted(&user, &f.id).await? {
                    self.counts.fields_deleted += 1;
                }
                continue;
            }
            seen.insert(f.id.clone());
            live.push(f);
        }
        // One write for the lists: a new grower's first fields wait for the write lock once.
        // A part whose slot was given up stores the grower's first data without the lists'
        // signatures: when it runs again it reads them whole (three requests), and counts them.
        let hand_back = self.newest_slot_given_up();
        if hand_back {
            write.signatures.clear();
        }
        let stored = self.store_lists(org_id, &write, &live).await?;
        if !live.is_empty() {
            self.state.deere.release_hold(&self.cred.client_key, &user);
        }
        if hand_back {
            return Err(SyncError::HandedBack);
        }
        self.counts.growers += write.growers.len();
        self.counts.farms += write.farms.len();
        if let Some((full, pending)) = read {
            let mut to_read = Vec::new();
            for (f, (field_id, sync_state)) in live.iter().zip(stored) {
                // A preview field is listed, nothing more (customDataSync).
                if sync_state != "PREVIEW" {
                    let uri = f.link("boundaries").map(str::to_string);
                    to_read.push((field_id, uri, sync_state == "WAITING"));
                }
            }
            if full {
                // Anything we hold that John Deere no longer lists was deleted there.
                for gone in self.state.store.live_field_ids(&user, org_id).await? {
                    if !seen.contains(&gone)
                        && self.state.store.mark_field_deleted(&user, &gone).await?
                    {
                        self.counts.fields_deleted += 1;
                    }
                }
            }
            // The fields' signature goes with their last boundaries: a write of its own was
            // one more wait for the write lock in every organization's part.
            self.boundaries_of_fields(to_read, pending).await?;
        }
        self.waiting_fields(org_id).await?;
        // Every live processed field's operations: new operations do not change the field.
        if let Some(since) = self.operations_since_ms {
            let links = self
                .state
                .store
                .field_operation_links(&user, org_id)
                .await?;
            let uris = links
                .chunks(READ_CHUNK)
                .map(|chunk| {
                    let uri = |(_, uri): &(String, String)| with_embed(uri, "measurementTypes");
                    chunk.iter().map(uri).collect()
                })
                .collect();
            let (reading, chunks) = self.read_ahead::<FieldOperation>(uris);
            let storing = async {
                let mut chunks = chunks; // dropped on an error: the reading stops
                let mut left = links.as_slice();
                while !left.is_empty() {
                    let (batch, reads) = self.ready_chunks(&mut chunks, &mut left).await?;
                    let ids = batch.iter().map(|(field_id, _)| field_id.as_str());
                    self.apply_operations(ids.zip(reads), since).await?;
                }
                Ok::<_, SyncError>(())
            };
            tokio::join!(reading, storing).1?;
        }
        Ok(())
    }

    /// The boundaries of stored fields — `(field id, boundaries link, whether it waits to be
    /// processed)` — read a chunk at a time, several at once; a waiting field becomes PROCESSED
    /// once its boundaries are in. `then` (the signature of the collection the fields came
    /// from) is stored with the last chunk: only once every one of them is in.
    async fn boundaries_of_fields(
        &mut self,
        fields: Vec<(String, Option<String>, bool)>,
        then: Pending,
    ) -> Result<(), SyncError> {
        if fields.is_empty() {
            return self.commit(then).await;
        }
        let mut then = then.0;
        let uris = fields
            .chunks(READ_CHUNK)
            .map(|chunk| chunk.iter().filter_map(|(_, uri, _)| uri.clone()).collect())
            .collect();
        let (reading, chunks) = self.read_ahead::<Boundary>(uris);
        let storing = async {
            let mut chunks = chunks; // dropped on an error: the reading stops
            let mut left = fields.as_slice();
            while !left.is_empty() {
                let (batch, reads) = self.ready_chunks(&mut chunks, &mut left).await?;
                let mut reads = reads.into_iter();
                let ids: Vec<&str> = batch.iter().map(|(id, _, _)| id.as_str()).collect();
                let mut before = self.state.store.boundaries_of_fields(&ids).await?;
                let mut write = BoundariesWrite::default();
                for (field_id, uri, waiting) in batch {
                    if uri.is_some() {
                        let read = reads.next().expect("one read per link");
                        if let Read::Items(boundaries, _, Pending(signature)) = read {
                            let before = before.remove(field_id).unwrap_or_default();
                            self.plan_boundaries(&mut write, field_id, &before, &boundaries);
                            write.signatures.extend(signature);
                        }
                    }
                    if *waiting {
                        write.processed.push(field_id.clone());
                    }
                }
                if left.is_empty() {
                    write.signatures.extend(then.take());
                }
                if !(write.changes.is_empty()
                    && write.processed.is_empty()
                    && write.signatures.is_empty())
                {
                    self.state
                        .store
                        .write_boundaries(&self.cred.id, &write)
                        .await?;
                }
            }
            Ok::<_, SyncError>(())
        };
        tokio::join!(reading, storing).1
    }

    async fn files(&mut self, org_id: &str, uri: &str) -> Result<(), SyncError> {
        let user = self.cred.leaf_user_id.clone();
        let Read::Items(files, full, pending) = self.read::<File>(uri).await? else {
            return Ok(());
        };
        let mut seen = HashSet::new();
        let mut live = Vec::new();
        for f in &files {
            if f.is_deleted() {
                if self.state.store.mark_file_deleted(&user, &f.id).await? {
                    self.counts.files_deleted += 1;
                }
                continue;
            }
            seen.insert(f.id.clone());
            live.push(f);
        }
        // Downloaded several at once (one after another, a handful of files held a job slot
        // for most of a second under load), then recorded together. What was downloaded
        // before a failure is recorded all the same, so a retry does not fetch it again.
        let at_once = self.state.settings.sync_reads_per_part.max(1) as usize;
        let changes: Vec<_> = live
            .into_iter()
            .map(|f| self.file_change(org_id, f))
            .collect();
        let changes: Vec<Result<Option<FileChange>, SyncError>> =
            futures_util::stream::iter(changes)
                .buffered(at_once)
                .collect()
                .await;
        let mut failure = None;
        let mut write = Vec::new();
        for change in changes {
            match change {
                Ok(Some(change)) => write.push(change),
                Ok(None) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if failure.is_none() && full {
            for gone in self.state.store.live_file_ids(&user, org_id).await? {
                if !seen.contains(&gone) && self.state.store.mark_file_deleted(&user, &gone).await?
                {
                    self.counts.files_deleted += 1;
                }
            }
        }
        // The listing's signature is stored with its files (a write of its own was one more
        // wait for the write lock per part), and only if every file is in.
        let signature = match (&failure, pending.0) {
            (None, Some(signature)) => Some((self.cred.id.as_str(), signature)),
            _ => None,
        };
        self.state
            .store
            .upsert_files_with_signature(&write, signature)
            .await?;
        self.counts.files += write.len();
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(())
    }

    /// Stores one file read from John Deere, downloading it unless furrow already holds this
    /// version, and alerts on the outcome.
    pub(super) async fn apply_file(&mut self, org_id: &str, f: &File) -> Result<(), SyncError> {
        if let Some(change) = self.file_change(org_id, f).await? {
            self.state.store.upsert_files(&[change]).await?;
            self.counts.files += 1;
        }
        Ok(())
    }

    /// A file read from John Deere, downloaded, with its alerts; `None` when furrow already
    /// holds this version.
    async fn file_change(&self, org_id: &str, f: &File) -> Result<Option<FileChange>, SyncError> {
        let user = &self.cred.leaf_user_id;
        let existing = self.state.store.file_by_provider_id(user, &f.id).await?;
        let unchanged = existing.as_ref().is_some_and(|e| {
            e.status == "processed"
                && !e.deleted_on_provider
                && e.provider_modified_time == f.modified_time
        });
        if unchanged {
            return Ok(None);
        }
        let record = self.download(org_id, f).await?;
        let alerts = match record.status.as_str() {
            "processed" => self.alerts(
                "providerFileProcessingFinished",
                json!({"fileId": record.id, "leafUserId": user}),
            ),
            "failed" => self.alerts(
                "providerFileProcessingFailed",
                json!({"fileId": record.id, "leafUserId": user, "message": "John Deere refused the download"}),
            ),
            _ => Vec::new(),
        };
        Ok(Some((record, alerts)))
    }

    /// Downloads a file's bytes (ranged, streamed to disk, never whole in memory) and describes
    /// the result. Files John Deere has not finished processing are recorded as `processing`.
    async fn download(
        &self,
        org_id: &str,
        f: &File,
    ) -> Result<crate::store::FileRecord, SyncError> {
        let user = self.cred.leaf_user_id.clone();
        let mut record = crate::store::FileRecord {
            id: crate::store::stable_uuid(&[&user, "file", &f.id]),
            leaf_user_id: user.clone(),
            organization_id: org_id.to_string(),
            provider_file_id: f.id.clone(),
            name: f.name.clone(),
            file_type: f.file_type.clone(),
            size_bytes: f.native_size.unwrap_or(0) as i64,
            provider_created_time: f.created_time.clone(),
            provider_modified_time: f.modified_time.clone(),
            created_ms: millis(f.created_time.as_deref()),
            status: "processing".into(),
            sha256: None,
            storage_key: None,
            deleted_on_provider: false,
            created_at: leaf_time_now(),
            updated_at: leaf_time_now(),
        };
        if f.status.as_deref().is_some_and(|s| s != "READY") {
            return Ok(record);
        }
        let Some(uri) = f.link("self") else {
            record.status = "failed".into();
            return Ok(record);
        };
        let url = self.api.link_url(uri)?;
        let key = format!("files/{user}/{}", f.id);
        // Streamed to the file store in parts; the object appears only once complete.
        let mut upload = self.state.files.upload(&key);
        let chunk = self.state.settings.file_chunk_bytes.max(64 * 1024);
        match self
            .api
            .download_file(&self.token, &url, chunk, &mut upload)
            .await
        {
            Ok(download) => {
                let sha256 = upload
                    .finish()
                    .await
                    .map_err(|e| SyncError::Io(e.to_string()))?;
                record.sha256 = Some(sha256);
                record.size_bytes = download.bytes_written as i64;
                record.storage_key = Some(key);
                record.status = "processed".into();
                Ok(record)
            }
            // John Deere refuses this file (gone, forbidden): record it as failed, go on.
            Err(e @ (DeereError::NotFound { .. } | DeereError::Forbidden { .. })) => {
                upload.abort().await;
                tracing::info!(file = %f.id, error = %e, "file not downloadable");
                record.status = "failed".into();
                Ok(record)
            }
            Err(e) => {
                upload.abort().await;
                Err(e.into())
            }
        }
    }

    pub(super) async fn operations(
        &mut self,
        field_id: &str,
        uri: &str,
        since_ms: i64,
    ) -> Result<(), SyncError> {
        let read = self
            .read::<FieldOperation>(&with_embed(uri, "measurementTypes"))
            .await?;
        self.apply_operations([(field_id, read)], since_ms).await
    }

    /// Stores fields' operations as read (each a delta, or the whole list: then what is
    /// missing was deleted on John Deere), all in one transaction with their signatures.
    async fn apply_operations<'f>(
        &mut self,
        reads: impl IntoIterator<Item = (&'f str, Read<FieldOperation>)>,
        since_ms: i64,
    ) -> Result<(), SyncError> {
        let mut write = OperationsWrite::default();
        for (field_id, read) in reads {
            let Read::Items(ops, full, Pending(signature)) = read else {
                continue;
            };
            let mut listed = HashSet::new();
            for op in &ops {
                if op.is_deleted() {
                    write.deleted.push(op.id.clone());
                    continue;
                }
                listed.insert(op.id.clone());
                self.plan_operation(&mut write, field_id, op, since_ms);
            }
            if full {
                write.complete.push((field_id.to_string(), listed));
            }
            write.signatures.extend(signature);
        }
        self.write_operations(&write).await
    }

    async fn write_operations(&mut self, write: &OperationsWrite) -> Result<(), SyncError> {
        if write.upserts.is_empty() && write.deleted.is_empty() && write.signatures.is_empty() {
            return Ok(());
        }
        let user = &self.cred.leaf_user_id;
        let written = self
            .state
            .store
            .write_operations(user, &self.cred.id, write, |operation_id| {
                let payload = json!({"operationId": operation_id, "leafUserId": user});
                ChangeAlerts {
                    created: self.alerts("operationCreated", payload.clone()),
                    updated: self.alerts("operationUpdated", payload),
                }
            })
            .await?;
        self.counts.operations += write.upserts.len();
        self.counts.operations_deleted += written.deleted;
        Ok(())
    }

    /// Whether a field is read whole (not a preview waiting to be enabled). The full sync's
    /// list of fields to read operations of is already narrowed to these; events check here.
    pub(super) async fn field_processed(&self, field_id: &str) -> Result<bool, SyncError> {
        Ok(self
            .state
            .store
            .field_sync_state(field_id)
            .await?
            .as_deref()
            == Some("PROCESSED"))
    }

    /// Stores one operation read from John Deere (unless it is outside
    /// operationsProcessingRange) and alerts on a new or changed one.
    pub(super) async fn apply_operation(
        &mut self,
        field_id: &str,
        op: &FieldOperation,
        since_ms: i64,
    ) -> Result<(), SyncError> {
        let mut write = OperationsWrite::default();
        self.plan_operation(&mut write, field_id, op, since_ms);
        self.write_operations(&write).await
    }

    /// Adds an operation read from John Deere to `write`, unless it is outside
    /// operationsProcessingRange (then it is not processed, and kept if already there).
    fn plan_operation(
        &self,
        write: &mut OperationsWrite,
        field_id: &str,
        op: &FieldOperation,
        since_ms: i64,
    ) {
        let user = &self.cred.leaf_user_id;
        let record = operation_record(user, field_id, op);
        if record
            .end_ms
            .or(record.start_ms)
            .is_some_and(|t| t < since_ms)
        {
            return;
        }
        write.upserts.push(record);
    }

    /// Stores a field and, when it has changed on John Deere, its boundaries. Returns furrow's
    /// id of the field.
    pub(super) async fn field(&mut self, org_id: &str, f: &Field) -> Result<String, SyncError> {
        let (field_id, sync_state) = self
            .store_lists(org_id, &GrowersAndFarms::default(), &[f])
            .await?
            .pop()
            .expect("one field stored");
        // A preview field is listed, nothing more (customDataSync).
        if sync_state != "PREVIEW" {
            let uri = f.link("boundaries").map(str::to_string);
            self.boundaries_of_fields(
                vec![(field_id.clone(), uri, sync_state == "WAITING")],
                Pending(None),
            )
            .await?;
        }
        Ok(field_id)
    }

    /// Stores an organization's growers and farms and its fields' records (not their
    /// boundaries), in one transaction. Returns furrow's id of each field and its sync state
    /// (`PREVIEW`, `WAITING`, `PROCESSED`), in order.
    async fn store_lists(
        &mut self,
        org_id: &str,
        growers_and_farms: &GrowersAndFarms<'_>,
        fields: &[&Field],
    ) -> Result<Vec<(String, String)>, SyncError> {
        let user = self.cred.leaf_user_id.clone();
        let farms: Vec<Option<String>> = fields
            .iter()
            .map(|f| {
                f.farms
                    .as_ref()
                    .and_then(|e| e.farms.first())
                    .map(|farm| farm.id.clone())
            })
            .collect();
        let writes: Vec<FieldWrite> = fields
            .iter()
            .zip(&farms)
            .map(|(f, farm)| FieldWrite {
                user: &user,
                org: org_id,
                provider_id: &f.id,
                name: &f.name,
                provider_farm_id: farm.as_deref(),
                operations_uri: f.link("fieldOperation"),
                boundaries_uri: f.link("boundaries"),
                preview: self.custom_data_sync,
            })
            .collect();
        let written = self
            .state
            .store
            .write_organization_lists(
                &self.cred.id,
                &user,
                org_id,
                growers_and_farms,
                &writes,
                |field_id| {
                    let payload =
                        json!({"source": "SYNC", "leafUserId": user, "fieldId": field_id});
                    ChangeAlerts {
                        created: self.alerts("fieldCreated", payload.clone()),
                        updated: self.alerts("fieldUpdated", payload),
                    }
                },
            )
            .await?;
        self.counts.fields += written.len();
        Ok(written
            .into_iter()
            .map(|(id, _, sync_state)| (id, sync_state))
            .collect())
    }

    /// Plans a field's boundaries as read (`before`: what furrow holds): new shapes become new
    /// records, the active one is kept current, replaced ones are outdated (with their alerts).
    fn plan_boundaries(
        &mut self,
        write: &mut BoundariesWrite,
        field_id: &str,
        before: &[BoundaryRecord],
        boundaries: &[Boundary],
    ) {
        let user = self.cred.leaf_user_id.clone();
        let previously_active: Vec<String> = before
            .iter()
            .filter(|b| b.status == "ACTIVE")
            .map(|b| b.id.clone())
            .collect();
        let now = leaf_time_now();
        let mut new_active = None;
        for b in boundaries {
            let mut existing: Vec<&BoundaryRecord> = before
                .iter()
                .filter(|x| x.provider_boundary_id == b.id)
                .collect();
            let geometry = to_geojson(b);
            let hash = crate::store::content_hash(&geometry);
            if existing.is_empty() {
                // A boundary furrow sent (a user's field written back) read back before furrow
                // had John Deere's id for it: the same shape under furrow's own id.
                if let Some(own) = before
                    .iter()
                    .find(|x| x.provider_boundary_id == x.id && x.geometry_hash == hash)
                {
                    write.changes.push(BoundaryChange::Adopt {
                        id: own.id.clone(),
                        provider_boundary_id: b.id.clone(),
                    });
                    existing.push(own);
                }
            }
            if b.is_deleted() {
                for x in existing {
                    write.changes.push(BoundaryChange::Status {
                        id: x.id.clone(),
                        status: "DELETED_ON_PROVIDER".into(),
                        provider_status: "INACTIVE".into(),
                    });
                }
                continue;
            }
            let provider_status = if b.active { "ACTIVE" } else { "INACTIVE" };
            match existing.iter().find(|x| x.geometry_hash == hash) {
                Some(same) => {
                    let status = if b.active {
                        "ACTIVE"
                    } else if same.status == "ACTIVE" {
                        "INACTIVE"
                    } else {
                        same.status.as_str()
                    };
                    write.changes.push(BoundaryChange::Status {
                        id: same.id.clone(),
                        status: status.into(),
                        provider_status: provider_status.into(),
                    });
                    if b.active {
                        new_active = Some(same.id.clone());
                    }
                }
                None => {
                    // A new boundary, or a new shape under the same John Deere id: a new record.
                    let record = BoundaryRecord {
                        id: crate::store::grower_uuid(
                            &self.cred.leaf_user_id,
                            &["boundary", field_id, &b.id, &hash],
                        ),
                        field_id: field_id.to_string(),
                        provider_boundary_id: b.id.clone(),
                        status: provider_status.into(),
                        provider_status: provider_status.into(),
                        geometry,
                        geometry_hash: hash,
                        area_ha: b.area.as_ref().map(|a| a.value_as_double).unwrap_or(0.0),
                        created_at: now.clone(),
                        updated_at: now.clone(),
                    };
                    let alerts = self.alerts(
                        "fieldBoundaryCreated",
                        json!({"boundaryId": record.id, "leafUserId": user, "fieldId": field_id}),
                    );
                    self.counts.boundaries += 1;
                    if b.active {
                        new_active = Some(record.id.clone());
                    }
                    write
                        .changes
                        .push(BoundaryChange::Insert { record, alerts });
                }
            }
        }
        if let Some(active) = new_active {
            let replaced: Vec<String> = previously_active
                .into_iter()
                .filter(|id| *id != active)
                .collect();
            if !replaced.is_empty() {
                // The field's current boundary changed on John Deere.
                let alerts = self.alerts(
                    "fieldBoundaryUpdated",
                    json!({"boundaryId": active, "leafUserId": user, "fieldId": field_id}),
                );
                write.changes.push(BoundaryChange::Outdate {
                    ids: replaced,
                    alerts,
                });
            }
        }
    }

    /// Fields enabled since their organization was last read (PREVIEW → WAITING): their
    /// boundaries now, then PROCESSED, so their operations are read with the others.
    async fn waiting_fields(&mut self, org_id: &str) -> Result<(), SyncError> {
        let user = self.cred.leaf_user_id.clone();
        let waiting = self.state.store.waiting_fields(&user, org_id).await?;
        let waiting = waiting
            .into_iter()
            .map(|(field_id, uri)| (field_id, uri, true))
            .collect();
        self.boundaries_of_fields(waiting, Pending(None)).await
    }
}

/// One chunk of reads as [`Run::read_ahead`] hands it over: each read with its requests.
type ReadChunk<T> = Result<Vec<(Read<T>, u32)>, SyncError>;
/// Where [`Run::read_ahead`] hands the chunks over.
type ReadChunks<T> = tokio::sync::mpsc::Receiver<ReadChunk<T>>;

/// Everything a run's reads need: the signatures' store, the credential, the API and token.
struct Reader<'a> {
    state: &'a AppState,
    cred_id: &'a str,
    /// Whose budget the reads draw from: the client key's, as this account (a Leaf user).
    client_key: &'a str,
    account: &'a str,
    api: ApiClient,
    token: AccessToken,
    operations_range_months: Option<i64>,
}

impl Reader<'_> {
    /// The key a collection's signature is stored under: its URL, and for a field's operations
    /// list also the operationsProcessingRange it was read with. The operations outside the
    /// range were skipped, so John Deere's "not modified" (or "what changed since") for that
    /// signature would leave them out for good once the range is widened; under a range of its
    /// own, the list is read whole once. An older signature kept under a range met again still
    /// holds: what changed since it is what changed since that range's last read.
    fn signature_key(&self, url: &url::Url) -> String {
        match self.operations_range_months {
            Some(months) if url.path().ends_with("/fieldOperations") => {
                format!("{url}#operationsProcessingRange={months}")
            }
            _ => url.as_str().to_string(),
        }
    }

    /// Stops if the credentials were deleted, and pairs each link with its URL, its signature
    /// key and the stored signature.
    async fn prepare(&self, uris: &[String]) -> Result<Vec<PreparedRead>, SyncError> {
        // The signature belongs to the collection, whatever page size reads it.
        let urls = uris
            .iter()
            .map(|uri| self.api.link_url(uri))
            .collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<String> = urls.iter().map(|u| self.signature_key(u)).collect();
        // Deleting the credentials (or the user) stops a running sync before its next request.
        let Some(stored) = self.state.store.signatures(self.cred_id, &keys).await? else {
            return Err(SyncError::NotReady("deleted".into()));
        };
        Ok(urls
            .into_iter()
            .zip(keys)
            .map(|(url, key)| {
                let signature = stored.get(&key).cloned();
                (url, key, signature)
            })
            .collect())
    }

    /// How many reads to keep in flight, `in_flight` going now (one just answered):
    /// `sync_reads_per_part` at least; one more than before while none of the account's
    /// requests waits for its client key's budget, as many as before while some do, up to
    /// [`MOST_READS_IN_FLIGHT`]. A fixed number caps an account at that number per John
    /// Deere's answer time (32 per 30 ms is about 1,100 requests/s) whatever its rate limit;
    /// this way the budget is the limit, and its turns keep the growers' shares fair.
    fn reads_wanted(&self, in_flight: usize) -> usize {
        let at_least = self.state.settings.sync_reads_per_part.max(1) as usize;
        let more = match self
            .state
            .deere
            .budget_has_waiting(self.client_key, self.account)
        {
            Some(false) => 2,
            Some(true) => 1,
            None => 0, // not paced: nothing tells how much John Deere allows
        };
        (in_flight + more).clamp(at_least, MOST_READS_IN_FLIGHT.max(at_least))
    }

    /// Reads `chunks` of links in order, several at once across chunks
    /// ([`Reader::reads_wanted`]), and sends each chunk's reads once they are all in; stops
    /// at the first error (sent) or when nobody takes the chunks any more.
    async fn read_chunks<T: DeserializeOwned>(
        self,
        chunks: Vec<Vec<String>>,
        out: tokio::sync::mpsc::Sender<ReadChunk<T>>,
    ) {
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        let mut unprepared = chunks.into_iter();
        let mut prepared = Vec::new().into_iter();
        let mut in_flight = futures_util::stream::FuturesOrdered::new();
        for size in sizes {
            let mut chunk = Vec::with_capacity(size);
            while chunk.len() < size {
                // Keep reads going, into the chunks after this one.
                let wanted = self.reads_wanted(in_flight.len());
                while in_flight.len() < wanted {
                    if let Some((url, key, stored)) = prepared.next() {
                        let (api, token) = (self.api.clone(), self.token.clone());
                        in_flight.push_back(read_owned::<T>(api, token, url, key, stored));
                        continue;
                    }
                    let Some(uris) = unprepared.next() else {
                        break;
                    };
                    match self.prepare(&uris).await {
                        Ok(next) => prepared = next.into_iter(),
                        Err(e) => {
                            let _ = out.send(Err(e)).await;
                            return;
                        }
                    }
                }
                match in_flight.next().await {
                    Some(Ok(read)) => chunk.push(read),
                    Some(Err(e)) => {
                        let _ = out.send(Err(e)).await;
                        return;
                    }
                    None => return, // cannot happen: one read per link
                }
            }
            if out.send(Ok(chunk)).await.is_err() {
                return; // the part stopped
            }
        }
    }
}

/// Collections read at once are taken this many links at a time (what one chunk of reads holds
/// in memory before it is stored).
const READ_CHUNK: usize = 64;

/// Chunks of reads read ahead of the part's writes at most, and stored in one write at most
/// (see [`Run::chunks_per_write`]).
const MOST_CHUNKS_PER_WRITE: usize = 4;

/// One part's reads in flight at most (see [`Reader::reads_wanted`]): 2,000 requests/s at
/// John Deere's 100 ms.
const MOST_READS_IN_FLIGHT: usize = 200;

/// `uri` asking John Deere to embed `what` (`?embed=` or `&embed=`).
fn with_embed(uri: &str, what: &str) -> String {
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}embed={what}")
}

/// [`read_collection`] of a prepared read, when there is one.
async fn read_linked<T: DeserializeOwned>(
    api: &ApiClient,
    token: &AccessToken,
    prepared: Option<PreparedRead>,
) -> Result<Option<(Read<T>, u32)>, SyncError> {
    match prepared {
        Some((url, key, stored)) => read_collection(api, token, &url, key, stored)
            .await
            .map(Some),
        None => Ok(None),
    }
}

/// [`read_collection`] owning what it needs, for reads kept going while the part stores.
async fn read_owned<T: DeserializeOwned>(
    api: ApiClient,
    token: AccessToken,
    url: url::Url,
    key: String,
    stored: Option<String>,
) -> Result<(Read<T>, u32), SyncError> {
    read_collection(&api, &token, &url, key, stored).await
}

/// Reads one collection whole (every page), conditionally on its stored signature. Returns the
/// read and the requests it took.
async fn read_collection<T: DeserializeOwned>(
    api: &ApiClient,
    token: &AccessToken,
    url: &url::Url,
    key: String,
    stored: Option<String>,
) -> Result<(Read<T>, u32), SyncError> {
    match api
        .list::<T>(token, &deere::largest_page(url), stored.as_deref())
        .await?
    {
        Listing::NotModified => Ok((Read::NotModified, 1)),
        Listing::Changed(mut pager) => {
            let signature = pager.signature().map(|s| (key, s.to_string()));
            let mut items = Vec::new();
            while let Some(page) = pager.next_page().await? {
                items.extend(page.values);
            }
            // A delta carries only changes; without a stored signature we got everything.
            let read = Read::Items(items, stored.is_none(), Pending(signature));
            Ok((read, pager.pages_read()))
        }
    }
}

/// Leaf's operation type for John Deere's.
pub fn leaf_operation_type(t: &FieldOperationType) -> String {
    match t {
        FieldOperationType::Seeding => "planted".into(),
        FieldOperationType::Application => "applied".into(),
        FieldOperationType::Harvest => "harvested".into(),
        FieldOperationType::Tillage => "tillage".into(),
        other => other.as_str().to_ascii_lowercase(),
    }
}

fn millis(time: Option<&str>) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(time?)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The stored form of a John Deere field operation.
pub fn operation_record(user: &str, field_id: &str, op: &FieldOperation) -> OperationRecord {
    let product = |p: &deere::models::Product| {
        json!({"name": p.name, "type": p.product_type, "tankMix": p.tank_mix,
               "rate": p.rate.as_ref().map(|r| json!({"value": r.value, "unit": r.unit_id}))})
    };
    let measurements: Vec<Value> = op
        .measurement_types
        .as_ref()
        .map(|m| {
            m.measurements
                .iter()
                .map(|m| {
                    let totals: serde_json::Map<String, Value> = m
                        .values
                        .keys()
                        .filter_map(|k| m.total(k).map(|t| (k.clone(), json!({"value": t.value, "unit": t.unit_id}))))
                        .collect();
                    json!({"name": m.measurement_name, "category": m.measurement_category, "totals": totals})
                })
                .collect()
        })
        .unwrap_or_default();
    let data = json!({
        "providerOperationType": op.field_operation_type.as_str(),
        "cropSeason": op.crop_season,
        "crops": op.crop_name.iter().collect::<Vec<_>>(),
        "varieties": op.varieties.iter().map(product).collect::<Vec<_>>(),
        "products": op.products.iter().map(product).collect::<Vec<_>>(),
        "machines": op.field_operation_machines.iter().map(|m| json!({
            "vin": m.vin, "machineId": m.machine_id, "name": m.name, "make": m.make, "model": m.model, "erid": m.erid,
        })).collect::<Vec<_>>(),
        "operators": op.field_operation_machines.iter().flat_map(|m| m.operators.iter()).map(|o| json!({
            "operatorId": o.operator_id, "name": o.name,
        })).collect::<Vec<_>>(),
        "measurements": measurements,
        "providerModifiedTime": op.modified_time,
        // John Deere's export of the machine data, followed by the processing job.
        "links": {"shapeFileAsync": op.link("shapeFileAsync")},
    })
    .to_string();
    OperationRecord {
        id: crate::store::grower_uuid(user, &["operation", &op.id]),
        leaf_user_id: user.to_string(),
        field_id: field_id.to_string(),
        provider_operation_id: op.id.clone(),
        operation_type: leaf_operation_type(&op.field_operation_type),
        crop_season: op.crop_season.clone(),
        start_time: op.start_date.clone(),
        end_time: op.end_date.clone(),
        start_ms: millis(op.start_date.as_deref()),
        end_ms: millis(op.end_date.as_deref()),
        data_hash: crate::store::content_hash(&data),
        data,
        deleted_on_provider: false,
        provider_modified_ms: millis(op.modified_time.as_deref()),
        created_at: leaf_time_now(),
        updated_at: leaf_time_now(),
    }
}

/// GeoJSON MultiPolygon (RFC 7946: [lon, lat], closed rings, exterior first).
pub fn to_geojson(b: &Boundary) -> String {
    let polygons: Vec<Value> = b
        .multipolygons
        .iter()
        .map(|p| {
            let mut rings: Vec<&deere::models::Ring> = p.rings.iter().collect();
            rings.sort_by_key(|r| r.is_interior());
            Value::Array(
                rings
                    .into_iter()
                    .map(|r| {
                        let mut points: Vec<Value> =
                            r.points.iter().map(|pt| json!([pt.lon, pt.lat])).collect();
                        if r.points.first() != r.points.last() {
                            if let Some(first) = points.first().cloned() {
                                points.push(first);
                            }
                        }
                        Value::Array(points)
                    })
                    .collect(),
            )
        })
        .collect();
    json!({"type": "MultiPolygon", "coordinates": polygons}).to_string()
}

/// How long after a credential's creation its sync runs take the organizations its check
/// stored, rather than read them again.
const ORGANIZATIONS_READ_AT_CREATION_MS: i64 = 60_000;

/// Starts a sync run of a credential: re-reads the organizations (unless the credential's
/// check just did), subscribes to their events, and splits the work into parts — per
/// organization its fields (with growers, farms, boundaries and operations) and its files —
/// each a job any replica may run. The run is DONE when the last part finishes. Progress goes
/// to the user's sync status. Returns the run's counts and its first fields part, leased to
/// this replica for the caller to run next (only for a run in one of the engine's slots,
/// `slot`; a run beside them leaves every part to the slots).
pub async fn sync_credential(
    state: &AppState,
    cred: &CredentialRecord,
    config: &serde_json::Map<String, Value>,
    status: Option<&SyncStatus>,
    slot: Slot,
) -> Result<(SyncCounts, Option<FirstPart>), SyncError> {
    let mut run = Run::open(state, cred)?;
    let user = cred.leaf_user_id.clone();
    let selection = run.apply_config(config);
    // Read at once: each read on a new grower's way to its first data is a wait under load.
    let subscriptions = async {
        if !state.settings.deere_webhooks {
            return Ok(Vec::new());
        }
        state.store.subscriptions(&cred.id).await
    };
    let (hooks, mut stored_orgs, subscriptions) = tokio::try_join!(
        run.owner_hooks(),
        state.store.organizations(&cred.id),
        subscriptions
    )?;
    run.hooks = hooks;
    // A new credential's check read and stored its organizations moments ago: its first sync
    // run starts from those (a request and a round trip fewer for every grower connected);
    // every later run reads them again. Claimed while the check still runs here, it waits for
    // them.
    let new_and_never_run = millis(Some(&cred.created_at)).is_some_and(|created| {
        crate::store::now_ms() - created < ORGANIZATIONS_READ_AT_CREATION_MS
    }) && status.is_none_or(|s| s.started_at.is_none());
    if new_and_never_run && stored_orgs.is_empty() {
        let limit = Duration::from_secs(state.settings.token_exchange_timeout_secs.max(1));
        state.checks.wait(&cred.id, limit).await;
        // Read again even when no check is in flight any more: it may have ended (and stored
        // them) since the read above.
        stored_orgs = state.store.organizations(&cred.id).await?;
    }
    let first_run_of_new = new_and_never_run && !stored_orgs.is_empty();
    let started = leaf_time_now();
    let running = |counts: &SyncCounts| SyncStatus {
        state: "RUNNING".into(),
        started_at: Some(started.clone()),
        finished_at: None,
        counts: counts.to_json().to_string(),
        last_error: None,
    };
    // RUNNING is written while the organizations are read again; a first run of a new
    // credential has them already, and writes it while it subscribes to their events (one
    // wait for the writer fewer on a new grower's way to its first data).
    let started_status = running(&SyncCounts::default());
    let write_running = || state.store.put_sync_status(&user, &started_status);
    let stored_orgs = if first_run_of_new {
        stored_orgs
    } else {
        let organizations = async {
            let orgs_url = run.api.endpoint("organizations")?;
            let read = run.read::<Organization>(orgs_url.as_str()).await;
            run.flush_events().await?;
            if let Read::Items(orgs, _, pending) = read.inspect_err(|e| {
                tracing::info!(credential = %cred.id, error = %e, "organizations not read");
            })? {
                crate::sync::organizations::store(state, &cred.id, &orgs, None).await?;
                run.commit(pending).await?;
            }
            Ok::<_, SyncError>(state.store.organizations(&cred.id).await?)
        };
        let (written, orgs) = tokio::join!(write_running(), organizations);
        written?;
        orgs?
    };
    let orgs: Vec<_> = stored_orgs
        .into_iter()
        .filter(|o| selection.syncs(o))
        .collect();
    let org_ids: Vec<String> = orgs.iter().map(|o| o.provider_org_id.clone()).collect();
    // customDataSync turned off: earlier preview fields are read whole by this sync. Once per
    // credential sync, before its parts, rather than per organization; meanwhile the run
    // subscribes to the organizations' events.
    let enable_previews = async {
        if run.custom_data_sync {
            return Ok(0);
        }
        state.store.enable_preview_fields(&user, None).await
    };
    // A grower holding the budget (connected on its own, see `RateBudgets::connecting`) goes
    // on with its first part whatever the slots: the others' parts, holding every slot, wait
    // for the budget until its first data is stored. Left to a claim, its part waited for the
    // hold to run out (first fields 0.49 s after the `POST`, against 0.12 s alone).
    let holds_budget = state.deere.holds_budget(&cred.client_key, &user);
    let others_waiting = async {
        if holds_budget {
            return Ok(false);
        }
        if !slot.held() {
            return Ok(true);
        }
        state.store.others_waiting_before_parts(&cred.id).await
    };
    let written_now = async {
        if !first_run_of_new {
            return Ok(()); // written above
        }
        write_running().await
    };
    let (webhooks, previews, others_waiting, written) = tokio::join!(
        crate::sync::webhooks::reconcile(&run, &org_ids, subscriptions),
        enable_previews,
        others_waiting,
        written_now
    );
    written?;
    previews?;
    run.counts.webhooks = Some(webhooks);
    // The run goes on with its first fields part itself (no claim between a grower's sync
    // run and its first data) unless other growers' sync runs wait for slots (they go first)
    // or the run holds no slot to go on in.
    let go_on = !others_waiting?;
    run.flush_events().await?;
    run.counts.organizations = orgs.len();
    let mut parts = Vec::new();
    for org in &orgs {
        parts.push(format!("{}/fields", org.provider_org_id));
        let links: BTreeMap<String, String> = serde_json::from_str(&org.links).unwrap_or_default();
        if run.operations_since_ms.is_some() && links.contains_key("files") {
            parts.push(format!("{}/files", org.provider_org_id));
        }
        if run.asset_sync.wanted(&links) {
            parts.push(format!("{}/assets", org.provider_org_id));
        }
    }
    let run_id = uuid::Uuid::new_v4().to_string();
    let lease_until = crate::store::now_ms() + (state.settings.lease_secs * 1000) as i64;
    tracing::info!(
        organizations = orgs.len(),
        parts = parts.len(),
        "sync run started"
    );
    let first_job = state
        .store
        .start_sync_parts(
            &cred.id,
            &user,
            &run_id,
            &parts,
            &run.counts.to_json().to_string(),
            &running(&run.counts),
            go_on.then_some((state.replica_id.as_str(), lease_until)),
        )
        .await?;
    if parts.len() > usize::from(first_job.is_some()) {
        // The other parts are claimed by free slots, here or at another replica.
        state.wake.notify();
    }
    if parts.is_empty() {
        state
            .store
            .put_sync_status(
                &user,
                &SyncStatus {
                    state: "DONE".into(),
                    finished_at: Some(leaf_time_now()),
                    ..running(&run.counts)
                },
            )
            .await?;
    }
    // The part goes on with what the run has read: no reads between its parts queued and
    // its first request.
    let first_part = first_job.map(|job| {
        let name = job
            .kind
            .strip_prefix(crate::store::PART_JOB_PREFIX)
            .unwrap_or_default()
            .to_string();
        FirstPart {
            job,
            part: crate::store::SyncPart {
                part: name,
                run_id,
                state: "PENDING".into(),
                counts: "{}".into(),
                error: None,
                progress: None,
            },
            known: PartContext {
                config: config.clone(),
                hooks: std::mem::take(&mut run.hooks),
                organizations: orgs,
                slot,
            },
        }
    });
    Ok((run.counts, first_part))
}

/// A sync run's first fields part, leased by the run to go on with in its slot.
pub struct FirstPart {
    job: crate::store::ClaimedJob,
    /// Its record, as the run wrote it.
    part: crate::store::SyncPart,
    known: PartContext,
}

/// What a part reads before its first request, when its sync run has it already.
struct PartContext {
    config: serde_json::Map<String, Value>,
    hooks: Vec<(String, Vec<String>)>,
    organizations: Vec<crate::store::OrganizationRecord>,
    /// Where its run ran, and the part goes on.
    slot: Slot,
}

/// Runs one part of a sync run: an organization's fields, its files or its assets. Its last
/// figures go to `last_progress`, for the caller to write with the part's outcome (one write
/// less per part).
async fn sync_part(
    state: &AppState,
    cred: &CredentialRecord,
    part: &crate::store::SyncPart,
    org_id: &str,
    resource: &str,
    known: Option<PartContext>,
    last_progress: &mut Option<String>,
) -> Result<SyncCounts, SyncError> {
    let mut run = Run::open(state, cred)?;
    run.progress = Some(PartProgress {
        part: part.part.clone(),
        run_id: part.run_id.clone(),
        started: std::time::Instant::now(),
        started_ms: crate::store::now_ms(),
        written: None,
    });
    // No figures written at the start: a second in, then every second, and the last with the
    // outcome. (A write of zeros at the start was one more wait for the writer before a new
    // grower's first request, and a write per part for everyone.)
    let orgs = match known {
        Some(known) => {
            run.apply_config(&known.config);
            run.hooks = known.hooks;
            if let Slot::Newest(slot) = known.slot {
                run.newest_slot = Some(slot);
            }
            known.organizations
        }
        None => {
            let (_, orgs) = tokio::try_join!(run.load_config(), async {
                Ok(state.store.organizations(&cred.id).await?)
            })?;
            orgs
        }
    };
    let Some(org) = orgs.into_iter().find(|o| o.provider_org_id == org_id) else {
        return Ok(run.counts); // gone from John Deere's list since the run started
    };
    let links: BTreeMap<String, String> = serde_json::from_str(&org.links).unwrap_or_default();
    let outcome = match (resource, run.operations_since_ms, links.get("files")) {
        ("fields", ..) => run.organization(org_id, &links).await,
        ("files", Some(_), Some(uri)) => run.files(org_id, uri).await,
        ("assets", ..) => run.assets(org_id, &links).await,
        _ => Ok(()),
    };
    run.flush_events().await?;
    *last_progress = run.progress_figures(true);
    match outcome {
        Ok(()) => {
            if resource == "fields" && org.sync_error.is_some() {
                state
                    .store
                    .set_organization_sync_error(&cred.id, org_id, None)
                    .await?;
            }
            Ok(run.counts)
        }
        // One organization refusing (unconnected meanwhile, missing scope, terms to accept) is
        // marked and does not stop the others.
        Err(SyncError::Deere(
            e @ (DeereError::Forbidden { .. }
            | DeereError::RequiredCustomerAction { .. }
            | DeereError::NotFound { .. }),
        )) => {
            tracing::info!(org = %org_id, error = %e, "organization skipped");
            state
                .store
                .set_organization_sync_error(&cred.id, org_id, Some(&e.to_string()))
                .await?;
            let reason = format!("organization {org_id} refused the sync: {e}");
            if let Err(e) = crate::sync::credentials::sync_refused(state, &cred.id, &reason).await {
                tracing::warn!(credential = %cred.id, error = %e, "status not updated");
            }
            run.counts.organizations_failed.push(org_id.to_string());
            Ok(run.counts)
        }
        Err(e) => Err(e),
    }
}

/// A part gives up after this many failed attempts; the run then ends FAILED with its error.
const PART_MAX_ATTEMPTS: i64 = 6;

/// How long a part refused for the rate limit waits before it goes again (ms): John Deere's
/// `Retry-After` within these bounds; a second when it gives none (or 0).
const LEAST_RATE_LIMITED_WAIT_MS: i64 = 1_000;
const MOST_RATE_LIMITED_WAIT_MS: i64 = 3_600_000;

/// A credential's sync work, as it takes its turn at the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncWork {
    /// A sync run: short, it never gives way.
    Run,
    /// A part: bulk once its account has been syncing for a while.
    Part,
}

/// Runs a credential's sync work in its turn at the database, by how long its account has been
/// using its client key's budget: one of the newest accounts' ahead of everyone else's (while
/// it is one of them), the parts of one syncing for a while giving way to everyone else's.
async fn in_turn<F: std::future::Future>(
    state: &AppState,
    cred: &CredentialRecord,
    kind: SyncWork,
    work: F,
) -> F::Output {
    // On the heap: a sync's future is large, and moved through each wrapper on the stack
    // it overflowed a debug build's worker stack.
    let work = Box::pin(work);
    match (
        state.deere.standing(&cred.client_key, &cred.leaf_user_id),
        kind,
    ) {
        (Standing::Newest, _) => {
            let still_newest = state
                .deere
                .still_newest(&cred.client_key, &cred.leaf_user_id);
            crate::store::ahead_while(still_newest, work).await
        }
        (Standing::Settled, SyncWork::Part) => crate::store::giving_way(work).await,
        (Standing::New, _) | (Standing::Settled, SyncWork::Run) => work.await,
    }
}

/// Runs a claimed part job (`part:{orgId}/{fields|files}`).
pub async fn run_part_job(
    state: &AppState,
    job: &crate::store::ClaimedJob,
) -> Result<(), crate::sync::credentials::CredentialError> {
    let now = crate::store::now_ms();
    let name = job
        .kind
        .strip_prefix(crate::store::PART_JOB_PREFIX)
        .unwrap_or_default();
    // Read at once: each read on a new grower's way to its first data is a wait under load.
    let (cred, part, leased_before) = tokio::try_join!(
        state.store.credential(&job.credential_id),
        state.store.sync_part(&job.credential_id, name),
        state.store.parts_leased_before(&job.credential_id, &job.id),
    )?;
    let (Some(cred), Some(part)) = (cred, part) else {
        return Ok(()); // deleted with its credential, or replaced by a newer run
    };
    // Bounded work per credential: claims take no more than the cap, but two replicas claiming
    // at once on PostgreSQL may. Then the parts beyond the cap by job id wait their turn (by
    // position, not by count: parts that all counted each other would all wait, again and again).
    if leased_before >= state.settings.sync_parts_per_credential as i64 {
        state
            .store
            .reschedule_job(&job.id, &state.replica_id, now + 200, job.attempts, None)
            .await?;
        return Ok(());
    }
    run_part(state, job, &cred, part, None).await
}

/// Runs a part (`part`: its record) of the credential's sync run, and records its outcome:
/// done, or retried later. `known`: what its run had read already.
async fn run_part(
    state: &AppState,
    job: &crate::store::ClaimedJob,
    cred: &CredentialRecord,
    mut part: crate::store::SyncPart,
    known: Option<PartContext>,
) -> Result<(), crate::sync::credentials::CredentialError> {
    let now = crate::store::now_ms();
    let name = part.part.clone();
    let Some((org_id, resource)) = name.rsplit_once('/') else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let mut last_progress = None;
    let work = sync_part(
        state,
        cred,
        &part,
        org_id,
        resource,
        known,
        &mut last_progress,
    );
    let outcome = in_turn(state, cred, SyncWork::Part, work).await;
    // A part retried later shows how far it got meanwhile; a finished one, with its outcome.
    if outcome.is_err() {
        if let Some(figures) = &last_progress {
            state
                .store
                .set_part_progress(&cred.id, &part.part, &part.run_id, figures)
                .await?;
        }
    }
    part.progress = last_progress.or(part.progress);
    let counts = match outcome {
        Ok(counts) => counts,
        // Due at once, for the other slots; not an attempt that failed.
        Err(SyncError::HandedBack) => {
            state
                .store
                .reschedule_job(&job.id, &state.replica_id, now, job.attempts, None)
                .await?;
            return Ok(());
        }
        Err(SyncError::NotReady(reason)) => {
            state
                .store
                .reschedule_job(
                    &job.id,
                    &state.replica_id,
                    now + 30_000,
                    job.attempts,
                    Some(&reason),
                )
                .await?;
            return Ok(());
        }
        // Refused for the rate limit after the client's own waits (a key shared with another
        // program, a rate set too high or not at all): again after John Deere's `Retry-After`,
        // and not an attempt that failed: a busy key delays a grower's data, never drops it.
        Err(e @ SyncError::Deere(DeereError::RateLimited { retry_after })) => {
            let wait = retry_after.map_or(0, |d| {
                d.as_millis().min(MOST_RATE_LIMITED_WAIT_MS as u128) as i64
            });
            let wait = wait.max(LEAST_RATE_LIMITED_WAIT_MS);
            tracing::info!(part = %name, error = %e, "sync part refused for the rate limit; retried");
            state
                .store
                .reschedule_job(
                    &job.id,
                    &state.replica_id,
                    now + wait,
                    job.attempts,
                    Some(&e.to_string()),
                )
                .await?;
            return Ok(());
        }
        Err(e) if job.attempts + 1 < PART_MAX_ATTEMPTS => {
            let backoff = (1000i64 << job.attempts.clamp(0, 8)).min(300_000);
            tracing::info!(part = %name, error = %e, "sync part failed; retried");
            state
                .store
                .reschedule_job(
                    &job.id,
                    &state.replica_id,
                    now + backoff,
                    job.attempts + 1,
                    Some(&e.to_string()),
                )
                .await?;
            return Ok(());
        }
        Err(e) => {
            crate::metrics::sync_part(resource, "failed", started.elapsed());
            part.error = Some(format!("{org_id} {resource}: {e}"));
            SyncCounts::default()
        }
    };
    if part.error.is_none() {
        crate::metrics::sync_part(resource, "done", started.elapsed());
        counts.record_metrics();
    }
    part.counts = counts.to_json().to_string();
    state
        .store
        .finish_sync_part(
            &cred.id,
            &cred.leaf_user_id,
            &part,
            &job.id,
            &state.replica_id,
            |parts| {
                // The run's own counts first: its texts (how changes arrive) win.
                let (run, rest): (Vec<_>, Vec<_>) = parts.iter().partition(|p| p.part == "_run");
                let counts = merge_counts(run.iter().chain(&rest).map(|p| p.counts.as_str()));
                let error = parts.iter().find_map(|p| p.error.clone());
                (counts, error)
            },
        )
        .await?;
    Ok(())
}

/// Sums the parts' counts: numbers add up, lists join (without repeats), text keeps the first.
fn merge_counts<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut total = serde_json::Map::new();
    for counts in parts {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(counts) else {
            continue;
        };
        for (key, value) in map {
            let merged = match (total.remove(&key), value) {
                (Some(Value::Number(a)), Value::Number(b)) => {
                    json!(a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0))
                }
                (Some(Value::Array(mut a)), Value::Array(b)) => {
                    for item in b {
                        if !a.contains(&item) {
                            a.push(item);
                        }
                    }
                    Value::Array(a)
                }
                (Some(Value::String(a)), _) if !a.is_empty() => Value::String(a),
                (_, b) => b,
            };
            total.insert(key, merged);
        }
    }
    Value::Object(total).to_string()
}

/// Runs a claimed sync job and schedules the next one. `slot`: where it runs; in one of the
/// engine's slots its first part may go on (see [`sync_credential`]).
pub async fn run_job(
    state: &AppState,
    job: &crate::store::ClaimedJob,
    slot: Slot,
) -> Result<(), crate::sync::credentials::CredentialError> {
    let Some(cred) = state.store.credential(&job.credential_id).await? else {
        return Ok(());
    };
    let run = run_credential_job(state, job, &cred, slot);
    in_turn(state, &cred, SyncWork::Run, run).await
}

/// [`run_job`] for its credential, read.
async fn run_credential_job(
    state: &AppState,
    job: &crate::store::ClaimedJob,
    cred: &CredentialRecord,
    slot: Slot,
) -> Result<(), crate::sync::credentials::CredentialError> {
    let now = crate::store::now_ms();
    let interval = (state.settings.sync_interval_secs.max(1) * 1000) as i64;
    // fieldsAutoSync false: only a manual sync (status QUEUED) runs.
    let user = &cred.leaf_user_id;
    let (config, status) = tokio::try_join!(
        state.store.effective_config(user),
        state.store.sync_status(user)
    )?;
    let auto = config
        .get("fieldsAutoSync")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let queued = status.as_ref().is_some_and(|s| s.state == "QUEUED");
    if !auto && !queued {
        state
            .store
            .reschedule_job(&job.id, &state.replica_id, now + interval, 0, None)
            .await?;
        return Ok(());
    }
    let mut first_part = None;
    let (run_at, attempts, error) = match sync_credential(
        state,
        cred,
        &config,
        status.as_ref(),
        slot,
    )
    .await
    {
        Ok((counts, part)) => {
            tracing::info!(credential = %cred.id, organizations = counts.organizations, "sync run started");
            first_part = part;
            (now + interval, 0, None)
        }
        // Waiting for the credential job to get a working token: look again soon.
        Err(SyncError::NotReady(reason)) => (
            now + 30_000,
            job.attempts,
            Some(format!("credentials are {reason}")),
        ),
        Err(e) => {
            let backoff = (1000i64 << job.attempts.clamp(0, 8)).min(300_000);
            state
                .store
                .put_sync_status(
                    user,
                    &SyncStatus {
                        state: "FAILED".into(),
                        started_at: None,
                        finished_at: Some(leaf_time_now()),
                        counts: "{}".into(),
                        last_error: Some(e.to_string()),
                    },
                )
                .await?;
            (now + backoff, job.attempts + 1, Some(e.to_string()))
        }
    };
    // The run's first fields part goes on in this job's slot, while the job is rescheduled: no
    // claim and no write between a grower's sync run and its first data.
    let first_part = async {
        match first_part {
            Some(first) => run_part(state, &first.job, cred, first.part, Some(first.known)).await,
            None => Ok(()),
        }
    };
    let (rescheduled, part) = tokio::join!(
        state.store.reschedule_job(
            &job.id,
            &state.replica_id,
            run_at,
            attempts,
            error.as_deref(),
        ),
        first_part
    );
    rescheduled?;
    part
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::webhooks::WebhookMode;

    #[test]
    fn only_the_run_reports_how_changes_arrive() {
        let part = SyncCounts {
            fields: 3,
            ..SyncCounts::default()
        };
        assert!(part.to_json().get("webhooks").is_none());
        assert!(part.to_json().get("webhooksDetail").is_none());
        let run = SyncCounts {
            organizations: 1,
            webhooks: Some(WebhookMode::Active { subscriptions: 4 }),
            ..SyncCounts::default()
        };
        let (run, part) = (run.to_json().to_string(), part.to_json().to_string());
        let total: Value =
            serde_json::from_str(&merge_counts([run.as_str(), part.as_str()].into_iter())).unwrap();
        assert_eq!(total["webhooks"], "WEBHOOKS");
        assert_eq!(total["webhooksDetail"], "4 John Deere event subscriptions");
        assert_eq!(
            (total["organizations"].as_u64(), total["fields"].as_u64()),
            (Some(1), Some(3))
        );
    }
}
