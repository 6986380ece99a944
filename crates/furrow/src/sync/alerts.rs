//! Leaf alerts: events furrow tells the application about, kept in a durable outbox and POSTed
//! with `X-Leaf-Signature: base64(HMAC-SHA256(secret, body))`, retried 1, 30, 60 and 240 minutes
//! after a failure.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::app::AppState;
use crate::store::{leaf_time_now, now_ms, Deliveries, FailedCall, StoreError};

/// Retry delays after the 1st, 2nd, 3rd and 4th failure (then the delivery is given up).
const RETRY_MINUTES: [f64; 4] = [1.0, 30.0, 60.0, 240.0];

/// Leaf's wire form: compact JSON with a space after `:` and `,` (Python's `json.dumps`).
pub fn leaf_json(value: &Value) -> String {
    struct PythonStyle;
    impl serde_json::ser::Formatter for PythonStyle {
        fn begin_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
        ) -> std::io::Result<()> {
            w.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonStyle);
    serde::Serialize::serialize(value, &mut ser).expect("a JSON value serializes");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// `base64(HMAC-SHA256(secret, body))`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The signed body of an alert: the payload with `type` and `timestamp`, in Leaf's JSON form.
pub fn event_body(event_type: &str, mut event: Map<String, Value>) -> String {
    event.insert("type".into(), Value::String(event_type.into()));
    event.insert("timestamp".into(), Value::String(leaf_time_now()));
    leaf_json(&Value::Object(event))
}

/// `event` (with `type` and `timestamp` added) for every webhook of `owner` that subscribed to
/// `event_type`, to queue with the change it reports.
pub async fn deliveries(
    state: &AppState,
    owner: &str,
    event_type: &str,
    event: Map<String, Value>,
) -> Result<Deliveries, StoreError> {
    let body = event_body(event_type, event);
    Ok(state
        .store
        .webhooks(owner)
        .await?
        .into_iter()
        .filter(|w| {
            serde_json::from_str::<Vec<String>>(&w.events)
                .unwrap_or_default()
                .iter()
                .any(|e| e == event_type)
        })
        .map(|w| (w.id, body.clone()))
        .collect())
}

/// The alerts for a credential whose status moves to UNAUTHENTICATED or MISSING_PERMISSION
/// (none for other statuses), to store together with the status.
pub async fn credential_status_alerts(
    state: &AppState,
    leaf_user_id: &str,
    credential_id: &str,
    client_key: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<Deliveries, StoreError> {
    let event_type = match status {
        "UNAUTHENTICATED" => "credentialsUnauthenticated",
        "MISSING_PERMISSION" => "credentialsLimitedPermission",
        _ => return Ok(Vec::new()),
    };
    let Some(owner) = state.store.owner_of_user(leaf_user_id).await? else {
        return Ok(Vec::new());
    };
    let mut event = Map::new();
    event.insert("credential".into(), Value::String(client_key.into()));
    event.insert("provider".into(), Value::String("JohnDeere".into()));
    event.insert("credentialId".into(), Value::String(credential_id.into()));
    event.insert("leafUserId".into(), Value::String(leaf_user_id.into()));
    event.insert(
        "message".into(),
        Value::String(reason.unwrap_or(status).into()),
    );
    event.insert("status".into(), Value::String(status.into()));
    deliveries(state, &owner, event_type, event).await
}

/// Delivers what is due; each delivery runs in its own task so a slow receiver holds no one up.
pub async fn deliver_due(state: &AppState, http: &reqwest::Client) -> Result<(), StoreError> {
    let lease_until = now_ms() + 60_000;
    for delivery in state.store.claim_deliveries(lease_until, 16).await? {
        let state = state.clone();
        let http = http.clone();
        tokio::spawn(async move {
            if let Err(e) = deliver(&state, &http, delivery).await {
                tracing::warn!(error = %e, "alert delivery bookkeeping failed; it will be retried");
            }
        });
    }
    Ok(())
}

async fn deliver(
    state: &AppState,
    http: &reqwest::Client,
    d: crate::store::DeliveryRecord,
) -> Result<(), StoreError> {
    let Some(webhook) = state.store.webhook(&d.webhook_id).await? else {
        return Ok(()); // deleted: its deliveries went with it
    };
    let secret = match state.keyring.decrypt(&webhook.secret_enc) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "webhook secret cannot be decrypted");
            return state
                .store
                .finish_delivery(&d.id, "failed", d.attempts + 1, now_ms())
                .await;
        }
    };
    // Names are checked by the client's resolver; an address literal here.
    let refused = url::Url::parse(&webhook.url)
        .map_err(|e| e.to_string())
        .and_then(|u| state.outbound.check_literal(&u));
    if let Err(why) = refused {
        let failure = FailedCall {
            url: webhook.url.clone(),
            status: None,
            response: None,
            connection_error: Some(format!("not sent: {why}")),
            request_body: d.body.clone(),
            created_at: leaf_time_now(),
        };
        return record_failure(state, &webhook, &d, failure).await;
    }
    let sent = http
        .post(&webhook.url)
        .header("content-type", "application/json")
        .header(
            "x-leaf-signature",
            signature(secret.expose_secret(), d.body.as_bytes()),
        )
        .body(d.body.clone())
        .send()
        .await;
    let attempts = d.attempts + 1;
    let failure = match sent {
        Ok(r) if r.status().is_success() => {
            crate::metrics::alert_delivery("delivered");
            return state
                .store
                .finish_delivery(&d.id, "delivered", attempts, now_ms())
                .await;
        }
        Ok(r) => {
            let status = r.status().as_u16();
            let text = body_prefix(r, secret.expose_secret()).await;
            FailedCall {
                url: webhook.url.clone(),
                status: Some(i64::from(status)),
                response: Some(text),
                connection_error: None,
                request_body: d.body.clone(),
                created_at: leaf_time_now(),
            }
        }
        Err(e) => FailedCall {
            url: webhook.url.clone(),
            status: None,
            response: None,
            connection_error: Some(error_chain(&e.without_url())),
            request_body: d.body.clone(),
            created_at: leaf_time_now(),
        },
    };
    record_failure(state, &webhook, &d, failure).await
}

/// What a failed call keeps of the receiver's answer: at most this many bytes.
pub const FAILED_CALL_BODY_BYTES: usize = 1024;

/// The first [`FAILED_CALL_BODY_BYTES`] of a response body (never more is read), with the
/// webhook's secret hidden should the receiver echo it.
async fn body_prefix(mut response: reqwest::Response, secret: &str) -> String {
    let mut prefix = Vec::new();
    while prefix.len() < FAILED_CALL_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => prefix.extend_from_slice(&chunk),
            _ => break,
        }
    }
    prefix.truncate(FAILED_CALL_BODY_BYTES);
    crate::domain::redact::redact_body(&String::from_utf8_lossy(&prefix), &[secret])
}

/// An error with its causes: "error sending request: … : why".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Records a failed call and schedules the next attempt (or gives up).
async fn record_failure(
    state: &AppState,
    webhook: &crate::store::WebhookRecord,
    d: &crate::store::DeliveryRecord,
    failure: FailedCall,
) -> Result<(), StoreError> {
    crate::metrics::alert_delivery("failed");
    let attempts = d.attempts + 1;
    state
        .store
        .record_failed_call(&webhook.owner_id, &webhook.id, &failure)
        .await?;
    match RETRY_MINUTES.get((attempts - 1) as usize) {
        Some(minutes) => {
            let delay =
                Duration::from_secs_f64(minutes * 60.0 * state.settings.alert_retry_scale.max(0.0));
            state
                .store
                .finish_delivery(
                    &d.id,
                    "pending",
                    attempts,
                    now_ms() + delay.as_millis() as i64,
                )
                .await
        }
        None => {
            state
                .store
                .finish_delivery(&d.id, "failed", attempts, now_ms())
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_wire_format_and_signature() {
        let v = serde_json::json!({"a": 1, "b": [1, 2], "c": {"d": "x"}});
        assert_eq!(leaf_json(&v), r#"{"a": 1, "b": [1, 2], "c": {"d": "x"}}"#);
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            STANDARD
                .decode(sig)
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
