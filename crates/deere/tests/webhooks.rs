//! Event subscriptions through the client, and the simulator's deliveries to a real receiver.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use deere::models::{DeliveredEvent, EventFilter, NewEventSubscription, TargetEndpoint};
use deere::DeereError;
use reqwest::Method;
use serde_json::json;

/// One delivery as received: its Authorization header and its events.
type Delivery = (Option<String>, Vec<DeliveredEvent>);

#[derive(Clone, Default)]
struct Receiver {
    failures_left: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Delivery>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    if r.failures_left.load(Ordering::SeqCst) > 0 {
        r.failures_left.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    r.received
        .lock()
        .unwrap()
        .push((auth, serde_json::from_str(&body).unwrap()));
    StatusCode::NO_CONTENT
}

async fn start_receiver(failures: usize) -> (Receiver, String) {
    let receiver = Receiver::default();
    receiver.failures_left.store(failures, Ordering::SeqCst);
    let app = Router::new()
        .route("/events", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, url)
}

async fn wait_for<F: Fn() -> bool>(what: &str, condition: F) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn subscription_lifecycle_and_delivery_with_retries() {
    let h = common::start(deere_sim::SimConfig::default()).await;
    h.settings(json!({"webhookRetryMs": 20})).await;
    let (receiver, target) = start_receiver(2).await;
    let (token, _) = h.tokens("grower001", None).await;
    let world = h.admin(Method::GET, "world", None).await;
    let org = world["growers"][0]["organizations"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let field = world["growers"][0]["organizations"][0]["fieldIds"][0]
        .as_str()
        .unwrap()
        .to_string();

    let new = NewEventSubscription {
        event_type_id: "fieldOperation".into(),
        filters: vec![EventFilter {
            key: "orgId".into(),
            values: vec![org.clone()],
        }],
        target_endpoint: TargetEndpoint {
            target_type: "https".into(),
            uri: target.clone(),
        },
        status: "Active".into(),
        display_name: Some("furrow test".into()),
        token: Some("c2VjcmV0LXRva2Vu".into()),
    };
    let created = h.api.create_event_subscription(&token, &new).await.unwrap();
    assert_eq!(created.status.as_deref(), Some("Active"));
    assert_eq!(created.client_key.as_deref(), Some("sim-client"));
    assert_eq!(h.api.event_subscriptions(&token).await.unwrap().len(), 1);

    // Delivery authorization header configured for the app.
    h.http
        .patch(format!(
            "{}/eventSubscriptionDelivery",
            h.sim.platform_url()
        ))
        .bearer_auth(token.expose())
        .header("accept", "application/vnd.deere.axiom.v3+json")
        .json(&json!({"authorizationHeaderValue": "Basic ZnVycm93OnNlY3JldA=="}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();

    let added = h
        .admin(
            Method::POST,
            &format!("fields/{field}/operations"),
            Some(json!({"type": "Harvest"})),
        )
        .await;
    let op_id = added["id"].as_str().unwrap().to_string();
    wait_for("delivery", || !receiver.received.lock().unwrap().is_empty()).await;
    let (auth, events) = receiver.received.lock().unwrap()[0].clone();
    assert_eq!(auth.as_deref(), Some("Basic ZnVycm93OnNlY3JldA=="));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].token.as_deref(), Some("c2VjcmV0LXRva2Vu"));
    assert_eq!(events[0].event_type_id, "fieldOperation");
    assert!(events[0]
        .target_resource
        .ends_with(&format!("/fieldOperations/{op_id}")));
    let attempts: Vec<Option<u16>> = h
        .admin(Method::GET, "deliveries", None)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_u64().map(|s| s as u16))
        .collect();
    assert_eq!(
        attempts,
        [Some(503), Some(503), Some(204)],
        "failed twice, delivered on the third attempt"
    );

    // The receiver fetches targetResource: the operation is there, with the case kept as given.
    let op: deere::models::FieldOperation = h
        .api
        .get_json(&token, &h.api.link_url(&events[0].target_resource).unwrap())
        .await
        .unwrap();
    assert_eq!(
        op.field_operation_type,
        deere::models::FieldOperationType::Harvest
    );

    // An operation in another org does not match the filter.
    let other_field = world["growers"][0]["organizations"][1]["fieldIds"][0]
        .as_str()
        .unwrap();
    h.admin(
        Method::POST,
        &format!("fields/{other_field}/operations"),
        None,
    )
    .await;

    // Update, then delete.
    let sub_url = h.api.link_url(created.link_self()).unwrap();
    let mut paused = new.clone();
    paused.status = "Terminated".into();
    h.api
        .update_event_subscription(&token, &sub_url, &paused)
        .await
        .unwrap();
    let fetched: deere::models::EventSubscription = h.api.get_json(&token, &sub_url).await.unwrap();
    assert_eq!(fetched.status.as_deref(), Some("Terminated"));
    h.admin(Method::POST, &format!("fields/{field}/operations"), None)
        .await;
    h.api
        .delete_event_subscription(&token, &sub_url)
        .await
        .unwrap();
    assert!(matches!(
        h.api.get_json::<serde_json::Value>(&token, &sub_url).await,
        Err(DeereError::NotFound { .. })
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver.received.lock().unwrap().len(),
        1,
        "no delivery for other orgs or terminated subscriptions"
    );
}

#[tokio::test]
async fn invalid_subscriptions_are_rejected_and_webhook_access_is_licensed() {
    let h = common::start(deere_sim::SimConfig::default()).await;
    let (token, _) = h.tokens("grower001", None).await;
    let bad = NewEventSubscription {
        event_type_id: "noSuchEvent".into(),
        filters: vec![],
        target_endpoint: TargetEndpoint {
            target_type: "https".into(),
            uri: "https://r.example/x".into(),
        },
        status: "Active".into(),
        display_name: None,
        token: Some("not valid!".into()),
    };
    let err = h
        .api
        .create_event_subscription(&token, &bad)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeereError::Http { status: 400, .. }),
        "{err:?}"
    );

    h.admin(
        Method::PATCH,
        "apps/sim-client",
        Some(json!({"webhookAccess": false})),
    )
    .await;
    let err = h.api.event_subscriptions(&token).await.unwrap_err();
    assert!(
        matches!(
            err,
            DeereError::Forbidden {
                kind: deere::ForbiddenKind::MissingScope,
                ..
            }
        ),
        "{err:?}"
    );
}

trait SelfLink {
    fn link_self(&self) -> &str;
}

impl SelfLink for deere::models::EventSubscription {
    fn link_self(&self) -> &str {
        use deere::models::HasLinks;
        self.link("self").unwrap()
    }
}
