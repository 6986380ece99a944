//! Leaf alerts: webhook registration rules, signed deliveries with retries, failed calls, and the
//! credentialsUnauthenticated alert when a grower revokes the grant.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{receiver, spawn_with, wait_until, Db};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SECRET: &str = "a-webhook-secret";

async fn alerts_are_signed_retried_and_recorded(db: Db) {
    // The receivers listen on loopback: allowed explicitly.
    let app = spawn_with(db, |s| {
        s.alert_retry_scale = 0.0005;
        s.alert_allow_private_networks = true;
    })
    .await;
    let (rx, url) = receiver().await;
    let hooks = "/services/alerts/api/alerts/webhooks";

    for (body, field) in [
        (
            json!({"events": ["credentialsUnauthenticated"], "name": "n", "secret": SECRET, "url": "ftp://x/y"}),
            "url",
        ),
        (
            json!({"events": ["credentialsUnauthenticated"], "name": "n", "secret": SECRET, "url": "http://u:p@127.0.0.1/"}),
            "url",
        ),
        (
            json!({"events": ["somethingElse"], "name": "n", "secret": SECRET, "url": url}),
            "events",
        ),
        (
            json!({"events": ["credentialsUnauthenticated"], "name": "n", "secret": "short", "url": url}),
            "secret",
        ),
    ] {
        let (status, p) = app.call(Method::POST, hooks, Some(body.clone())).await;
        assert_eq!(
            (status, p["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}: {p}"
        );
    }
    let (status, created) = app
        .call(Method::POST, hooks, Some(json!({"events": ["credentialsUnauthenticated"], "name": "main", "secret": SECRET, "url": url})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, twice) = app
        .call(Method::POST, hooks, Some(json!({"events": ["credentialsUnauthenticated"], "name": "again", "secret": SECRET, "url": url})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        twice["detail"]
            .as_str()
            .unwrap()
            .contains("eventRegisteredTwice"),
        "{twice}"
    );
    let (_, listed) = app.call(Method::GET, hooks, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // The confirmation arrives first.
    wait_until("the confirmation", || !rx.got.lock().unwrap().is_empty()).await;
    let (sig, body) = rx.got.lock().unwrap()[0].clone();
    assert_eq!(
        body,
        r#"{"message": "confirmation of webhook upon registration"}"#
    );
    assert_eq!(
        sig,
        furrow::sync::alerts::signature(SECRET, body.as_bytes())
    );

    // The grower revokes the grant; the receiver fails twice, then takes the alert.
    let user = app.create_user("alerted").await;
    let rt = app.grower_refresh_token("grower001", &["ag1", "ag2", "files", "offline_access"]);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.1["status"],
        "OK"
    );
    rx.fail_next.store(2, Ordering::SeqCst);
    app.admin(
        Method::POST,
        "grants/revoke",
        Some(json!({"userName": "grower001"})),
    )
    .await;
    app.wait_for_status(&user, "UNAUTHENTICATED").await;
    wait_until("the alert", || rx.got.lock().unwrap().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        2,
        "one confirmation and exactly one alert: {got:?}"
    );
    let (sig, body) = &got[1];
    assert_eq!(
        *sig,
        furrow::sync::alerts::signature(SECRET, body.as_bytes()),
        "valid signature over the exact bytes"
    );
    let alert: Value = serde_json::from_str(body).unwrap();
    assert_eq!(alert["type"], "credentialsUnauthenticated");
    assert_eq!(alert["status"], "UNAUTHENTICATED");
    assert_eq!(alert["provider"], "JohnDeere");
    let (_, cred) = app.credential(&user).await;
    assert_eq!(alert["credentialId"], cred["id"]);
    assert!(alert["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(!body.contains(&rt), "no secret in the alert");

    let (_, failed) = app
        .call(Method::GET, &format!("{hooks}/failed-calls"), None)
        .await;
    let items = failed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{failed}");
    assert!(items
        .iter()
        .all(|i| i["status"] == 503 && i["requestBody"] == body.as_str()));

    // Deleting the webhook: 204, then 404; another owner never sees it.
    let id = created["id"].as_str().unwrap();
    furrow::api::auth::create_owner(
        &app.furrow.state.store,
        "other@example.com",
        "another password",
    )
    .await
    .unwrap();
    let other = app.login("other@example.com", "another password").await;
    assert_eq!(
        app.call_as(&other, Method::GET, &format!("{hooks}/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::DELETE, &format!("{hooks}/{id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Method::GET, &format!("{hooks}/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    app.finish().await;
}
both_backends!(alerts, alerts_are_signed_retried_and_recorded);

async fn sync_changes_become_alerts(db: Db) {
    // The receiver listens on loopback: allowed explicitly.
    let app = spawn_with(db, |s| {
        s.alert_retry_scale = 0.0005;
        s.health_check_interval_secs = 3600;
        s.alert_allow_private_networks = true;
    })
    .await;
    let (rx, url) = receiver().await;
    let events = [
        "fieldCreated",
        "fieldUpdated",
        "fieldBoundaryCreated",
        "fieldBoundaryUpdated",
        "operationCreated",
        "providerFileProcessingFinished",
    ];
    let (status, _) = app
        .call(
            Method::POST,
            "/services/alerts/api/alerts/webhooks",
            Some(json!({"events": events, "name": "data", "secret": SECRET, "url": url})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let user = app.create_user("watched").await;
    app.call(
        Method::POST,
        &format!("/services/config/api/configs/{user}"),
        Some(json!({"operationsProcessingRange": 120})),
    )
    .await;
    let rt = app.grower_refresh_token("grower001", &["ag1", "ag2", "files", "offline_access"]);
    app.post_credentials(&user, &rt, "STAGE").await;
    // grower001: 6 fields with one boundary each, 24 operations, 4 files — plus the confirmation.
    let count = |t: &str| {
        rx.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, b)| serde_json::from_str::<Value>(b).unwrap()["type"] == t)
            .count()
    };
    wait_until("the sync's alerts", || {
        rx.got.lock().unwrap().len() >= 1 + 6 + 6 + 24 + 4
    })
    .await;
    assert_eq!(
        (
            count("fieldCreated"),
            count("fieldBoundaryCreated"),
            count("operationCreated"),
            count("providerFileProcessingFinished")
        ),
        (6, 6, 24, 4)
    );
    for (sig, body) in rx.got.lock().unwrap().iter() {
        assert_eq!(
            *sig,
            furrow::sync::alerts::signature(SECRET, body.as_bytes())
        );
    }
    // A rename in John Deere: one fieldUpdated, nothing created again.
    let world = app.admin(Method::GET, "world", None).await;
    let field = world["growers"][0]["organizations"][0]["fieldIds"][0]
        .as_str()
        .unwrap();
    app.admin(
        Method::PATCH,
        &format!("fields/{field}"),
        Some(json!({"name": "Renamed"})),
    )
    .await;
    let (_, queued) = app
        .call(
            Method::POST,
            &format!("/services/fields/api/users/{user}/fields/sync"),
            None,
        )
        .await;
    let _ = queued;
    wait_until("fieldUpdated", || count("fieldUpdated") == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (
            count("fieldCreated"),
            count("fieldUpdated"),
            count("operationCreated")
        ),
        (6, 1, 24)
    );
    // A boundary edit in John Deere (arriving by webhook): the new boundary is created and the
    // field's boundary is updated, once each.
    app.admin(Method::PUT, &format!("fields/{field}/boundary"), None)
        .await;
    wait_until("fieldBoundaryUpdated", || {
        count("fieldBoundaryUpdated") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (
            count("fieldBoundaryCreated"),
            count("fieldBoundaryUpdated"),
            count("fieldUpdated")
        ),
        (7, 1, 1)
    );
    app.finish().await;
}
both_backends!(sync_alerts, sync_changes_become_alerts);
