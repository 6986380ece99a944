//! John Deere → furrow in real time (Data Subscription Service).
//!
//! For every organization a credential syncs, furrow keeps one event subscription per event
//! type, each with its own random token (only its SHA-256 is stored). Deliveries are verified
//! by that token, queued durably in the inbox and answered at once; the engine then fetches
//! each event's `targetResource` (never trusting the payload) and upserts it. Polling stays as
//! the safety net.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deere::models::{
    EventFilter, Field, FieldOperation, File, HasLinks, NewEventSubscription, TargetEndpoint,
};
use deere::{AccessToken, ApiClient, DeereError};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::store::{content_hash, InboxItem, NewInboxItem, SubscriptionRecord};
use crate::sync::fields::{Run, SyncError};
use crate::sync::link::Authorized;

/// Event types furrow subscribes to, where John Deere offers them. Only `fieldOperation` is a
/// documented id; `field`, `boundary` and `file` are the simulator's (query
/// `eventSubscriptionEventTypes`: types John Deere does not offer are skipped).
pub const EVENT_TYPES: &[&str] = &["fieldOperation", "field", "boundary", "file"];

/// How long the event types John Deere offers an application are reused before asked again.
const EVENT_TYPES_TTL: Duration = Duration::from_secs(3600);

/// Event type ids John Deere offers.
type OfferedTypes = Arc<HashSet<String>>;

/// The event types John Deere offers, per platform and client key: a catalog of the
/// application's, not of a grower's, so one answer serves every grower's sync for a while
/// (asked once per sync run, it was 500 requests when 500 growers connect).
#[derive(Debug, Clone, Default)]
pub struct EventTypeCache {
    offered: Arc<Mutex<HashMap<String, (Instant, OfferedTypes)>>>,
}

impl EventTypeCache {
    /// The ids John Deere offers `client_key` on `api`'s platform; refusals are not kept.
    pub async fn offered(
        &self,
        api: &ApiClient,
        token: &AccessToken,
        client_key: &str,
    ) -> Result<OfferedTypes, DeereError> {
        let key = format!("{} {client_key}", api.base_url());
        let cached = self
            .offered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|(at, _)| at.elapsed() < EVENT_TYPES_TTL)
            .map(|(_, offered)| offered.clone());
        if let Some(offered) = cached {
            return Ok(offered);
        }
        let offered: OfferedTypes = Arc::new(
            api.event_types(token)
                .await?
                .into_iter()
                .map(|t| t.id)
                .collect(),
        );
        self.offered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), offered.clone()));
        Ok(offered)
    }
}

/// Where John Deere delivers events, under the public URL.
pub const RECEIVER_PATH: &str = "/api/deere/events";

/// How a credential's changes reach furrow.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum WebhookMode {
    /// Subscribed: changes arrive within seconds (polling still runs as a safety net).
    Active { subscriptions: usize },
    /// Polling only, with the reason (no webhook access, subscription failure).
    Polling(String),
    /// Turned off by `deere_webhooks = false`, or nothing synced yet.
    #[default]
    Disabled,
}

impl WebhookMode {
    pub fn state(&self) -> &'static str {
        match self {
            WebhookMode::Active { .. } => "WEBHOOKS",
            WebhookMode::Polling(_) => "POLLING",
            WebhookMode::Disabled => "DISABLED",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            WebhookMode::Active { subscriptions } => {
                format!("{subscriptions} John Deere event subscriptions")
            }
            WebhookMode::Polling(reason) => reason.clone(),
            WebhookMode::Disabled => "webhooks are turned off (FURROW_DEERE_WEBHOOKS)".into(),
        }
    }
}

/// Makes the credential's subscriptions match the organizations being synced: one per event
/// type, its `orgId` filter listing the organizations. Removes those covering an organization
/// no longer synced, creates the missing ones. `existing`: the credential's subscription rows
/// as stored (read by the caller beside its other reads). Never fails the sync: a problem means
/// polling, and the next sync tries again.
pub(super) async fn reconcile(
    run: &Run<'_>,
    orgs: &[String],
    existing: Vec<SubscriptionRecord>,
) -> WebhookMode {
    let state = run.state;
    if !state.settings.deere_webhooks {
        return WebhookMode::Disabled;
    }
    match reconcile_inner(run, orgs, existing).await {
        Ok(mode) => mode,
        Err(e) => {
            tracing::info!(credential = %run.cred.id, error = %e, "event subscriptions not in place; polling");
            WebhookMode::Polling(format!(
                "event subscriptions could not be set up ({e}); polling, retried at the next sync"
            ))
        }
    }
}

/// A subscription's display name on John Deere, for whoever lists them there.
fn display_name(event_type: &str, orgs: &[String]) -> String {
    match orgs {
        [org] => format!("furrow {event_type} {org}"),
        _ => format!("furrow {event_type} ({} organizations)", orgs.len()),
    }
}

async fn reconcile_inner(
    run: &Run<'_>,
    orgs: &[String],
    existing: Vec<SubscriptionRecord>,
) -> Result<WebhookMode, SyncError> {
    let store = &run.state.store;
    let wanted: HashSet<&str> = orgs.iter().map(String::as_str).collect();
    // A subscription's filter cannot be edited: one covering an organization no longer synced
    // goes whole, and the organizations it covered besides are subscribed again below.
    let stale: HashSet<&str> = existing
        .iter()
        .filter(|s| !wanted.contains(s.provider_org_id.as_str()))
        .map(|s| s.provider_subscription_id.as_str())
        .collect();
    let mut removed = HashSet::new();
    for s in existing
        .iter()
        .filter(|s| stale.contains(s.provider_subscription_id.as_str()))
    {
        if removed.insert(s.provider_subscription_id.as_str()) {
            remove_on_deere(&run.api, &run.token, &s.subscription_uri).await?;
            store
                .delete_subscription(&run.cred.id, &s.provider_subscription_id)
                .await?;
        }
    }
    let kept: Vec<&SubscriptionRecord> = existing
        .iter()
        .filter(|s| !stale.contains(s.provider_subscription_id.as_str()))
        .collect();
    let covered: HashSet<(&str, &str)> = kept
        .iter()
        .map(|s| (s.provider_org_id.as_str(), s.event_type.as_str()))
        .collect();
    let kept_count = kept
        .iter()
        .map(|s| s.provider_subscription_id.as_str())
        .collect::<HashSet<_>>()
        .len();
    // Per event type, the synced organizations no subscription covers yet.
    let missing: Vec<(&str, Vec<String>)> = EVENT_TYPES
        .iter()
        .map(|t| {
            let uncovered = orgs
                .iter()
                .filter(|org| !covered.contains(&(org.as_str(), *t)))
                .cloned()
                .collect();
            (*t, uncovered)
        })
        .filter(|(_, uncovered): &(&str, Vec<String>)| !uncovered.is_empty())
        .collect();
    if missing.is_empty() {
        return Ok(WebhookMode::Active {
            subscriptions: kept_count,
        });
    }
    let offered = match run
        .state
        .event_types
        .offered(&run.api, &run.token, &run.cred.client_key)
        .await
    {
        Ok(offered) => offered,
        Err(e @ (DeereError::Forbidden { .. } | DeereError::Unauthorized { .. })) => {
            return Ok(no_webhook_access(&e))
        }
        Err(e) => return Err(e.into()),
    };
    let target = format!("{}{RECEIVER_PATH}", run.state.settings.public_url());
    // Created at once: a sync run waits for its subscriptions before it queues its parts.
    let creations: Vec<_> = missing
        .into_iter()
        .filter(|(t, _)| offered.contains(*t))
        .map(|(event_type, orgs)| {
            let (api, token, target) = (run.api.clone(), run.token.clone(), target.clone());
            let (credential_id, event_type) = (run.cred.id.clone(), event_type.to_string());
            // Ok(Err(_)): John Deere refused it.
            async move {
                let secret = crate::crypto::generate_key();
                let request = NewEventSubscription {
                    event_type_id: event_type.clone(),
                    filters: vec![EventFilter {
                        key: "orgId".into(),
                        values: orgs.clone(),
                    }],
                    target_endpoint: TargetEndpoint {
                        target_type: "https".into(),
                        uri: target,
                    },
                    status: "Active".into(),
                    display_name: Some(display_name(&event_type, &orgs)),
                    token: Some(secret.clone()),
                };
                let subscription = match api.create_event_subscription(&token, &request).await {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e)),
                };
                let uri = match subscription.link("self") {
                    Some(uri) => uri.to_string(),
                    None => api
                        .endpoint(&format!("eventSubscriptions/{}", subscription.id))?
                        .to_string(),
                };
                let token_sha256 = content_hash(&secret);
                let rows: Vec<SubscriptionRecord> = orgs
                    .iter()
                    .map(|org| {
                        SubscriptionRecord::new(
                            &credential_id,
                            org,
                            &event_type,
                            &subscription.id,
                            &uri,
                            &token_sha256,
                        )
                    })
                    .collect();
                Ok::<_, SyncError>(Ok(rows))
            }
        })
        .collect();
    let outcomes: Vec<_> = futures_util::future::join_all(creations).await;
    // Recorded as soon as John Deere made them all, as deleting the credentials expects (it
    // removes what is recorded), and in one write: one by one, they were a tenth of all writes
    // while hundreds of growers connected, and a new grower waited for each.
    let made: Vec<&Vec<SubscriptionRecord>> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok()?.as_ref().ok())
        .collect();
    let rows: Vec<SubscriptionRecord> = made.iter().flat_map(|r| r.iter().cloned()).collect();
    if !store.insert_subscriptions(&rows).await? {
        // The credentials were deleted while this sync subscribed: nothing may be left
        // delivering for them.
        for subscription in &made {
            if let Some(s) = subscription.first() {
                remove_on_deere(&run.api, &run.token, &s.subscription_uri).await?;
            }
        }
        return Err(SyncError::NotReady("deleted".into()));
    }
    let created = made.len();
    let mut refused = None;
    for outcome in outcomes {
        if let Err(e) = outcome? {
            refused.get_or_insert(e);
        }
    }
    match refused {
        Some(e @ DeereError::Forbidden { .. }) => Ok(no_webhook_access(&e)),
        Some(e) => Err(e.into()),
        None => Ok(WebhookMode::Active {
            subscriptions: kept_count + created,
        }),
    }
}

fn no_webhook_access(e: &DeereError) -> WebhookMode {
    WebhookMode::Polling(format!(
        "John Deere refused event subscriptions ({e}): the app needs Webhook Read/Write access; polling instead"
    ))
}

/// Deletes a subscription on John Deere; one already gone counts as deleted.
async fn remove_on_deere(api: &ApiClient, token: &AccessToken, uri: &str) -> Result<(), SyncError> {
    let url = api.link_url(uri)?;
    match api.delete_event_subscription(token, &url).await {
        Ok(()) | Err(DeereError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Forgets subscriptions John Deere no longer delivers to (Expired, Terminated or gone),
/// removing what is left of them there, and starts a sync to subscribe again. Runs with each
/// health check; a failure only means the next check tries again.
pub async fn verify(state: &AppState, credential_id: &str, api: &ApiClient, token: &AccessToken) {
    let outcome = async {
        let ours = state.store.subscriptions(credential_id).await?;
        if ours.is_empty() {
            return Ok::<_, SyncError>(());
        }
        let theirs = api.event_subscriptions(token).await?;
        let mut gone = HashSet::new();
        for s in &ours {
            let active = theirs.iter().any(|t| {
                t.id == s.provider_subscription_id
                    && t.status.as_deref().unwrap_or("Active") == "Active"
            });
            // A subscription covering several organizations has a row for each.
            if !active && gone.insert(s.provider_subscription_id.as_str()) {
                tracing::info!(subscription = %s.provider_subscription_id, "event subscription ended on John Deere; subscribing again");
                remove_on_deere(api, token, &s.subscription_uri).await?;
                state
                    .store
                    .delete_subscription(credential_id, &s.provider_subscription_id)
                    .await?;
            }
        }
        let lost = !gone.is_empty();
        if lost {
            state.store.wake_job(credential_id, "sync").await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        tracing::info!(credential = %credential_id, error = %e, "event subscriptions not verified");
    }
}

/// Why a delivery was refused (the receiver answers 401 and queues nothing).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the Authorization header does not match")]
    Authorization,
    #[error("an event's token is missing or unknown")]
    Token,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Verifies every event of a delivery and queues them all, or none.
pub async fn accept_delivery(
    state: &AppState,
    authorization: Option<&str>,
    events: &[deere::models::DeliveredEvent],
) -> Result<usize, DeliveryError> {
    if let Some(expected) = &state.settings.deere_webhook_authorization {
        let given = authorization.unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(DeliveryError::Authorization);
        }
    }
    let mut items = Vec::with_capacity(events.len());
    let mut to_sync = HashSet::new();
    for event in events {
        let token = event.token.as_deref().unwrap_or_default();
        // Looked up by the token's SHA-256, then compared in constant time: the time taken
        // says nothing about how much of a guessed token was right.
        let digest = content_hash(token);
        let covered: Vec<SubscriptionRecord> = state
            .store
            .subscriptions_by_token(&digest)
            .await?
            .into_iter()
            .filter(|s| bool::from(s.token_sha256.as_bytes().ct_eq(digest.as_bytes())))
            .collect();
        let Some(any) = covered.first() else {
            return Err(DeliveryError::Token);
        };
        // The organization is the event's `orgId`, if its subscription covers it (a
        // subscription covering one organization needs none).
        let named = event
            .metadata
            .iter()
            .find(|m| m.key == "orgId")
            .map(|m| m.value.as_str());
        let row = match (named, covered.as_slice()) {
            (Some(org), _) => covered.iter().find(|s| s.provider_org_id == org),
            (None, [only]) => Some(only),
            (None, _) => None,
        };
        let Some(row) = row else {
            // Nothing stored under a guessed organization, and nothing lost: a sync of the
            // credential reads what changed.
            tracing::info!(organization = ?named, "event names none of its subscription's organizations; syncing instead");
            to_sync.insert(any.credential_id.clone());
            continue;
        };
        items.push(NewInboxItem {
            credential_id: row.credential_id.clone(),
            provider_org_id: row.provider_org_id.clone(),
            // The subscription's type, not the payload's: the payload is not trusted.
            event_type: row.event_type.clone(),
            target_resource: event.target_resource.clone(),
        });
    }
    state.store.enqueue_inbox(&items).await?;
    for credential_id in &to_sync {
        state.store.wake_job(credential_id, "sync").await?;
    }
    Ok(items.len() + to_sync.len())
}

/// What became of one inbox item.
pub enum Processed {
    Done,
    /// Try again later (John Deere unreachable, credentials being refreshed).
    Retry(String),
    /// Nothing to do now or ever (resource elsewhere, access gone); polling covers the rest.
    Dropped(String),
}

/// Fetches the resource an event points at and stores it.
pub async fn process(state: &AppState, item: &InboxItem) -> Result<Processed, SyncError> {
    let Some(cred) = state.store.credential(&item.credential_id).await? else {
        return Ok(Processed::Dropped("credentials deleted".into()));
    };
    let mut run = match Run::open(state, &cred) {
        Ok(run) => run,
        Err(SyncError::NotReady(reason)) => return Ok(Processed::Retry(reason)),
        Err(e) => return Err(e),
    };
    let selection = run.load_config().await?;
    // An organization that stopped syncing (blocked, deselected, a partner's with
    // syncPartnerData off) takes no changes until it syncs again.
    let synced = state
        .store
        .organizations(&cred.id)
        .await?
        .iter()
        .any(|o| o.provider_org_id == item.provider_org_id && selection.syncs(o));
    if !synced {
        return Ok(Processed::Dropped("the organization is not synced".into()));
    }
    let outcome = run
        .apply_event(
            &item.provider_org_id,
            &item.event_type,
            &item.target_resource,
        )
        .await;
    run.flush_events().await?;
    Ok(match outcome {
        Ok(()) => Processed::Done,
        Err(SyncError::Deere(
            e @ (DeereError::Forbidden { .. }
            | DeereError::RequiredCustomerAction { .. }
            | DeereError::InvalidUrl(_)
            | DeereError::InvalidResponse(_)),
        )) => Processed::Dropped(e.to_string()),
        Err(e @ SyncError::Deere(DeereError::Unauthorized { .. })) => {
            // The access token expired under us: the credential job refreshes it.
            Processed::Retry(e.to_string())
        }
        Err(e) => return Err(e),
    })
}

/// The last path segment of a John Deere URL: the resource's id.
fn last_segment(url: &url::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .unwrap_or_default()
}

impl Run<'_> {
    /// Applies one delivered event by reading its resource from John Deere.
    pub(super) async fn apply_event(
        &mut self,
        org: &str,
        event_type: &str,
        target: &str,
    ) -> Result<(), SyncError> {
        // Only John Deere's own hosts get the access token.
        let url = self.api.link_url(target)?;
        let user = self.cred.leaf_user_id.clone();
        let store = &self.state.store;
        match event_type {
            "fieldOperation" => {
                let mut with_totals = url.clone();
                with_totals
                    .query_pairs_mut()
                    .append_pair("embed", "measurementTypes");
                let op = match self
                    .api
                    .get_json::<FieldOperation>(&self.token, &with_totals)
                    .await
                {
                    Ok(op) => op,
                    Err(DeereError::NotFound { .. }) => {
                        store
                            .mark_operation_deleted(&user, &last_segment(&url))
                            .await?;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                let Some(field_uri) = op.link("field") else {
                    return Ok(());
                };
                let provider_field = last_segment(&self.api.link_url(field_uri)?);
                let Some(field_id) = store.field_id_for_provider(&user, &provider_field).await?
                else {
                    // A field furrow has not seen yet: a sync brings both.
                    store.wake_job(&self.cred.id, "sync").await?;
                    return Ok(());
                };
                if let Some(since) = self.operations_since_ms {
                    if self.field_processed(&field_id).await? {
                        self.apply_operation(&field_id, &op, since).await?;
                    }
                }
                Ok(())
            }
            "field" | "boundary" => {
                // A boundary event names `…/fields/{id}/boundaries/{id}`: read the field again,
                // with its boundaries.
                let mut field_url = url.clone();
                if let Some(i) = url.path().find("/boundaries") {
                    field_url.set_path(&url.path()[..i]);
                }
                field_url.set_query(None);
                let provider_field = last_segment(&field_url);
                field_url.query_pairs_mut().append_pair("embed", "farms");
                let field = match self.api.get_json::<Field>(&self.token, &field_url).await {
                    Ok(f) => f,
                    Err(DeereError::NotFound { .. }) => {
                        store.mark_field_deleted(&user, &provider_field).await?;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                let field_id = self.field(org, &field).await?;
                if let (Some(since), Some(ops)) =
                    (self.operations_since_ms, field.link("fieldOperation"))
                {
                    if self.field_processed(&field_id).await? {
                        self.operations(&field_id, ops, since).await?;
                    }
                }
                Ok(())
            }
            // Files sync with operations (operationsAutoSync), as in a full sync.
            "file" if self.operations_since_ms.is_none() => Ok(()),
            "file" => match self.api.get_json::<File>(&self.token, &url).await {
                Ok(f) => self.apply_file(org, &f).await,
                Err(DeereError::NotFound { .. }) => {
                    store.mark_file_deleted(&user, &last_segment(&url)).await?;
                    Ok(())
                }
                Err(e) => Err(e.into()),
            },
            _ => Ok(()),
        }
    }
}

/// What removing a Leaf user's subscriptions from John Deere takes once its credentials are
/// gone: the credentials' token, read before they are deleted. Which subscriptions comes from
/// the deletion itself (`Store::delete_credential` and the like), so that one created while
/// the deletion ran is not missed.
pub struct Unsubscribe {
    api: ApiClient,
    token: AccessToken,
}

impl Unsubscribe {
    pub async fn prepare(state: &AppState, user: &str) -> Option<Self> {
        let cred = state.store.credential_of(user).await.ok()??;
        let auth = Authorized::open(state, &cred).ok()??;
        Some(Self {
            api: auth.api().clone(),
            token: auth.token,
        })
    }

    /// Removes the subscriptions without holding up the caller. One that cannot be removed
    /// (John Deere down, token revoked) delivers to furrow in vain: its token is no longer
    /// known, so its deliveries are refused with 401.
    pub fn spawn(self, uris: Vec<String>) {
        if uris.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for uri in &uris {
                if let Err(e) = remove_on_deere(&self.api, &self.token, uri).await {
                    tracing::info!(error = %e, "event subscription not removed from John Deere");
                }
            }
        });
    }
}
