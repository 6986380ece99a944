//! A hook to see raw exchanges with John Deere, for troubleshooting logs kept by the caller.
//!
//! The observer sees every token-endpoint call and every non-2xx platform response, with the
//! response body and headers as received. They can hold secrets (a token response does): the
//! caller must redact before storing or logging.

use std::sync::Arc;

/// One HTTP exchange as seen by the client.
#[derive(Clone)]
pub struct Exchange {
    pub method: String,
    /// The URL without its query string (pre-signed or paging parameters are not needed).
    pub url: String,
    /// `None` when no response arrived.
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Transport error, when there was no response.
    pub error: Option<String>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body and headers may hold tokens: never in Debug output.
        f.debug_struct("Exchange")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Called synchronously; keep it cheap (push to a buffer, write later).
pub type Observer = Arc<dyn Fn(Exchange) + Send + Sync>;

/// Bodies are cut to this many bytes in an [`Exchange`].
pub const MAX_OBSERVED_BODY: usize = 16 * 1024;

pub(crate) fn url_without_query(url: &url::Url) -> String {
    let mut clean = url.clone();
    clean.set_query(None);
    clean.to_string()
}

pub(crate) fn observe(
    observer: Option<&Observer>,
    method: &str,
    url: &url::Url,
    status: Option<u16>,
    headers: Option<&reqwest::header::HeaderMap>,
    body: &[u8],
    error: Option<String>,
) {
    let Some(observer) = observer else { return };
    let body = &body[..body.len().min(MAX_OBSERVED_BODY)];
    observer(Exchange {
        method: method.to_string(),
        url: url_without_query(url),
        status,
        headers: headers
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        body: String::from_utf8_lossy(body).into_owned(),
        error,
    });
}

/// Counts one request to John Deere and its latency through the `metrics` facade (nothing is
/// recorded unless the application installed a recorder): `deere_client_requests_total{kind,
/// status}` (`status` is `error` when no response came) and
/// `deere_client_request_duration_seconds{kind}`.
pub(crate) fn record_request(kind: &str, status: Option<u16>, elapsed: std::time::Duration) {
    let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    metrics::counter!("deere_client_requests_total", "kind" => kind.to_string(), "status" => status)
        .increment(1);
    metrics::histogram!("deere_client_request_duration_seconds", "kind" => kind.to_string())
        .record(elapsed.as_secs_f64());
}

/// Time spent waiting before a retry because John Deere refused for the rate limit (its
/// `Retry-After`, or the backoff when it gave none): the client's wait on the rate budget
/// (`_sum` is the total).
pub(crate) fn record_rate_limit_wait(err: &crate::DeereError, delay: std::time::Duration) {
    if matches!(err, crate::DeereError::RateLimited { .. }) {
        metrics::histogram!("deere_client_rate_limit_wait_seconds").record(delay.as_secs_f64());
    }
}

/// A platform URL's kind, for metrics: its path after `/platform` with ids and paging left out
/// (`organizations/{id}/fields`), so that the label stays a short list.
pub(crate) fn endpoint_kind(url: &url::Url) -> String {
    let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    let from = segments
        .iter()
        .position(|s| *s == "platform")
        .map_or(0, |p| p + 1);
    let kind: Vec<&str> = segments[from..]
        .iter()
        .map(|s| s.split(';').next().unwrap_or(""))
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.bytes().any(|b| b.is_ascii_digit()) || s.len() >= 20 {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    if kind.is_empty() {
        "catalog".into()
    } else {
        kind.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_kind;

    #[test]
    fn kinds_leave_out_ids_and_paging() {
        let kind = |s: &str| endpoint_kind(&url::Url::parse(s).unwrap());
        assert_eq!(
            kind(
                "https://sandboxapi.deere.com/platform/organizations/4471/fields;count=100?embed=x"
            ),
            "organizations/{id}/fields"
        );
        assert_eq!(
            kind("https://sandboxapi.deere.com/platform/fieldOps/bf7a4a4e-5e6d-4b4f-9a4e-3c2d1b0a9f8e"),
            "fieldOps/{id}"
        );
        assert_eq!(kind("https://sandboxapi.deere.com/platform/"), "catalog");
    }
}
