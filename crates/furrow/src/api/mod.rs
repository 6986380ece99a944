//! The HTTP API: one module per Leaf service, each owning its routes, merged here.

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;
use error::ApiError;

pub mod alerts;
pub mod auth;
pub mod configs;
pub mod credentials;
pub mod deere_events;
pub mod error;
pub mod extract;
pub mod fields;
pub mod files;
pub mod operations;
pub mod organizations;
pub mod users;

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(auth::router())
        .merge(alerts::router())
        .merge(users::router())
        .merge(credentials::router())
        .merge(deere_events::router())
        .merge(organizations::router())
        .merge(configs::router())
        .merge(fields::router())
        .merge(operations::router())
        .merge(files::router())
        .fallback(|| async { ApiError::NotFound("resource") })
        .method_not_allowed_fallback(|| async {
            ApiError::Rejected {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                detail: "method not allowed on this resource".into(),
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
