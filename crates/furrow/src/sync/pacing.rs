//! Every John Deere request of one client key draws from one budget (John Deere sets the rate
//! limit per application), shared by the replicas through the database: each replica reserves
//! requests from it (what accrued since the last draw, up to about 250 ms of the rate, the next
//! draw under way while the reserve is spent), so no replica spends what another already has,
//! and hands them out one at a time, spread at the rate, to the waiting account (grower) that
//! began using the budget last, of those that began within the last seconds, else to the one
//! given least lately — a 5-field grower's first sync is not queued behind a 5,000-field one's,
//! nor given one turn in hundreds, nor one in 500 when 500 growers connected just before it.
//! A grower that connects on its own (not one of many connected together) has the budget to
//! itself until its first fields are stored, briefly (at most 300 ms, and a quarter of the time
//! at most), so that its first data comes as fast as it would alone.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deere::{Pacer, SharedPacer};
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use crate::config::Settings;
use crate::domain::budget::{Grant, RateCeiling};
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

    /// How long `account` has been using `client_key`'s budget, as the budget's own turns
    /// count it. A key not paced has no such record: every account of it counts as new.
    pub fn standing(&self, client_key: &str, account: &str) -> Standing {
        let budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(budget) = budgets.get(client_key) else {
            return Standing::New;
        };
        let waiting = budget.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.standing(account, Instant::now())
    }

    /// The pacer for `account`'s requests with `client_key` (an account is a Leaf user), or
    /// `None` when that key is not paced.
    pub fn pacer(&self, client_key: &str, account: &str) -> Option<SharedPacer> {
        Some(Arc::new(AccountPacer {
            budget: self.budget(client_key)?,
            account: account.to_string(),
        }))
    }

    /// `account` (a grower) is connecting: on its own, it has this replica's share of
    /// `client_key`'s budget to itself until [`RateBudgets::release_hold`], for at most
    /// [`FIRST_DATA_HOLD`] (see [`Waiting::hold_for_first_data`]).
    pub fn connecting(&self, client_key: &str, account: &str) {
        if let Some(budget) = self.budget(client_key) {
            let mut waiting = budget.waiting.lock().unwrap_or_else(|e| e.into_inner());
            waiting.hold_for_first_data(account, Instant::now());
            // A hold it ended may have the dispatcher waiting.
            budget.arrived.notify_one();
        }
    }

    /// `account`'s first data is stored, or it will have none: the others' requests go again.
    pub fn release_hold(&self, client_key: &str, account: &str) {
        let budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(budget) = budgets.get(client_key) else {
            return;
        };
        let mut waiting = budget.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.hold.as_ref().is_some_and(|h| h.account == account) {
            waiting.end_hold(Instant::now());
            budget.arrived.notify_one();
        }
    }

    /// Whether `account` holds `client_key`'s budget now (see [`RateBudgets::connecting`]).
    pub fn holds(&self, client_key: &str, account: &str) -> bool {
        let budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        budgets.get(client_key).is_some_and(|budget| {
            let waiting = budget.waiting.lock().unwrap_or_else(|e| e.into_inner());
            waiting
                .hold
                .as_ref()
                .is_some_and(|h| h.account == account && h.until > Instant::now())
        })
    }

    /// Whether `account` has requests waiting for `client_key`'s budget now: `None` when that
    /// key is not paced.
    pub fn has_waiting(&self, client_key: &str, account: &str) -> Option<bool> {
        let budget = self.budget(client_key)?;
        let waiting = budget.waiting.lock().unwrap_or_else(|e| e.into_inner());
        Some(waiting.queues.get(account).is_some_and(|q| !q.is_empty()))
    }

    /// `client_key`'s budget, made at its first use, or `None` when that key is not paced.
    fn budget(&self, client_key: &str) -> Option<Arc<ClientBudget>> {
        let ceiling = self
            .overrides
            .get(client_key)
            .copied()
            .unwrap_or(self.default)?;
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let budget = budgets.entry(client_key.to_string()).or_insert_with(|| {
            Arc::new(ClientBudget {
                client_key: client_key.to_string(),
                ceiling,
                store: self.store.clone(),
                reserved: tokio::sync::Mutex::new(Reserved::new(ceiling)),
                waiting: Mutex::default(),
                arrived: tokio::sync::Notify::new(),
                refusals: AtomicU64::new(0),
            })
        });
        Some(budget.clone())
    }
}

/// Requests reserved from the shared budget and not yet sent, the refusal count they were
/// reserved under (a 429 voids them), and when the next may go.
struct Reserved {
    requests: u32,
    refusals_seen: u64,
    /// Requests are handed out spread at the budget's rate, not all of a draw at once: a
    /// request that comes in (a new grower's, say) then waits a fraction of a millisecond for
    /// its turn rather than for the next draw from the database, and John Deere sees an even
    /// stream rather than bursts.
    next_at: Instant,
    /// Seconds between two requests handed out.
    spacing: f64,
    /// No draw before this (the budget was empty, or blocked by a 429).
    draw_after: Instant,
    /// When the last draw gave requests.
    drawn_at: Instant,
}

/// Requests reserved longer ago than this, and not spent, are given up when requests come
/// again: spent late, on top of what the other replicas spend meanwhile, they would make a
/// burst the shared budget never allowed.
const RESERVE_KEPT: Duration = Duration::from_secs(1);
/// Handing out runs this much faster than the shared budget's rate, so that the spreading
/// never holds back what the budget allows: the budget itself stays the limit. The sync's
/// requests come in bursts; at 1.25 the bursts queued behind the spreading while the budget
/// went unspent between them (500-grower benchmark: 1.25–1.29 × the upstream bound; 1.16–1.21
/// at 1.5; 1.12–1.15 at 2, where a small grower's first sync fared worse beside it).
const HAND_OUT_HEADROOM: f64 = 1.5;
/// Handing out may catch up this far when it fell behind: when nobody waited for a while (the
/// sync's reads come in bursts), what the budget accrued meanwhile goes at once, as John
/// Deere's own bucket allows.
const HAND_OUT_SLACK: Duration = Duration::from_millis(100);

impl Reserved {
    fn new(ceiling: RateCeiling) -> Self {
        let now = Instant::now();
        Self {
            requests: 0,
            refusals_seen: 0,
            next_at: now,
            spacing: 1.0 / (ceiling.per_sec() * HAND_OUT_HEADROOM),
            draw_after: now,
            drawn_at: now,
        }
    }

    /// The shared budget's rate changed (AIMD): hand out at the new one.
    fn set_rate(&mut self, rate: f64) {
        if rate > 0.0 {
            self.spacing = 1.0 / (rate * HAND_OUT_HEADROOM);
        }
    }

    /// One request was handed out at `now`.
    fn handed_out(&mut self, now: Instant) {
        self.requests -= 1;

        let slack = HAND_OUT_SLACK.max(Duration::from_secs_f64(2.0 * self.spacing));
        let earliest = now.checked_sub(slack).unwrap_or(now);
        self.next_at = self.next_at.max(earliest) + Duration::from_secs_f64(self.spacing);
    }
}

/// Requests waiting for the budget, by account (a Leaf user), and what each account was given
/// lately.
#[derive(Default)]
struct Waiting {
    queues: HashMap<String, VecDeque<oneshot::Sender<()>>>,
    served: HashMap<String, Served>,
    /// Whether a dispatcher is handing out requests now.
    dispatching: bool,
    /// The grower that connected on its own, on its way to its first data, with the budget to
    /// itself (on this replica).
    hold: Option<Hold>,
    /// When the last grower connected.
    last_connected: Option<Instant>,
    /// No hold begins before this (see [`HOLD_SHARE`]).
    next_hold_after: Option<Instant>,
}

/// A grower's hold on the budget until its first data is stored.
struct Hold {
    account: String,
    since: Instant,
    until: Instant,
}

/// Whose request goes next.
enum NextTurn {
    Account(String),
    /// Only growers on their way to their first data are served until then (or until one of
    /// their requests comes), and none waits now.
    HeldUntil(Instant),
}

/// Requests an account was given, decaying by half every [`SERVED_HALF_LIFE`], and since when
/// it has been using the budget.
#[derive(Clone, Copy)]
struct Served {
    requests: f64,
    at: Instant,
    since: Instant,
}

/// How long an account's past use of the budget counts against it.
const SERVED_HALF_LIFE: Duration = Duration::from_secs(30);

/// An account that began using the budget this recently goes ahead of those using it longer:
/// a grower just connected (whose whole first sync, for a few fields, takes well under a
/// second alone) is not given a turn only after every one of hundreds of syncing accounts —
/// equal shares of 2,000 requests/s among 500 accounts are 4 requests/s each. A large account
/// gets the same head start, then shares evenly.
const NEWCOMER_WINDOW: Duration = Duration::from_secs(5);

/// A grower that connects on its own has the budget to itself until its first fields are
/// stored, for at most this long. Alone, its first data takes about 0.1 s; beside 500 growers'
/// first sync it took up to two to four times that, every step (token exchange, check, lists
/// read and written) slower on two cores kept busy by furrow, its database and John Deere's
/// simulator, whatever turn the budget gave its requests. Holding the others' requests back
/// meanwhile frees the machine for it; what the budget accrues meanwhile is theirs afterwards
/// (the shared bucket keeps half a second of the rate). A grower with no fields holds the
/// budget this long.
const FIRST_DATA_HOLD: Duration = Duration::from_millis(300);
/// A grower connects "on its own" at least this long after the grower before it. Growers
/// connected together (an application onboarding hundreds, one every few milliseconds) share
/// the budget as newcomers instead: each holding the others back in turn would stall their
/// sync. The next grower to connect ends a hold.
const LONE_GAP: Duration = Duration::from_millis(50);
/// The next hold begins no sooner after one began than this many times its length: growers
/// connecting on their own one after another hold the others back a quarter of the time at
/// most.
const HOLD_SHARE: u32 = 4;

/// How many accounts, the last to begin using a budget within [`NEWCOMER_WINDOW`], count as
/// the newest ([`Standing::Newest`]).
pub(crate) const NEWEST_ACCOUNTS: usize = 4;

/// How long an account has been using its client key's budget: what its sync's work at the
/// database goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// One of the [`NEWEST_ACCOUNTS`] to begin within [`NEWCOMER_WINDOW`]: a grower connected
    /// moments ago, on its way to its first data, even while hundreds more connected just
    /// before it are new too.
    Newest,
    /// Began within [`NEWCOMER_WINDOW`], or has not used the budget yet.
    New,
    /// Has been using the budget for longer.
    Settled,
}

impl Served {
    fn now(self, now: Instant) -> f64 {
        let halves = now.duration_since(self.at).as_secs_f64() / SERVED_HALF_LIFE.as_secs_f64();
        self.requests * 0.5f64.powf(halves)
    }
}

impl Waiting {
    /// The waiting account to serve next: accounts that began using the budget within
    /// [`NEWCOMER_WINDOW`] first, the one that began last first among them; then the one given
    /// least lately — so a small account is not starved by large ones, and accounts of equal
    /// use share the budget evenly. Among newcomers, the youngest: with 500 growers connected
    /// within two seconds, all new and all as little served, one connected after them shared
    /// the budget with all 500 (its first fields in 0.7–1.0 s against 0.12 s alone); served
    /// first, its few requests for its first data go at once, and each of the 500 had the same
    /// turn as it arrived.
    fn next_account(&self, now: Instant) -> Option<NextTurn> {
        let hold = self.hold.as_ref().filter(|h| h.until > now);
        let next = self
            .queues
            .iter()
            .filter(|(account, q)| !q.is_empty() && hold.is_none_or(|h| h.account == **account))
            .map(|(account, _)| {
                let served = self.served.get(account);
                let newcomer = self.newcomer(account, now);
                let rank = match served {
                    None => 0.0,
                    Some(s) if newcomer => now.duration_since(s.since).as_secs_f64(),
                    Some(s) => s.now(now),
                };
                (account, !newcomer, rank)
            })
            .min_by(|a, b| a.1.cmp(&b.1).then(a.2.total_cmp(&b.2)))
            .map(|(account, _, _)| NextTurn::Account(account.clone()));
        next.or_else(|| hold.map(|h| NextTurn::HeldUntil(h.until)))
    }

    /// `account` connected at `now`: on its own, it holds the others' requests back until its
    /// first data is stored, for at most [`FIRST_DATA_HOLD`]; any other's hold ends.
    fn hold_for_first_data(&mut self, account: &str, now: Instant) {
        let since = |at: Option<Instant>, apart: Duration| {
            at.is_none_or(|at| now.duration_since(at) >= apart)
        };
        self.end_hold(now);
        let alone = since(self.last_connected, LONE_GAP)
            && self.next_hold_after.is_none_or(|after| now >= after);
        self.hold = alone.then(|| Hold {
            account: account.to_string(),
            since: now,
            until: now + FIRST_DATA_HOLD,
        });
        self.last_connected = Some(now);
    }

    /// Ends the hold (its grower's first data stored, or another grower connecting, or its
    /// time up), and puts off the next by [`HOLD_SHARE`] times its length.
    fn end_hold(&mut self, now: Instant) {
        if let Some(hold) = self.hold.take() {
            let end = now.min(hold.until);
            self.next_hold_after = Some(hold.since + (end - hold.since) * HOLD_SHARE);
        }
    }

    /// Whether `account` began using the budget within [`NEWCOMER_WINDOW`] of `now`, or has
    /// not used it yet.
    fn newcomer(&self, account: &str, now: Instant) -> bool {
        self.served
            .get(account)
            .is_none_or(|s| now.duration_since(s.since) < NEWCOMER_WINDOW)
    }

    /// `account`'s [`Standing`] at `now`. One not seen yet is new, not the newest: after a
    /// restart every account is unseen.
    fn standing(&self, account: &str, now: Instant) -> Standing {
        let Some(own) = self.served.get(account) else {
            return Standing::New;
        };
        if now.duration_since(own.since) >= NEWCOMER_WINDOW {
            return Standing::Settled;
        }
        let began_after = self
            .served
            .values()
            .filter(|other| other.since > own.since)
            .take(NEWEST_ACCOUNTS)
            .count();
        if began_after < NEWEST_ACCOUNTS {
            Standing::Newest
        } else {
            Standing::New
        }
    }

    fn count(&mut self, account: &str, now: Instant) {
        let (served, since) = self
            .served
            .get(account)
            // An account idle long enough that its use no longer counts begins anew.
            .filter(|s| s.now(now) > 0.5)
            .map_or((0.0, now), |s| (s.now(now), s.since));
        self.served.insert(
            account.to_string(),
            Served {
                requests: served + 1.0,
                at: now,
                since,
            },
        );
        if self.served.len() > 10_000 {
            // Long idle accounts' use no longer matters.
            self.served.retain(|_, s| s.now(now) > 0.5);
        }
    }
}

/// What one draw from the shared budget gave, and the refusal count when it was made (a 429
/// that came meanwhile voids it).
struct Draw {
    drawn: crate::store::StoreResult<(Grant, f64)>,
    refusals_seen: u64,
}

struct ClientBudget {
    client_key: String,
    ceiling: RateCeiling,
    store: Store,
    /// Held by the dispatcher while it hands out requests.
    reserved: tokio::sync::Mutex<Reserved>,
    waiting: Mutex<Waiting>,
    /// A request came in while the dispatcher runs (it may be waiting for a draw with nobody
    /// left to serve).
    arrived: tokio::sync::Notify,
    refusals: AtomicU64,
}

impl ClientBudget {
    /// Waits for one request of `account`'s to be allowed.
    async fn take_one(self: Arc<Self>, account: &str) {
        let started = Instant::now();
        let (allowed, wait) = oneshot::channel();
        let start_dispatcher = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            waiting
                .queues
                .entry(account.to_string())
                .or_default()
                .push_back(allowed);
            !std::mem::replace(&mut waiting.dispatching, true)
        };
        if start_dispatcher {
            tokio::spawn(self.clone().dispatch());
        } else {
            self.arrived.notify_one();
        }
        // The dispatcher never drops a waiter unanswered; should it be stopped (runtime
        // shutting down), the request goes rather than hangs.
        let _ = wait.await;
        metrics::histogram!("furrow_rate_budget_wait_seconds")
            .record(started.elapsed().as_secs_f64());
    }

    /// Hands out requests from the budget, one at a time and spread at its rate, to the
    /// account given least lately, until nobody waits and no draw is under way. The next draw
    /// from the shared budget is under way while the reserve is spent, so handing out waits on
    /// the database only when the budget is spent faster than it refills. (A dispatcher that
    /// stopped with its draw under way made the requests that came meanwhile wait for that draw
    /// to end: 165 times in one run of the sync benchmark, 50 ms each.)
    async fn dispatch(self: Arc<Self>) {
        let mut reserved = self.reserved.lock().await;
        if reserved.drawn_at.elapsed() > RESERVE_KEPT {
            reserved.requests = 0;
        }
        let mut drawing: Option<BoxFuture<'static, Draw>> = None;
        loop {
            self.void_if_refused(&mut reserved);
            if !self.has_waiters() {
                match drawing.as_mut() {
                    // Serving whoever comes while the draw is under way; what it draws is
                    // kept for them.
                    Some(draw) => tokio::select! {
                        drawn = draw => {
                            drawing = None;
                            self.received(&mut reserved, drawn);
                        }
                        _ = self.arrived.notified() => {}
                    },
                    None if self.stop_dispatching() => return,
                    None => {}
                }
                continue;
            }
            let now = Instant::now();
            if drawing.is_none()
                && reserved.requests < self.ceiling.draw_limit()
                && now >= reserved.draw_after
            {
                drawing = Some(Box::pin(self.clone().draw()));
            }
            if reserved.requests == 0 {
                match drawing.take() {
                    Some(draw) => self.received(&mut reserved, draw.await),
                    None => tokio::time::sleep_until(reserved.draw_after.into()).await,
                }
                continue;
            }
            if reserved.next_at > now {
                let next_at = tokio::time::sleep_until(reserved.next_at.into());
                self.wait_or_receive(&mut reserved, &mut drawing, next_at)
                    .await;
                continue;
            }
            let held_until = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                match waiting.next_account(now) {
                    Some(NextTurn::Account(account)) => {
                        let waiter = waiting
                            .queues
                            .get_mut(&account)
                            .and_then(VecDeque::pop_front);
                        // A cancelled request's turn goes to the next.
                        if let Some(Ok(())) = waiter.map(|w| w.send(())) {
                            waiting.count(&account, now);
                            reserved.handed_out(now);
                        }
                        None
                    }
                    Some(NextTurn::HeldUntil(until)) => Some(until),
                    // Everyone gave up meanwhile: the request is kept for the next one.
                    None => None,
                }
            };
            if let Some(until) = held_until {
                let wake = async {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until.into()) => {}
                        _ = self.arrived.notified() => {}
                    }
                };
                self.wait_or_receive(&mut reserved, &mut drawing, wake)
                    .await;
            }
        }
    }

    /// Waits for `wake`, or for the draw under way should it end first (what it drew is
    /// received).
    async fn wait_or_receive(
        &self,
        reserved: &mut Reserved,
        drawing: &mut Option<BoxFuture<'static, Draw>>,
        wake: impl std::future::Future<Output = ()>,
    ) {
        match drawing.as_mut() {
            Some(draw) => tokio::select! {
                drawn = draw => {
                    *drawing = None;
                    self.received(reserved, drawn);
                }
                _ = wake => {}
            },
            None => wake.await,
        }
    }

    /// Whether any request waits (dropping the cancelled ones).
    fn has_waiters(&self) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.queues.retain(|_, q| {
            q.retain(|w| !w.is_closed());
            !q.is_empty()
        });
        !waiting.queues.is_empty()
    }

    /// Whether the dispatcher stops: nobody waits (checked under the same lock a request
    /// queues under, so the next request starts another dispatcher).
    fn stop_dispatching(&self) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let idle = waiting.queues.values().all(VecDeque::is_empty);
        if idle {
            waiting.dispatching = false;
        }
        idle
    }

    /// Reserves up to a batch of requests from the shared budget.
    async fn draw(self: Arc<Self>) -> Draw {
        let refusals_seen = self.refusals.load(Ordering::Acquire);
        let started = Instant::now();
        let drawn = self
            .store
            .draw_rate_budget(&self.client_key, self.ceiling, self.ceiling.draw_limit())
            .await;
        // A draw that takes longer than the reserve lasts holds the requests back.
        metrics::histogram!("furrow_rate_budget_draw_seconds")
            .record(started.elapsed().as_secs_f64());
        Draw {
            drawn,
            refusals_seen,
        }
    }

    /// A 429 voids what was reserved before it.
    fn void_if_refused(&self, reserved: &mut Reserved) {
        let refusals = self.refusals.load(Ordering::Acquire);
        if reserved.refusals_seen != refusals {
            reserved.requests = 0;
            reserved.refusals_seen = refusals;
        }
    }

    /// Adds what a draw gave to the reserve.
    fn received(&self, reserved: &mut Reserved, draw: Draw) {
        let now = Instant::now();
        self.void_if_refused(reserved);
        match draw.drawn {
            Ok((grant, rate)) => {
                self.record_rate(rate);
                reserved.set_rate(rate);
                if draw.refusals_seen == reserved.refusals_seen && grant.requests > 0 {
                    reserved.requests += grant.requests;
                    reserved.drawn_at = now;
                }
                if grant.requests == 0 {
                    reserved.draw_after = now + Duration::from_millis(grant.retry_in_ms);
                }
            }
            Err(e) => {
                // The budget is a courtesy to John Deere; a database hiccup must not stop
                // the sync, so requests go at this replica's share of the rate meanwhile.
                tracing::warn!(error = %e, "rate budget unavailable; pacing locally");
                reserved.requests += 1;
                reserved.draw_after = now + Duration::from_secs_f64(1.0 / self.ceiling.per_sec());
            }
        }
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

/// One account's use of its client key's budget.
struct AccountPacer {
    budget: Arc<ClientBudget>,
    account: String,
}

impl Pacer for AccountPacer {
    fn acquire(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.budget.clone().take_one(&self.account))
    }

    fn rate_limited(&self, retry_after: Option<Duration>) -> BoxFuture<'_, ()> {
        Box::pin(self.budget.refused(retry_after))
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

    /// Budgets at `rate` requests/s, drawn from a database of their own.
    async fn paced(name: &str, rate: f64) -> RateBudgets {
        let store = crate::store::temp_sqlite_store(name).await;
        let settings = Settings {
            deere_rate_limit: rate,
            ..Settings::default()
        };
        RateBudgets::from_settings(&settings, store).unwrap()
    }

    #[tokio::test]
    async fn a_new_accounts_request_waits_a_turn_not_for_another_accounts_queue() {
        let budgets = paced("pacing", 100.0).await;
        let large = budgets.pacer("k", "large").unwrap();
        let small = budgets.pacer("k", "small").unwrap();
        let granted = Arc::new(Mutex::new(Vec::new()));
        let mut queue = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let (pacer, granted) = (large.clone(), granted.clone());
            queue.spawn(async move {
                pacer.acquire().await;
                granted.lock().unwrap().push("large");
            });
        }
        while granted.lock().unwrap().len() < 10 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        small.acquire().await;
        granted.lock().unwrap().push("small");
        let position = granted
            .lock()
            .unwrap()
            .iter()
            .position(|a| *a == "small")
            .unwrap();
        // The bucket starts full (half a second of the rate, more than the queue): handed out
        // as drawn, the small account's request would wait behind all 40.
        assert!(
            position < 20,
            "the small account's request went {position}th"
        );
        queue.shutdown().await;
    }

    /// The last few accounts to begin within the window are the newest, however many began
    /// just before them; past the window an account is settled; one never seen is new.
    #[test]
    fn the_newest_accounts_are_the_last_few_to_begin_within_the_window() {
        let now = Instant::now();
        let mut waiting = Waiting::default();
        // Accounts that began one after another, 10 ms apart, the last one just now.
        let herd = NEWEST_ACCOUNTS + 10;
        for n in 0..herd {
            let since = now - Duration::from_millis(10 * (herd - 1 - n) as u64);
            waiting.served.insert(
                format!("grower{n}"),
                Served {
                    requests: 3.0,
                    at: now,
                    since,
                },
            );
        }
        let standing = |w: &Waiting, n: usize, at| w.standing(&format!("grower{n}"), at);
        for n in 0..herd - NEWEST_ACCOUNTS {
            assert_eq!(standing(&waiting, n, now), Standing::New, "grower{n}");
        }
        for n in herd - NEWEST_ACCOUNTS..herd {
            assert_eq!(standing(&waiting, n, now), Standing::Newest, "grower{n}");
        }
        // One more begins: the oldest of the newest is only new now.
        waiting.count("latecomer", now);
        assert_eq!(waiting.standing("latecomer", now), Standing::Newest);
        assert_eq!(
            standing(&waiting, herd - NEWEST_ACCOUNTS, now),
            Standing::New
        );
        // Past the window even the newest is settled.
        let later = now + NEWCOMER_WINDOW;
        assert_eq!(waiting.standing("latecomer", later), Standing::Settled);
        // An account never seen (a restart forgets them all) is new, not the newest.
        assert_eq!(waiting.standing("unseen", now), Standing::New);
    }

    /// The account whose request goes next, if one is served now.
    fn next(waiting: &Waiting, now: Instant) -> Option<String> {
        match waiting.next_account(now)? {
            NextTurn::Account(account) => Some(account),
            NextTurn::HeldUntil(_) => None,
        }
    }

    #[test]
    fn accounts_new_to_the_budget_go_first_youngest_first_then_the_one_given_least() {
        let now = Instant::now();
        let mut waiting = Waiting::default();
        let mut receivers = Vec::new();
        for account in ["old-light", "old-heavy", "new"] {
            let (tx, rx) = oneshot::channel();
            receivers.push(rx);
            waiting
                .queues
                .entry(account.to_string())
                .or_default()
                .push_back(tx);
        }
        let served = |requests: f64, for_secs: u64| Served {
            requests,
            at: now,
            since: now - Duration::from_secs(for_secs),
        };
        waiting.served.insert("old-light".into(), served(2.0, 60));
        waiting.served.insert("old-heavy".into(), served(500.0, 60));
        // Given more than old-light lately, but within its first seconds.
        waiting.served.insert("new".into(), served(20.0, 1));
        assert_eq!(next(&waiting, now), Some("new".into()));
        // Of two newcomers, the one that began last, however little the other was given.
        let (tx, _newest) = oneshot::channel();
        waiting
            .queues
            .entry("newest".into())
            .or_default()
            .push_back(tx);
        waiting.served.insert("newest".into(), served(30.0, 0));
        assert_eq!(next(&waiting, now), Some("newest".into()));
        waiting.queues.remove("newest");
        waiting.served.remove("newest");
        // Past its window it queues by use like the others.
        let later = now + NEWCOMER_WINDOW;
        assert_eq!(next(&waiting, later), Some("old-light".into()));
        waiting.queues.remove("old-light");
        assert_eq!(next(&waiting, later), Some("new".into()));
        // An account counted for the first time begins its window then.
        waiting.count("fresh", later);
        let fresh = waiting.served["fresh"];
        assert_eq!(fresh.since, later);
        waiting.count("new", later);
        assert_eq!(waiting.served["new"].since, now - Duration::from_secs(1));
    }

    /// Waiting with a request queued for each of `accounts`.
    fn queued(accounts: &[&str]) -> (Waiting, Vec<oneshot::Receiver<()>>) {
        let mut waiting = Waiting::default();
        let receivers = accounts
            .iter()
            .map(|account| {
                let (tx, rx) = oneshot::channel();
                waiting
                    .queues
                    .entry(account.to_string())
                    .or_default()
                    .push_back(tx);
                rx
            })
            .collect();
        (waiting, receivers)
    }

    /// A grower connecting on its own is the only one served until its first data is stored
    /// (or its time is up); one connecting right after another ends the other's hold and has
    /// none; and holds take a quarter of the time at most.
    #[test]
    fn a_grower_connecting_on_its_own_has_the_budget_to_itself_until_its_first_data() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let (mut waiting, _receivers) = queued(&["old", "lone"]);
        waiting.served.insert(
            "old".into(),
            Served {
                requests: 1.0,
                at: start,
                since: start,
            },
        );
        waiting.hold_for_first_data("lone", start);
        assert_eq!(next(&waiting, ms(1)).as_deref(), Some("lone"));
        // With none of its own waiting, nobody is served until the hold ends.
        waiting.queues.remove("lone");
        assert!(matches!(
            waiting.next_account(ms(1)),
            Some(NextTurn::HeldUntil(until)) if until == start + FIRST_DATA_HOLD
        ));
        // Past its time, the others go again.
        assert_eq!(
            next(&waiting, start + FIRST_DATA_HOLD).as_deref(),
            Some("old")
        );

        // Having held the budget its whole 300 ms, a grower holds it again only 1.2 s after it
        // began.
        waiting.hold_for_first_data("next", ms(1_100));
        assert_eq!(next(&waiting, ms(1_101)).as_deref(), Some("old"));
        // Its first data stored after 100 ms: the others go at once, and no grower holds the
        // budget again before 400 ms after it began.
        waiting.hold_for_first_data("lone", ms(1_200));
        assert_eq!(next(&waiting, ms(1_250)), None);
        waiting.end_hold(ms(1_300));
        assert_eq!(next(&waiting, ms(1_300)).as_deref(), Some("old"));
        waiting.hold_for_first_data("too-soon", ms(1_500));
        assert_eq!(next(&waiting, ms(1_501)).as_deref(), Some("old"));
        waiting.hold_for_first_data("in-time", ms(1_600));
        assert_eq!(next(&waiting, ms(1_601)), None);

        // A grower connecting within LONE_GAP of it (growers connected together) ends its hold
        // and has none.
        let together = ms(1_600) + LONE_GAP / 2;
        waiting.hold_for_first_data("together", together);
        assert_eq!(next(&waiting, together).as_deref(), Some("old"));
    }

    /// Through the dispatcher: the others' requests stop while a grower connecting on its own
    /// is served, and go again once its first data is stored.
    #[tokio::test]
    async fn the_others_requests_wait_while_a_connecting_grower_holds_the_budget() {
        let budgets = paced("pacing-hold", 200.0).await;
        let old = budgets.pacer("k", "old").unwrap();
        let granted = Arc::new(AtomicU64::new(0));
        let mut queue = tokio::task::JoinSet::new();
        for _ in 0..400 {
            let (pacer, granted) = (old.clone(), granted.clone());
            queue.spawn(async move {
                pacer.acquire().await;
                granted.fetch_add(1, Ordering::SeqCst);
            });
        }
        while granted.load(Ordering::SeqCst) < 120 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let connected = Instant::now();
        budgets.connecting("k", "lone");
        // Its own request goes while hundreds of the other's wait.
        budgets.pacer("k", "lone").unwrap().acquire().await;
        let before = granted.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let during = granted.load(Ordering::SeqCst) - before;
        // At 300 requests/s handed out, 100 ms would give the other about 30.
        if connected.elapsed() < FIRST_DATA_HOLD {
            assert!(
                during <= 2,
                "{during} of the other's requests went during the hold"
            );
        }
        budgets.release_hold("k", "lone");
        let released = Instant::now();
        while granted.load(Ordering::SeqCst) < before + during + 10 {
            assert!(
                released.elapsed() < Duration::from_secs(5),
                "the other's requests did not go again"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        queue.shutdown().await;
    }

    #[tokio::test]
    async fn rates_per_client_key_override_the_default() {
        let b = budgets(" fast = 500 , off=0").await.unwrap();
        assert_eq!(b.default.unwrap().per_sec(), 10.0);
        assert_eq!(b.overrides["fast"].unwrap().per_sec(), 500.0);
        assert!(b.pacer("off", "u").is_none(), "0 means not paced");
        assert!(b.pacer("other", "u").is_some());
        for bad in ["fast", "=5", "k=-1", "k=fast"] {
            assert!(budgets(bad).await.is_err(), "{bad} was accepted");
        }
    }
}
