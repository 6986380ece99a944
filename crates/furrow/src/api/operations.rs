//! `/services/operations/api/operations`: synced field operations.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Owner;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, Paging, Params};
use crate::app::AppState;
use crate::store::{OperationFilter, OperationRecord};

const BASE: &str = "/services/operations/api/operations";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(BASE, get(list))
        .route(&format!("{BASE}/{{id}}"), get(one))
}

fn operation_json(op: &OperationRecord, owner_email: &str) -> Value {
    let data: Value = serde_json::from_str(&op.data).unwrap_or(json!({}));
    json!({
        "id": op.id, "apiOwnerUsername": owner_email, "leafUserId": op.leaf_user_id,
        "startTime": op.start_time, "endTime": op.end_time, "updatedTime": op.updated_at,
        "createdTime": op.created_at, "type": op.operation_type, "operationType": op.operation_type,
        "files": [], "fields": [{"id": op.field_id}], "providers": ["JohnDeere"], "provider": "JohnDeere",
        "origin": "provider", "providerOperationId": op.provider_operation_id,
        "cropSeason": op.crop_season, "crops": data["crops"], "varieties": data["varieties"],
        "products": data["products"], "machines": data["machines"], "operators": data["operators"],
        "summary": {"measurements": data["measurements"]},
    })
}

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
    if let Some(provider) = params.get("provider") {
        if provider != "JohnDeere" {
            return Ok((paging.headers(0, BASE), Json(json!([]))));
        }
    }
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
    let (ops, total) = state
        .store
        .list_operations(&owner.id, &filter, paging.offset(), paging.size)
        .await?;
    let email = state
        .store
        .owner_email(&owner.id)
        .await?
        .unwrap_or_default();
    let body: Vec<Value> = ops.iter().map(|o| operation_json(o, &email)).collect();
    Ok((paging.headers(total, BASE), Json(Value::Array(body))))
}

async fn one(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "operation")?;
    let op = state
        .store
        .operation(&owner.id, &id)
        .await?
        .ok_or(ApiError::NotFound("operation"))?;
    let email = state
        .store
        .owner_email(&owner.id)
        .await?
        .unwrap_or_default();
    Ok(Json(operation_json(&op, &email)))
}
