//! `/services/beta/api/users/{leafUserId}/…`: Leaf's assets (beta) — machines, implements and
//! operators synced from John Deere, and machines a user creates.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, ApiJson, PageQuery, Paging, Params};
use super::schemas;
use crate::app::AppState;
use crate::onboarding::JOHN_DEERE;
use crate::store::{AssetKind, AssetRecord, ChangeAlerts};

const BASE: &str = "/services/beta/api/users";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_machines, create_machine))
        .routes(routes!(one_machine, update_machine, delete_machine))
        .routes(routes!(list_implements))
        .routes(routes!(one_implement))
        .routes(routes!(list_operators))
        .routes(routes!(one_operator))
}

/// An asset as Leaf shows it: its own fields, then furrow's common ones.
pub fn asset_json(a: &AssetRecord) -> Value {
    let mut body = serde_json::from_str::<Value>(&a.data).unwrap_or_else(|_| json!({}));
    if let Some(map) = body.as_object_mut() {
        map.insert("id".into(), json!(a.id));
        map.insert("leafUserId".into(), json!(a.leaf_user_id));
        map.insert("name".into(), json!(a.name));
        map.insert("originType".into(), json!(a.origin_type));
        map.insert("createdTime".into(), json!(a.created_at));
        // An operator's is John Deere's last change of it.
        map.entry("updatedTime")
            .or_insert_with(|| json!(a.updated_at));
        if a.kind == AssetKind::Implement.as_str() {
            // furrow keeps the machine an implement is attached to, not shown by Leaf.
            map.remove("providerMachineId");
        }
    }
    body
}

/// The caller's user (another owner's is a 404).
async fn user_of(state: &AppState, owner: &Owner, user: &str) -> ApiResult<String> {
    let user = parse_id(user, "Leaf user")?;
    state
        .store
        .user(&owner.id, &user)
        .await?
        .map(|u| u.id)
        .ok_or(ApiError::NotFound("Leaf user"))
}

/// A page of one kind of asset, filtered by the parameters Leaf documents for it that map to
/// stored columns; time filters are refused rather than ignored.
async fn list(
    state: &AppState,
    owner: &Owner,
    user: &str,
    kind: AssetKind,
    params: &Params,
    path: &str,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let user = user_of(state, owner, user).await?;
    let paging = Paging::from_params(params)?;
    for unsupported in [
        "createdTime",
        "beforeCreatedTime",
        "afterCreatedTime",
        "updatedTime",
    ] {
        if params.get(unsupported).is_some() {
            return Err(ApiError::bad(
                unsupported,
                "furrow does not filter assets by time; filter by name, provider, providerOrganizationId, serialNumber, vin or originType",
            ));
        }
    }
    let origin = match params.get("provider") {
        None => params.get("originType"),
        Some(JOHN_DEERE) => Some("PROVIDER_POOLED"),
        Some("Leaf") => Some("USER_CREATED"),
        // Another provider's assets: none here.
        Some(_) => return Ok((paging.headers(0, path), Json(json!([])))),
    };
    let provider_id = match kind {
        AssetKind::Machine => params.get("providerMachineId"),
        AssetKind::Implement => params.get("providerImplementId"),
        AssetKind::Operator => params.get("providerOperatorId"),
    };
    let filters = [
        ("leaf_user_id", Some(user.as_str())),
        ("name", params.get("name")),
        ("organization_id", params.get("providerOrganizationId")),
        ("origin_type", origin),
        ("serial_number", params.get("serialNumber")),
        ("vin", params.get("vin")),
        ("provider_asset_id", provider_id),
    ];
    let (assets, total) = state
        .store
        .list_assets(&owner.id, kind, &filters, paging.offset(), paging.size)
        .await?;
    let body: Vec<Value> = assets.iter().map(asset_json).collect();
    Ok((paging.headers(total, path), Json(Value::Array(body))))
}

async fn one(
    state: &AppState,
    owner: &Owner,
    user: &str,
    kind: AssetKind,
    id: &str,
    what: &'static str,
) -> ApiResult<AssetRecord> {
    let user = user_of(state, owner, user).await?;
    let id = parse_id(id, what)?;
    state
        .store
        .asset(&owner.id, &user, kind, &id)
        .await?
        .ok_or(ApiError::NotFound(what))
}

/// A user's machines: synced from John Deere (`machinesAutoSync`) and created by the user.
#[utoipa::path(get, path = "/services/beta/api/users/{id}/machines", tag = "assets",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), PageQuery,
        ("name" = Option<String>, Query), ("provider" = Option<String>, Query, description = "`JohnDeere` or `Leaf` (created by the user)"),
        ("providerOrganizationId" = Option<String>, Query), ("serialNumber" = Option<String>, Query),
        ("vin" = Option<String>, Query), ("originType" = Option<String>, Query, description = "`PROVIDER_POOLED` or `USER_CREATED`")),
    responses((status = 200, description = "Machines", body = Vec<schemas::Machine>)))]
async fn list_machines(
    State(state): State<AppState>,
    owner: Owner,
    Path(user): Path<String>,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let path = format!("{BASE}/{user}/machines");
    list(&state, &owner, &user, AssetKind::Machine, &params, &path).await
}

/// One machine.
#[utoipa::path(get, path = "/services/beta/api/users/{id}/machines/{machine}", tag = "assets",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("machine" = uuid::Uuid, Path, description = "Machine id")),
    responses((status = 200, description = "The machine", body = schemas::Machine)))]
async fn one_machine(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let machine = one(&state, &owner, &user, AssetKind::Machine, &id, "machine").await?;
    Ok(Json(asset_json(&machine)))
}

/// A machine the user describes (Leaf's create and update body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MachineBody {
    name: Option<String>,
    serial_number: Option<String>,
    vin: Option<String>,
    model: Option<String>,
    make: Option<String>,
    category: Option<String>,
    model_year: Option<i64>,
}

impl MachineBody {
    /// Leaf's fields of the machine, over `base` (the stored ones, when updating).
    fn data(self, base: Value) -> (Option<String>, Value) {
        let mut data = match base {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                data.insert(key.into(), v);
            }
        };
        set("serialNumber", self.serial_number.map(Value::from));
        set("vin", self.vin.map(Value::from));
        set("model", self.model.map(Value::from));
        set("make", self.make.map(Value::from));
        set("category", self.category.map(Value::from));
        set("modelYear", self.model_year.map(Value::from));
        (self.name, Value::Object(data))
    }
}

/// The `event` alert about a user's machine for each of the owner's webhooks subscribed to it.
async fn machine_alerts(
    state: &AppState,
    owner: &Owner,
    event: &str,
    id: &str,
    user: &str,
) -> ApiResult<crate::store::Deliveries> {
    let payload = json!({"machineId": id, "leafUserId": user});
    let Value::Object(payload) = payload else {
        return Ok(Vec::new());
    };
    Ok(crate::sync::alerts::deliveries(state, &owner.id, event, payload).await?)
}

/// Creates a machine of the user's own (`originType` `USER_CREATED`, `provider` `Leaf`), with
/// a `machineCreated` alert.
#[utoipa::path(post, path = "/services/beta/api/users/{id}/machines", tag = "assets",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id")), request_body = MachineBody,
    responses((status = 201, description = "Created; `Location` names it", body = schemas::Machine)))]
async fn create_machine(
    State(state): State<AppState>,
    owner: Owner,
    Path(user): Path<String>,
    ApiJson(body): ApiJson<MachineBody>,
) -> ApiResult<Response> {
    let user = user_of(&state, &owner, &user).await?;
    let (name, mut data) = body.data(json!({}));
    let name = name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::bad("name", "a machine needs a name"))?;
    let id = uuid::Uuid::new_v4().to_string();
    data["provider"] = json!("Leaf");
    data["providerMachineId"] = json!(id);
    data["providerOrganizationId"] = Value::Null;
    let now = crate::store::leaf_time_now();
    let record = AssetRecord {
        id: id.clone(),
        leaf_user_id: user.clone(),
        kind: AssetKind::Machine.as_str().into(),
        origin_type: "USER_CREATED".into(),
        organization_id: None,
        provider_asset_id: None,
        name,
        data: data.to_string(),
        deleted_on_provider: false,
        created_at: now.clone(),
        updated_at: now,
    };
    let alerts = ChangeAlerts {
        created: machine_alerts(&state, &owner, "machineCreated", &id, &user).await?,
        updated: Vec::new(),
    };
    state.store.upsert_asset(&record, &alerts).await?;
    let stored = one(&state, &owner, &user, AssetKind::Machine, &id, "machine").await?;
    Ok(super::created(
        format!("{BASE}/{user}/machines/{id}"),
        Json(asset_json(&stored)),
    ))
}

/// The user's own machine, for a change (one synced from John Deere is John Deere's: 400).
async fn own_machine(
    state: &AppState,
    owner: &Owner,
    user: &str,
    id: &str,
) -> ApiResult<AssetRecord> {
    let machine = one(state, owner, user, AssetKind::Machine, id, "machine").await?;
    if machine.origin_type != "USER_CREATED" {
        return Err(ApiError::bad(
            "id",
            "only machines created by the user can be changed; this one is synced from John Deere",
        ));
    }
    Ok(machine)
}

/// Updates a machine the user created, with a `machineUpdated` alert when it changed.
#[utoipa::path(patch, path = "/services/beta/api/users/{id}/machines/{machine}", tag = "assets",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("machine" = uuid::Uuid, Path, description = "Machine id")),
    request_body = MachineBody,
    responses((status = 200, description = "The machine", body = schemas::Machine)))]
async fn update_machine(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<MachineBody>,
) -> ApiResult<Json<Value>> {
    let mut machine = own_machine(&state, &owner, &user, &id).await?;
    let base = serde_json::from_str(&machine.data).unwrap_or_else(|_| json!({}));
    let (name, data) = body.data(base);
    if let Some(name) = name {
        if name.trim().is_empty() {
            return Err(ApiError::bad("name", "a machine needs a name"));
        }
        machine.name = name;
    }
    machine.data = data.to_string();
    let alerts = ChangeAlerts {
        created: Vec::new(),
        updated: machine_alerts(
            &state,
            &owner,
            "machineUpdated",
            &machine.id,
            &machine.leaf_user_id,
        )
        .await?,
    };
    state.store.upsert_asset(&machine, &alerts).await?;
    let stored = one(
        &state,
        &owner,
        &machine.leaf_user_id,
        AssetKind::Machine,
        &machine.id,
        "machine",
    )
    .await?;
    Ok(Json(asset_json(&stored)))
}

/// Deletes a machine the user created, with a `machineDeleted` alert.
#[utoipa::path(delete, path = "/services/beta/api/users/{id}/machines/{machine}", tag = "assets",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("machine" = uuid::Uuid, Path, description = "Machine id")),
    responses((status = 204, description = "Deleted")))]
async fn delete_machine(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let machine = own_machine(&state, &owner, &user, &id).await?;
    let alerts = machine_alerts(
        &state,
        &owner,
        "machineDeleted",
        &machine.id,
        &machine.leaf_user_id,
    )
    .await?;
    state.store.delete_user_asset(&machine.id, &alerts).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's implements, synced from John Deere (`implementsAutoSync`).
#[utoipa::path(get, path = "/services/beta/api/users/{id}/implements", tag = "assets",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), PageQuery,
        ("name" = Option<String>, Query), ("provider" = Option<String>, Query),
        ("providerOrganizationId" = Option<String>, Query), ("providerImplementId" = Option<String>, Query)),
    responses((status = 200, description = "Implements", body = Vec<schemas::Implement>)))]
async fn list_implements(
    State(state): State<AppState>,
    owner: Owner,
    Path(user): Path<String>,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let path = format!("{BASE}/{user}/implements");
    list(&state, &owner, &user, AssetKind::Implement, &params, &path).await
}

/// One implement.
#[utoipa::path(get, path = "/services/beta/api/users/{id}/implements/{implement}", tag = "assets",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("implement" = uuid::Uuid, Path, description = "Implement id")),
    responses((status = 200, description = "The implement", body = schemas::Implement)))]
async fn one_implement(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let implement = one(
        &state,
        &owner,
        &user,
        AssetKind::Implement,
        &id,
        "implement",
    )
    .await?;
    Ok(Json(asset_json(&implement)))
}

/// A user's operators, synced from John Deere (`operatorsAutoSync`).
#[utoipa::path(get, path = "/services/beta/api/users/{id}/operators", tag = "assets",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), PageQuery),
    responses((status = 200, description = "Operators", body = Vec<schemas::Operator>)))]
async fn list_operators(
    State(state): State<AppState>,
    owner: Owner,
    Path(user): Path<String>,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let path = format!("{BASE}/{user}/operators");
    list(&state, &owner, &user, AssetKind::Operator, &params, &path).await
}

/// One operator.
#[utoipa::path(get, path = "/services/beta/api/users/{id}/operators/{operator}", tag = "assets",
    params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("operator" = uuid::Uuid, Path, description = "Operator id")),
    responses((status = 200, description = "The operator", body = schemas::Operator)))]
async fn one_operator(
    State(state): State<AppState>,
    owner: Owner,
    Path((user, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let operator = one(&state, &owner, &user, AssetKind::Operator, &id, "operator").await?;
    Ok(Json(asset_json(&operator)))
}
