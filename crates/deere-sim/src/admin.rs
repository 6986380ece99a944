//! `/__admin/...`: the test and demo API. Not part of John Deere's surface; never rate limited,
//! delayed, faulted or logged.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chrono::{Datelike, Duration as ChronoDuration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::platform::set_connected;
use crate::webhooks::{emit, Change};
use crate::world::{FieldLoc, OrgSpec, OPERATION_TYPES};
use crate::{App, FaultSpec, Settings, Sim};

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route("/__admin/world", get(world))
        .route("/__admin/settings", get(get_settings).patch(patch_settings))
        .route("/__admin/apps", post(create_app))
        .route(
            "/__admin/apps/{client_key}",
            axum::routing::patch(patch_app),
        )
        .route("/__admin/growers", post(create_grower))
        .route("/__admin/growers/{user}/scopes", put(cap_scopes))
        .route("/__admin/tokens", post(tokens))
        .route("/__admin/grants/revoke", post(revoke))
        .route("/__admin/orgs/{org}/connections/{client_key}", put(connect))
        .route("/__admin/orgs/{org}/fields", post(add_field))
        .route("/__admin/orgs/{org}/files", post(add_file))
        .route(
            "/__admin/orgs/{org}/equipment/{id}",
            axum::routing::patch(edit_equipment),
        )
        .route(
            "/__admin/fields/{id}",
            axum::routing::patch(edit_field).delete(delete_field),
        )
        .route("/__admin/fields/{id}/boundary", put(replace_boundary))
        .route("/__admin/fields/{id}/operations", post(add_operation))
        .route(
            "/__admin/operations/{id}",
            axum::routing::patch(edit_operation).delete(delete_operation),
        )
        .route("/__admin/operations/{id}/export", get(export_truth))
        .route("/__admin/files/{id}", delete(delete_file))
        .route(
            "/__admin/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/__admin/faults/{id}", delete(remove_fault))
        .route(
            "/__admin/subscriptions/{id}",
            axum::routing::patch(patch_subscription),
        )
        .route("/__admin/requests", get(requests).delete(clear_requests))
        .route("/__admin/deliveries", get(deliveries))
}

type AdminResult = Result<Response, Response>;

fn bad(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": message.into()})),
    )
        .into_response()
}

fn missing(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("{what} not found")})),
    )
        .into_response()
}

fn ok(value: Value) -> AdminResult {
    Ok(Json(value).into_response())
}

async fn world(State(sim): State<Sim>) -> Json<Value> {
    let state = sim.state();
    let w = &state.world;
    let growers: Vec<Value> = w
        .users
        .values()
        .map(|u| {
            let orgs: Vec<Value> = u
                .org_ids
                .iter()
                .filter_map(|id| w.orgs.get(id))
                .map(|o| {
                    let live_fields: Vec<_> = o.fields.iter().filter(|f| f.stamp.is_live()).collect();
                    json!({
                        "id": o.id, "name": o.name,
                        "connectedApps": o.connected_apps.iter().collect::<Vec<_>>(),
                        "clients": o.clients.len(), "farms": o.farms.len(),
                        "fields": live_fields.len(),
                        "boundaries": live_fields.iter().map(|f| f.boundaries.iter().filter(|b| b.stamp.is_live()).count()).sum::<usize>(),
                        "operations": live_fields.iter().map(|f| f.operations.iter().filter(|x| x.stamp.is_live()).count()).sum::<usize>(),
                        "files": o.files.iter().filter(|f| f.stamp.is_live()).count(),
                        "fieldIds": live_fields.iter().map(|f| f.id.clone()).collect::<Vec<_>>(),
                        "equipment": o.equipment.iter().filter(|e| e.stamp.is_live()).map(|e| json!({
                            "id": e.id, "type": e.kind, "name": e.name, "serialNumber": e.serial_number,
                            "model": e.model, "category": e.category, "attachedTo": e.attached_to,
                        })).collect::<Vec<_>>(),
                        "operators": o.operators.iter().filter(|x| x.stamp.is_live()).map(|x| json!({
                            "id": x.id, "name": x.name, "archived": x.archived,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({"userName": u.user_name, "scopeCap": u.scope_cap, "organizations": orgs})
        })
        .collect();
    Json(json!({"seq": w.seq, "growers": growers,
                "platformUrl": sim.platform_url(), "issuer": sim.issuer_url()}))
}

async fn get_settings(State(sim): State<Sim>) -> Json<Settings> {
    Json(sim.state().settings.clone())
}

/// Merges the given keys into the settings; unknown keys or bad values are a 400.
async fn patch_settings(State(sim): State<Sim>, Json(patch): Json<Value>) -> AdminResult {
    let mut state = sim.state();
    let mut current = serde_json::to_value(&state.settings).map_err(|e| bad(e.to_string()))?;
    let Value::Object(changes) = patch else {
        return Err(bad("body must be a JSON object"));
    };
    for (key, value) in changes {
        let Some(slot) = current.get_mut(&key) else {
            return Err(bad(format!("unknown setting {key}")));
        };
        *slot = value;
    }
    state.settings = serde_json::from_value(current).map_err(|e| bad(e.to_string()))?;
    ok(serde_json::to_value(&state.settings).unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewApp {
    client_key: String,
    client_secret: String,
    #[serde(default = "yes")]
    webhook_access: bool,
    #[serde(default)]
    redirect_uris: Vec<String>,
}

fn yes() -> bool {
    true
}

async fn create_app(State(sim): State<Sim>, Json(body): Json<NewApp>) -> AdminResult {
    if body.client_key.is_empty() || body.client_secret.is_empty() {
        return Err(bad("clientKey and clientSecret are required"));
    }
    let mut app = App::new(body.client_secret);
    app.webhook_access = body.webhook_access;
    app.redirect_uris = body.redirect_uris;
    sim.state().apps.insert(body.client_key.clone(), app);
    Ok((
        StatusCode::CREATED,
        Json(json!({"clientKey": body.client_key})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppPatch {
    client_secret: Option<String>,
    webhook_access: Option<bool>,
    redirect_uris: Option<Vec<String>>,
}

async fn patch_app(
    State(sim): State<Sim>,
    Path(key): Path<String>,
    Json(body): Json<AppPatch>,
) -> AdminResult {
    let mut state = sim.state();
    let app = state.apps.get_mut(&key).ok_or_else(|| missing("app"))?;
    if let Some(secret) = body.client_secret {
        app.secret = secret;
    }
    if let Some(access) = body.webhook_access {
        app.webhook_access = access;
    }
    if let Some(uris) = body.redirect_uris {
        app.redirect_uris = uris;
    }
    ok(
        json!({"clientKey": key, "webhookAccess": app.webhook_access,
              "redirectUris": app.redirect_uris}),
    )
}

#[derive(Deserialize)]
struct SubscriptionPatch {
    /// `Active`, `Expired` or `Terminated` (John Deere ends subscriptions on its own).
    status: String,
}

/// What John Deere does to a subscription by itself: expire or terminate it (no more deliveries).
async fn patch_subscription(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    Json(body): Json<SubscriptionPatch>,
) -> AdminResult {
    if !["Active", "Expired", "Terminated"].contains(&body.status.as_str()) {
        return Err(bad("status must be Active, Expired or Terminated"));
    }
    let mut state = sim.state();
    let subscription = state
        .subscriptions
        .get_mut(&id)
        .ok_or_else(|| missing("subscription"))?;
    subscription.status = body.status.clone();
    ok(json!({"id": id, "status": body.status}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewGrower {
    user_name: Option<String>,
    #[serde(default)]
    organizations: Vec<OrgSpec>,
}

async fn create_grower(State(sim): State<Sim>, Json(body): Json<NewGrower>) -> AdminResult {
    let mut state = sim.state();
    let user = body
        .user_name
        .unwrap_or_else(|| format!("grower{:03}", state.world.users.len() + 1));
    if state.world.users.contains_key(&user) {
        return Err(bad(format!("user {user} exists")));
    }
    for spec in &body.organizations {
        if let Some(key) = &spec.connected_to {
            if !state.apps.contains_key(key) {
                return Err(bad(format!("unknown client key {key}")));
            }
        }
    }
    let org_ids = state.world.add_user(&user, &body.organizations);
    Ok((
        StatusCode::CREATED,
        Json(json!({"userName": user, "organizationIds": org_ids})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ScopeCap {
    scopes: Option<Vec<String>>,
}

async fn cap_scopes(
    State(sim): State<Sim>,
    Path(user): Path<String>,
    Json(body): Json<ScopeCap>,
) -> AdminResult {
    let mut state = sim.state();
    let u = state
        .world
        .users
        .get_mut(&user)
        .ok_or_else(|| missing("user"))?;
    u.scope_cap = body.scopes;
    ok(json!({"userName": user, "scopeCap": u.scope_cap}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    client_key: Option<String>,
    user_name: String,
    scope: Option<String>,
}

pub const DEFAULT_SCOPE: &str = "ag1 ag2 ag3 eq1 files org1 offline_access";

async fn tokens(State(sim): State<Sim>, Json(body): Json<TokenRequest>) -> AdminResult {
    let client_key = body.client_key.unwrap_or_else(|| default_client(&sim));
    let scope = body.scope.unwrap_or_else(|| DEFAULT_SCOPE.into());
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let issued = sim
        .issue_tokens(&client_key, &body.user_name, &scopes)
        .map_err(bad)?;
    ok(serde_json::to_value(issued).unwrap_or_default())
}

fn default_client(sim: &Sim) -> String {
    let state = sim.state();
    let mut keys: Vec<&String> = state.apps.keys().collect();
    keys.sort();
    keys.first().map(|k| k.to_string()).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeRequest {
    client_key: Option<String>,
    user_name: String,
}

async fn revoke(State(sim): State<Sim>, Json(body): Json<RevokeRequest>) -> AdminResult {
    let client_key = body.client_key.unwrap_or_else(|| default_client(&sim));
    let revoked = sim.state().revoke_user_grants(&client_key, &body.user_name);
    ok(json!({"revokedGrants": revoked}))
}

#[derive(Deserialize)]
struct Connect {
    connected: bool,
}

async fn connect(
    State(sim): State<Sim>,
    Path((org, client_key)): Path<(String, String)>,
    Json(body): Json<Connect>,
) -> AdminResult {
    let mut state = sim.state();
    if !set_connected(&mut state.world, &org, &client_key, body.connected) {
        return Err(missing("organization"));
    }
    ok(json!({"orgId": org, "clientKey": client_key, "connected": body.connected}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NewField {
    name: Option<String>,
    operations: u32,
}

async fn add_field(
    State(sim): State<Sim>,
    Path(org): Path<String>,
    body: Option<Json<NewField>>,
) -> AdminResult {
    let body = body.map(|b| b.0).unwrap_or_default();
    let id = {
        let mut state = sim.state();
        if !state.world.orgs.contains_key(&org) {
            return Err(missing("organization"));
        }
        state.world.new_field_in(&org, body.name, body.operations)
    };
    emit(
        &sim,
        Change {
            event_type: "field",
            org_id: org.clone(),
            target_resource: sim.links().field_uri(&org, &id),
            attributes: vec![("fieldId", id.clone())],
        },
    );
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EquipmentEdit {
    name: String,
}

/// Renames a machine or an implement (a change the next sync reads).
async fn edit_equipment(
    State(sim): State<Sim>,
    Path((org, id)): Path<(String, String)>,
    Json(body): Json<EquipmentEdit>,
) -> AdminResult {
    let mut state = sim.state();
    let seq = state.world.bump();
    let equipment = state
        .world
        .orgs
        .get_mut(&org)
        .and_then(|o| o.equipment.iter_mut().find(|e| e.id == id))
        .ok_or_else(|| missing("equipment"))?;
    equipment.name = body.name;
    equipment.stamp.modified_seq = seq;
    ok(json!({"id": id}))
}

fn locate_field(sim: &Sim, id: &str) -> Result<FieldLoc, Response> {
    let state = sim.state();
    state
        .world
        .find_field(id)
        .filter(|loc| state.world.orgs[&loc.org].fields[loc.field].stamp.is_live())
        .ok_or_else(|| missing("field"))
}

#[derive(Deserialize)]
struct FieldEdit {
    name: Option<String>,
    archived: Option<bool>,
}

async fn edit_field(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    Json(body): Json<FieldEdit>,
) -> AdminResult {
    let loc = locate_field(&sim, &id)?;
    {
        let mut state = sim.state();
        let seq = state.world.bump();
        let field = state.world.field_mut(&loc);
        if let Some(name) = body.name {
            field.name = name;
        }
        if let Some(archived) = body.archived {
            field.archived = archived;
        }
        field.modified = Utc::now();
        field.stamp.modified_seq = seq;
    }
    emit(
        &sim,
        Change {
            event_type: "field",
            org_id: loc.org.clone(),
            target_resource: sim.links().field_uri(&loc.org, &id),
            attributes: vec![("fieldId", id.clone())],
        },
    );
    ok(json!({"id": id}))
}

async fn delete_field(State(sim): State<Sim>, Path(id): Path<String>) -> AdminResult {
    let loc = locate_field(&sim, &id)?;
    {
        let mut state = sim.state();
        let seq = state.world.bump();
        let field = state.world.field_mut(&loc);
        field.stamp.deleted_seq = Some(seq);
        for b in &mut field.boundaries {
            b.stamp.deleted_seq.get_or_insert(seq);
        }
        for o in &mut field.operations {
            o.stamp.deleted_seq.get_or_insert(seq);
        }
    }
    emit(
        &sim,
        Change {
            event_type: "field",
            org_id: loc.org.clone(),
            target_resource: sim.links().field_uri(&loc.org, &id),
            attributes: vec![("fieldId", id.clone())],
        },
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A boundary edit as John Deere shows it: a new active boundary; the old one stays, inactive.
async fn replace_boundary(State(sim): State<Sim>, Path(id): Path<String>) -> AdminResult {
    let loc = locate_field(&sim, &id)?;
    let boundary_id = {
        let mut state = sim.state();
        let seq = state.world.bump();
        let (name, lat, lon) = {
            let field = &state.world.orgs[&loc.org].fields[loc.field];
            let (lon, lat) = field
                .active_boundary()
                .map(|b| b.exterior[0])
                .unwrap_or((-93.77, 41.65));
            (field.name.clone(), lat + 0.0005, lon + 0.0005)
        };
        let now = Utc::now();
        let boundary = state.world.new_boundary(&name, lat, lon, now);
        let field = state.world.field_mut(&loc);
        for b in field.boundaries.iter_mut().filter(|b| b.active) {
            b.active = false;
            b.modified = now;
            b.stamp.modified_seq = seq;
        }
        let mut boundary = boundary;
        boundary.stamp.modified_seq = seq;
        let boundary_id = boundary.id.clone();
        field.boundaries.push(boundary);
        field.modified = now;
        field.stamp.modified_seq = seq;
        boundary_id
    };
    let links = sim.links();
    emit(
        &sim,
        Change {
            event_type: "boundary",
            org_id: loc.org.clone(),
            target_resource: format!(
                "{}/boundaries/{boundary_id}",
                links.field_uri(&loc.org, &id)
            ),
            attributes: vec![("fieldId", id.clone())],
        },
    );
    ok(json!({"id": boundary_id}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NewOperation {
    /// `seeding`, `application`, `harvest`, `tillage` (case kept as given).
    #[serde(rename = "type")]
    operation_type: Option<String>,
    /// Default: the current year.
    crop_season: Option<i32>,
    /// Points in its shapefile export (default: the `exportPoints` setting).
    points: Option<usize>,
    /// John Deere cannot make a shapefile of it: `/fieldOps` answers 406.
    #[serde(default)]
    no_spatial_data: bool,
}

async fn add_operation(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: Option<Json<NewOperation>>,
) -> AdminResult {
    let body = body.map(|b| b.0).unwrap_or_default();
    let kind = body.operation_type.unwrap_or_else(|| "harvest".into());
    if !OPERATION_TYPES.contains(&kind.to_ascii_lowercase().as_str()) {
        return Err(bad(format!("type must be one of {OPERATION_TYPES:?}")));
    }
    let loc = locate_field(&sim, &id)?;
    let (op_id, season) = {
        let mut state = sim.state();
        let seq = state.world.bump();
        let season = body.crop_season.unwrap_or_else(|| Utc::now().year());
        let mut op = state
            .world
            .new_operation(&kind.to_ascii_lowercase(), season);
        op.operation_type = kind.clone();
        state.world.orgs[&loc.org].assign_crew(&mut op);
        op.export_points = body.points;
        op.spatial = !body.no_spatial_data;
        op.modified = Utc::now();
        op.stamp.modified_seq = seq;
        let op_id = op.id.clone();
        let season = op.crop_season.clone();
        state.world.field_mut(&loc).operations.push(op);
        (op_id, season)
    };
    announce_operation(&sim, &loc.org, &id, &op_id, &kind, &season);
    Ok((StatusCode::CREATED, Json(json!({"id": op_id}))).into_response())
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    /// `ENGLISH` (default) or `METRIC`.
    uom: Option<String>,
    #[serde(rename = "shapeType")]
    shape_type: Option<String>,
}

/// What the operation's export holds (every point's coordinates, the defects planted, totals
/// in SI units), made and cached as `/fieldOps` would.
async fn export_truth(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> AdminResult {
    let english = q.uom.as_deref() != Some("METRIC");
    let polygons = q.shape_type.as_deref() == Some("Polygon");
    let request =
        crate::export::request(&sim.state(), &id, english, polygons).map_err(|reason| {
            (StatusCode::NOT_ACCEPTABLE, Json(json!({"error": reason}))).into_response()
        })?;
    let ready = crate::export::make(&sim, request).await.map_err(bad)?;
    Ok(Json(&ready.truth).into_response())
}

fn announce_operation(sim: &Sim, org: &str, field_id: &str, op_id: &str, kind: &str, season: &str) {
    emit(
        sim,
        Change {
            event_type: "fieldOperation",
            org_id: org.to_string(),
            target_resource: sim.links().operation_uri(op_id),
            attributes: vec![
                ("fieldId", field_id.to_string()),
                ("fieldOperationType", kind.to_ascii_lowercase()),
                ("cropSeason", season.to_string()),
            ],
        },
    );
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationEdit {
    crop_name: Option<String>,
    /// Extends the operation's end by this many minutes (more work recorded).
    extend_minutes: Option<i64>,
}

async fn edit_operation(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    Json(body): Json<OperationEdit>,
) -> AdminResult {
    let (field_id, org, kind, season) = {
        let mut state = sim.state();
        let (loc, index) = state
            .world
            .find_operation(&id)
            .ok_or_else(|| missing("operation"))?;
        let seq = state.world.bump();
        let field = state.world.field_mut(&loc);
        let field_id = field.id.clone();
        let op = &mut field.operations[index];
        if !op.stamp.is_live() {
            return Err(missing("operation"));
        }
        if let Some(crop) = body.crop_name {
            op.crop_name = Some(crop);
        }
        if let Some(minutes) = body.extend_minutes {
            op.end += ChronoDuration::minutes(minutes);
        }
        op.modified = Utc::now();
        op.stamp.modified_seq = seq;
        (field_id, loc.org, op.kind(), op.crop_season.clone())
    };
    announce_operation(&sim, &org, &field_id, &id, &kind, &season);
    ok(json!({"id": id}))
}

async fn delete_operation(State(sim): State<Sim>, Path(id): Path<String>) -> AdminResult {
    let (field_id, org, kind, season) = {
        let mut state = sim.state();
        let (loc, index) = state
            .world
            .find_operation(&id)
            .ok_or_else(|| missing("operation"))?;
        let seq = state.world.bump();
        let field = state.world.field_mut(&loc);
        let field_id = field.id.clone();
        let op = &mut field.operations[index];
        op.stamp.deleted_seq.get_or_insert(seq);
        (field_id, loc.org, op.kind(), op.crop_season.clone())
    };
    announce_operation(&sim, &org, &field_id, &id, &kind, &season);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NewFile {
    name: Option<String>,
    size: Option<u32>,
}

async fn add_file(
    State(sim): State<Sim>,
    Path(org): Path<String>,
    body: Option<Json<NewFile>>,
) -> AdminResult {
    let body = body.map(|b| b.0).unwrap_or_default();
    let id = {
        let mut state = sim.state();
        if !state.world.orgs.contains_key(&org) {
            return Err(missing("organization"));
        }
        let seq = state.world.bump();
        let mut file = state.world.new_file(body.size.unwrap_or(4096), body.name);
        file.stamp.modified_seq = seq;
        let id = file.id.clone();
        state
            .world
            .orgs
            .get_mut(&org)
            .expect("checked")
            .files
            .push(file);
        id
    };
    emit(
        &sim,
        Change {
            event_type: "file",
            org_id: org,
            target_resource: sim.links().file_uri(&id),
            attributes: vec![],
        },
    );
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

async fn delete_file(State(sim): State<Sim>, Path(id): Path<String>) -> AdminResult {
    let org = {
        let mut state = sim.state();
        let (org, index) = state.world.find_file(&id).ok_or_else(|| missing("file"))?;
        let seq = state.world.bump();
        let file = &mut state.world.orgs.get_mut(&org).expect("found").files[index];
        file.stamp.deleted_seq.get_or_insert(seq);
        org
    };
    emit(
        &sim,
        Change {
            event_type: "file",
            org_id: org,
            target_resource: sim.links().file_uri(&id),
            attributes: vec![],
        },
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_faults(State(sim): State<Sim>) -> Json<Value> {
    Json(json!(sim.state().faults))
}

async fn add_fault(State(sim): State<Sim>, Json(spec): Json<FaultSpec>) -> AdminResult {
    let id = sim.state().add_fault(spec);
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

async fn clear_faults(State(sim): State<Sim>) -> StatusCode {
    sim.state().faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(sim): State<Sim>, Path(id): Path<u64>) -> StatusCode {
    let mut state = sim.state();
    let before = state.faults.len();
    state.faults.retain(|f| f.id != id);
    if state.faults.len() < before {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[derive(Deserialize)]
struct Since {
    since: Option<u64>,
}

async fn requests(State(sim): State<Sim>, Query(q): Query<Since>) -> Json<Value> {
    let since = q.since.unwrap_or(0);
    Json(json!(sim
        .state()
        .log
        .iter()
        .filter(|e| e.id > since)
        .collect::<Vec<_>>()))
}

async fn clear_requests(State(sim): State<Sim>) -> StatusCode {
    sim.state().log.clear();
    StatusCode::NO_CONTENT
}

async fn deliveries(State(sim): State<Sim>) -> Json<Value> {
    Json(json!(sim.state().deliveries))
}
