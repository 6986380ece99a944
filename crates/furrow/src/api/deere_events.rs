//! The receiver of John Deere's event deliveries (`{public_url}/api/deere/events`): verified by
//! each event's subscription token, queued durably, answered 204 at once. The work happens in
//! the engine, which fetches each changed resource.

use axum::extract::State;
use axum::http::{header::AUTHORIZATION, HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use deere::models::DeliveredEvent;

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::app::AppState;
use crate::sync::webhooks::{accept_delivery, DeliveryError, RECEIVER_PATH};

pub fn router() -> Router<AppState> {
    Router::new().route(RECEIVER_PATH, post(receive))
}

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
                state.wake.notify_one();
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
