//! `/services/alerts/api/alerts/webhooks`: the application's webhooks for Leaf alerts.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, ApiJson, PageQuery, Paging, Params};
use super::schemas;
use crate::app::AppState;
use crate::store::WebhookRecord;

const BASE: &str = "/services/alerts/api/alerts/webhooks";

/// Events furrow emits.
pub const EVENTS: [&str; 16] = [
    "credentialsUnauthenticated",
    "credentialsLimitedPermission",
    "fieldCreated",
    "fieldUpdated",
    "fieldBoundaryCreated",
    "fieldBoundaryUpdated",
    "operationCreated",
    "operationUpdated",
    "operationProcessingFinished",
    "providerFileProcessingFinished",
    "providerFileProcessingFailed",
    "machineCreated",
    "machineUpdated",
    "machineDeleted",
    "implementCreated",
    "implementUpdated",
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(failed_calls))
        .routes(routes!(one, remove))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    /// Leaf alert names; each may be registered in one webhook only.
    events: Vec<String>,
    name: String,
    secret: String,
    url: String,
}

fn webhook_json(state: &AppState, w: &WebhookRecord) -> ApiResult<Value> {
    let secret = state
        .keyring
        .decrypt(&w.secret_enc)
        .map_err(ApiError::internal)?;
    Ok(json!({
        "id": w.id, "name": w.name, "url": w.url,
        "events": serde_json::from_str::<Value>(&w.events).unwrap_or(json!([])),
        "secret": if state.settings.mask_secrets { "********".to_string() } else { secret.expose_secret().to_string() },
        "createdTime": w.created_at,
    }))
}

/// http or https, a host, no credentials in the URL, and not into furrow's own network (see
/// [`crate::outbound`]).
async fn check_url(state: &AppState, raw: &str) -> ApiResult<()> {
    let url = url::Url::parse(raw)
        .map_err(|_| ApiError::bad("url", "must be an absolute http or https URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ApiError::bad(
            "url",
            "must be an absolute http or https URL",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::bad(
            "url",
            "must not carry credentials; use the secret to verify deliveries",
        ));
    }
    state
        .outbound
        .check_url(&url)
        .await
        .map_err(|why| ApiError::bad("url", why))
}

/// Register a webhook; it first receives a confirmation message. Its `secret` signs every
/// delivery (`X-Leaf-Signature`).
#[utoipa::path(post, path = "/services/alerts/api/alerts/webhooks", tag = "alerts",
    request_body = NewWebhook,
    responses((status = 201, description = "Registered; `Location` names it", body = schemas::Webhook)))]
async fn create(
    State(state): State<AppState>,
    owner: Owner,
    ApiJson(body): ApiJson<NewWebhook>,
) -> ApiResult<axum::response::Response> {
    check_url(&state, &body.url).await?;
    if body.name.trim().is_empty() {
        return Err(ApiError::bad("name", "is required"));
    }
    if body.secret.len() < 8 {
        return Err(ApiError::bad("secret", "must have at least 8 characters"));
    }
    if body.events.is_empty() {
        return Err(ApiError::bad("events", "must name at least one event"));
    }
    for e in &body.events {
        if !EVENTS.contains(&e.as_str()) {
            return Err(ApiError::bad(
                "events",
                format!("unknown event {e} (furrow emits: {})", EVENTS.join(", ")),
            ));
        }
    }
    let taken: Vec<String> = state
        .store
        .webhooks(&owner.id)
        .await?
        .iter()
        .flat_map(|w| serde_json::from_str::<Vec<String>>(&w.events).unwrap_or_default())
        .collect();
    if let Some(twice) = body.events.iter().find(|e| taken.contains(e)) {
        return Err(ApiError::BadRequest {
            field: Some("events".into()),
            detail: format!(
                "eventRegisteredTwice: {twice} is already registered in another webhook"
            ),
        });
    }
    let record = WebhookRecord {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: owner.id.clone(),
        name: body.name,
        url: body.url,
        secret_enc: state.keyring.encrypt(&body.secret),
        events: serde_json::to_string(&body.events).map_err(ApiError::internal)?,
        created_at: crate::store::leaf_time_now(),
    };
    state.store.insert_webhook(&record).await?;
    // Leaf confirms a registration with a first message.
    let confirmation = crate::sync::alerts::leaf_json(
        &json!({"message": "confirmation of webhook upon registration"}),
    );
    state
        .store
        .enqueue_delivery(&record.id, &confirmation)
        .await?;
    Ok(super::created(
        format!("{BASE}/{}", record.id),
        Json(webhook_json(&state, &record)?),
    ))
}

/// The API owner's webhooks.
#[utoipa::path(get, path = "/services/alerts/api/alerts/webhooks", tag = "alerts",
    responses((status = 200, description = "Webhooks", body = Vec<schemas::Webhook>)))]
async fn list(State(state): State<AppState>, owner: Owner) -> ApiResult<Json<Value>> {
    let all = state.store.webhooks(&owner.id).await?;
    Ok(Json(Value::Array(
        all.iter()
            .map(|w| webhook_json(&state, w))
            .collect::<ApiResult<_>>()?,
    )))
}

async fn find(state: &AppState, owner: &Owner, id: &str) -> ApiResult<WebhookRecord> {
    let id = parse_id(id, "webhook")?;
    state
        .store
        .webhook(&id)
        .await?
        .filter(|w| w.owner_id == owner.id)
        .ok_or(ApiError::NotFound("webhook"))
}

/// One webhook.
#[utoipa::path(get, path = "/services/alerts/api/alerts/webhooks/{id}", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "Webhook id")),
    responses((status = 200, description = "The webhook", body = schemas::Webhook)))]
async fn one(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let w = find(&state, &owner, &id).await?;
    Ok(Json(webhook_json(&state, &w)?))
}

/// Delete a webhook; deliveries not yet made are dropped.
#[utoipa::path(delete, path = "/services/alerts/api/alerts/webhooks/{id}", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted")))]
async fn remove(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let w = find(&state, &owner, &id).await?;
    state.store.delete_webhook(&owner.id, &w.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deliveries that failed after every retry.
#[utoipa::path(get, path = "/services/alerts/api/alerts/webhooks/failed-calls", tag = "alerts",
    params(PageQuery),
    responses((status = 200, description = "Failed deliveries", body = schemas::FailedCalls)))]
async fn failed_calls(
    State(state): State<AppState>,
    owner: Owner,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let paging = Paging::from_params(&params)?;
    let (calls, total) = state
        .store
        .failed_calls(&owner.id, paging.offset(), paging.size)
        .await?;
    let email = state
        .store
        .owner_email(&owner.id)
        .await?
        .unwrap_or_default();
    let items: Vec<Value> = calls
        .iter()
        .map(|c| {
            let mut item = json!({"apiOwner": email, "createdAt": c.created_at, "url": c.url, "requestBody": c.request_body});
            match (&c.status, &c.connection_error) {
                (Some(status), _) => {
                    item["status"] = json!(status);
                    item["response"] = json!(c.response);
                }
                (None, Some(error)) => item["connectionError"] = json!(error),
                (None, None) => {}
            }
            item
        })
        .collect();
    Ok((
        paging.headers(total, &format!("{BASE}/failed-calls")),
        Json(json!({"items": items})),
    ))
}
