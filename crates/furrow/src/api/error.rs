//! The API's one error type, mapped once to RFC 9457 problem details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    /// A request field is missing or wrong.
    BadRequest {
        field: Option<String>,
        detail: String,
    },
    /// Missing, malformed, expired or forged credentials.
    Unauthorized(String),
    /// Not found, or not the caller's (tenancy: never 403).
    NotFound(&'static str),
    /// The request conflicts with the current state.
    Conflict(String),
    /// Too many attempts; try again after the given seconds.
    TooManyRequests {
        retry_after_secs: u64,
        detail: String,
    },
    /// A rejection from the HTTP layer (body too large, wrong content type, ...).
    Rejected { status: StatusCode, detail: String },
    /// John Deere failed (down, timed out, answered something unexpected): 502.
    Upstream(String),
    /// Something on our side; the cause is logged, not shown.
    Internal(String),
}

impl ApiError {
    pub fn bad(field: &str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            field: Some(field.to_string()),
            detail: detail.into(),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<crate::sync::credentials::CredentialError> for ApiError {
    fn from(e: crate::sync::credentials::CredentialError) -> Self {
        Self::internal(e)
    }
}

fn slug(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace(' ', "-")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail, field, retry_after) = match self {
            Self::BadRequest { field, detail } => (StatusCode::BAD_REQUEST, detail, field, None),
            Self::Unauthorized(detail) => (StatusCode::UNAUTHORIZED, detail, None, None),
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                format!("{what} not found"),
                None,
                None,
            ),
            Self::Conflict(detail) => (StatusCode::CONFLICT, detail, None, None),
            Self::TooManyRequests {
                retry_after_secs,
                detail,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                detail,
                None,
                Some(retry_after_secs),
            ),
            Self::Rejected { status, detail } => (status, detail, None, None),
            Self::Upstream(detail) => (StatusCode::BAD_GATEWAY, detail, None, None),
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "an internal error occurred; it has been logged".to_string(),
                    None,
                    None,
                )
            }
        };
        let mut body = json!({
            "type": format!("https://furrow.dev/problems/{}", slug(status)),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        });
        if let Some(field) = field {
            body["field"] = json!(field);
        }
        let mut response = (status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
