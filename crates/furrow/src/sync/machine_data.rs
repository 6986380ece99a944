//! Machine data of field operations: a durable job per operation exports John Deere's
//! shapefile (202 polls, then a pre-signed URL fetched without our token), turns it into
//! Leaf's standard data with `machine-data`, stores the GeoJSON files and images in the file
//! store, and records summary, units, images and field coverage with the
//! `operationProcessingFinished` alert. A failure is recorded on the operation and retried with
//! backoff; the rest of the sync never waits for it.

use std::io::Write;

use bytes::Bytes;
use deere::{DeereError, ExportPolling};
use machine_data::{Boundary, OperationKind, Options, OriginalData, UnitSystem};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::files::{FileStore, LocalWriter, Upload};
use crate::store::{ClaimedJob, ProcessedData, OPERATION_DATA_JOB_PREFIX};
use crate::sync::link::Authorized;

/// The file beside an operation's standard GeoJSON that holds the byte ranges of it making up
/// the filtered GeoJSON (operations processed before it was kept so have a `filtered.geojson`).
pub const FILTERED_RANGES_FILE: &str = "filtered.ranges.json";

/// Attempts before an operation's processing is given up (`FAILED`).
const MAX_ATTEMPTS: i64 = 6;
/// Longer side of each map, pixels.
const IMAGE_SIZE: u32 = 512;

#[derive(Debug, thiserror::Error)]
enum ProcessError {
    /// John Deere makes no shapefile of this operation (406), or it has no points.
    #[error("no spatial data: {0}")]
    NoData(String),
    #[error("John Deere: {0}")]
    Deere(#[from] DeereError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("{0}")]
    Other(String),
}

impl From<machine_data::DataError> for ProcessError {
    fn from(e: machine_data::DataError) -> Self {
        match e {
            machine_data::DataError::NoPoints => Self::NoData("the export has no points".into()),
            other => Self::Other(other.to_string()),
        }
    }
}

impl From<std::io::Error> for ProcessError {
    fn from(e: std::io::Error) -> Self {
        Self::Other(format!("i/o: {e}"))
    }
}

impl From<crate::files::FileStoreError> for ProcessError {
    fn from(e: crate::files::FileStoreError) -> Self {
        Self::Other(e.to_string())
    }
}

/// Where an operation's outputs live in the file store.
pub fn storage_prefix(user: &str, operation_id: &str) -> String {
    format!("operations/{user}/{operation_id}")
}

/// Runs one claimed `opdata:` job.
pub async fn run_job(state: &AppState, job: &ClaimedJob) -> Result<(), crate::store::StoreError> {
    let operation_id = job
        .kind
        .strip_prefix(OPERATION_DATA_JOB_PREFIX)
        .unwrap_or_default()
        .to_string();
    let attempts = job.attempts + 1;
    let Some(op) = state.store.operation_by_id(&operation_id).await? else {
        // The operation (or its user) is gone; so is the work.
        return state
            .store
            .end_operation_data(
                &operation_id,
                &job.id,
                "FAILED",
                attempts,
                "the operation was deleted",
            )
            .await;
    };
    if op.deleted_on_provider {
        return state
            .store
            .end_operation_data(
                &op.id,
                &job.id,
                "FAILED",
                attempts,
                "the operation was deleted on John Deere",
            )
            .await;
    }
    state
        .store
        .note_operation_data(
            &op.id,
            "PROCESSING",
            attempts,
            &format!("processing (attempt {attempts})"),
        )
        .await?;
    match process(state, job, &op).await {
        Ok(()) => Ok(()),
        Err(ProcessError::NoData(reason)) => {
            state
                .store
                .end_operation_data(
                    &op.id,
                    &job.id,
                    "NO_DATA",
                    attempts,
                    &format!("no spatial data: {reason}"),
                )
                .await
        }
        Err(e) if attempts >= MAX_ATTEMPTS => {
            tracing::warn!(operation = %op.id, error = %e, "machine data processing given up");
            state
                .store
                .end_operation_data(
                    &op.id,
                    &job.id,
                    "FAILED",
                    attempts,
                    &format!("failed, not retried: {e}"),
                )
                .await
        }
        Err(e) => {
            // 30 s, 1, 2, 4, 8 minutes.
            let delay = 30_000i64 << (attempts - 1).clamp(0, 8);
            tracing::info!(operation = %op.id, error = %e, delay_ms = delay, "machine data processing retried later");
            state
                .store
                .note_operation_data(
                    &op.id,
                    "QUEUED",
                    attempts,
                    &format!("failed, retried later: {e}"),
                )
                .await?;
            state
                .store
                .reschedule_job(
                    &job.id,
                    &state.replica_id,
                    crate::store::now_ms() + delay,
                    attempts,
                    Some(&e.to_string()),
                )
                .await
                .map(drop)
        }
    }
}

async fn process(
    state: &AppState,
    job: &ClaimedJob,
    op: &crate::store::OperationRecord,
) -> Result<(), ProcessError> {
    let data: Value = serde_json::from_str(&op.data).unwrap_or_default();
    let Some(kind) = OperationKind::parse(&op.operation_type) else {
        return Err(ProcessError::NoData(format!(
            "unsupported operation type: {}",
            op.operation_type
        )));
    };
    let Some(export_link) = data["links"]["shapeFileAsync"].as_str() else {
        return Err(ProcessError::NoData(
            "John Deere offers no shapefile export of this operation".into(),
        ));
    };
    let cred = state
        .store
        .credential(&job.credential_id)
        .await?
        .ok_or_else(|| ProcessError::Other("the credentials were deleted".into()))?;
    let Some(auth) = Authorized::open(state, &cred)? else {
        return Err(ProcessError::Other(format!(
            "the credentials are {}",
            cred.status
        )));
    };
    let config = state.store.effective_config(&op.leaf_user_id).await?;
    let system = config
        .get("unitMeasurement")
        .and_then(Value::as_str)
        .and_then(UnitSystem::parse)
        .unwrap_or_default();
    let flag =
        |key: &str, default: bool| config.get(key).and_then(Value::as_bool).unwrap_or(default);
    let filtered_on = flag("operationsFilteredGeojson", true);
    let images_on = flag("operationsImageCreation", false);

    let outcome = export_and_process(
        state,
        &auth,
        op,
        kind,
        export_link,
        system,
        filtered_on,
        images_on,
        &config,
    )
    .await;
    // The exchanges (failed ones above all) become the credential's events either way.
    auth.flush_events(state, &cred.id).await?;
    let processed = outcome?;

    let payload = json!({"operationId": op.id, "leafUserId": op.leaf_user_id});
    let alerts = alerts_for(
        state,
        &op.leaf_user_id,
        "operationProcessingFinished",
        payload,
    )
    .await?;
    state
        .store
        .finish_operation_data(&op.id, &job.id, &processed, &alerts)
        .await?;
    state.wake.notify();
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn export_and_process(
    state: &AppState,
    auth: &Authorized,
    op: &crate::store::OperationRecord,
    kind: OperationKind,
    export_link: &str,
    system: UnitSystem,
    filtered_on: bool,
    images_on: bool,
    config: &serde_json::Map<String, Value>,
) -> Result<ProcessedData, ProcessError> {
    let api = auth.api();
    let mut url = api.link_url(export_link)?;
    url.query_pairs_mut()
        .append_pair("shapeType", "Point")
        .append_pair("resolution", "OneHertz");
    // METRIC and IMPERIAL are asked of John Deere and converted by furrow all the same;
    // DEFAULT takes the organization's preference.
    let uom = match system {
        UnitSystem::Default => None,
        UnitSystem::Metric => Some("METRIC"),
        UnitSystem::Imperial => Some("ENGLISH"),
    };
    let polling = ExportPolling {
        initial_delay: std::time::Duration::from_millis(state.settings.export_poll_ms.max(1)),
        max_delay: std::time::Duration::from_secs(120),
        max_polls: state.settings.export_max_polls.clamp(1, 1000) as u32,
    };
    let started = std::time::Instant::now();
    let scratch = state.settings.data_dir.join("tmp");
    tokio::fs::create_dir_all(&scratch).await?;
    let zip_path = scratch.join(format!("{}.zip", uuid::Uuid::new_v4()));
    let _cleanup = RemoveOnDrop(zip_path.clone());
    // A pre-signed URL that expired before we fetched it is asked for again.
    let mut tries = 0;
    loop {
        tries += 1;
        let export = match api
            .request_shapefile(&auth.token, &url, uom, &polling)
            .await
        {
            Err(DeereError::NotAcceptable { message }) => {
                return Err(ProcessError::NoData(message))
            }
            other => other?,
        };
        crate::outbound::provider_redirect_allowed(api.base_url(), &export.presigned_url)
            .map_err(ProcessError::Other)?;
        let mut file = tokio::fs::File::create(&zip_path).await?;
        match api
            .download_presigned(&export.presigned_url, &mut file)
            .await
        {
            Ok(_) => break,
            Err(DeereError::Forbidden { .. }) | Err(DeereError::Unauthorized { .. })
                if tries < 3 =>
            {
                tracing::info!(operation = %op.id, "pre-signed export URL refused (expired?); exporting again");
            }
            Err(e) => return Err(e.into()),
        }
    }

    let downloaded = started.elapsed();
    let boundary = active_boundary(state, &op.field_id).await?;
    let original = original_data(state, op).await?;
    let remove_outliers = config
        .get("operationsRemoveOutliers")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let outliers_limit = config
        .get("operationsOutliersLimit")
        .and_then(Value::as_f64)
        .unwrap_or(3.0);
    // operationsImageAttributeCreation: the properties set true for this type, when given.
    let image_properties = config
        .get("operationsImageAttributeCreation")
        .and_then(|kinds| kinds.get(kind.as_str()))
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter(|(_, on)| on.as_bool() == Some(true))
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>()
        });
    let prefix = storage_prefix(&op.leaf_user_id, &op.id);
    // Keys carry a fresh id: a reprocessing never overwrites files being served.
    let version = uuid::Uuid::new_v4();
    let standard_key = format!("{prefix}/{version}/standard.geojson");
    let (standard, standard_task) = open_output(&state.files, &standard_key)?;
    let blocking = tokio::task::spawn_blocking(move || {
        let export = machine_data::read_export(&zip_path)?;
        let options = Options {
            kind,
            system,
            remove_outliers,
            outliers_limit,
            images: images_on,
            image_size: IMAGE_SIZE,
            image_properties,
            boundary: boundary.as_ref(),
            original,
        };
        let mut standard = standard;
        let processed = machine_data::process(&export, &options, &mut standard)?;
        standard.finish()?;
        Ok::<_, ProcessError>(processed)
    });
    let processed = blocking
        .await
        .map_err(|e| ProcessError::Other(format!("processing stopped: {e}")))?;
    // An upload (a bucket) completes once its writer finished; a local file is in place.
    if let Some(task) = standard_task {
        task.await
            .map_err(|e| ProcessError::Other(e.to_string()))??;
    }
    let processed = processed?;
    // The filtered GeoJSON is the standard one's text less the dropped points: kept as the
    // byte ranges that make it up, read through the standard file when downloaded.
    let filtered_key = if filtered_on {
        let key = format!("{prefix}/{version}/{FILTERED_RANGES_FILE}");
        let ranges = serde_json::to_vec(&processed.filtered)
            .map_err(|e| ProcessError::Other(e.to_string()))?;
        let mut upload = state.files.upload(&key);
        upload.write_all(&ranges).await?;
        upload.finish().await?;
        Some(key)
    } else {
        None
    };
    let stored = started.elapsed();

    let mut images = Vec::new();
    for image in &processed.images {
        let key = format!("{prefix}/{version}/{}.png", image.property);
        let mut upload = state.files.upload(&key);
        upload.write_all(&image.png).await?;
        upload.finish().await?;
        images.push(json!({
            "property": image.property, "key": key,
            "legend": {"ranges": image.legend}, "extent": image.extent,
            "width": image.width, "height": image.height,
        }));
    }
    tracing::info!(
        operation = %op.id,
        points = processed.points,
        export_and_download_ms = downloaded.as_millis() as u64,
        processed_and_stored_ms = (stored - downloaded).as_millis() as u64,
        images_ms = (started.elapsed() - stored).as_millis() as u64,
        "machine data processed"
    );
    Ok(ProcessedData {
        standard_key,
        filtered_key,
        summary: processed.summary.to_string(),
        units: processed.units.to_string(),
        images: Value::Array(images).to_string(),
        coverage: processed.coverage,
        points: processed.points as i64,
        filtered_points: filtered_on.then_some(processed.filtered_points as i64),
        removed: json!(processed.removed).to_string(),
    })
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An upload fed from a blocking thread: chunks go through a bounded channel (so a slow store
/// slows the writer instead of filling memory); the task returns the SHA-256, or aborts the
/// upload when the writer goes away without finishing.
fn upload_task(files: &FileStore, key: &str) -> (mpsc::Sender<Chunk>, UploadTask) {
    let (tx, mut rx) = mpsc::channel::<Chunk>(8);
    let mut upload: Upload = files.upload(key);
    let task = tokio::spawn(async move {
        let mut finished = false;
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::Data(bytes) => {
                    if let Err(e) = upload.write_all(&bytes).await {
                        upload.abort().await;
                        return Err(e.into());
                    }
                }
                Chunk::End => {
                    finished = true;
                    break;
                }
            }
        }
        if finished {
            Ok(upload.finish().await?)
        } else {
            upload.abort().await;
            Err(ProcessError::Other("the output was not completed".into()))
        }
    });
    (tx, task)
}

enum Chunk {
    Data(Bytes),
    End,
}

/// Where a large output goes: straight to its file in a local store, or through a channel to
/// an upload task for a bucket.
enum Output {
    Local(LocalWriter),
    Upload(ChannelWriter),
}

type UploadTask = tokio::task::JoinHandle<Result<String, ProcessError>>;

fn open_output(files: &FileStore, key: &str) -> Result<(Output, Option<UploadTask>), ProcessError> {
    Ok(match files.blocking_writer(key)? {
        Some(local) => (Output::Local(local), None),
        None => {
            let (tx, task) = upload_task(files, key);
            (Output::Upload(ChannelWriter::new(tx)), Some(task))
        }
    })
}

impl Output {
    /// The whole output was written: it becomes visible.
    fn finish(self) -> std::io::Result<()> {
        match self {
            Self::Local(w) => w.finish(),
            Self::Upload(w) => w.finish(),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Local(w) => w.write(buf),
            Self::Upload(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Local(w) => w.write_all(buf),
            Self::Upload(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Local(w) => w.flush(),
            Self::Upload(w) => w.flush(),
        }
    }
}

/// `std::io::Write` into an upload task, in 1 MiB chunks; [`ChannelWriter::finish`] completes
/// the upload (dropped without it, the upload is aborted).
struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buffer: Vec<u8>,
}

const CHANNEL_CHUNK: usize = 1 << 20;

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Chunk>) -> Self {
        Self {
            tx,
            buffer: Vec::with_capacity(CHANNEL_CHUNK),
        }
    }

    /// The whole output was written: the upload completes.
    fn finish(mut self) -> std::io::Result<()> {
        self.flush()?;
        self.send(Chunk::End)
    }

    fn send(&mut self, chunk: Chunk) -> std::io::Result<()> {
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHANNEL_CHUNK {
            let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHANNEL_CHUNK));
            self.send(Chunk::Data(Bytes::from(full)))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            self.send(Chunk::Data(Bytes::from(rest)))?;
        }
        Ok(())
    }
}

/// The field's active boundary, for coverage and the filtered output.
async fn active_boundary(
    state: &AppState,
    field_id: &str,
) -> Result<Option<Boundary>, ProcessError> {
    let boundaries = state.store.boundaries_of(field_id).await?;
    let Some(active) = boundaries.iter().find(|b| b.status == "ACTIVE") else {
        return Ok(None);
    };
    let geometry: Value = serde_json::from_str(&active.geometry).unwrap_or_default();
    let polygons: Option<machine_data::MultiPolygon> =
        serde_json::from_value(geometry["coordinates"].clone()).ok();
    Ok(polygons.and_then(Boundary::new))
}

/// Farm, field and grower names for the summary's `originalOperationData`.
async fn original_data(
    state: &AppState,
    op: &crate::store::OperationRecord,
) -> Result<OriginalData, ProcessError> {
    let data: Value = serde_json::from_str(&op.data).unwrap_or_default();
    let names = state.store.field_names(&op.field_id).await?;
    Ok(OriginalData {
        farm: names.farm,
        field: names.field,
        grower: names.grower,
        operation_type: data["providerOperationType"].as_str().map(str::to_string),
    })
}

/// The alert for every webhook of the user's owner subscribed to `event_type`.
async fn alerts_for(
    state: &AppState,
    user: &str,
    event_type: &str,
    payload: Value,
) -> Result<crate::store::Deliveries, ProcessError> {
    let owner = state.store.owner_of_user(user).await?.unwrap_or_default();
    let Value::Object(map) = payload else {
        return Ok(Vec::new());
    };
    Ok(crate::sync::alerts::deliveries(state, &owner, event_type, map).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn read(files: &FileStore, key: &str) -> Option<Vec<u8>> {
        let (_, stream) = files.read(key).await.ok()?;
        Some(stream.map(|b| b.unwrap().to_vec()).concat().await)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outputs_reach_a_bucket_whole_or_not_at_all() {
        let files = FileStore::in_memory();
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 253) as u8).collect();
        let (output, task) = open_output(&files, "ops/u/o/standard.geojson").unwrap();
        let written = data.clone();
        tokio::task::spawn_blocking(move || {
            let mut output = output;
            for chunk in written.chunks(100_000) {
                output.write_all(chunk).unwrap();
            }
            output.finish().unwrap();
        })
        .await
        .unwrap();
        let hash = task.expect("a bucket uploads").await.unwrap().unwrap();
        assert_eq!(hash, crate::store::content_hash_bytes(&data));
        assert_eq!(
            read(&files, "ops/u/o/standard.geojson").await,
            Some(data.clone())
        );

        // A writer dropped before it finished (a failed processing) leaves nothing.
        let (output, task) = open_output(&files, "ops/u/o/filtered.geojson").unwrap();
        tokio::task::spawn_blocking(move || {
            let mut output = output;
            output.write_all(&data[..2_000_000]).unwrap();
        })
        .await
        .unwrap();
        assert!(task.unwrap().await.unwrap().is_err());
        assert_eq!(read(&files, "ops/u/o/filtered.geojson").await, None);
    }
}
