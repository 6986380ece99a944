//! The receiver of John Deere's event deliveries (`{public_url}/api/deere/events`): verified by
//! each event's subscription token, queued durably, answered 204 at once. The work happens in
//! the engine, which fetches each changed resource.

use axum::extract::State;
use axum::http::{header::AUTHORIZATION, HeaderMap, StatusCode};
use deere::models::DeliveredEvent;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::app::AppState;
use crate::sync::webhooks::{accept_delivery, DeliveryError, RECEIVER_PATH};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// John Deere's event deliveries (an array of events), verified by each subscription's token in
/// `Authorization`. Not for API owners: John Deere calls it.
#[utoipa::path(post, path = RECEIVER_PATH, tag = "john deere", security(()),
    request_body(content = Vec<Object>, description = "John Deere events"),
    params(("Authorization" = Option<String>, Header, description = "The subscription's token")),
    responses(
        (status = 204, description = "Queued"),
        (status = 401, description = "No or a wrong token", body = super::openapi::Problem, content_type = "application/problem+json"),
    ))]
async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(events): ApiJson<Vec<DeliveredEvent>>,
) -> ApiResult<StatusCode> {
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    match accept_delivery(&state, authorization, &events).await {
        Ok(queued) => {
            crate::metrics::deere_event("accepted");
            if queued > 0 {
                state.wake.notify();
            }
            Ok(StatusCode::NO_CONTENT)
        }
        Err(DeliveryError::Store(e)) => Err(e.into()),
        Err(refused) => {
            crate::metrics::deere_event("refused");
            tracing::info!(reason = %refused, events = events.len(), "John Deere delivery refused");
            Err(ApiError::Unauthorized(refused.to_string()))
        }
    }
}
