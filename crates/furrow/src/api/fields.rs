//! `/services/fields/api`: synced fields, boundaries, farms and growers, the manual sync and its
//! status.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, ApiJson, PageQuery, Paging, Params};
use super::schemas;
use crate::app::AppState;
use crate::onboarding::JOHN_DEERE;
use crate::store::{stable_int_id_for_farm, BoundaryRecord, FieldFilter, FieldRecord, SyncStatus};
use crate::sync::write_back::{write_field, WriteBackError};

const BASE: &str = "/services/fields/api";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_fields))
        .routes(routes!(sync_status, sync_now))
        .routes(routes!(enable_field))
        .routes(routes!(enable_growers))
        .routes(routes!(one_field))
        .routes(routes!(boundaries))
        .routes(routes!(one_boundary))
        .routes(routes!(active_boundary))
        .routes(routes!(farms))
        .routes(routes!(farm))
        .routes(routes!(growers))
        .routes(routes!(grower))
        .routes(routes!(create_field))
        .routes(routes!(send_to_provider))
}

/// John Deere's provider id in Leaf's numbering.
const JOHN_DEERE_PROVIDER_ID: i64 = 2;

fn boundary_json(b: &BoundaryRecord) -> Value {
    json!({
        "id": b.id, "status": b.status, "providerStatus": b.provider_status,
        "providerBoundaryId": b.provider_boundary_id,
        "geometry": serde_json::from_str::<Value>(&b.geometry).unwrap_or(Value::Null),
        "area": {"value": b.area_ha, "unit": "ha"},
        "validity": "VALID", "createdTime": b.created_at, "updatedTime": b.updated_at,
    })
}

async fn field_json(state: &AppState, f: &FieldRecord) -> ApiResult<Value> {
    let boundaries = state.store.boundaries_of(&f.id).await?;
    let active = boundaries.iter().find(|b| b.status == "ACTIVE");
    Ok(json!({
        "id": f.id, "leafUserId": f.leaf_user_id, "providerName": f.origin,
        "providerId": (f.origin == JOHN_DEERE).then_some(JOHN_DEERE_PROVIDER_ID),
        "providerFieldId": f.provider_field_id,
        "providerFieldName": f.name, "name": f.name,
        "providerBoundaryId": active.map(|b| b.provider_boundary_id.clone()),
        "organizationId": f.organization_id, "type": "ORIGINAL",
        "farmId": f.provider_farm_id.as_deref().map(|p| stable_int_id_for_farm(&f.leaf_user_id, p)),
        "files": [], "boundaries": boundaries.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
        "geometry": active.and_then(|b| serde_json::from_str::<Value>(&b.geometry).ok()),
        "area": active.map(|b| json!({"value": b.area_ha, "unit": "ha"})),
        "status": f.sync_state, "deletedOnProvider": f.deleted_on_provider,
        "createdTime": f.created_at, "updatedTime": f.updated_at,
    }))
}

async fn user_of_owner(state: &AppState, owner: &Owner, raw: &str) -> ApiResult<String> {
    let id = parse_id(raw, "Leaf user")?;
    state
        .store
        .user(&owner.id, &id)
        .await?
        .ok_or(ApiError::NotFound("Leaf user"))?;
    Ok(id)
}

/// The API owner's fields (John Deere's active boundary as geometry).
#[utoipa::path(get, path = "/services/fields/api/fields", tag = "fields",
    params(PageQuery, ("leafUserId" = Option<uuid::Uuid>, Query, description = "One user's"),
        ("farmId" = Option<i64>, Query), ("provider" = Option<String>, Query, description = "`JohnDeere`; another gives an empty page"),
        ("includeDeleted" = Option<bool>, Query, description = "Also fields deleted at John Deere")),
    responses((status = 200, description = "Fields", body = Vec<schemas::Field>)))]
async fn list_fields(
    State(state): State<AppState>,
    owner: Owner,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let paging = Paging::from_params(&params)?;
    let filter = FieldFilter {
        leaf_user_id: params
            .get("leafUserId")
            .map(|u| parse_id(u, "Leaf user"))
            .transpose()?,
        farm_id: params
            .get("farmId")
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad("farmId", "must be an integer"))
            })
            .transpose()?,
        include_deleted: match params.get("includeDeleted") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(ApiError::bad("includeDeleted", "must be true or false")),
        },
    };
    // Every parameter is checked first: another provider's fields are none, but a bad filter
    // is still a 400.
    if params.get("provider").is_some_and(|p| p != "JohnDeere") {
        return Ok((
            paging.headers(0, &format!("{BASE}/fields")),
            Json(json!([])),
        ));
    }
    let (fields, total) = state
        .store
        .list_fields(&owner.id, &filter, paging.offset(), paging.size)
        .await?;
    let mut body = Vec::with_capacity(fields.len());
    for f in &fields {
        body.push(field_json(&state, f).await?);
    }
    Ok((
        paging.headers(total, &format!("{BASE}/fields")),
        Json(Value::Array(body)),
    ))
}

async fn find_field(
    state: &AppState,
    owner: &Owner,
    user: &str,
    field: &str,
) -> ApiResult<FieldRecord> {
    let user = parse_id(user, "Leaf user")?;
    let field = parse_id(field, "field")?;
    state
        .store
        .field(&owner.id, &user, &field)
        .await?
        .ok_or(ApiError::NotFound("field"))
}

/// One field of a user.
#[utoipa::path(get, path = "/services/fields/api/users/{id}/fields/{field}", tag = "fields", params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("field" = uuid::Uuid, Path, description = "Field id")),
    responses((status = 200, description = "The field", body = schemas::Field)))]
async fn one_field(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, field)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let f = find_field(&state, &owner, &user, &field).await?;
    Ok(Json(field_json(&state, &f).await?))
}

/// Leaf's "enable a preview field": PREVIEW → WAITING, read whole at the sync this queues.
/// A field that is not in preview is answered as it is.
#[utoipa::path(post, path = "/services/fields/api/users/{id}/fields/{field}/enableSync", tag = "fields", params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("field" = uuid::Uuid, Path, description = "Field id")),
    responses((status = 200, description = "The field (WAITING until the sync reads it)", body = schemas::Field)))]
async fn enable_field(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, field)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let f = find_field(&state, &owner, &user, &field).await?;
    if state
        .store
        .enable_preview_fields(&f.leaf_user_id, Some(std::slice::from_ref(&f.id)))
        .await?
        > 0
    {
        wake_sync(&state, &owner, &f.leaf_user_id).await?;
    }
    let f = find_field(&state, &owner, &user, &field).await?;
    Ok(Json(field_json(&state, &f).await?))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GrowerIds {
    /// 1 to 1000 of Leaf's grower ids.
    grower_ids: Vec<i64>,
}

/// Leaf's "enable preview fields by grower" (`{growerIds: [...]}`, Leaf's integer grower ids):
/// every preview field of those growers' farms becomes WAITING and their users' syncs are
/// queued. An id that is not one of the owner's growers is a 400 and nothing changes.
#[utoipa::path(post, path = "/services/fields/api/growers/enableSync", tag = "fields", request_body = GrowerIds,
    responses((status = 200, description = "How many fields were enabled", body = schemas::EnabledGrowers)))]
async fn enable_growers(
    State(state): State<AppState>,
    owner: Owner,
    super::extract::ApiJson(body): super::extract::ApiJson<GrowerIds>,
) -> ApiResult<Json<Value>> {
    if body.grower_ids.is_empty() || body.grower_ids.len() > 1000 {
        return Err(ApiError::bad("growerIds", "must list 1 to 1000 grower ids"));
    }
    let growers = state.store.list_growers(&owner.id, None).await?;
    if let Some(unknown) = body
        .grower_ids
        .iter()
        .find(|id| !growers.iter().any(|g| g.id == **id))
    {
        return Err(ApiError::bad("growerIds", format!("no grower {unknown}")));
    }
    let fields = state
        .store
        .fields_of_growers(&owner.id, &body.grower_ids)
        .await?;
    let mut by_user: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (user, field) in fields {
        by_user.entry(user).or_default().push(field);
    }
    let mut enabled = 0;
    for (user, ids) in &by_user {
        let changed = state.store.enable_preview_fields(user, Some(ids)).await?;
        if changed > 0 {
            wake_sync(&state, &owner, user).await?;
        }
        enabled += changed;
    }
    Ok(Json(
        json!({"growerIds": body.grower_ids, "enabledFields": enabled}),
    ))
}

/// Queues the user's sync (when it has credentials).
async fn wake_sync(state: &AppState, owner: &Owner, user: &str) -> ApiResult<()> {
    if let Some(cred) = state.store.credential_of_user(&owner.id, user).await? {
        state.store.wake_job(&cred.id, "sync").await?;
    }
    Ok(())
}

/// Every boundary of a field (the active one and older ones).
#[utoipa::path(get, path = "/services/fields/api/users/{id}/fields/{field}/boundaries", tag = "fields", params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("field" = uuid::Uuid, Path, description = "Field id")),
    responses((status = 200, description = "Boundaries", body = Vec<schemas::Boundary>)))]
async fn boundaries(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, field)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let f = find_field(&state, &owner, &user, &field).await?;
    let all = state.store.boundaries_of(&f.id).await?;
    Ok(Json(Value::Array(all.iter().map(boundary_json).collect())))
}

/// One boundary of a field.
#[utoipa::path(get, path = "/services/fields/api/users/{id}/fields/{field}/boundaries/{boundary}", tag = "fields",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("field" = uuid::Uuid, Path, description = "Field id"), ("boundary" = uuid::Uuid, Path, description = "Boundary id")),
    responses((status = 200, description = "The boundary", body = schemas::Boundary)))]
async fn one_boundary(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, field, boundary)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let f = find_field(&state, &owner, &user, &field).await?;
    let all = state.store.boundaries_of(&f.id).await?;
    all.iter()
        .find(|b| b.id == boundary)
        .map(|b| Json(boundary_json(b)))
        .ok_or(ApiError::NotFound("boundary"))
}

/// The field's active boundary.
#[utoipa::path(get, path = "/services/fields/api/users/{id}/fields/{field}/boundary", tag = "fields", params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("field" = uuid::Uuid, Path, description = "Field id")),
    responses((status = 200, description = "The active boundary", body = schemas::Boundary)))]
async fn active_boundary(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, field)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let f = find_field(&state, &owner, &user, &field).await?;
    let all = state.store.boundaries_of(&f.id).await?;
    all.iter()
        .find(|b| b.status == "ACTIVE")
        .map(|b| Json(boundary_json(b)))
        .ok_or(ApiError::NotFound("active boundary"))
}

/// The API owner's farms.
#[utoipa::path(get, path = "/services/fields/api/farms", tag = "fields",
    params(PageQuery, ("leafUserId" = Option<uuid::Uuid>, Query, description = "One user's"), ("growerId" = Option<i64>, Query)),
    responses((status = 200, description = "Farms", body = Vec<schemas::Farm>)))]
async fn farms(
    State(state): State<AppState>,
    owner: Owner,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let paging = Paging::from_params(&params)?;
    let user = params
        .get("leafUserId")
        .map(|u| parse_id(u, "Leaf user"))
        .transpose()?;
    let grower = params
        .get("growerId")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad("growerId", "must be an integer"))
        })
        .transpose()?;
    let all = state.store.list_farms(&owner.id, user.as_deref()).await?;
    let filtered: Vec<Value> = all
        .iter()
        .filter(|f| grower.is_none() || farm_grower_id(f) == grower)
        .map(farm_json)
        .collect();
    page_of(paging, filtered, &format!("{BASE}/farms"))
}

fn farm_grower_id(f: &crate::store::FarmRecord) -> Option<i64> {
    f.provider_grower_id
        .as_deref()
        .map(|g| crate::store::stable_int_id_for_grower(&f.leaf_user_id, g))
}

fn farm_json(f: &crate::store::FarmRecord) -> Value {
    json!({"id": f.id, "name": f.name, "providerId": JOHN_DEERE_PROVIDER_ID, "providerName": "JohnDeere",
           "providerFarmId": f.provider_farm_id, "providerFarmName": f.name, "leafUserId": f.leaf_user_id,
           "growerId": farm_grower_id(f), "organizationId": f.organization_id,
           "createdTime": f.created_at, "updatedTime": f.updated_at})
}

fn grower_json(g: &crate::store::GrowerRecord) -> Value {
    json!({"id": g.id, "name": g.name, "leafUserId": g.leaf_user_id, "providerName": "JohnDeere",
           "providerId": JOHN_DEERE_PROVIDER_ID, "providerGrowerId": g.provider_grower_id,
           "organizationId": g.organization_id, "createdTime": g.created_at, "updatedTime": g.updated_at})
}

/// An integer id from the path (Leaf's farm and grower ids); anything else is a 404.
fn int_id(raw: &str, what: &'static str) -> ApiResult<i64> {
    raw.parse().map_err(|_| ApiError::NotFound(what))
}

/// Leaf's `GET /users/{leafUserId}/farms/{id}`.
/// One farm of a user.
#[utoipa::path(get, path = "/services/fields/api/users/{user}/farms/{id}", tag = "fields",
    params(("user" = uuid::Uuid, Path, description = "Leaf user id"), ("id" = i64, Path, description = "Farm id")),
    responses((status = 200, description = "The farm", body = schemas::Farm)))]
async fn farm(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user = parse_id(&user, "Leaf user")?;
    let id = int_id(&id, "farm")?;
    let farms = state.store.list_farms(&owner.id, Some(&user)).await?;
    farms
        .iter()
        .find(|f| f.id == id)
        .map(|f| Json(farm_json(f)))
        .ok_or(ApiError::NotFound("farm"))
}

/// Leaf's `GET /growers/{id}`.
#[utoipa::path(get, path = "/services/fields/api/growers/{id}", tag = "fields",
    params(("id" = i64, Path, description = "Grower id")),
    responses((status = 200, description = "The grower", body = schemas::Grower)))]
async fn grower(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = int_id(&id, "grower")?;
    let growers = state.store.list_growers(&owner.id, None).await?;
    growers
        .iter()
        .find(|g| g.id == id)
        .map(|g| Json(grower_json(g)))
        .ok_or(ApiError::NotFound("grower"))
}

/// The API owner's growers (John Deere organizations' clients).
#[utoipa::path(get, path = "/services/fields/api/growers", tag = "fields", params(PageQuery, ("leafUserId" = Option<uuid::Uuid>, Query, description = "One user's")),
    responses((status = 200, description = "Growers", body = Vec<schemas::Grower>)))]
async fn growers(
    State(state): State<AppState>,
    owner: Owner,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let paging = Paging::from_params(&params)?;
    let user = params
        .get("leafUserId")
        .map(|u| parse_id(u, "Leaf user"))
        .transpose()?;
    let all = state.store.list_growers(&owner.id, user.as_deref()).await?;
    let items: Vec<Value> = all.iter().map(grower_json).collect();
    page_of(paging, items, &format!("{BASE}/growers"))
}

fn page_of(paging: Paging, items: Vec<Value>, path: &str) -> ApiResult<(HeaderMap, Json<Value>)> {
    let total = items.len() as i64;
    let page: Vec<Value> = items
        .into_iter()
        .skip(paging.offset() as usize)
        .take(paging.size as usize)
        .collect();
    Ok((paging.headers(total, path), Json(Value::Array(page))))
}

fn status_json(s: Option<SyncStatus>) -> Value {
    match s {
        None => {
            json!({"state": "IDLE", "startedTime": null, "finishedTime": null, "counts": {}, "lastError": null})
        }
        Some(s) => json!({
            "state": s.state, "startedTime": s.started_at, "finishedTime": s.finished_at,
            "counts": serde_json::from_str::<Value>(&s.counts).unwrap_or(json!({})), "lastError": s.last_error,
        }),
    }
}

/// The user's sync: state, last run's counts and, while it runs, each organization's progress.
#[utoipa::path(get, path = "/services/fields/api/users/{id}/fields/sync", tag = "fields", params(("id" = uuid::Uuid, Path, description = "Leaf user id")),
    responses((status = 200, description = "The sync status", body = schemas::SyncState)))]
async fn sync_status(
    State(state): State<AppState>,
    owner: Owner,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = user_of_owner(&state, &owner, &user).await?;
    let mut status = status_json(state.store.sync_status(&user).await?);
    let parts = match state.store.credential_of_user(&owner.id, &user).await? {
        Some(cred) => state.store.sync_parts(&cred.id).await?,
        None => Vec::new(),
    };
    status["organizations"] = organizations_progress(&parts);
    Ok(Json(status))
}

/// The current (or last) run per organization: its parts (`fields`, `files`) done of total,
/// and each part's state, progress (items and requests so far, requests per second; updated
/// every second while it runs), counts once finished, and error.
fn organizations_progress(parts: &[crate::store::SyncPart]) -> Value {
    use std::collections::BTreeMap;
    let mut by_org: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for p in parts {
        let Some((org, resource)) = p.part.rsplit_once('/') else {
            continue;
        };
        by_org.entry(org).or_default().push(json!({
            "resource": resource, "state": p.state,
            "progress": p.progress.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()),
            "counts": serde_json::from_str::<Value>(&p.counts).unwrap_or(json!({})),
            "error": p.error,
        }));
    }
    Value::Array(
        by_org
            .into_iter()
            .map(|(org, parts)| {
                let done = parts.iter().filter(|p| p["state"] == "DONE").count();
                json!({"organizationId": org, "partsDone": done, "partsTotal": parts.len(), "parts": parts})
            })
            .collect(),
    )
}

/// Queues a sync now; answers 202 with the status to poll at `GET …/fields/sync`.
#[utoipa::path(post, path = "/services/fields/api/users/{id}/fields/sync", tag = "fields", params(("id" = uuid::Uuid, Path, description = "Leaf user id")),
    responses((status = 202, description = "Queued", body = schemas::SyncState)))]
async fn sync_now(
    State(state): State<AppState>,
    owner: Owner,
    Path(user): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = user_of_owner(&state, &owner, &user).await?;
    let cred = state
        .store
        .credential_of_user(&owner.id, &user)
        .await?
        .ok_or(ApiError::NotFound("John Deere credentials"))?;
    state.store.wake_job(&cred.id, "sync").await?;
    let mut status = state.store.sync_status(&user).await?.unwrap_or(SyncStatus {
        state: "IDLE".into(),
        started_at: None,
        finished_at: None,
        counts: "{}".into(),
        last_error: None,
    });
    if status.state != "RUNNING" {
        status.state = "QUEUED".into();
        state.store.put_sync_status(&user, &status).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(status_json(Some(status)))))
}

/// Leaf's create-a-field body: a GeoJSON MultiPolygon, and optionally the id and name.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewField {
    /// A UUID (furrow's ids are UUIDs); a new one when absent.
    id: Option<String>,
    name: Option<String>,
    #[schema(value_type = Object)]
    geometry: Value,
}

/// A GeoJSON MultiPolygon as furrow stores it (the text the sync writes for John Deere's
/// boundaries, so that a field written back reads back as the same shape), and its area.
fn multipolygon(geometry: &Value) -> ApiResult<(String, f64)> {
    if geometry["type"] != "MultiPolygon" {
        return Err(ApiError::bad("geometry.type", "must be \"MultiPolygon\""));
    }
    let polygons: machine_data::geo::MultiPolygon =
        serde_json::from_value(geometry["coordinates"].clone()).map_err(|_| {
            ApiError::bad(
                "geometry.coordinates",
                "must be polygons of rings of [longitude, latitude] positions",
            )
        })?;
    if polygons.is_empty() || polygons.iter().any(Vec::is_empty) {
        return Err(ApiError::bad(
            "geometry.coordinates",
            "needs at least one polygon with a ring",
        ));
    }
    for ring in polygons.iter().flatten() {
        if ring.len() < 4 || ring.first() != ring.last() {
            return Err(ApiError::bad(
                "geometry.coordinates",
                "every ring needs at least four positions, the last equal to the first",
            ));
        }
        if ring
            .iter()
            .any(|[lon, lat]| !(-180.0..=180.0).contains(lon) || !(-90.0..=90.0).contains(lat))
        {
            return Err(ApiError::bad(
                "geometry.coordinates",
                "positions are [longitude, latitude] in degrees",
            ));
        }
    }
    let area = machine_data::geo::area_ha(&polygons);
    if area <= 0.0 {
        return Err(ApiError::bad(
            "geometry.coordinates",
            "the field has no area",
        ));
    }
    let text = json!({"type": "MultiPolygon", "coordinates": polygons}).to_string();
    Ok((text, area))
}

/// Leaf's "create a field": a field of the user's own (`providerName` `Leaf`) with its boundary,
/// and a `fieldCreated` alert (`source` `USER`). It can then be sent to John Deere.
#[utoipa::path(post, path = "/services/fields/api/users/{id}/fields", tag = "fields",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id")), request_body = NewField,
    responses((status = 201, description = "Created; `Location` names it", body = schemas::Field),
        (status = 409, description = "A field with this id exists")))]
async fn create_field(
    State(state): State<AppState>,
    owner: Owner,
    Path(user): Path<String>,
    ApiJson(body): ApiJson<NewField>,
) -> ApiResult<axum::response::Response> {
    let user = user_of_owner(&state, &owner, &user).await?;
    let (geometry, area) = multipolygon(&body.geometry)?;
    let id = match body.id.as_deref() {
        Some(id) => uuid::Uuid::parse_str(id)
            .map_err(|_| ApiError::bad("id", "furrow's field ids are UUIDs"))?
            .to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let name = body.name.unwrap_or_else(|| format!("Field {}", &id[..8]));
    if name.trim().is_empty() {
        return Err(ApiError::bad("name", "must not be blank"));
    }
    let payload = json!({"source": "USER", "leafUserId": user, "fieldId": id});
    let alerts = match payload {
        Value::Object(map) => {
            crate::sync::alerts::deliveries(&state, &owner.id, "fieldCreated", map).await?
        }
        _ => Vec::new(),
    };
    if !state
        .store
        .create_user_field(&user, &id, name.trim(), &geometry, area, &alerts)
        .await?
    {
        return Err(ApiError::Conflict(format!("a field with id {id} exists")));
    }
    let field = find_field(&state, &owner, &user, &id).await?;
    Ok(super::created(
        format!("{BASE}/users/{user}/fields/{id}"),
        Json(field_json(&state, &field).await?),
    ))
}

/// Leaf's "upload a field to provider": creates the user's own field, with its boundary, in the
/// grower's John Deere organization (`organizationId`, required). A field that came from John
/// Deere is never sent back (400); one already sent is a 409. Done when it answers: the status
/// is `SUCCESS` (Leaf answers `PENDING` and works in the background). The next sync reads the
/// field back into the same furrow field, not a copy.
#[utoipa::path(post, path = "/services/fields/api/users/{id}/fields/{field}/integration/{provider}", tag = "fields",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("field" = uuid::Uuid, Path, description = "Field id"),
        ("provider" = String, Path, description = "`JohnDeere` (furrow's only provider)"),
        ("organizationId" = String, Query, description = "The John Deere organization to create it in")),
    responses((status = 200, description = "`[{fieldId: {JohnDeere: {id, status, updatedAt}}}]`", body = Object),
        (status = 400, description = "Another provider, no or an unknown organization, a field from John Deere, or John Deere refused it"),
        (status = 409, description = "Already in John Deere"), (status = 502, description = "John Deere failed")))]
async fn send_to_provider(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, field, provider)): Path<(String, String, String)>,
    params: Params,
) -> ApiResult<Json<Value>> {
    if provider != JOHN_DEERE {
        return Err(ApiError::bad(
            "provider",
            "furrow sends fields to JohnDeere only",
        ));
    }
    let org = params
        .get("organizationId")
        .filter(|o| !o.is_empty())
        .ok_or_else(|| ApiError::bad("organizationId", "required for JohnDeere"))?;
    let field = find_field(&state, &owner, &user, &field).await?;
    let written = write_field(&state, &owner.id, &field, org)
        .await
        .map_err(|e| match e {
            WriteBackError::FromJohnDeere
            | WriteBackError::UnknownOrganization(_)
            | WriteBackError::NoCredentials
            | WriteBackError::NoBoundary
            | WriteBackError::Refused(_) => ApiError::bad("field", e.to_string()),
            WriteBackError::AlreadyWritten { .. } => ApiError::Conflict(e.to_string()),
            WriteBackError::Deere(_) => ApiError::Upstream(e.to_string()),
            WriteBackError::Store(e) => e.into(),
            WriteBackError::Crypto(e) => ApiError::internal(e),
        })?;
    Ok(Json(json!([{ field.id.clone(): {
        JOHN_DEERE: {"id": written.provider_field_id, "organizationId": written.organization_id,
                     "status": "SUCCESS", "updatedAt": crate::store::leaf_time_now()}
    }}])))
}
