//! `/services/operations/api/files`: synced machine files and an authenticated download of the
//! original bytes.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, PageQuery, Paging, Params};
use super::schemas;
use crate::app::AppState;
use crate::store::{FileFilter, FileRecord};

const BASE: &str = "/services/operations/api/files";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
        .routes(routes!(original))
        .routes(routes!(status))
}

/// Leaf's per-step statuses. A John Deere machine file is kept as John Deere sends it; its data
/// is converted per field operation (`/operations/{id}/status`), so the conversion steps are
/// `skipped` here with that reason.
#[utoipa::path(get, path = "/services/operations/api/files/{id}/status", tag = "files", params(("id" = uuid::Uuid, Path, description = "File id")),
    responses((status = 200, description = "Per-step statuses", body = schemas::FileStatus)))]
async fn status(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let f = find(&state, &owner, &id).await?;
    let original = match f.status.as_str() {
        "processed" => json!({"status": "processed", "message": "ok"}),
        "failed" => json!({"status": "failed", "message": "the download from John Deere failed"}),
        _ => json!({"status": "processing", "message": "downloading from John Deere"}),
    };
    let skipped = json!({"status": "skipped", "message": "John Deere machine data is converted per field operation: see /services/operations/api/operations/{id}/status"});
    Ok(Json(json!({
        "originalFile": original,
        "rawGeojson": skipped, "normalizedGeojson": skipped, "standardGeojson": skipped,
        "filteredGeojson": skipped, "propertiesPNGs": skipped, "summary": skipped, "units": skipped,
    })))
}

fn file_json(state: &AppState, f: &FileRecord, owner_email: &str) -> Value {
    let download = format!(
        "{}{BASE}/{}/originalFile",
        state.settings.public_url(),
        f.id
    );
    json!({
        "id": f.id, "provider": "JohnDeere", "origin": "provider", "status": f.status,
        "fileName": f.name, "fileType": f.file_type, "sizeInBytes": f.size_bytes, "sha256": f.sha256,
        "leafUserId": f.leaf_user_id, "apiOwnerUsername": owner_email,
        "organizationId": f.organization_id, "providerFileId": f.provider_file_id,
        "providerCreatedTime": f.provider_created_time, "providerModifiedTime": f.provider_modified_time,
        "fields": [], "operations": [],
        "originalFile": f.storage_key.as_ref().map(|_| download.clone()),
        "downloadOriginalFile": f.storage_key.as_ref().map(|_| download),
        "createdTime": f.created_at, "updatedTime": f.updated_at,
    })
}

/// The API owner's files from John Deere.
#[utoipa::path(get, path = "/services/operations/api/files", tag = "files",
    params(PageQuery, ("leafUserId" = Option<uuid::Uuid>, Query), ("organizationId" = Option<String>, Query),
        ("status" = Option<String>, Query, description = "`processing`, `processed` or `failed`", pattern = "^(processing|processed|failed)$"),
        ("provider" = Option<String>, Query, description = "`JohnDeere`; another gives an empty page"),
        ("origin" = Option<String>, Query, description = "`provider`; another gives an empty page"),
        ("createdTime" = Option<String>, Query, format = DateTime, description = "Files created at or after (also `startTime`)"),
        ("startTime" = Option<String>, Query, format = DateTime),
        ("endTime" = Option<String>, Query, format = DateTime, description = "Files created at or before")),
    responses((status = 200, description = "Files", body = Vec<schemas::File>)))]
async fn list(
    State(state): State<AppState>,
    owner: Owner,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let paging = Paging::from_params(&params)?;
    let status = match params.get("status") {
        None => None,
        Some(s @ ("processed" | "failed" | "processing")) => Some(s.to_string()),
        Some(_) => {
            return Err(ApiError::bad(
                "status",
                "must be processed, failed or processing",
            ))
        }
    };
    let (created, start) = (params.time_ms("createdTime")?, params.time_ms("startTime")?);
    let filter = FileFilter {
        leaf_user_id: params
            .get("leafUserId")
            .map(|u| parse_id(u, "Leaf user"))
            .transpose()?,
        organization_id: params.get("organizationId").map(str::to_string),
        status,
        from_ms: created.or(start),
        until_ms: params.time_ms("endTime")?,
    };
    // Only provider files exist in furrow (no uploads or merges); checked after every
    // parameter, so a bad filter is a 400 whatever the provider.
    let other_provider = params.get("provider").is_some_and(|p| p != "JohnDeere");
    let other_origin = params.get("origin").is_some_and(|o| o != "provider");
    if other_provider || other_origin {
        return Ok((paging.headers(0, BASE), Json(json!([]))));
    }
    let (files, total) = state
        .store
        .list_files(&owner.id, &filter, paging.offset(), paging.size)
        .await?;
    let email = state
        .store
        .owner_email(&owner.id)
        .await?
        .unwrap_or_default();
    let body: Vec<Value> = files.iter().map(|f| file_json(&state, f, &email)).collect();
    Ok((paging.headers(total, BASE), Json(Value::Array(body))))
}

async fn find(state: &AppState, owner: &Owner, id: &str) -> ApiResult<FileRecord> {
    let id = parse_id(id, "file")?;
    state
        .store
        .file(&owner.id, &id)
        .await?
        .ok_or(ApiError::NotFound("file"))
}

/// One file.
#[utoipa::path(get, path = "/services/operations/api/files/{id}", tag = "files", params(("id" = uuid::Uuid, Path, description = "File id")),
    responses((status = 200, description = "The file", body = schemas::File)))]
async fn one(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let f = find(&state, &owner, &id).await?;
    let email = state
        .store
        .owner_email(&owner.id)
        .await?
        .unwrap_or_default();
    Ok(Json(file_json(&state, &f, &email)))
}

/// Streams the stored bytes (never loaded whole into memory).
#[utoipa::path(get, path = "/services/operations/api/files/{id}/originalFile", tag = "files", params(("id" = uuid::Uuid, Path, description = "File id")),
    responses((status = 200, description = "The bytes John Deere sent", content_type = "application/zip", body = Vec<u8>)))]
async fn original(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let f = find(&state, &owner, &id).await?;
    let key = f
        .storage_key
        .as_deref()
        .ok_or(ApiError::NotFound("original file"))?;
    let (size, bytes) = state.files.read(key).await.map_err(|e| {
        tracing::warn!(file = %f.id, error = %e, "stored file unreadable");
        ApiError::NotFound("original file")
    })?;
    let mut response = Body::from_stream(bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    let safe_name: String = f
        .name
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' || *c == ' ')
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
