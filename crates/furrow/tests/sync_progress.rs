//! Syncs under load: the sync status shows each part's progress while it runs (items and
//! requests so far and the request rate, then its last figures once it is done), and a small
//! grower gets its share while a large account syncs.

mod common;

use std::time::Duration;

use common::{spawn_with, Db};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SCOPES: &[&str] = &["ag1", "ag2", "files", "offline_access"];

/// The `fields` part of the status's only organization.
fn fields_part(status: &Value) -> Option<Value> {
    status["organizations"][0]["parts"]
        .as_array()?
        .iter()
        .find(|p| p["resource"] == "fields")
        .cloned()
}

async fn progress_shows_while_a_part_runs(db: Db) {
    // Paced at 20 requests/s, the fields part (some 80 requests) runs for a few seconds.
    let app = spawn_with(db, |s| s.deere_rate_limit = 20.0).await;
    app.admin(
        Method::POST,
        "growers",
        Some(json!({"userName": "wide", "organizations": [
            {"connectedTo": "sim-client", "fields": 40, "operationsPerField": 1, "files": 0},
        ]})),
    )
    .await;
    app.sim.state().settings.latency_ms = 40;
    let user = app.create_user("wide").await;
    let rt = app.grower_refresh_token("wide", SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.0,
        StatusCode::CREATED
    );
    let path = format!("/services/fields/api/users/{user}/fields/sync");
    let mut while_running = None;
    let mut status = Value::Null;
    for _ in 0..600 {
        status = app.call(Method::GET, &path, None).await.1;
        if let Some(part) = fields_part(&status) {
            let progress = &part["progress"];
            if status["state"] == "RUNNING"
                && part["state"] == "PENDING"
                && progress["requests"].as_u64() > Some(0)
                && progress["items"].as_u64() > Some(0)
            {
                while_running.get_or_insert(part);
            }
        }
        if status["state"] == "DONE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["state"], "DONE", "{status}");
    let running = while_running.expect("figures while the part ran");
    assert!(
        running["progress"]["requestsPerSecond"].as_f64() > Some(0.0),
        "{running}"
    );
    assert!(running["progress"]["startedTime"].is_string(), "{running}");

    // Its last figures: more than while it ran, and the items are what its counts say.
    let done = fields_part(&status).unwrap();
    assert_eq!(done["state"], "DONE");
    let (last, counts) = (&done["progress"], &done["counts"]);
    assert!(
        last["requests"].as_u64() > running["progress"]["requests"].as_u64(),
        "{done}"
    );
    let counted: u64 = [
        "growers",
        "farms",
        "fields",
        "boundaries",
        "operations",
        "files",
    ]
    .iter()
    .map(|k| counts[k].as_u64().unwrap_or(0))
    .sum();
    assert_eq!(last["items"].as_u64(), Some(counted), "{done}");
    assert_eq!(counts["fields"], 40, "{done}");
    // At least one request per field (its boundaries) besides the organization's lists.
    assert!(last["requests"].as_u64() >= Some(40), "{done}");
    app.finish().await;
}

both_backends!(progress_while_running, progress_shows_while_a_part_runs);

/// Fair share: a 2-field grower connected while a 6-organization account's first sync fills
/// every job slot and the whole rate budget is synced long before that account is: its jobs go
/// before the large account's waiting parts, and its requests before the large account's. Its
/// first fields come before any of the large account's parts ends: its first run takes a slot
/// kept for the newest growers rather than waiting for one of those parts to free one.
async fn a_small_grower_is_not_starved_by_a_large_one(db: Db) {
    let app = spawn_with(db, |s| {
        s.deere_rate_limit = 20.0;
        s.engine_concurrency = 2;
    })
    .await;
    let org =
        json!({"connectedTo": "sim-client", "fields": 25, "operationsPerField": 1, "files": 0});
    app.admin(
        Method::POST,
        "growers",
        Some(json!({"userName": "large", "organizations": [org, org, org, org, org, org]})),
    )
    .await;
    app.admin(
        Method::POST,
        "growers",
        Some(json!({"userName": "small", "organizations": [
            {"connectedTo": "sim-client", "fields": 2, "operationsPerField": 1, "files": 0},
        ]})),
    )
    .await;
    let status_of = |user: &str| format!("/services/fields/api/users/{user}/fields/sync");
    let large = app.create_user("large").await;
    let rt = app.grower_refresh_token("large", SCOPES);
    assert_eq!(
        app.post_credentials(&large, &rt, "STAGE").await.0,
        StatusCode::CREATED
    );
    // The large account's parts hold both job slots.
    for _ in 0..200 {
        let status = app.call(Method::GET, &status_of(&large), None).await.1;
        let running = status["organizations"]
            .as_array()
            .map_or(0, |orgs| orgs.len());
        if status["state"] == "RUNNING" && running == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let small = app.create_user("small").await;
    let rt = app.grower_refresh_token("small", SCOPES);
    assert_eq!(
        app.post_credentials(&small, &rt, "STAGE").await.0,
        StatusCode::CREATED
    );
    let fields_parts_done = |status: &Value| {
        let orgs = status["organizations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        orgs.iter()
            .flat_map(|o| o["parts"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["resource"] == "fields" && p["state"] == "DONE")
            .count()
    };
    let small_fields = format!("/services/fields/api/fields?leafUserId={small}");
    let mut first_fields = false;
    for _ in 0..1200 {
        let fields = app.call(Method::GET, &small_fields, None).await.1;
        first_fields = fields.as_array().is_some_and(|f| !f.is_empty());
        if first_fields {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(first_fields, "no fields for the small grower");
    let large_status = app.call(Method::GET, &status_of(&large), None).await.1;
    assert_eq!(
        fields_parts_done(&large_status),
        0,
        "the small grower's first fields waited for a part of the large account's to end: {large_status}"
    );
    let mut small_status = Value::Null;
    for _ in 0..1200 {
        small_status = app.call(Method::GET, &status_of(&small), None).await.1;
        if small_status["state"] == "DONE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(small_status["state"], "DONE", "{small_status}");
    assert_eq!(small_status["counts"]["fields"], 2, "{small_status}");
    let large_status = app.call(Method::GET, &status_of(&large), None).await.1;
    assert_eq!(
        large_status["state"], "RUNNING",
        "the small grower waited for the large account: {large_status}"
    );
    app.finish().await;
}

both_backends!(fair_share, a_small_grower_is_not_starved_by_a_large_one);
