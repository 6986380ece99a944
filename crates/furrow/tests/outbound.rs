//! Outbound safety: alert webhooks cannot point furrow at its own network — refused at
//! registration, and not sent at delivery when the name leads inside. Failed calls keep a
//! bounded prefix of what the receiver answered. Every address used here is on this machine.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use common::{spawn, spawn_with, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const HOOKS: &str = "/services/alerts/api/alerts/webhooks";
const SECRET: &str = "a-webhook-secret";

/// A receiver on loopback that counts calls and answers 500 with a 100 KB body echoing the
/// secret.
async fn receiver() -> (Arc<AtomicUsize>, u16) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/alerts",
        post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let body = format!("{SECRET} {}", "x".repeat(100_000));
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (calls, port)
}

async fn register(app: &TestApp, url: &str) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        HOOKS,
        Some(json!({"events": ["operationCreated"], "name": "n", "secret": SECRET, "url": url})),
    )
    .await
}

async fn failed_calls(app: &TestApp, at_least: usize) -> Vec<Value> {
    for _ in 0..300 {
        let (_, failed) = app
            .call(Method::GET, &format!("{HOOKS}/failed-calls"), None)
            .await;
        let items = failed["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= at_least {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {at_least} failed calls");
}

async fn registration_refuses_internal_addresses(db: Db) {
    let app = spawn(db).await;
    let (calls, port) = receiver().await;
    for url in [
        format!("http://127.0.0.1:{port}/alerts"),
        "http://127.0.0.1/__admin/world".into(),
        "http://169.254.169.254/latest/meta-data".into(),
        "http://10.0.0.1/hook".into(),
        "http://172.16.5.4/hook".into(),
        "http://192.168.1.1/hook".into(),
        "http://100.64.0.1/hook".into(),
        "http://0.0.0.0/hook".into(),
        "http://[::1]/".into(),
        "http://[fe80::1]/".into(),
        "http://[fd00::1]/".into(),
        "http://[::ffff:127.0.0.1]/".into(),
        "http://[::ffff:169.254.169.254]/".into(),
        "http://0x7f000001/".into(),
        "http://127.1/".into(),
        "http://2130706433/".into(),
        "http://localhost/".into(),
        format!("http://localhost:{port}/alerts"),
    ] {
        let (status, body) = register(&app, &url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(body["field"], "url", "{url}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("address"), "{url}: {detail}");
    }
    let (_, body) = register(&app, "http://169.254.169.254/latest/meta-data").await;
    assert!(
        body["detail"].as_str().unwrap().contains("link-local"),
        "{body}"
    );
    let (_, body) = register(&app, "http://localhost/").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("localhost resolves to 127.0.0.1, a loopback address"),
        "{body}"
    );
    let (_, list) = app.call(Method::GET, HOOKS, None).await;
    assert_eq!(list, json!([]), "nothing was stored");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing was sent");
    app.finish().await;
}
both_backends!(registration, registration_refuses_internal_addresses);

async fn deliveries_never_reach_inside(db: Db) {
    let app = spawn(db).await;
    let (calls, port) = receiver().await;
    // Webhooks stored before the policy existed (or whose name changed its answer since): the
    // delivery checks again, on the addresses it would connect to.
    let store = &app.furrow.state.store;
    let owner = store
        .owner_by_email("owner@example.com")
        .await
        .unwrap()
        .unwrap();
    for (id, url) in [
        ("by-name", format!("http://localhost:{port}/alerts")),
        ("by-address", format!("http://127.0.0.1:{port}/alerts")),
    ] {
        store
            .insert_webhook(&furrow::store::WebhookRecord {
                id: id.into(),
                owner_id: owner.id.clone(),
                name: id.into(),
                url,
                secret_enc: app.furrow.state.keyring.encrypt(SECRET),
                events: json!(["operationCreated"]).to_string(),
                created_at: furrow::store::leaf_time_now(),
            })
            .await
            .unwrap();
        store
            .enqueue_delivery(id, r#"{"type":"operationCreated"}"#)
            .await
            .unwrap();
    }
    app.furrow.state.wake.notify();
    let items = failed_calls(&app, 2).await;
    let reason = |url_part: &str| {
        items
            .iter()
            .find(|i| i["url"].as_str().unwrap().contains(url_part))
            .map(|i| {
                i["connectionError"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap()
    };
    let by_name = reason("localhost");
    assert!(
        by_name.contains("localhost resolves to 127.0.0.1, a loopback address"),
        "{by_name}"
    );
    let by_address = reason("127.0.0.1");
    assert!(
        by_address.contains("not sent: 127.0.0.1 is a loopback address"),
        "{by_address}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the receiver was never called"
    );
    app.finish().await;
}
both_backends!(delivery, deliveries_never_reach_inside);

async fn allowed_receivers_work_and_failed_bodies_are_capped(db: Db) {
    let app = spawn_with(db, |s| {
        s.alert_allowed_networks = "127.0.0.0/8".into();
        s.alert_retry_scale = 0.0005;
    })
    .await;
    let (calls, port) = receiver().await;
    let (status, body) = register(&app, &format!("http://127.0.0.1:{port}/alerts")).await;
    assert_eq!(status, StatusCode::CREATED, "an allowed range: {body}");
    // The confirmation is sent, fails with 500, and the failed call keeps 1 KiB of the answer.
    let items = failed_calls(&app, 1).await;
    assert!(calls.load(Ordering::SeqCst) >= 1);
    assert_eq!(items[0]["status"], 500);
    let response = items[0]["response"].as_str().unwrap();
    assert!(response.len() <= 1024, "{} bytes kept", response.len());
    assert!(
        response.len() > 900,
        "a useful prefix: {} bytes",
        response.len()
    );
    assert!(
        !response.contains(SECRET),
        "the secret is hidden: {response}"
    );
    // Loopback IPv6 is outside the allowed range.
    let (status, _) = register(&app, "http://[::1]:9/alerts").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.finish().await;
}
both_backends!(capped, allowed_receivers_work_and_failed_bodies_are_capped);
