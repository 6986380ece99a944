//! The Configurations service: `/services/config/api/configs` (owner level) and
//! `/configs/{leafUserId}`, with Leaf's inheritance (defaults < owner < user).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, ApiJson};
use super::schemas;
use crate::app::AppState;
use crate::domain::config::{effective, validate_patch};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_owner, patch_owner))
        .routes(routes!(get_user, create_user, patch_user, delete_user))
}

async fn layer(
    state: &AppState,
    owner: &Owner,
    user: &str,
) -> ApiResult<Option<Map<String, Value>>> {
    let stored = state.store.config(&owner.id, user).await?;
    stored
        .map(|text| match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(ApiError::internal(
                "stored configuration is not a JSON object",
            )),
        })
        .transpose()
}

async fn render(state: &AppState, owner: &Owner, user: Option<&str>) -> ApiResult<Json<Value>> {
    let owner_layer = layer(state, owner, "").await?;
    let user_layer = match user {
        Some(u) => layer(state, owner, u).await?,
        None => None,
    };
    let mut body = effective(owner_layer.as_ref(), user_layer.as_ref());
    let email = state
        .store
        .owner_email(&owner.id)
        .await?
        .unwrap_or_default();
    body.insert("apiOwnerUsername".into(), Value::String(email));
    body.insert(
        "leafUserId".into(),
        Value::String(user.unwrap_or("").to_string()),
    );
    Ok(Json(Value::Object(body)))
}

async fn merge_into(state: &AppState, owner: &Owner, user: &str, patch: &Value) -> ApiResult<()> {
    let changes = validate_patch(patch).map_err(|(field, reason)| ApiError::bad(&field, reason))?;
    let mut current = layer(state, owner, user).await?.unwrap_or_default();
    for (k, v) in changes {
        current.insert(k.clone(), v.clone());
    }
    state
        .store
        .put_config(&owner.id, user, &Value::Object(current).to_string())
        .await?;
    Ok(())
}

async fn user_id(state: &AppState, owner: &Owner, raw: &str) -> ApiResult<String> {
    let id = parse_id(raw, "Leaf user")?;
    state
        .store
        .user(&owner.id, &id)
        .await?
        .ok_or(ApiError::NotFound("Leaf user"))?;
    Ok(id)
}

/// The API owner's configuration (Leaf's defaults where not set).
#[utoipa::path(get, path = "/services/config/api/configs", tag = "configurations",
    responses((status = 200, description = "The configuration", body = schemas::Configuration)))]
async fn get_owner(State(state): State<AppState>, owner: Owner) -> ApiResult<Json<Value>> {
    render(&state, &owner, None).await
}

/// Change some of the API owner's configuration.
#[utoipa::path(patch, path = "/services/config/api/configs", tag = "configurations", request_body(content = Object, description = "Leaf configuration keys and values (see Leaf's configurations page); other keys are a 400"),
    responses((status = 200, description = "The configuration now", body = schemas::Configuration)))]
async fn patch_owner(
    State(state): State<AppState>,
    owner: Owner,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    merge_into(&state, &owner, "", &patch).await?;
    render(&state, &owner, None).await
}

/// A user's effective configuration (defaults < API owner < user).
#[utoipa::path(get, path = "/services/config/api/configs/{id}", tag = "configurations", params(("id" = uuid::Uuid, Path, description = "Leaf user id")),
    responses((status = 200, description = "The configuration", body = schemas::Configuration)))]
async fn get_user(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = user_id(&state, &owner, &id).await?;
    render(&state, &owner, Some(&id)).await
}

/// Give a user its own configuration.
#[utoipa::path(post, path = "/services/config/api/configs/{id}", tag = "configurations", params(("id" = uuid::Uuid, Path, description = "Leaf user id")), request_body(content = Object, description = "Leaf configuration keys and values (see Leaf's configurations page); other keys are a 400"),
    responses(
        (status = 201, description = "Created", body = schemas::Configuration),
        (status = 409, description = "The user has one already", body = super::openapi::Problem, content_type = "application/problem+json"),
    ))]
async fn create_user(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    let id = user_id(&state, &owner, &id).await?;
    if state.store.config(&owner.id, &id).await?.is_some() {
        return Err(ApiError::Conflict(
            "this Leaf user has a configuration; PATCH it or DELETE it first".into(),
        ));
    }
    merge_into(&state, &owner, &id, &body).await?;
    Ok(super::created(
        format!("/services/config/api/configs/{id}"),
        render(&state, &owner, Some(&id)).await?,
    ))
}

/// Change some of a user's configuration.
#[utoipa::path(patch, path = "/services/config/api/configs/{id}", tag = "configurations", params(("id" = uuid::Uuid, Path, description = "Leaf user id")), request_body(content = Object, description = "Leaf configuration keys and values (see Leaf's configurations page); other keys are a 400"),
    responses((status = 200, description = "The configuration now", body = schemas::Configuration)))]
async fn patch_user(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let id = user_id(&state, &owner, &id).await?;
    merge_into(&state, &owner, &id, &patch).await?;
    render(&state, &owner, Some(&id)).await
}

/// Remove a user's own configuration (the API owner's applies again).
#[utoipa::path(delete, path = "/services/config/api/configs/{id}", tag = "configurations", params(("id" = uuid::Uuid, Path, description = "Leaf user id")),
    responses((status = 204, description = "Removed")))]
async fn delete_user(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = user_id(&state, &owner, &id).await?;
    if state.store.delete_config(&owner.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("configuration"))
    }
}
