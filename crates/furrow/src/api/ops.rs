//! What operators and their tools call: liveness, readiness, and the request log every API call
//! leaves (one line per response, with a request id that callers may supply).

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::error::ApiError;
use crate::api::schemas;
use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses((status = 200, description = "Alive", body = schemas::Health)))]
async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers and the key ring decrypts what is stored with it.
/// 503 (problem details) otherwise, so a load balancer keeps traffic away.
#[utoipa::path(get, path = "/ready", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = schemas::Readiness),
        (status = 503, description = "Not ready", body = super::openapi::Problem, content_type = "application/problem+json"),
    ))]
async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let unavailable = |detail: String| ApiError::Rejected {
        status: StatusCode::SERVICE_UNAVAILABLE,
        detail,
    };
    let secrets = state.store.instance_secrets().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready: database");
        unavailable("not ready: the database does not answer".into())
    })?;
    for (name, enc) in secrets {
        if state.keyring.decrypt(&enc).is_err() {
            tracing::warn!(secret = %name, "not ready: the key ring cannot decrypt a stored secret");
            return Err(unavailable(
                "not ready: the key ring cannot decrypt the stored secrets".into(),
            ));
        }
    }
    Ok(Json(
        json!({"status": "ready", "checks": {"database": "ok", "keyRing": "ok"}}),
    ))
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's request id is kept if it is short, visible ASCII; anything else is replaced by a
/// fresh one, so a header cannot fill or forge log lines.
fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

async fn drop_unacceptable_request_id(mut request: Request) -> Request {
    if request
        .headers()
        .get(&REQUEST_ID)
        .is_some_and(|v| !acceptable_request_id(v))
    {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// Every request gets an id (`x-request-id`, the caller's or a new UUID), returned on the
/// response and carried by every log line written while serving it. The line names the route
/// template, never the path or query: those can hold magic-link ids and OAuth codes.
pub fn with_request_log(router: Router) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let (route, id) = (
                route_of(request),
                request_id_of(request).unwrap_or_default(),
            );
            tracing::info_span!("request", method = %request.method(), route, request_id = id)
        })
        .on_request(())
        .on_response(|response: &Response, latency: Duration, _: &Span| {
            tracing::info!(
                status = response.status().as_u16(),
                latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3,
                "answered"
            );
        })
        .on_failure(());
    // Layers run outside in: the id is set (or the caller's checked) before the span opens.
    router
        .layer(axum::middleware::from_fn(measure))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unacceptable_request_id))
}

/// The route template the request matched (`unmatched` for none).
fn route_of(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string()
}

/// The request id set by [`SetRequestIdLayer`].
fn request_id_of(request: &Request) -> Option<String> {
    request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map(str::to_string)
}

/// Counts the answer and its latency by route template (see [`crate::metrics`]), makes the
/// request id the current one while the handler runs, and runs the handler ahead of background
/// work at the database (someone waits for the answer).
async fn measure(request: Request, next: axum::middleware::Next) -> Response {
    let (route, request_id) = (route_of(&request), request_id_of(&request));
    let method = request.method().clone();
    let started = std::time::Instant::now();
    // Jobs this request queues carry its id (see crate::request_context); work it spawns
    // takes its own turn at the database.
    let handled = crate::store::ahead(next.run(request));
    let response = crate::request_context::scope(request_id, handled).await;
    crate::metrics::http_answered(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_visible_ascii() {
        assert!(acceptable_request_id(&HeaderValue::from_static(
            "abc-123_XYZ.9"
        )));
        assert!(!acceptable_request_id(&HeaderValue::from_static("")));
        assert!(!acceptable_request_id(&HeaderValue::from_static(
            "has space"
        )));
        let long = "a".repeat(129);
        assert!(!acceptable_request_id(
            &HeaderValue::from_str(&long).unwrap()
        ));
    }
}
