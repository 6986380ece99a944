//! `/services/operations/api/operations`: synced field operations.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use machine_data::ByteRanges;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, PageQuery, Paging, Params};
use super::schemas;
use crate::app::AppState;
use crate::files::{ByteStream, FileStoreError};
use crate::store::{AssetKind, OperationDataRecord, OperationFilter, OperationRecord};
use crate::sync::machine_data::FILTERED_RANGES_FILE;

const BASE: &str = "/services/operations/api/operations";
const GEOJSON: &str = "application/geo+json";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
        .routes(routes!(standard_geojson))
        .routes(routes!(filtered_geojson))
        .routes(routes!(download_standard))
        .routes(routes!(download_filtered))
        .routes(routes!(summary))
        .routes(routes!(units))
        .routes(routes!(images))
        .routes(routes!(images_v2))
        .routes(routes!(download_image))
        .routes(routes!(status))
        .routes(routes!(reprocess))
        .routes(routes!(machines))
        .routes(routes!(implements))
        .routes(routes!(operators))
}

/// Leaf's (version 1) images ramp, the same for every image.
fn ramp() -> Value {
    json!({"0%": [200, 0, 0], "35%": [255, 40, 0], "45%": [255, 150, 0], "55%": [255, 240, 0],
           "65%": [0, 230, 0], "75%": [0, 190, 0], "100%": [0, 130, 0], "nv": [0, 0, 0, 0]})
}

/// The caller's operation (another owner's is a 404).
async fn find(state: &AppState, owner: &Owner, id: &str) -> ApiResult<OperationRecord> {
    let id = parse_id(id, "operation")?;
    state
        .store
        .operation(&owner.id, &id)
        .await?
        .ok_or(ApiError::NotFound("operation"))
}

/// The caller's operation and its machine data, processed.
async fn processed(
    state: &AppState,
    owner: &Owner,
    id: &str,
) -> ApiResult<(OperationRecord, OperationDataRecord)> {
    let op = find(state, owner, id).await?;
    match state.store.operation_data(&op.id).await? {
        Some(data) if data.processed_at.is_some() => Ok((op, data)),
        _ => Err(ApiError::NotFound(
            "processed machine data of this operation (see its /status)",
        )),
    }
}

fn operation_url(state: &AppState, id: &str, rest: &str) -> String {
    format!("{}{BASE}/{id}/{rest}", state.settings.public_url())
}

/// Where the operation's standard GeoJSON is (404 until its machine data is processed).
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/standardGeojson", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "Links", body = schemas::StandardGeojsonLinks)))]
async fn standard_geojson(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (op, _) = processed(&state, &owner, &id).await?;
    let url = operation_url(&state, &op.id, "standardGeojson/download");
    Ok(Json(
        json!({"standardGeojson": url, "downloadStandardGeojson": url}),
    ))
}

/// Where the operation's filtered GeoJSON is (404 until processed, or when
/// `operationsFilteredGeojson` was off).
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/filteredGeojson", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "Links", body = schemas::FilteredGeojsonLinks)))]
async fn filtered_geojson(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (op, data) = processed(&state, &owner, &id).await?;
    if data.filtered_key.is_none() {
        return Err(ApiError::NotFound(
            "filtered GeoJSON (operationsFilteredGeojson was off when the operation was processed)",
        ));
    }
    let url = operation_url(&state, &op.id, "filteredGeojson/download");
    Ok(Json(
        json!({"filteredGeojson": url, "downloadFilteredGeojson": url}),
    ))
}

/// Streams a stored output (never loaded whole into memory).
async fn stream(state: &AppState, key: &str, content_type: &'static str) -> ApiResult<Response> {
    let read = state.files.read(key).await;
    stream_response(key, read, content_type)
}

fn stream_response(
    key: &str,
    read: Result<(u64, ByteStream), FileStoreError>,
    content_type: &'static str,
) -> ApiResult<Response> {
    let (size, bytes) = read.map_err(|e| {
        tracing::warn!(%key, error = %e, "stored machine data unreadable");
        ApiError::NotFound("stored machine data")
    })?;
    let mut response = Body::from_stream(bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(response)
}

/// The standard GeoJSON: one Feature per point with Leaf's standard properties.
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/standardGeojson/download", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "GeoJSON FeatureCollection", content_type = "application/geo+json", body = schemas::GeoJson)))]
async fn download_standard(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (_, data) = processed(&state, &owner, &id).await?;
    let key = data
        .standard_key
        .ok_or(ApiError::NotFound("standard GeoJSON"))?;
    stream(&state, &key, GEOJSON).await
}

/// The filtered GeoJSON (Leaf's cleaning: slow points and yield outliers removed).
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/filteredGeojson/download", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "GeoJSON FeatureCollection", content_type = "application/geo+json", body = schemas::GeoJson)))]
async fn download_filtered(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (_, data) = processed(&state, &owner, &id).await?;
    let (Some(key), Some(standard)) = (data.filtered_key, data.standard_key) else {
        return Err(ApiError::NotFound("filtered GeoJSON"));
    };
    if !key.ends_with(FILTERED_RANGES_FILE) {
        // Processed before the filtered GeoJSON was kept as ranges: a file of its own.
        return stream(&state, &key, GEOJSON).await;
    }
    let read = async {
        let text = state.files.read_all(&key).await?;
        let ranges: ByteRanges = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
        state
            .files
            .read_ranges(&standard, ranges.into_ranges())
            .await
    };
    stream_response(&key, read.await, GEOJSON)
}

fn stored_json(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// Leaf's summary Feature: totals, averages, covered area as geometry.
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/summary", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "GeoJSON Feature", body = schemas::GeoJson)))]
async fn summary(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, data) = processed(&state, &owner, &id).await?;
    Ok(Json(stored_json(data.summary.as_deref())))
}

/// The unit of every standard property (per `unitMeasurement`).
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/units", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "Property name to unit", body = Object)))]
async fn units(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, data) = processed(&state, &owner, &id).await?;
    Ok(Json(stored_json(data.units.as_deref())))
}

/// The stored images with furrow's download URL for each.
fn image_list(state: &AppState, op: &OperationRecord, data: &OperationDataRecord) -> Vec<Value> {
    let Value::Array(images) = stored_json(data.images.as_deref()) else {
        return Vec::new();
    };
    images
        .into_iter()
        .map(|mut image| {
            let property = image["property"].as_str().unwrap_or_default().to_string();
            let url = operation_url(state, &op.id, &format!("images/{property}/download"));
            if let Some(map) = image.as_object_mut() {
                map.remove("key");
                map.insert("url".into(), json!(url));
                map.insert("downloadUrl".into(), json!(url));
            }
            image
        })
        .collect()
}

/// Leaf's first images endpoint: property, ramp, URL.
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/images", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "Images", body = Vec<schemas::Image>)))]
async fn images(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (op, data) = processed(&state, &owner, &id).await?;
    let list: Vec<Value> = image_list(&state, &op, &data)
        .into_iter()
        .map(|i| json!({"property": i["property"], "ramp": ramp(), "url": i["url"], "downloadUrl": i["downloadUrl"]}))
        .collect();
    Ok(Json(Value::Array(list)))
}

/// Leaf's images V2: property, legend (seven quantile classes), extent, URL.
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/imagesV2", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "Images", body = Vec<schemas::Image>)))]
async fn images_v2(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (op, data) = processed(&state, &owner, &id).await?;
    Ok(Json(Value::Array(image_list(&state, &op, &data))))
}

/// The PNG map of one property.
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/images/{property}/download", tag = "machine operations",
    params(("id" = uuid::Uuid, Path, description = "Operation id"), ("property" = String, Path, description = "A standard property, e.g. `harvestVolume`")),
    responses((status = 200, description = "PNG", content_type = "image/png", body = Vec<u8>)))]
async fn download_image(
    State(state): State<AppState>,
    owner: Owner,
    Path((id, property)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, data) = processed(&state, &owner, &id).await?;
    let Value::Array(images) = stored_json(data.images.as_deref()) else {
        return Err(ApiError::NotFound("image"));
    };
    let key = images
        .iter()
        .find(|i| i["property"] == property.as_str())
        .and_then(|i| i["key"].as_str())
        .ok_or(ApiError::NotFound("image"))?
        .to_string();
    stream(&state, &key, "image/png").await
}

/// Leaf's per-step statuses (as for files), with furrow's state, message and recent events.
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/status", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "Processing status", body = schemas::OperationStatus)))]
async fn status(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let op = find(&state, &owner, &id).await?;
    let data = state.store.operation_data(&op.id).await?;
    Ok(Json(status_json(data.as_ref())))
}

fn status_json(data: Option<&OperationDataRecord>) -> Value {
    let Some(d) = data else {
        return json!({"status": "NOT_QUEUED", "message": "the operation is outside operationsProcessingRange or was synced before machine data existed; POST …/reprocess queues it"});
    };
    let step = |status: &str, message: &str| json!({"status": status, "message": message});
    let done = d.processed_at.is_some() && d.status != "NO_DATA" && d.status != "FAILED";
    let (original, rest) = match d.status.as_str() {
        "NO_DATA" => (
            step("failed", d.message.as_deref().unwrap_or("no spatial data")),
            step("skipped", "skipped"),
        ),
        "FAILED" => (
            step("failed", d.message.as_deref().unwrap_or("failed")),
            step("skipped", "skipped"),
        ),
        _ if done => (step("processed", "ok"), step("processed", "ok")),
        _ => (
            step("processing", "processing"),
            step("processing", "processing"),
        ),
    };
    let filtered = if done && d.filtered_key.is_none() {
        step("skipped", "operationsFilteredGeojson is off")
    } else {
        rest.clone()
    };
    let images = match stored_json(d.images.as_deref()) {
        Value::Array(list) if done && list.is_empty() => {
            step("skipped", "operationsImageCreation is off")
        }
        _ => rest.clone(),
    };
    json!({
        "originalFile": original, "standardGeojson": rest, "filteredGeojson": filtered,
        "summary": rest, "units": rest, "propertiesPNGs": images,
        "status": d.status, "message": d.message, "attempts": d.attempts,
        "points": d.points, "filteredPoints": d.filtered_points, "removedPoints": stored_json(d.removed.as_deref()),
        "processedTime": d.processed_at, "updatedTime": d.updated_at,
        "events": stored_json(Some(&d.events)),
    })
}

/// Leaf's reprocess: the operation's machine data is processed again (with the current
/// configuration).
#[utoipa::path(post, path = "/services/operations/api/operations/{id}/reprocess", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses(
        (status = 202, description = "Queued", body = schemas::OperationStatus),
        (status = 409, description = "Deleted on John Deere, or no credentials", body = super::openapi::Problem, content_type = "application/problem+json"),
    ))]
async fn reprocess(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let op = find(&state, &owner, &id).await?;
    if op.deleted_on_provider {
        return Err(ApiError::Conflict(
            "the operation was deleted on John Deere".into(),
        ));
    }
    let credential = state
        .store
        .credential_of_user(&owner.id, &op.leaf_user_id)
        .await?
        .ok_or_else(|| ApiError::Conflict("the Leaf user has no John Deere credentials".into()))?;
    state
        .store
        .queue_operation_data(
            &op.id,
            &op.leaf_user_id,
            &credential.id,
            "queued: reprocess requested",
        )
        .await?;
    state.wake.notify();
    let data = state.store.operation_data(&op.id).await?;
    Ok((StatusCode::ACCEPTED, Json(status_json(data.as_ref()))))
}

fn operation_json(
    op: &OperationRecord,
    machine_data: Option<&OperationDataRecord>,
    owner_email: &str,
) -> Value {
    let data: Value = serde_json::from_str(&op.data).unwrap_or(json!({}));
    // Coverage: the share (0–100) of the operation's worked area inside the field's boundary.
    let coverage = machine_data.and_then(|d| d.coverage);
    json!({
        "id": op.id, "apiOwnerUsername": owner_email, "leafUserId": op.leaf_user_id,
        "startTime": op.start_time, "endTime": op.end_time, "updatedTime": op.updated_at,
        "createdTime": op.created_at, "type": op.operation_type, "operationType": op.operation_type,
        "files": [], "fields": [{"id": op.field_id, "coverage": coverage}], "providers": ["JohnDeere"], "provider": "JohnDeere",
        "origin": "provider", "providerOperationId": op.provider_operation_id,
        "cropSeason": op.crop_season, "crops": data["crops"], "varieties": data["varieties"],
        "products": data["products"], "machines": data["machines"], "operators": data["operators"],
        "summary": {"measurements": data["measurements"]},
    })
}

/// The API owner's field operations, filtered by user, field, type and time.
#[utoipa::path(get, path = "/services/operations/api/operations", tag = "machine operations",
    params(PageQuery,
        ("leafUserId" = Option<uuid::Uuid>, Query), ("fieldId" = Option<uuid::Uuid>, Query),
        ("operationType" = Option<String>, Query, description = "`applied`, `planted`, `harvested` or `tillage`", pattern = "^(applied|planted|harvested|tillage)$"),
        ("startTime" = Option<String>, Query, format = DateTime, description = "Operations ending at or after this time"),
        ("endTime" = Option<String>, Query, format = DateTime, description = "Operations starting at or before this time"),
        ("provider" = Option<String>, Query, description = "`JohnDeere`; another gives an empty page")),
    responses((status = 200, description = "Operations", body = Vec<schemas::Operation>)))]
async fn list(
    State(state): State<AppState>,
    owner: Owner,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let paging = Paging::from_params(&params)?;
    let operation_type = match params.get("operationType") {
        None => None,
        Some(t @ ("applied" | "planted" | "harvested" | "tillage")) => Some(t.to_string()),
        Some(_) => {
            return Err(ApiError::bad(
                "operationType",
                "must be applied, planted, harvested or tillage",
            ))
        }
    };
    let filter = OperationFilter {
        leaf_user_id: params
            .get("leafUserId")
            .map(|u| parse_id(u, "Leaf user"))
            .transpose()?,
        field_id: params
            .get("fieldId")
            .map(|f| parse_id(f, "field"))
            .transpose()?,
        operation_type,
        start_ms: params.time_ms("startTime")?,
        end_ms: params.time_ms("endTime")?,
    };
    // Every parameter is checked first: another provider's operations are none.
    if params.get("provider").is_some_and(|p| p != "JohnDeere") {
        return Ok((paging.headers(0, BASE), Json(json!([]))));
    }
    let (ops, total) = state
        .store
        .list_operations(&owner.id, &filter, paging.offset(), paging.size)
        .await?;
    let email = state
        .store
        .owner_email(&owner.id)
        .await?
        .unwrap_or_default();
    let mut body = Vec::with_capacity(ops.len());
    for o in &ops {
        let data = state.store.operation_data(&o.id).await?;
        body.push(operation_json(o, data.as_ref(), &email));
    }
    Ok((paging.headers(total, BASE), Json(Value::Array(body))))
}

/// One field operation.
#[utoipa::path(get, path = "/services/operations/api/operations/{id}", tag = "machine operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "The operation", body = schemas::Operation)))]
async fn one(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let op = find(&state, &owner, &id).await?;
    let email = state
        .store
        .owner_email(&owner.id)
        .await?
        .unwrap_or_default();
    let data = state.store.operation_data(&op.id).await?;
    Ok(Json(operation_json(&op, data.as_ref(), &email)))
}

/// John Deere's ids under `key` of the operation's stored `list` (`machines` or `operators`).
fn provider_ids(op: &OperationRecord, list: &str, key: &str) -> Vec<String> {
    let data: Value = serde_json::from_str(&op.data).unwrap_or_default();
    data[list]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| match &item[key] {
                    Value::String(s) if !s.is_empty() => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `{machines: [id]}` or `{operators: [id]}`: the synced assets the operation names (John
/// Deere's `machineId`s, or its machines' `operatorId`s).
async fn linked(
    state: &AppState,
    owner: &Owner,
    id: &str,
    kind: AssetKind,
) -> ApiResult<Json<Value>> {
    let op = find(state, owner, id).await?;
    let (list, key, name) = match kind {
        AssetKind::Operator => ("operators", "operatorId", "operators"),
        _ => ("machines", "machineId", "machines"),
    };
    let ids = state
        .store
        .asset_ids_by_provider_ids(&op.leaf_user_id, kind, &provider_ids(&op, list, key))
        .await?;
    Ok(Json(json!({ name: ids })))
}

/// The synced machines that worked the operation (John Deere's `fieldOperationMachines`), as
/// ids for Leaf's get-a-machine; empty until `machinesAutoSync` has synced them.
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/machines", tag = "operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "`{machines: [id]}`", body = schemas::OperationAssets)))]
async fn machines(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    linked(&state, &owner, &id, AssetKind::Machine).await
}

/// The synced implements attached (John Deere's `machine` of an implement) to the machines that
/// worked the operation; empty until `implementsAutoSync` has synced them.
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/implements", tag = "operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "`{implements: [id]}`", body = schemas::OperationAssets)))]
async fn implements(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let op = find(&state, &owner, &id).await?;
    let machines = provider_ids(&op, "machines", "machineId");
    let ids: Vec<String> = state
        .store
        .assets_of_user(&op.leaf_user_id, AssetKind::Implement)
        .await?
        .into_iter()
        .filter(|implement| {
            let data: Value = serde_json::from_str(&implement.data).unwrap_or_default();
            data["providerMachineId"]
                .as_str()
                .is_some_and(|m| machines.iter().any(|x| x == m))
        })
        .map(|implement| implement.id)
        .collect();
    Ok(Json(json!({ "implements": ids })))
}

/// The synced operators who ran the operation's machines; empty until `operatorsAutoSync` has
/// synced them.
#[utoipa::path(get, path = "/services/operations/api/operations/{id}/operators", tag = "operations", params(("id" = uuid::Uuid, Path, description = "Operation id")),
    responses((status = 200, description = "`{operators: [id]}`", body = schemas::OperationAssets)))]
async fn operators(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    linked(&state, &owner, &id, AssetKind::Operator).await
}
