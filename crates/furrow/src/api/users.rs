//! `/services/usermanagement/api/users`: Leaf users of the calling API owner.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::credentials::credential_json;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, ApiJson, PageQuery, Paging, Params};
use super::schemas;
use crate::app::AppState;
use crate::store::{UserFilter, UserRecord, UserWrite};
use crate::sync::webhooks::Unsubscribe;

const BASE: &str = "/services/usermanagement/api/users";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create, replace))
        .routes(routes!(fetch, patch, remove))
}

/// A reference to an existing credential (`{"id": "…"}`), as Leaf accepts on create and PUT.
/// The whole credential object a GET returned is accepted too (only its `id` counts).
#[derive(Deserialize, utoipa::ToSchema)]
struct CredentialRef {
    id: String,
}

/// Body of POST, PUT and PATCH: Leaf's user resource. Other providers' credential references
/// and the read-only fields a GET returned are accepted and ignored (furrow connects John Deere
/// only); anything else is a 400.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserBody {
    id: Option<String>,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    external_id: Option<String>,
    john_deere_credentials: Option<CredentialRef>,
    #[serde(rename = "climateFieldViewCredentials")]
    #[schema(value_type = Option<Value>)]
    _climate_field_view: Option<IgnoredAny>,
    #[serde(rename = "cnhiCredentials")]
    #[schema(value_type = Option<Value>)]
    _cnhi: Option<IgnoredAny>,
    #[serde(rename = "trimbleCredentials")]
    #[schema(value_type = Option<Value>)]
    _trimble: Option<IgnoredAny>,
    #[serde(rename = "ravenCredentials")]
    #[schema(value_type = Option<Value>)]
    _raven: Option<IgnoredAny>,
    #[serde(rename = "staraCredentials")]
    #[schema(value_type = Option<Value>)]
    _stara: Option<IgnoredAny>,
    #[serde(rename = "agLeaderCredentials")]
    #[schema(value_type = Option<Value>)]
    _ag_leader: Option<IgnoredAny>,
    #[serde(rename = "ravenSlingshotCredentials")]
    #[schema(value_type = Option<Value>)]
    _raven_slingshot: Option<IgnoredAny>,
    #[serde(rename = "lindsayCredentials")]
    #[schema(value_type = Option<Value>)]
    _lindsay: Option<IgnoredAny>,
    #[serde(rename = "valleyCredentials")]
    #[schema(value_type = Option<Value>)]
    _valley: Option<IgnoredAny>,
    #[serde(rename = "senteraCredentials")]
    #[schema(value_type = Option<Value>)]
    _sentera: Option<IgnoredAny>,
    #[serde(rename = "agvanceCredentials")]
    #[schema(value_type = Option<Value>)]
    _agvance: Option<IgnoredAny>,
    #[serde(rename = "panoramaCredentials")]
    #[schema(value_type = Option<Value>)]
    _panorama: Option<IgnoredAny>,
    #[serde(rename = "claasCredentials")]
    #[schema(value_type = Option<Value>)]
    _claas: Option<IgnoredAny>,
    #[serde(rename = "apiOwnerUsername")]
    #[schema(value_type = Option<Value>)]
    _api_owner_username: Option<IgnoredAny>,
    #[serde(rename = "createdTime")]
    #[schema(value_type = Option<Value>)]
    _created_time: Option<IgnoredAny>,
    #[serde(rename = "updatedTime")]
    #[schema(value_type = Option<Value>)]
    _updated_time: Option<IgnoredAny>,
}

fn checked(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(v) if v.len() > 1024 => Err(ApiError::bad(field, "must be at most 1024 characters")),
        Some(v) if field == "email" && !v.is_empty() && !v.contains('@') => {
            Err(ApiError::bad(field, "must be an email address"))
        }
        other => Ok(other),
    }
}

impl UserBody {
    fn write(self) -> ApiResult<(UserWrite, Option<CredentialRef>)> {
        Ok((
            UserWrite {
                name: checked("name", self.name)?,
                email: checked("email", self.email)?,
                phone: checked("phone", self.phone)?,
                address: checked("address", self.address)?,
                external_id: checked("externalId", self.external_id)?,
            },
            self.john_deere_credentials,
        ))
    }
}

/// The owner's user `id`, or 404.
async fn find_user(state: &AppState, owner: &Owner, id: &str) -> ApiResult<UserRecord> {
    state
        .store
        .user(&owner.id, id)
        .await?
        .ok_or(ApiError::NotFound("Leaf user"))
}

async fn user_json(state: &AppState, owner: &Owner, user: &UserRecord) -> ApiResult<Value> {
    let mut value = json!({
        "id": user.id, "name": user.name, "email": user.email, "phone": user.phone,
        "address": user.address, "externalId": user.external_id, "createdTime": user.created_at,
    });
    if let Some(c) = state.store.credential_of_user(&owner.id, &user.id).await? {
        value["johnDeereCredentials"] = credential_json(state, &c)?;
    }
    Ok(value)
}

/// The API owner's users, filtered by `email`, `name` or `externalId`.
#[utoipa::path(get, path = "/services/usermanagement/api/users", tag = "users",
    params(PageQuery,
        ("email" = Option<String>, Query), ("name" = Option<String>, Query),
        ("externalId" = Option<String>, Query),
        ("sort" = Option<String>, Query, description = "name, email or createdTime, with `,asc` or `,desc`", pattern = "^(name|email)(,(asc|desc))?$|^createdTime,(asc|desc)$")),
    responses((status = 200, description = "Users", body = Vec<schemas::User>)))]
async fn list(
    State(state): State<AppState>,
    owner: Owner,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let paging = Paging::from_params(&params)?;
    let sort = match params.get("sort") {
        None => "created_at ASC",
        Some("name,asc") | Some("name") => "name ASC",
        Some("name,desc") => "name DESC",
        Some("email,asc") | Some("email") => "email ASC",
        Some("email,desc") => "email DESC",
        Some("createdTime,asc") => "created_at ASC",
        Some("createdTime,desc") => "created_at DESC",
        Some(_) => {
            return Err(ApiError::bad(
                "sort",
                "must be name, email or createdTime, with ,asc or ,desc",
            ))
        }
    };
    let filter = UserFilter {
        email: params.get("email").map(str::to_string),
        name: params.get("name").map(str::to_string),
        external_id: params.get("externalId").map(str::to_string),
    };
    let (users, total) = state
        .store
        .list_users(&owner.id, &filter, sort, paging.offset(), paging.size)
        .await?;
    let mut body = Vec::with_capacity(users.len());
    for user in &users {
        body.push(user_json(&state, &owner, user).await?);
    }
    Ok((paging.headers(total, BASE), Json(Value::Array(body))))
}

/// A credential reference must name the user's own credential.
async fn check_reference(
    state: &AppState,
    owner: &Owner,
    user_id: Option<&str>,
    reference: &Option<CredentialRef>,
) -> ApiResult<()> {
    let Some(reference) = reference else {
        return Ok(());
    };
    let existing = match user_id {
        Some(user) => state.store.credential_of_user(&owner.id, user).await?,
        None => None,
    };
    if existing.is_some_and(|c| c.id == reference.id) {
        Ok(())
    } else {
        Err(ApiError::bad(
            "johnDeereCredentials.id",
            "does not name this user's John Deere credentials; post credentials to /users/{id}/john-deere-credentials",
        ))
    }
}

/// Create a user. Other providers' credential references are accepted and ignored.
#[utoipa::path(post, path = "/services/usermanagement/api/users", tag = "users",
    request_body = UserBody,
    responses((status = 201, description = "Created; `Location` names it", body = schemas::User)))]
async fn create(
    State(state): State<AppState>,
    owner: Owner,
    ApiJson(body): ApiJson<UserBody>,
) -> ApiResult<impl IntoResponse> {
    if body.id.is_some() {
        return Err(ApiError::bad("id", "is assigned by the server"));
    }
    let (write, reference) = body.write()?;
    check_reference(&state, &owner, None, &reference).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let user = state.store.insert_user(&owner.id, &id, &write).await?;
    Ok(super::created(
        format!("{BASE}/{id}"),
        Json(user_json(&state, &owner, &user).await?),
    ))
}

/// One user.
#[utoipa::path(get, path = "/services/usermanagement/api/users/{id}", tag = "users", params(("id" = uuid::Uuid, Path, description = "Leaf user id")),
    responses((status = 200, description = "The user", body = schemas::User)))]
async fn fetch(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "Leaf user")?;
    let user = find_user(&state, &owner, &id).await?;
    Ok(Json(user_json(&state, &owner, &user).await?))
}

/// PATCH: only the fields present change.
/// Change some of a user's fields.
#[utoipa::path(patch, path = "/services/usermanagement/api/users/{id}", tag = "users", params(("id" = uuid::Uuid, Path, description = "Leaf user id")),
    request_body = UserBody,
    responses((status = 200, description = "The changed user", body = schemas::User)))]
async fn patch(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
    ApiJson(raw): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "Leaf user")?;
    let current = find_user(&state, &owner, &id).await?;
    let Value::Object(changes) = &raw else {
        return Err(ApiError::bad("body", "must be a JSON object"));
    };
    let body: UserBody = serde_json::from_value(raw.clone()).map_err(|e| ApiError::BadRequest {
        field: e.to_string().split('`').nth(1).map(str::to_string),
        detail: e.to_string(),
    })?;
    if body.id.as_deref().is_some_and(|b| b != id) {
        return Err(ApiError::bad("id", "cannot be changed"));
    }
    check_reference(&state, &owner, Some(&id), &body.john_deere_credentials).await?;
    let (write, _) = body.write()?;
    let pick = |key: &str, new: Option<String>, old: Option<String>| {
        if changes.contains_key(key) {
            new
        } else {
            old
        }
    };
    let merged = UserWrite {
        name: pick("name", write.name, current.name),
        email: pick("email", write.email, current.email),
        phone: pick("phone", write.phone, current.phone),
        address: pick("address", write.address, current.address),
        external_id: pick("externalId", write.external_id, current.external_id),
    };
    state.store.update_user(&owner.id, &id, &merged).await?;
    let user = find_user(&state, &owner, &id).await?;
    Ok(Json(user_json(&state, &owner, &user).await?))
}

/// PUT /users with the id in the body: replaces the user. Leaving out `johnDeereCredentials`
/// drops the user's credentials (Leaf's documented semantics).
/// Replace a user (Leaf's full user body, `id` naming it).
#[utoipa::path(put, path = "/services/usermanagement/api/users", tag = "users",
    request_body = UserBody,
    responses((status = 200, description = "The replaced user", body = schemas::User)))]
async fn replace(
    State(state): State<AppState>,
    owner: Owner,
    ApiJson(body): ApiJson<UserBody>,
) -> ApiResult<Json<Value>> {
    let id = body
        .id
        .as_deref()
        .ok_or_else(|| ApiError::bad("id", "is required for PUT /users"))
        .and_then(|raw| parse_id(raw, "Leaf user"))?;
    find_user(&state, &owner, &id).await?;
    check_reference(&state, &owner, Some(&id), &body.john_deere_credentials).await?;
    let (write, reference) = body.write()?;
    state.store.update_user(&owner.id, &id, &write).await?;
    if reference.is_none() {
        let unsubscribe = Unsubscribe::prepare(&state, &id).await;
        if let Some(subscriptions) = state.store.delete_credential(&owner.id, &id).await? {
            if let Some(u) = unsubscribe {
                u.spawn(subscriptions);
            }
        }
    }
    let user = find_user(&state, &owner, &id).await?;
    Ok(Json(user_json(&state, &owner, &user).await?))
}

/// Delete a user and all its data (credentials, fields, operations, files).
#[utoipa::path(delete, path = "/services/usermanagement/api/users/{id}", tag = "users", params(("id" = uuid::Uuid, Path, description = "Leaf user id")),
    responses((status = 204, description = "Deleted")))]
async fn remove(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "Leaf user")?;
    let unsubscribe = Unsubscribe::prepare(&state, &id).await;
    if let Some(subscriptions) = state.store.delete_user(&owner.id, &id).await? {
        if let Some(u) = unsubscribe {
            u.spawn(subscriptions);
        }
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("Leaf user"))
    }
}
