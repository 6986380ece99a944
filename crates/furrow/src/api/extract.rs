//! Extractors whose rejections are problem details, and Leaf-style paging.

use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header::{HeaderMap, HeaderValue, LINK};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// JSON body; malformed JSON, wrong types and unknown fields are 400s naming the field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let text = rejection.body_text();
    if status != axum::http::StatusCode::UNPROCESSABLE_ENTITY
        && status != axum::http::StatusCode::BAD_REQUEST
    {
        return ApiError::Rejected {
            status,
            detail: text,
        };
    }
    // "Failed to deserialize the JSON body into the target type: refreshToken: invalid type…"
    // or "…: missing field `clientKey` at line 1 column 2".
    let detail = text
        .split_once(": ")
        .map(|(_, d)| d.to_string())
        .unwrap_or(text);
    let path_prefix = detail.split_once(": ").map(|(p, _)| p).filter(|p| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c))
    });
    let field = path_prefix
        .map(str::to_string)
        .or_else(|| detail.split('`').nth(1).map(str::to_string));
    ApiError::BadRequest { field, detail }
}

/// Query parameters as strings; each endpoint parses what it knows.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|e: QueryRejection| ApiError::bad("query", e.body_text()))
    }
}

impl Params {
    /// The parameter as given. An empty value (`?leafUserId=`) is a value: each endpoint's
    /// parsing refuses it where it is not valid, rather than reading it as "no filter".
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// An ISO 8601 time parameter, as epoch milliseconds.
    pub fn time_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.timestamp_millis())
                    .map_err(|_| {
                        ApiError::bad(
                            name,
                            "must be an ISO 8601 time such as 2024-01-31T00:00:00Z",
                        )
                    })
            })
            .transpose()
    }
}

/// A path id that must be a UUID (all furrow ids are).
pub fn parse_id(value: &str, what: &'static str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(value)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::NotFound(what))
}

/// Leaf paging: `page` (0-based), `size` (default 20, max 100).
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub page: i64,
    pub size: i64,
}

impl Paging {
    pub fn from_params(params: &Params) -> Result<Self, ApiError> {
        let page = match params.get("page") {
            None => 0,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| ApiError::bad("page", "must be a non-negative integer"))?,
        };
        let size = match params.get("size") {
            None => 20,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|s| (1..=100).contains(s))
                .ok_or_else(|| ApiError::bad("size", "must be an integer from 1 to 100"))?,
        };
        Ok(Self { page, size })
    }

    pub fn offset(&self) -> i64 {
        self.page.saturating_mul(self.size)
    }

    /// `X-Total-Count` and `Link` (first, next, last) for a list at `path`.
    pub fn headers(&self, total: i64, path: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-total-count", HeaderValue::from(total));
        let last = if total == 0 {
            0
        } else {
            (total - 1) / self.size
        };
        let link = |page: i64, rel: &str| {
            format!("<{path}?page={page}&size={}>; rel=\"{rel}\"", self.size)
        };
        let mut links = Vec::new();
        if self.page < last {
            links.push(link(self.page + 1, "next"));
        }
        if self.page > 0 {
            links.push(link((self.page - 1).min(last), "prev"));
        }
        links.push(link(last, "last"));
        links.push(link(0, "first"));
        if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
            headers.insert(LINK, v);
        }
        headers
    }
}

/// [`Paging`]'s query parameters, for the OpenAPI description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the OpenAPI derive only; handlers parse them with `Paging`.
pub struct PageQuery {
    /// Page number, from 0.
    #[param(minimum = 0)]
    page: Option<i64>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    size: Option<i64>,
}

/// A boolean as Leaf's docs show them: a JSON boolean, or the string `"true"` or `"false"`.
#[derive(serde::Deserialize, utoipa::ToSchema, Clone, Copy, Debug)]
#[serde(untagged)]
pub enum FlexBool {
    Bool(bool),
    Text(TrueFalse),
}

#[derive(serde::Deserialize, utoipa::ToSchema, Clone, Copy, Debug)]
pub enum TrueFalse {
    #[serde(rename = "true")]
    True,
    #[serde(rename = "false")]
    False,
}

impl FlexBool {
    pub fn value(self) -> bool {
        matches!(self, Self::Bool(true) | Self::Text(TrueFalse::True))
    }
}
