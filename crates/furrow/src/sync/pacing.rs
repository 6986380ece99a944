//! Every John Deere request of one client key draws from one budget (John Deere sets the rate
//! limit per application), shared by the replicas through the database: each replica reserves a
//! few requests at a time (about 50 ms of the rate) and hands them out in arrival order, so the
//! growers of one key share it fairly and no replica spends what another already has.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deere::{Pacer, SharedPacer};
use futures_util::future::BoxFuture;

use crate::config::Settings;
use crate::domain::budget::RateCeiling;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
#[error("invalid FURROW_DEERE_RATE_LIMITS entry {0:?}: expected clientKey=requestsPerSecond")]
pub struct RateLimitsError(String);

/// The budgets of every client key this replica has used.
#[derive(Clone)]
pub struct RateBudgets {
    store: Store,
    default: Option<RateCeiling>,
    overrides: Arc<HashMap<String, Option<RateCeiling>>>,
    budgets: Arc<Mutex<HashMap<String, Arc<ClientBudget>>>>,
}

impl std::fmt::Debug for RateBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateBudgets")
            .field("default", &self.default)
            .field("overrides", &self.overrides.len())
            .finish_non_exhaustive()
    }
}

impl RateBudgets {
    pub fn from_settings(settings: &Settings, store: Store) -> Result<Self, RateLimitsError> {
        let mut overrides = HashMap::new();
        for entry in settings
            .deere_rate_limits
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (key, rate) = entry
                .split_once('=')
                .map(|(k, r)| (k.trim(), r.trim().parse::<f64>()))
                .filter(|(k, r)| !k.is_empty() && r.as_ref().is_ok_and(|r| *r >= 0.0))
                .ok_or_else(|| RateLimitsError(entry.to_string()))?;
            overrides.insert(key.to_string(), RateCeiling::new(rate.unwrap_or_default()));
        }
        Ok(Self {
            store,
            default: RateCeiling::new(settings.deere_rate_limit),
            overrides: Arc::new(overrides),
            budgets: Arc::default(),
        })
    }

    /// The pacer for `client_key`'s requests, or `None` when that key is not paced.
    pub fn pacer(&self, client_key: &str) -> Option<SharedPacer> {
        let ceiling = self
            .overrides
            .get(client_key)
            .copied()
            .unwrap_or(self.default)?;
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let budget = budgets
            .entry(client_key.to_string())
            .or_insert_with(|| {
                Arc::new(ClientBudget {
                    client_key: client_key.to_string(),
                    ceiling,
                    store: self.store.clone(),
                    reserved: tokio::sync::Mutex::default(),
                    refusals: AtomicU64::new(0),
                })
            })
            .clone();
        Some(budget)
    }
}

/// Requests reserved from the shared budget and not yet sent, and the refusal count they were
/// reserved under (a 429 voids them).
#[derive(Default)]
struct Reserved {
    requests: u32,
    refusals_seen: u64,
}

struct ClientBudget {
    client_key: String,
    ceiling: RateCeiling,
    store: Store,
    /// Held while a request waits its turn: tokio's mutex is fair, so requests go in the order
    /// they asked, whichever grower they are for.
    reserved: tokio::sync::Mutex<Reserved>,
    refusals: AtomicU64,
}

impl ClientBudget {
    async fn take_one(&self) {
        let started = Instant::now();
        let mut reserved = self.reserved.lock().await;
        loop {
            let refusals = self.refusals.load(Ordering::Acquire);
            if reserved.refusals_seen != refusals {
                *reserved = Reserved {
                    requests: 0,
                    refusals_seen: refusals,
                };
            }
            if reserved.requests > 0 {
                reserved.requests -= 1;
                break;
            }
            match self
                .store
                .draw_rate_budget(&self.client_key, self.ceiling, self.ceiling.batch())
                .await
            {
                Ok((grant, rate)) => {
                    self.record_rate(rate);
                    reserved.requests += grant.requests;
                    if grant.requests == 0 {
                        tokio::time::sleep(Duration::from_millis(grant.retry_in_ms)).await;
                    }
                }
                Err(e) => {
                    // The budget is a courtesy to John Deere; a database hiccup must not stop
                    // the sync, so this request goes at this replica's share of the rate.
                    tracing::warn!(error = %e, "rate budget unavailable; pacing locally");
                    tokio::time::sleep(Duration::from_secs_f64(1.0 / self.ceiling.per_sec())).await;
                    break;
                }
            }
        }
        metrics::histogram!("furrow_rate_budget_wait_seconds")
            .record(started.elapsed().as_secs_f64());
    }

    async fn refused(&self, retry_after: Option<Duration>) {
        self.refusals.fetch_add(1, Ordering::AcqRel);
        let retry_after_ms = retry_after.map(|d| d.as_millis().min(i64::MAX as u128) as i64);
        match self
            .store
            .refuse_rate_budget(&self.client_key, self.ceiling, retry_after_ms)
            .await
        {
            Ok(rate) => {
                tracing::info!(
                    client_key = %self.client_key,
                    rate,
                    "John Deere refused a request for the rate limit; pacing slower"
                );
                self.record_rate(rate);
            }
            Err(e) => tracing::warn!(error = %e, "cannot record a 429 in the rate budget"),
        }
    }

    fn record_rate(&self, rate: f64) {
        metrics::gauge!("furrow_rate_budget_requests_per_second", "client_key" => self.client_key.clone())
            .set(rate);
    }
}

impl Pacer for ClientBudget {
    fn acquire(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.take_one())
    }

    fn rate_limited(&self, retry_after: Option<Duration>) -> BoxFuture<'_, ()> {
        Box::pin(self.refused(retry_after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn budgets(limits: &str) -> Result<RateBudgets, RateLimitsError> {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let settings = Settings {
            deere_rate_limit: 10.0,
            deere_rate_limits: limits.into(),
            ..Settings::default()
        };
        RateBudgets::from_settings(&settings, store)
    }

    #[tokio::test]
    async fn rates_per_client_key_override_the_default() {
        let b = budgets(" fast = 500 , off=0").await.unwrap();
        assert_eq!(b.default.unwrap().per_sec(), 10.0);
        assert_eq!(b.overrides["fast"].unwrap().per_sec(), 500.0);
        assert!(b.pacer("off").is_none(), "0 means not paced");
        assert!(b.pacer("other").is_some());
        for bad in ["fast", "=5", "k=-1", "k=fast"] {
            assert!(budgets(bad).await.is_err(), "{bad} was accepted");
        }
    }
}
