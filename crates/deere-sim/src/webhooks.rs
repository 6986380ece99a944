//! Event delivery (Data Subscription Service): when data changes, POST a JSON array of events to
//! each matching subscription's target, retrying with backoff while the receiver fails.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{DeliveryRecord, Sim};

/// Event types offered, with their filter keys. Only `fieldOperation` and `heartbeat` are named
/// in John Deere's material; the others are the simulator's names for field, boundary and file
/// changes (John Deere's exact ids are unknown; query `eventSubscriptionEventTypes`).
pub const EVENT_TYPES: &[(&str, &[&str])] = &[
    (
        "fieldOperation",
        &["orgId", "fieldOperationType", "cropSeason", "fieldId"],
    ),
    ("field", &["orgId"]),
    ("boundary", &["orgId", "fieldId"]),
    ("file", &["orgId"]),
    ("heartbeat", &[]),
];

/// A change to announce.
pub struct Change {
    pub event_type: &'static str,
    pub org_id: String,
    pub target_resource: String,
    /// Extra filterable attributes (`fieldId`, `fieldOperationType`, `cropSeason`).
    pub attributes: Vec<(&'static str, String)>,
}

/// Queues deliveries for every active subscription that matches the change.
pub fn emit(sim: &Sim, change: Change) {
    let batches: Vec<(String, String, Option<String>, Value)> = {
        let state = sim.state();
        state
            .subscriptions
            .values()
            .filter(|s| s.status == "Active" && s.event_type_id == change.event_type)
            .filter(|s| state.world.user_has_org(&s.user, &change.org_id))
            .filter(|s| {
                state
                    .apps
                    .get(&s.client_key)
                    .is_some_and(|a| !a.delivery_paused)
            })
            .filter(|s| {
                s.filters.iter().all(|(key, values)| {
                    let actual = if key == "orgId" {
                        Some(change.org_id.as_str())
                    } else {
                        change
                            .attributes
                            .iter()
                            .find(|(k, _)| k == key)
                            .map(|(_, v)| v.as_str())
                    };
                    actual.is_some_and(|a| values.iter().any(|v| v.eq_ignore_ascii_case(a)))
                })
            })
            .map(|s| {
                let mut metadata = vec![json!({"key": "orgId", "value": change.org_id})];
                metadata.extend(
                    change
                        .attributes
                        .iter()
                        .map(|(k, v)| json!({"key": k, "value": v})),
                );
                let event = json!({
                    "clientKey": s.client_key, "eventTypeId": change.event_type,
                    "targetResource": change.target_resource, "token": s.token,
                    "metadata": metadata,
                    "links": [{"rel": change.event_type, "uri": change.target_resource}],
                });
                let auth = state
                    .apps
                    .get(&s.client_key)
                    .and_then(|a| a.authorization_header_value.clone());
                (s.id.clone(), s.target_uri.clone(), auth, json!([event]))
            })
            .collect()
    };
    let copies = if sim.state().settings.duplicate_deliveries {
        2
    } else {
        1
    };
    for (subscription_id, target, auth, body) in batches {
        for _ in 0..copies {
            tokio::spawn(deliver(
                sim.clone(),
                subscription_id.clone(),
                target.clone(),
                auth.clone(),
                body.clone(),
            ));
        }
    }
}

async fn deliver(
    sim: Sim,
    subscription_id: String,
    target: String,
    auth: Option<String>,
    body: Value,
) {
    let (max_attempts, retry_ms) = {
        let s = &sim.state().settings;
        (s.webhook_max_attempts.max(1), s.webhook_retry_ms)
    };
    let events = body.as_array().map_or(0, Vec::len);
    for attempt in 1..=max_attempts {
        let mut request = sim
            .0
            .http
            .post(&target)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(value) = &auth {
            request = request.header("authorization", value);
        }
        let outcome = request.send().await;
        let (status, error) = match &outcome {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        sim.state().deliveries.push(DeliveryRecord {
            subscription_id: subscription_id.clone(),
            target: target.clone(),
            attempt,
            events,
            status,
            error,
            at_ms: sim.elapsed_ms(),
        });
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(
            retry_ms.saturating_mul(1 << (attempt - 1).min(10)),
        ))
        .await;
    }
    tracing::warn!(%subscription_id, "webhook delivery given up after {max_attempts} attempts");
}
