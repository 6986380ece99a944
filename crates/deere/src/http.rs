//! Transport settings shared by the OAuth and platform clients: timeouts, retry budget, backoff.

use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;

use crate::error::{DeereError, Result};

/// How hard to retry 429s, 5xx and network failures. 400/401/403/404 are never retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = no retries).
    pub max_retries: u32,
    /// First backoff step; doubles each retry.
    pub base_delay: Duration,
    /// Cap on a single backoff step.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not slept through: the error goes to the caller,
    /// whose scheduler can come back later instead of holding a worker.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Capped exponential backoff with "equal jitter": half fixed, half random, so that many
    /// workers failing together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(16)));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// How long to wait before retry number `retry` (0-based) after `error`, or `None` to give up.
    pub(crate) fn delay_for(&self, retry: u32, error: &DeereError) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        match error {
            DeereError::RateLimited {
                retry_after: Some(after),
            } => (*after <= self.max_retry_after).then_some(*after),
            DeereError::RateLimited { retry_after: None } | DeereError::Transient { .. } => {
                Some(self.backoff(retry))
            }
            _ => None,
        }
    }
}

/// Settings for the underlying HTTP client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    /// Whole-request timeout for JSON calls and for each download chunk.
    pub request_timeout: Duration,
    pub user_agent: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            user_agent: concat!("furrow-deere/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

impl HttpSettings {
    /// A client that never follows redirects by itself: a 307 to a pre-signed URL must be fetched
    /// without our bearer token, and that decision is ours, not the HTTP library's.
    pub fn build_client(&self) -> Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(&self.user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DeereError::InvalidResponse(format!("cannot build HTTP client: {e}")))
    }
}

/// `Retry-After` in seconds (the only form John Deere documents).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered_within_bounds() {
        let policy = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(5),
        };
        for retry in 0..10 {
            let d = policy.backoff(retry);
            let full =
                (Duration::from_millis(100) * 2u32.pow(retry)).min(Duration::from_millis(1000));
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[test]
    fn never_retries_client_errors_and_respects_budget() {
        let policy = RetryPolicy::default();
        let not_found = DeereError::NotFound {
            message: "x".into(),
        };
        assert_eq!(policy.delay_for(0, &not_found), None);
        let limited = DeereError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(policy.delay_for(0, &limited), Some(Duration::from_secs(3)));
        assert_eq!(policy.delay_for(policy.max_retries, &limited), None);
        let too_long = DeereError::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(policy.delay_for(0, &too_long), None);
    }
}
