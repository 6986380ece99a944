//! Shapefile exports of field operations (`/fieldOps/{id}`), made by `machine-data`'s
//! synthesiser from the operation and its field's active boundary: the same operation, units
//! and shape always give the same bytes. Made outside the state lock (a million points take
//! seconds) and cached.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use machine_data::synth::{synthesize, SynthMachine, SynthSpec, Truth};
use machine_data::OperationKind;

use crate::{Sim, SimState};

/// What one pre-signed URL serves.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    key: String,
    spec: SynthSpec,
}

pub struct Ready {
    pub zip: Bytes,
    pub truth: Truth,
}

/// Exports kept, oldest dropped first once their zips pass [`CACHED_BYTES`].
#[derive(Default)]
pub struct ExportCache {
    ready: HashMap<String, Arc<Ready>>,
    order: std::collections::VecDeque<String>,
    bytes: usize,
}

/// A million-point export is about 25 MB of zip (and 16 MB of coordinates).
const CACHED_BYTES: usize = 256 << 20;

/// Why no export can be made (John Deere answers 406).
pub const NOT_ACCEPTABLE: &str = "A shapefile cannot be generated for this operation.";

/// John Deere's operation type → Leaf's kind of machine data.
fn kind_of(operation_type: &str) -> Option<OperationKind> {
    match operation_type.to_ascii_lowercase().as_str() {
        "seeding" => Some(OperationKind::Planted),
        "application" => Some(OperationKind::Applied),
        "harvest" => Some(OperationKind::Harvested),
        "tillage" => Some(OperationKind::Tillage),
        _ => None,
    }
}

/// Under the state lock: what to make for operation `op_id` in these units and shape, or why
/// nothing can be made.
pub fn request(
    state: &SimState,
    op_id: &str,
    english: bool,
    polygons: bool,
) -> Result<ExportRequest, &'static str> {
    let (loc, index) = state.world.find_operation(op_id).ok_or(NOT_ACCEPTABLE)?;
    let field = &state.world.orgs[&loc.org].fields[loc.field];
    let op = &field.operations[index];
    let kind = kind_of(&op.operation_type).ok_or(NOT_ACCEPTABLE)?;
    if !op.spatial || (kind == OperationKind::Tillage && !state.settings.export_tillage) {
        return Err(NOT_ACCEPTABLE);
    }
    let boundary = field.active_boundary().ok_or(NOT_ACCEPTABLE)?;
    let machine = |i: u64, vin: &str, operator: &str| SynthMachine {
        machine_id: 637_795 + i,
        serial: vin.to_string(),
        name: format!("{} {}", if i == 0 { "Main" } else { "Second" }, vin),
        make: "John Deere".into(),
        operator_id: format!("OP-{operator}"),
        operator_name: operator.to_string(),
    };
    let points = op.export_points.unwrap_or(state.settings.export_points);
    let seed = op.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3)
    });
    let spec = SynthSpec {
        kind,
        points,
        seed,
        boundary: std::iter::once(&boundary.exterior)
            .chain(&boundary.interiors)
            .map(|ring| ring.iter().map(|&(lon, lat)| [lon, lat]).collect())
            .collect(),
        start_ms: op.start.timestamp_millis(),
        english,
        crop: op.crop_name.clone().unwrap_or_else(|| "CORN_WET".into()),
        variety: "P1185".into(),
        product: op.product_name.clone().unwrap_or_else(|| "Product".into()),
        machines: [
            machine(0, &op.machine_vin, &op.operator_name),
            machine(1, &format!("{}-2", op.machine_vin), "Relief driver"),
        ],
        polygons,
    };
    Ok(ExportRequest {
        key: format!(
            "{op_id}:{}:{english}:{polygons}:{points}",
            op.stamp.modified_seq
        ),
        spec,
    })
}

/// The export, from the cache or made now (on a blocking thread).
pub async fn make(sim: &Sim, request: ExportRequest) -> Result<Arc<Ready>, String> {
    if let Some(ready) = sim.state().exports.ready.get(&request.key) {
        return Ok(ready.clone());
    }
    let spec = request.spec.clone();
    let (zip, truth) = tokio::task::spawn_blocking(move || synthesize(&spec))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let ready = Arc::new(Ready {
        zip: Bytes::from(zip),
        truth,
    });
    let mut state = sim.state();
    let cache = &mut state.exports;
    if cache
        .ready
        .insert(request.key.clone(), ready.clone())
        .is_none()
    {
        cache.order.push_back(request.key);
        cache.bytes += ready.zip.len();
    }
    while cache.bytes > CACHED_BYTES && cache.order.len() > 1 {
        if let Some(old) = cache.order.pop_front().and_then(|k| cache.ready.remove(&k)) {
            cache.bytes -= old.zip.len();
        }
    }
    Ok(ready)
}

/// The map image of an operation's measurement (`Accept: application/vnd.deere.axiom.v3.image+json`
/// on `/fieldOperations/{id}/measurementTypes/{name}`): John Deere documents a base64 PNG with a
/// legend and an extent; the field names here are the simulator's. Drawn from the operation's
/// export (made now, under the state lock, unless cached: default exports are small).
pub fn measurement_image(
    state: &mut SimState,
    op_id: &str,
    measurement: &str,
) -> Result<serde_json::Value, &'static str> {
    let english = state.settings.export_units != "METRIC";
    let request = request(state, op_id, english, false)?;
    let ready = match state.exports.ready.get(&request.key) {
        Some(ready) => ready.clone(),
        None => {
            let (zip, truth) = synthesize(&request.spec).map_err(|_| NOT_ACCEPTABLE)?;
            let ready = Arc::new(Ready {
                zip: Bytes::from(zip),
                truth,
            });
            state
                .exports
                .ready
                .insert(request.key.clone(), ready.clone());
            state.exports.order.push_back(request.key);
            state.exports.bytes += ready.zip.len();
            ready
        }
    };
    let property = match measurement {
        "HarvestYieldResult" => "dryVolumePerArea",
        "HarvestMoistureResult" => "harvestMoisture",
        "SeedingRateResult" => "seedRate",
        "ApplicationRateResult" => "appliedRate",
        "TillageDepthResult" => "tillageDepthActual",
        _ => "speed",
    };
    let export = machine_data::read_export_bytes(&ready.zip).map_err(|_| NOT_ACCEPTABLE)?;
    let options = machine_data::Options {
        kind: request.spec.kind,
        system: machine_data::UnitSystem::Default,
        remove_outliers: true,
        outliers_limit: 3.0,
        images: true,
        image_size: 256,
        image_properties: None,
        boundary: None,
        original: machine_data::OriginalData::default(),
    };
    let processed = machine_data::process(&export, &options, &mut std::io::sink())
        .map_err(|_| NOT_ACCEPTABLE)?;
    let image = processed
        .images
        .into_iter()
        .find(|i| i.property == property)
        .ok_or(NOT_ACCEPTABLE)?;
    use base64::Engine;
    Ok(serde_json::json!({
        "@type": "MeasurementImage",
        "measurementName": measurement,
        "mimeType": "image/png",
        "value": base64::engine::general_purpose::STANDARD.encode(&image.png),
        "width": image.width,
        "height": image.height,
        "legend": {"unit": processed.units[property], "ranges": image.legend},
        "extent": image.extent,
    }))
}
