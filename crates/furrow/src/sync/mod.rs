//! The background engine: claims due jobs from the database (leases), runs them with bounded
//! concurrency, and runs retention. Several replicas can run it against one database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::app::AppState;
use crate::store::{now_ms, Lane};

pub mod alerts;
pub mod assets;
pub mod credentials;
pub mod fields;
pub mod link;
pub mod machine_data;
pub mod organizations;
pub mod pacing;
pub mod webhooks;
pub mod write_back;

/// Runs until `stop` turns true. Sync-lane claims (token upkeep, sync runs and their parts)
/// loop on their own, so that a grower's queued work is claimed as soon as a slot frees, not
/// after this replica's event, machine-data and alert queries of the same round (under load
/// such a round took up to a second).
pub async fn run_engine(state: AppState, stop: watch::Receiver<bool>) {
    let slots = SyncSlots::new(state.settings.engine_concurrency);
    let (sync_lane, first_runs, other_lanes) = tokio::join!(
        claim_sync_lane(&state, &slots, stop.clone()),
        start_first_runs(&state, &slots, stop.clone()),
        claim_other_lanes(&state, stop)
    );
    drain(&state, [sync_lane, first_runs, other_lanes]).await;
}

/// The sync lane's slots: those any claim fills, those kept for credentials with nothing
/// running, and those of new credentials' first runs.
#[derive(Clone)]
struct SyncSlots {
    any: Arc<Semaphore>,
    idle_only: Arc<Semaphore>,
    /// As many as the kept slots, beyond `engine_concurrency`: the kept slots are mostly held
    /// by the parts of large syncs whose credentials have none running.
    first_runs: Arc<Semaphore>,
    /// One for each of the newest growers' first runs, beyond the others, when every other
    /// slot is held: a run beside the slots leaves its first part to them, and it waited for
    /// one of them to end (after a 500-grower onboarding at 1,000 requests/s, a grower's first
    /// fields 0.31–0.60 s after its credentials' POST, 0.50 of them waiting; 0.12 alone).
    /// The onboarding's last growers may still hold them all (their first parts run for
    /// seconds); a grower connected then waits for a slot as before.
    newest: Arc<Semaphore>,
}

impl SyncSlots {
    fn new(engine_concurrency: usize) -> Self {
        let concurrency = engine_concurrency.max(1);
        let kept = slots_kept_for_idle_credentials(concurrency);
        Self {
            any: Arc::new(Semaphore::new(concurrency - kept)),
            idle_only: Arc::new(Semaphore::new(kept)),
            first_runs: Arc::new(Semaphore::new(kept)),
            newest: Arc::new(Semaphore::new(pacing::NEWEST_ACCOUNTS)),
        }
    }

    /// A free slot for a first run, of any kind, if there is one; `still_newest`, when the
    /// grower is one of the newest, lets it take one of theirs, held while it is one of them.
    fn first_run_slot(
        &self,
        still_newest: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    ) -> (Option<tokio::sync::OwnedSemaphorePermit>, Slot) {
        let shared = [&self.any, &self.idle_only, &self.first_runs]
            .into_iter()
            .find_map(|slots| Arc::clone(slots).try_acquire_owned().ok());
        if let Some(permit) = shared {
            return (Some(permit), Slot::Shared);
        }
        let newest = still_newest.and_then(|still_newest| {
            let permit = Arc::clone(&self.newest).try_acquire_owned().ok()?;
            Some(NewestSlot {
                permit: Arc::new(std::sync::Mutex::new(Some(permit))),
                still_newest,
            })
        });
        (None, newest.map_or(Slot::Beside, Slot::Newest))
    }
}

/// Where a sync-lane job runs.
#[derive(Clone)]
pub enum Slot {
    /// Beside the slots (a first run that found none free): a sync run leaves its parts to them.
    Beside,
    /// In one of the slots any job may hold.
    Shared,
    /// In one of the newest growers' slots ([`SyncSlots::newest`]), while the grower is one of
    /// them.
    Newest(NewestSlot),
}

impl Slot {
    /// Whether the job holds a slot, in which a sync run may go on with its first part.
    pub fn held(&self) -> bool {
        match self {
            Slot::Beside => false,
            Slot::Shared => true,
            Slot::Newest(slot) => slot.held(),
        }
    }
}

/// One of the newest growers' slots, held only while its grower is one of them: then it is
/// for the next one, and the grower's run goes on beside the slots, leaving its parts to them
/// (its first part, stopped before its first request or after its first data, is queued
/// again). Held to the end of the first part, the four were taken early in a 500-grower
/// onboarding by growers whose runs then waited seconds for their turns at an old account's
/// share, and a grower connected after it found none: its first fields 0.4–1.0 s after its
/// credentials' POST, against 0.1 s alone.
#[derive(Clone)]
pub struct NewestSlot {
    permit: Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>,
    still_newest: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl NewestSlot {
    /// Whether the slot is still held; asked after its grower is no longer one of the newest,
    /// it is given up for good.
    pub fn held(&self) -> bool {
        let mut permit = self.permit.lock().unwrap_or_else(|e| e.into_inner());
        if permit.is_some() && !(self.still_newest)() {
            *permit = None;
        }
        permit.is_some()
    }

    /// Gives the slot up as soon as its grower is no longer one of the newest (asked every
    /// [`NEWEST_SLOT_CHECK`]), wherever its run or first part is; never returns while held.
    async fn give_up_when_no_longer_newest(&self) {
        while self.held() {
            tokio::time::sleep(NEWEST_SLOT_CHECK).await;
        }
    }
}

/// How often a newest grower's slot asks whether its grower is still one of the newest.
const NEWEST_SLOT_CHECK: Duration = Duration::from_millis(20);

/// Of the sync lane's slots, how many are kept for credentials with nothing running: a grower
/// connected while every other slot holds a large sync's parts (each running for seconds at a
/// shared rate limit) starts at once instead of waiting for one of them to end.
fn slots_kept_for_idle_credentials(concurrency: usize) -> usize {
    if concurrency < 8 {
        0
    } else {
        (concurrency / 16).clamp(2, 8)
    }
}

/// How long the kept slots wait after a claim that found too little for them.
const IDLE_CLAIM_PAUSE: Duration = Duration::from_millis(100);

/// A claim ranks every due job of the lane, so its cost grows with the queue: with a first sync
/// of 500 growers queued it took about 4 ms of a SQLite reader connection, and a claim after
/// every finished part (90 a second) took a third of a core. The next claim waits this many
/// times as long as the last one took, and then takes the several slots freed meanwhile; with
/// a short queue a claim takes a fraction of a millisecond and the wait is as short.
const CLAIM_SPACING_FACTOR: u32 = 4;

/// The longest a claim waits after the last one: a freed slot stays empty at most this long.
/// (A claim's time includes its wait for a pooled connection, which on a busy PostgreSQL was
/// tens of milliseconds: spaced by that alone, slots stayed empty for a tenth of a second.)
const MAX_CLAIM_SPACING: Duration = Duration::from_millis(20);

/// How long the next claim of the sync lane waits after one that took `took`.
fn claim_spacing(took: Duration) -> Duration {
    (took * CLAIM_SPACING_FACTOR).min(MAX_CLAIM_SPACING)
}

/// Claims due jobs of the sync lane into this replica's `engine_concurrency` slots, until
/// `stop`; returns the work still running.
async fn claim_sync_lane(
    state: &AppState,
    slots: &SyncSlots,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let SyncSlots { any, idle_only, .. } = slots;
    // When the kept slots last found nothing to claim, they are not asked again for a while:
    // every finished job wakes this loop, and a claim with nothing to find costs a query.
    let mut idle_claim_after = Instant::now();
    let mut next_claim_after = Instant::now();
    let mut running = JoinSet::new();
    while !*stop.borrow() {
        if let Some(wait) = next_claim_after.checked_duration_since(Instant::now()) {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => continue,
            }
        }
        while running.try_join_next().is_some() {}
        // The claim ranks credentials with nothing running first, so the kept slots are
        // claimed into only when the others are full.
        let (permits, idle_credentials_only) = if any.available_permits() > 0 {
            (any, false)
        } else {
            (idle_only, true)
        };
        let free = permits.available_permits() as i64;
        if free > 0 && (!idle_credentials_only || Instant::now() >= idle_claim_after) {
            let lease_until = now_ms() + (state.settings.lease_secs * 1000) as i64;
            let lane = Lane::Sync {
                parts_per_credential: state.settings.sync_parts_per_credential as i64,
                idle_credentials_only,
            };
            let claim_started = Instant::now();
            let claimed = state
                .store
                .claim_jobs(&state.replica_id, lease_until, free, lane)
                .await;
            next_claim_after = Instant::now() + claim_spacing(claim_started.elapsed());
            match claimed {
                Ok(jobs) => {
                    if idle_credentials_only && (jobs.len() as i64) < free {
                        idle_claim_after = Instant::now() + IDLE_CLAIM_PAUSE;
                    }
                    spawn_each(permits, &mut running, jobs, |job| {
                        sync_lane_work(state.clone(), job, Slot::Shared)
                    })
                    .await
                }
                Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
            }
        }
        pause(state, &state.wake.sync_lane, &mut stop).await;
    }
    running
}

/// Starts the first sync runs asked for ([`Wake::first_run`]) as they are asked, until `stop`;
/// returns those still running. Apart from the claim loop: under load a claim waited tens of
/// milliseconds for the database, and a new grower's run waited behind it.
async fn start_first_runs(
    state: &AppState,
    slots: &SyncSlots,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut running = JoinSet::new();
    while !*stop.borrow() {
        while running.try_join_next().is_some() {}
        for asked in state.wake.take_first_runs() {
            running.spawn(first_run(state.clone(), slots.clone(), asked));
        }
        tokio::select! {
            _ = state.wake.first_run_asked.notified() => {}
            _ = stop.changed() => {}
        }
    }
    running
}

/// Leases a new credential's first sync run and runs it: in the first free slot if there is
/// one, where it goes on with its first part as a claimed run would; else beside the slots,
/// its parts left to them. Claimed already (here or at another replica), it is left to that
/// claim.
async fn first_run(state: AppState, slots: SyncSlots, asked: FirstRun) {
    let still_newest: Arc<dyn Fn() -> bool + Send + Sync> =
        Arc::new(state.deere.still_newest(&asked.client_key, &asked.account));
    let newest = still_newest();
    let slot_check = still_newest.clone();
    let run = async move {
        let lease_until = now_ms() + (state.settings.lease_secs * 1000) as i64;
        let job = match state
            .store
            .claim_job_of(&state.replica_id, lease_until, &asked.credential_id, "sync")
            .await
        {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "starting a first sync run failed; a claim will start it");
                return;
            }
        };
        let (permit, slot) = slots.first_run_slot(newest.then_some(slot_check));
        let work = sync_lane_work(state, job, slot.clone());
        match &slot {
            // The slot is given up as soon as the grower is no longer one of the newest,
            // while the work goes on.
            Slot::Newest(newest_slot) => {
                tokio::pin!(work);
                tokio::select! {
                    _ = &mut work => return,
                    _ = newest_slot.give_up_when_no_longer_newest() => {}
                }
                work.await;
            }
            _ => work.await,
        }
        drop(permit);
    };
    // The newest grower's claim and run go ahead at the database, as its later work does: the
    // claim of a grower connected right after 500 others would otherwise queue behind their
    // first runs' statements for a connection.
    if newest {
        crate::store::ahead_while(move || still_newest(), run).await;
    } else {
        run.await;
    }
}

/// A sync-lane job's work (token upkeep, a sync run, a part) in its span and its request's
/// context; `slot`: where it runs (a sync run in a slot may go on with its first part). Done,
/// it wakes the claim loops: a slot freed, or parts queued.
fn sync_lane_work(
    state: AppState,
    job: crate::store::ClaimedJob,
    slot: Slot,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (span, request_id) = job_span(&job);
    let work = async move {
        let outcome = match job.kind.as_str() {
            "sync" => fields::run_job(&state, &job, slot).await,
            kind if kind.starts_with(crate::store::PART_JOB_PREFIX) => {
                fields::run_part_job(&state, &job).await
            }
            _ => credentials::maintain(&state, &job).await,
        };
        if let Err(e) = outcome {
            tracing::warn!(job = %job.id, error = %e, "job failed; its lease will expire and it will run again");
        }
        state.wake.notify();
    };
    crate::request_context::scope(request_id, work.instrument(span))
}

/// Claims up to `free` machine-data jobs. When fewer are due, it makes the jobs of new
/// operations queued without one (`Store::make_machine_data_jobs`) first: those it is short
/// of, and a slot-full more, so that the next slots freed find jobs due rather than each make
/// its own (on PostgreSQL, four more statements before a freed slot got work). A first sync's
/// tens of thousands of operations become jobs as there is room to run them.
async fn claim_machine_data(
    state: &AppState,
    free: i64,
) -> crate::store::StoreResult<Vec<crate::store::ClaimedJob>> {
    let claim = |limit: i64| {
        let lease_until = now_ms() + (state.settings.lease_secs * 1000) as i64;
        state
            .store
            .claim_jobs(&state.replica_id, lease_until, limit, Lane::MachineData)
    };
    let mut jobs = claim(free).await?;
    let short = free - jobs.len() as i64;
    let spare = state.settings.machine_data_concurrency as i64;
    if short > 0 && state.store.make_machine_data_jobs(short + spare).await? > 0 {
        jobs.extend(claim(short).await?);
    }
    Ok(jobs)
}

/// Claims machine-data jobs, delivered events and alert deliveries, and runs retention, until
/// `stop`; returns the work still running.
async fn claim_other_lanes(state: &AppState, mut stop: watch::Receiver<bool>) -> JoinSet<()> {
    let concurrency = state.settings.engine_concurrency.max(1);
    let event_permits = Arc::new(Semaphore::new(concurrency));
    // 0: this replica leaves machine data to the others (or to later).
    let machine_data_permits = Arc::new(Semaphore::new(
        state.settings.machine_data_concurrency as usize,
    ));
    let mut last_retention = 0i64;
    // Alerts go where API owners say: through the outbound policy's client.
    let alert_http = state.outbound.http_client();
    let mut running = JoinSet::new();
    while !*stop.borrow() {
        while running.try_join_next().is_some() {}
        if now_ms() - last_retention > 3_600_000 {
            last_retention = now_ms();
            retention(state).await;
        }
        // Machine data has permits of its own: exports wait minutes and parsing takes the CPU,
        // neither may hold up token refreshes or syncs.
        let free = machine_data_permits.available_permits() as i64;
        if free > 0 {
            match claim_machine_data(state, free).await {
                Ok(jobs) => {
                    spawn_each(&machine_data_permits, &mut running, jobs, |job| {
                        let state = state.clone();
                        let (span, request_id) = job_span(&job);
                        let work = async move {
                            if let Err(e) = machine_data::run_job(&state, &job).await {
                                tracing::warn!(job = %job.id, error = %e, "machine data job failed; its lease will expire and it will run again");
                            }
                            state.wake.notify();
                        };
                        crate::request_context::scope(request_id, work.instrument(span))
                    })
                    .await
                }
                Err(e) => tracing::warn!(error = %e, "claiming machine data jobs failed"),
            }
        }
        // Delivered events have permits of their own: a long sync never holds them up.
        let free = event_permits.available_permits() as i64;
        if free > 0 {
            // Short leases: one event is one or two requests.
            let lease_until = now_ms() + 60_000;
            match state.store.claim_inbox(lease_until, free).await {
                Ok(items) => {
                    spawn_each(&event_permits, &mut running, items, |item| {
                        let state = state.clone();
                        async move {
                            inbox_item(&state, &item).await;
                            // Alerts the event produced go out now, not at the next poll.
                            state.wake.notify();
                        }
                    })
                    .await
                }
                Err(e) => tracing::warn!(error = %e, "claiming delivered events failed"),
            }
        }
        if let Err(e) = alerts::deliver_due(state, &alert_http).await {
            tracing::warn!(error = %e, "claiming alert deliveries failed");
        }
        pause(state, &state.wake.other_lanes, &mut stop).await;
    }
    running
}

/// Waits for the next poll, a wake-up, or `stop`.
async fn pause(state: &AppState, wake: &Notify, stop: &mut watch::Receiver<bool>) {
    let poll = Duration::from_millis(state.settings.engine_poll_ms.max(10));
    tokio::select! {
        _ = tokio::time::sleep(poll) => {}
        _ = wake.notified() => {}
        _ = stop.changed() => {}
    }
}

/// Old credential events and expired connection flows go.
async fn retention(state: &AppState) {
    let cutoff = now_ms() - (state.settings.event_retention_days as i64) * 86_400_000;
    match state.store.delete_events_before(cutoff).await {
        Ok(n) if n > 0 => {
            tracing::info!(deleted = n, "retention: old credential events removed")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "retention failed"),
    }
    // Connection flows are kept a day past their expiry, to be looked up, then go.
    if let Err(e) = state.store.delete_flows_before(now_ms() - 86_400_000).await {
        tracing::warn!(error = %e, "retention of connection flows failed");
    }
}

/// A new credential's first sync run, asked for ([`Wake::first_run`]).
#[derive(Debug)]
pub struct FirstRun {
    pub credential_id: String,
    /// Its client key and account (Leaf user): whether it is one of the newest growers to use
    /// the key's request budget.
    pub client_key: String,
    pub account: String,
}

/// Wakes the engine's claim loops before their next poll: a slot freed, a credential or a
/// delivery was queued, an alert is due.
#[derive(Debug, Default)]
pub struct Wake {
    sync_lane: Notify,
    other_lanes: Notify,
    /// New credentials whose first sync run is to start now ([`Wake::first_run`]).
    first_runs: std::sync::Mutex<Vec<FirstRun>>,
    first_run_asked: Notify,
}

impl Wake {
    pub fn notify(&self) {
        self.sync_lane.notify_one();
        self.other_lanes.notify_one();
    }

    /// Starts a new credential's first sync run at once rather than at a claim: while hundreds
    /// of growers' first runs waited for slots (each held by a part for seconds), a grower
    /// connected after them waited for all of theirs. It takes a free slot if there is one,
    /// else runs beside them (a first run is a few requests and writes: its event
    /// subscriptions, its parts queued), its parts left to the slots. The run is leased as a
    /// claim would lease it, so it runs once: claimed already, here or at another replica, it
    /// is left to that claim.
    pub fn first_run(&self, asked: FirstRun) {
        self.first_runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(asked);
        self.first_run_asked.notify_one();
    }

    fn take_first_runs(&self) -> Vec<FirstRun> {
        std::mem::take(&mut *self.first_runs.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// At shutdown: running work has `shutdown_grace_secs` to finish; what is still running then is
/// stopped (as a crash would, which every job survives), and this replica's job leases are
/// released so another replica takes those jobs at once rather than after `lease_secs`.
async fn drain(state: &AppState, mut running: [JoinSet<()>; 3]) {
    let grace = Duration::from_secs(state.settings.shutdown_grace_secs);
    let all_finished = tokio::time::timeout(grace, async {
        for lane in &mut running {
            while lane.join_next().await.is_some() {}
        }
    })
    .await
    .is_ok();
    if !all_finished {
        tracing::info!(
            stopped = running.iter().map(JoinSet::len).sum::<usize>(),
            "shutdown: stopping work still running"
        );
        for lane in &mut running {
            lane.shutdown().await;
        }
    }
    match state.store.release_leases(&state.replica_id).await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "shutdown: job leases released"),
        Err(e) => {
            tracing::warn!(error = %e, "shutdown: releasing job leases failed; they expire after lease_secs")
        }
    }
}

/// A job's log lines name it, and the API request that queued it (whose id its own queued
/// work inherits). A job taken over from a dead replica is counted here, as it starts.
fn job_span(job: &crate::store::ClaimedJob) -> (tracing::Span, Option<String>) {
    if job.taken_over {
        crate::metrics::lease_takeover(&job.kind);
        tracing::info!(job = %job.id, kind = %job.kind, "job taken over from a replica whose lease ran out");
    }
    let span = tracing::info_span!(
        "job",
        kind = %job.kind,
        credential = %job.credential_id,
        request_id = job.request_id.as_deref().unwrap_or(""),
    );
    (span, job.request_id.clone())
}

/// Runs `work` on each claimed item in its own task, each holding one of `permits`.
async fn spawn_each<T, F, Fut>(
    permits: &Arc<Semaphore>,
    running: &mut JoinSet<()>,
    items: Vec<T>,
    work: F,
) where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    for item in items {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        let task = work(item);
        running.spawn(async move {
            task.await;
            drop(permit);
        });
    }
}

/// Gives up on a delivered event after this many failed attempts; polling heals what it missed.
const INBOX_MAX_ATTEMPTS: i64 = 12;

/// Runs one delivered event and records the outcome (done, retry later, or dropped).
async fn inbox_item(state: &AppState, item: &crate::store::InboxItem) {
    use webhooks::Processed;
    let outcome = match webhooks::process(state, item).await {
        Ok(p) => p,
        Err(e) => Processed::Retry(e.to_string()),
    };
    let result = match outcome {
        Processed::Done => state.store.finish_inbox(item).await,
        Processed::Dropped(reason) => {
            tracing::info!(target_resource = %item.target_resource, %reason, "delivered event dropped");
            state.store.finish_inbox(item).await
        }
        Processed::Retry(reason) if item.attempts + 1 >= INBOX_MAX_ATTEMPTS => {
            tracing::warn!(target_resource = %item.target_resource, %reason, "delivered event given up; the next poll covers it");
            state.store.finish_inbox(item).await
        }
        Processed::Retry(reason) => {
            let delay = (1000i64 << item.attempts.clamp(0, 8)).min(300_000);
            tracing::info!(target_resource = %item.target_resource, %reason, delay_ms = delay, "delivered event retried later");
            state
                .store
                .retry_inbox(&item.id, item.attempts + 1, now_ms() + delay)
                .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "recording a delivered event's outcome failed; its lease will expire and it runs again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_spaced_by_their_cost_up_to_a_bound() {
        // A cheap claim (a short queue) barely delays the next one.
        assert_eq!(
            claim_spacing(Duration::from_micros(200)),
            Duration::from_micros(800)
        );
        // A claim ranking a long queue keeps claims to a fifth of the time.
        assert_eq!(
            claim_spacing(Duration::from_millis(4)),
            Duration::from_millis(16)
        );
        // A claim slowed by its wait for a connection never leaves slots empty for longer.
        assert_eq!(claim_spacing(Duration::from_millis(60)), MAX_CLAIM_SPACING);
        assert_eq!(claim_spacing(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_newest_growers_slot_is_held_only_while_it_is_one_of_them() {
        use std::sync::atomic::{AtomicBool, Ordering};
        // A concurrency of 8: six slots for any job, two kept for idle credentials, two more
        // for first runs, and the newest growers' four.
        let slots = SyncSlots::new(8);
        let mut taken = Vec::new();
        loop {
            match slots.first_run_slot(None) {
                (Some(permit), Slot::Shared) => taken.push(permit),
                // Every other slot held: a grower not among the newest runs beside them.
                (None, Slot::Beside) => break,
                _ => panic!("a first run takes a shared slot, or runs beside them"),
            }
        }
        assert_eq!(taken.len(), 10);
        let newest = Arc::new(AtomicBool::new(true));
        let asked = newest.clone();
        let (permit, slot) =
            slots.first_run_slot(Some(Arc::new(move || asked.load(Ordering::SeqCst))));
        assert!(
            permit.is_none(),
            "the newest slot's permit is the slot's own"
        );
        let Slot::Newest(newest_slot) = &slot else {
            panic!("one of the newest takes one of their slots");
        };
        assert!(slot.held());
        assert_eq!(
            slots.newest.available_permits(),
            pacing::NEWEST_ACCOUNTS - 1
        );
        // No longer one of the newest: the slot is given up, for the next one, and for good.
        let given_up = newest_slot.give_up_when_no_longer_newest();
        tokio::pin!(given_up);
        tokio::select! {
            _ = &mut given_up => panic!("given up while its grower is one of the newest"),
            _ = tokio::time::sleep(NEWEST_SLOT_CHECK * 3) => {}
        }
        newest.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), given_up)
            .await
            .expect("given up once its grower is no longer one of the newest");
        assert_eq!(slots.newest.available_permits(), pacing::NEWEST_ACCOUNTS);
        newest.store(true, Ordering::SeqCst);
        assert!(!slot.held());
    }

    #[test]
    fn kept_slots_only_where_there_are_enough() {
        assert_eq!(slots_kept_for_idle_credentials(4), 0);
        assert_eq!(slots_kept_for_idle_credentials(16), 2);
        assert_eq!(slots_kept_for_idle_credentials(64), 4);
        assert_eq!(slots_kept_for_idle_credentials(1024), 8);
    }
}
