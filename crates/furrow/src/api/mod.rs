//! The HTTP API: one module per Leaf service, each owning its routes, merged here.

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::app::AppState;
use error::ApiError;

pub mod alerts;
pub mod assets;
pub mod auth;
pub mod configs;
pub mod connect;
pub mod credentials;
pub mod deere_events;
pub mod error;
pub mod extract;
pub mod fields;
pub mod files;
pub mod integrations;
pub mod onboarding;
pub mod openapi;
pub mod operations;
pub mod ops;
pub mod organizations;
pub mod schemas;
pub mod users;

/// Leaf's clients call some collections with a trailing slash (`…/api/users/`, as Leaf's
/// Postman collection does): such a path is served as the one without it. Runs before routing.
pub async fn strip_trailing_slash(mut request: axum::extract::Request) -> axum::extract::Request {
    let path = request.uri().path();
    // The docs UI lives under `/docs/` and loads its files relative to that slash.
    if path.len() > 1 && path.ends_with('/') && !path.starts_with("/docs/") {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rebuilt = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = rebuilt.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// A 201 with the new resource's `Location` (its path), as Leaf's (JHipster) API answers:
/// Leaf's clients read new ids from it.
pub fn created(
    location: String,
    body: impl axum::response::IntoResponse,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = (axum::http::StatusCode::CREATED, body).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, value);
    }
    response
}

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Every route furrow serves, each registered with its OpenAPI entry.
fn documented_routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .merge(ops::router())
        .merge(auth::router())
        .merge(alerts::router())
        .merge(assets::router())
        .merge(users::router())
        .merge(credentials::router())
        .merge(deere_events::router())
        .merge(organizations::router())
        .merge(configs::router())
        .merge(fields::router())
        .merge(operations::router())
        .merge(files::router())
        .merge(onboarding::router())
        .merge(integrations::router())
        .merge(connect::router())
}

/// The OpenAPI 3.1 description of [`router`], as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::finish(documented_routes()).1
}

pub fn router(state: AppState) -> Router {
    let (routes, _) = openapi::finish(documented_routes());
    let router = routes
        .fallback(|| async { ApiError::NotFound("resource") })
        .method_not_allowed_fallback(|| async {
            ApiError::Rejected {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                detail: "method not allowed on this resource".into(),
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    ops::with_request_log(router)
}
