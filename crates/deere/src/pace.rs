//! A hook to spend a shared request budget: John Deere sets one rate limit per application
//! (client key), so every request of that key — whichever grower, task or process sends it —
//! should draw from one budget instead of finding the limit by being refused.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

/// Paces requests to John Deere. The client calls [`Pacer::acquire`] before every request it
/// sends (retries included) and [`Pacer::rate_limited`] when John Deere answers 429, before it
/// waits out the `Retry-After` itself.
pub trait Pacer: Send + Sync {
    /// Returns once one more request may be sent.
    fn acquire(&self) -> BoxFuture<'_, ()>;
    /// John Deere refused a request for the rate limit; `retry_after` is its `Retry-After`.
    fn rate_limited(&self, retry_after: Option<Duration>) -> BoxFuture<'_, ()>;
}

/// A pacer shared by clients (cheap to clone).
pub type SharedPacer = Arc<dyn Pacer>;

/// Holds an optional pacer in a `Debug` client.
#[derive(Clone, Default)]
pub(crate) struct Paced(pub(crate) Option<SharedPacer>);

impl std::fmt::Debug for Paced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Paced" } else { "Unpaced" })
    }
}

impl Paced {
    pub(crate) async fn acquire(&self) {
        if let Some(pacer) = &self.0 {
            pacer.acquire().await;
        }
    }

    /// Tells the pacer about a refusal for the rate limit (other errors are not its business).
    pub(crate) async fn refused(&self, err: &crate::DeereError) {
        if let (Some(pacer), crate::DeereError::RateLimited { retry_after }) = (&self.0, err) {
            pacer.rate_limited(*retry_after).await;
        }
    }
}
