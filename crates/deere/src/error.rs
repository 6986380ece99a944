//! Typed errors: each variant is something a caller can act on differently.

use std::time::Duration;

use serde::Deserialize;

/// Why John Deere answered 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenKind {
    /// "Access Denied": the resource is not reachable for this user or the org is not connected.
    AccessDenied,
    /// "The client does not have a proper access for this API": missing scopes or licence.
    MissingScope,
}

/// What kind of transient failure happened; decides whether a non-idempotent call may be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientReason {
    /// The server answered 5xx.
    ServerError(u16),
    /// No connection could be made: the request never reached the server.
    Connect,
    /// The request may have reached the server (timeout, cut response).
    Interrupted,
}

/// Everything that can go wrong talking to John Deere.
#[derive(Debug, thiserror::Error)]
pub enum DeereError {
    /// Token endpoint: 400 `invalid_grant` (refresh token revoked, expired, unknown; code reused).
    #[error("invalid grant: {description}")]
    InvalidGrant { description: String },
    /// Token endpoint: 401 `invalid_client` (wrong client key or secret, or wrong environment).
    #[error("invalid client: {description}")]
    InvalidClient { description: String },
    /// Any other OAuth error response (`invalid_request`, `unsupported_grant_type`, ...).
    #[error("OAuth error {code} (HTTP {status}): {description}")]
    OAuth {
        status: u16,
        code: String,
        description: String,
    },
    /// Platform 401: the access token expired, was revoked, or the app is not licensed for the API.
    #[error("unauthorized: {message}")]
    Unauthorized { message: String },
    /// Platform 403 other than required customer action.
    #[error("forbidden ({kind:?}): {message}")]
    Forbidden {
        kind: ForbiddenKind,
        message: String,
    },
    /// Platform 403 with `X-Deere-Warning`: the grower must act (accept terms) in Operations Center.
    #[error("required customer action: {warning}")]
    RequiredCustomerAction {
        warning: String,
        terms_location: Option<String>,
    },
    /// 404.
    #[error("not found: {message}")]
    NotFound { message: String },
    /// 406: e.g. no shapefile can be generated for a tillage operation.
    #[error("not acceptable: {message}")]
    NotAcceptable { message: String },
    /// 429 after the retry budget was spent.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, timeouts and connection errors after the retry budget was spent.
    #[error("transient failure ({reason:?}): {detail}")]
    Transient {
        reason: TransientReason,
        detail: String,
    },
    /// Any other unexpected status.
    #[error("unexpected HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// The response could not be understood.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// A URL we were asked to call is unusable or points away from the configured API host.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// An export did not finish within the polling budget.
    #[error("gave up waiting: {0}")]
    Timeout(String),
    /// Writing a download to its destination failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
}

impl DeereError {
    /// Worth trying again later without any change by the grower (429, 5xx, network).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient { .. })
    }

    /// The credentials themselves are bad: retrying without new credentials cannot help.
    pub fn is_credential_failure(&self) -> bool {
        matches!(self, Self::InvalidGrant { .. } | Self::InvalidClient { .. })
    }

    /// A reqwest failure. The URL is left out: it may carry a pre-signed query string.
    pub(crate) fn transport(err: reqwest::Error) -> Self {
        let reason = if err.is_connect() {
            TransientReason::Connect
        } else {
            TransientReason::Interrupted
        };
        Self::Transient {
            reason,
            detail: err.without_url().to_string(),
        }
    }

    pub(crate) fn server_error(status: u16, detail: impl Into<String>) -> Self {
        Self::Transient {
            reason: TransientReason::ServerError(status),
            detail: detail.into(),
        }
    }
}

/// John Deere's `{"@type":"Errors","errors":[...]}` body (webhook 400s send the bare array).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiErrors {
    #[serde(default)]
    pub errors: Vec<ApiErrorItem>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorItem {
    #[serde(default)]
    pub guid: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
}

impl ApiErrors {
    /// Parses either shape; anything else yields an empty list.
    pub fn parse(body: &[u8]) -> Self {
        if let Ok(errors) = serde_json::from_slice::<ApiErrors>(body) {
            return errors;
        }
        if let Ok(errors) = serde_json::from_slice::<Vec<ApiErrorItem>>(body) {
            return Self { errors };
        }
        Self::default()
    }

    /// The messages joined, or `fallback` when the body had none.
    pub fn message_or(&self, fallback: &str) -> String {
        let joined: Vec<&str> = self
            .errors
            .iter()
            .filter_map(|e| e.message.as_deref())
            .collect();
        if joined.is_empty() {
            fallback.to_string()
        } else {
            joined.join("; ")
        }
    }
}

/// RFC 6749 §5.2 error body from the token endpoint.
#[derive(Debug, Deserialize)]
pub(crate) struct OAuthErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

pub type Result<T, E = DeereError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_errors_object_and_bare_array() {
        let obj = br#"{"@type":"Errors","errors":[{"@type":"Error","guid":"0e6b1c7a-0000-4000-8000-0000000000ee","message":"Access Denied"}],"otherAttributes":{}}"#;
        let parsed = ApiErrors::parse(obj);
        assert_eq!(parsed.message_or("x"), "Access Denied");
        assert_eq!(
            parsed.errors[0].guid.as_deref(),
            Some("0e6b1c7a-0000-4000-8000-0000000000ee")
        );

        let arr = br#"[{"guid":"g","message":"bad token","code":"400","field":"token"}]"#;
        let parsed = ApiErrors::parse(arr);
        assert_eq!(parsed.errors[0].field.as_deref(), Some("token"));
        assert_eq!(
            ApiErrors::parse(b"<html>").message_or("fallback"),
            "fallback"
        );
    }
}
