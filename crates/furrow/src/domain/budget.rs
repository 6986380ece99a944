//! A client key's request budget: a token bucket whose refill rate adapts to John Deere's 429s
//! (additive increase, multiplicative decrease), never above the rate of the app's usage
//! agreement. Pure arithmetic on the stored state; the store applies it with compare-and-swap so
//! that every replica draws from the same bucket.

/// At most this much of the rate may be spent in one burst. Well under John Deere's own
/// bucket, so that requests bunching on the way there are not refused.
const BURST_SECS: f64 = 0.5;
/// A 429 multiplies the rate by this (once per back-off, however many requests it refused).
const DECREASE: f64 = 0.7;
/// After a decrease the rate climbs back by this share of the ceiling per second.
const INCREASE_PER_SEC: f64 = 0.05;
/// The rate never falls below this share of the ceiling.
const FLOOR: f64 = 0.05;
/// A 429 without `Retry-After` stops the key for this long.
const DEFAULT_RETRY_AFTER_MS: i64 = 1_000;

/// The configured rate for one client key, in requests per second (> 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateCeiling(f64);

impl RateCeiling {
    /// `None` for 0, negative or non-finite rates: such a key is not paced.
    pub fn new(requests_per_sec: f64) -> Option<Self> {
        (requests_per_sec.is_finite() && requests_per_sec > 0.0).then_some(Self(requests_per_sec))
    }

    pub fn per_sec(self) -> f64 {
        self.0
    }

    fn milli_rate(self) -> i64 {
        (self.0 * 1000.0).round().max(1.0) as i64
    }

    fn milli_capacity(self) -> i64 {
        ((self.0 * BURST_SECS).max(1.0) * 1000.0).round() as i64
    }

    fn milli_floor(self) -> i64 {
        ((self.0 * FLOOR) * 1000.0).round().max(1.0) as i64
    }

    /// Requests one replica keeps in reserve: about 50 ms of the rate; below it, the replica
    /// draws from the shared budget again.
    pub fn batch(self) -> u32 {
        (self.0 / 20.0).floor().clamp(1.0, 1_000.0) as u32
    }

    /// The most one draw takes: what accrued since the last draw, up to about 250 ms of the
    /// rate. A draw that waits on a busy database (up to a couple of hundred milliseconds on
    /// SQLite at full load) then still keeps up with the rate, where a smaller cap would cap
    /// the rate at that cap ÷ the draw's time.
    pub fn draw_limit(self) -> u32 {
        self.batch().saturating_mul(5)
    }
}

/// The stored state of a budget. Amounts are in thousandths of a request, so that the database
/// holds integers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetState {
    pub milli_tokens: i64,
    /// The current refill rate, thousandths of a request per second.
    pub milli_rate: i64,
    /// When `milli_tokens` was last brought up to date (epoch ms).
    pub updated_ms: i64,
    /// No request may go before this (a 429's `Retry-After`).
    pub blocked_until_ms: i64,
}

/// What a draw from the budget gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Requests that may be sent now.
    pub requests: u32,
    /// When none: how long until one can be (ms).
    pub retry_in_ms: u64,
}

impl BudgetState {
    /// A new budget: a full bucket at the ceiling's rate.
    pub fn full(ceiling: RateCeiling, now_ms: i64) -> Self {
        Self {
            milli_tokens: ceiling.milli_capacity(),
            milli_rate: ceiling.milli_rate(),
            updated_ms: now_ms,
            blocked_until_ms: 0,
        }
    }

    /// The rate now, in requests per second.
    pub fn rate_per_sec(&self) -> f64 {
        self.milli_rate as f64 / 1000.0
    }

    /// Refills the bucket up to `now_ms`, then takes up to `want` requests from it.
    pub fn take(self, ceiling: RateCeiling, want: u32, now_ms: i64) -> (Self, Grant) {
        if now_ms < self.blocked_until_ms {
            let wait = (self.blocked_until_ms - now_ms) as u64;
            return (
                self,
                Grant {
                    requests: 0,
                    retry_in_ms: wait,
                },
            );
        }
        let elapsed_ms = (now_ms - self.updated_ms).max(0);
        // A lowered ceiling applies at once; a raised one is climbed to like after a 429.
        let rate = self.milli_rate.min(ceiling.milli_rate());
        let tokens = (self.milli_tokens + elapsed_ms * rate / 1000).min(ceiling.milli_capacity());
        let increase = (ceiling.milli_rate() as f64 * INCREASE_PER_SEC * elapsed_ms as f64 / 1000.0)
            .round() as i64;
        let rate = (rate + increase).min(ceiling.milli_rate());
        let requests = (tokens / 1000).min(i64::from(want)).max(0);
        let tokens = tokens - requests * 1000;
        let retry_in_ms = if requests == 0 {
            (((1000 - tokens) * 1000) as u64)
                .div_ceil(rate.max(1) as u64)
                .max(1)
        } else {
            0
        };
        (
            Self {
                milli_tokens: tokens,
                milli_rate: rate,
                updated_ms: now_ms,
                blocked_until_ms: self.blocked_until_ms,
            },
            Grant {
                requests: requests as u32,
                retry_in_ms,
            },
        )
    }

    /// John Deere refused a request for the rate limit: nothing goes until its `Retry-After`,
    /// the bucket is emptied, and the rate drops — once per back-off, as the other requests in
    /// flight at the time are refused by the same overload.
    pub fn refused(self, ceiling: RateCeiling, retry_after_ms: Option<i64>, now_ms: i64) -> Self {
        let until = now_ms + retry_after_ms.unwrap_or(DEFAULT_RETRY_AFTER_MS).max(0);
        if now_ms < self.blocked_until_ms {
            let blocked_until_ms = self.blocked_until_ms.max(until);
            return Self {
                blocked_until_ms,
                updated_ms: self.updated_ms.max(blocked_until_ms),
                ..self
            };
        }
        let decreased = (self.milli_rate.min(ceiling.milli_rate()) as f64 * DECREASE) as i64;
        Self {
            milli_tokens: 0,
            milli_rate: decreased.max(ceiling.milli_floor()),
            // No refill accrues while blocked.
            updated_ms: until,
            blocked_until_ms: until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceiling(rate: f64) -> RateCeiling {
        RateCeiling::new(rate).unwrap()
    }

    #[test]
    fn zero_or_nonsense_rates_mean_unpaced() {
        assert!(RateCeiling::new(0.0).is_none());
        assert!(RateCeiling::new(-3.0).is_none());
        assert!(RateCeiling::new(f64::NAN).is_none());
        assert_eq!(ceiling(2000.0).batch(), 100);
        assert_eq!(ceiling(2000.0).draw_limit(), 500);
        assert_eq!(ceiling(5.0).batch(), 1);
    }

    #[test]
    fn spends_a_half_second_burst_then_the_rate() {
        let c = ceiling(100.0);
        let state = BudgetState::full(c, 0);
        let (state, grant) = state.take(c, 1_000, 0);
        assert_eq!(grant.requests, 50, "the burst is half a second of the rate");
        let (state, grant) = state.take(c, 1, 0);
        assert_eq!(grant.requests, 0);
        assert_eq!(grant.retry_in_ms, 10, "one request every 10 ms at 100/s");
        let (_, grant) = state.take(c, 1_000, 1_000);
        assert_eq!(grant.requests, 50, "a second refills at most the burst");
        // Over any stretch of time, no more than burst + rate x time.
        let mut state = BudgetState::full(c, 0);
        let mut sent = 0;
        for now in (0..=10_000).step_by(7) {
            let (next, grant) = state.take(c, 3, now);
            state = next;
            sent += grant.requests;
        }
        assert!(sent <= 50 + 1000, "{sent}");
        assert!(sent >= 1000, "the budget is spent: {sent}");
    }

    #[test]
    fn a_refusal_blocks_lowers_the_rate_once_and_the_rate_climbs_back() {
        let c = ceiling(100.0);
        let state = BudgetState::full(c, 0);
        let state = state.refused(c, Some(2_000), 1_000);
        assert_eq!(state.milli_rate, 70_000);
        // Other requests refused by the same overload lower it no further.
        let state = state.refused(c, Some(1_000), 1_500);
        assert_eq!(state.milli_rate, 70_000);
        assert_eq!(state.blocked_until_ms, 3_000);
        let (state, grant) = state.take(c, 10, 2_000);
        assert_eq!(
            grant,
            Grant {
                requests: 0,
                retry_in_ms: 1_000
            }
        );
        // Nothing accrued while blocked: the first grant after it is small.
        let (state, grant) = state.take(c, 100, 3_100);
        assert_eq!(grant.requests, 7, "100 ms at 70/s");
        assert!(state.milli_rate > 70_000 && state.milli_rate < 100_000);
        // Ten seconds later the ceiling is reached again, never passed.
        let (state, _) = state.take(c, 1, 20_000);
        assert_eq!(state.milli_rate, 100_000);
        // A second overload after recovery lowers it again.
        let state = state.refused(c, None, 20_001);
        assert_eq!(state.milli_rate, 70_000);
        assert_eq!(state.blocked_until_ms, 21_001);
    }

    #[test]
    fn a_lowered_ceiling_applies_at_once() {
        let state = BudgetState::full(ceiling(1000.0), 0);
        let (state, _) = state.take(ceiling(10.0), 1_000, 0);
        assert_eq!(state.milli_rate, 10_000);
        assert!(state.milli_tokens <= 5_000);
    }
}
