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
