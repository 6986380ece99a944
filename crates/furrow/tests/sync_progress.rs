//! Syncs under load: the sync status shows each part's progress while it runs (items and
//! requests so far and the request rate, then its last figures once it is done), and a small
//! grower gets its share while a large account syncs, and the newest growers' slots hand their
//! parts back to run again.

mod common;

use std::time::Duration;

use common::{spawn_with, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SCOPES: &[&str] = &["ag1", "ag2", "files", "offline_access"];

/// A grower in the simulator with one organization per entry of `fields` (that many fields,
/// one operation each, no files), all connected to furrow's app.
async fn add_grower(app: &TestApp, name: &str, fields: &[u32]) {
    let orgs: Vec<Value> = fields
        .iter()
        .map(|n| json!({"connectedTo": "sim-client", "fields": n, "operationsPerField": 1, "files": 0}))
        .collect();
    app.admin(
        Method::POST,
        "growers",
        Some(json!({"userName": name, "organizations": orgs})),
    )
    .await;
}

/// A new Leaf user whose credentials connect simulator grower `name`: its id.
async fn connect(app: &TestApp, name: &str) -> String {
    let user = app.create_user(name).await;
    let rt = app.grower_refresh_token(name, SCOPES);
    let (status, body) = app.post_credentials(&user, &rt, "STAGE").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    user
}

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
    add_grower(&app, "wide", &[40]).await;
    app.sim.state().settings.latency_ms = 40;
    let user = connect(&app, "wide").await;
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
    add_grower(&app, "large", &[25; 6]).await;
    add_grower(&app, "small", &[2]).await;
    let status_of = |user: &str| format!("/services/fields/api/users/{user}/fields/sync");
    let large = connect(&app, "large").await;
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
    let small = connect(&app, "small").await;
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

/// The newest growers' slots, handed on: ten growers connected at once while a large account's
/// parts hold both job slots. The first to begin take the four slots kept for the newest
/// growers, and give them up as later ones begin; a first part stopped then (before its first
/// request, or once its grower's first data is stored) is queued again and runs to its end in
/// a slot. Every grower ends with all its fields, and its lists were read again whole by the
/// part that ran again (their signatures were not stored with the first data), so an unchanged
/// re-sync of each is one 304 per collection.
async fn parts_handed_back_by_the_newest_growers_run_again(db: Db) {
    let app = spawn_with(db, |s| {
        s.deere_rate_limit = 40.0;
        s.engine_concurrency = 2;
        // No health checks: the growers' requests are their syncs'.
        s.health_check_interval_secs = 3600;
    })
    .await;
    add_grower(&app, "large", &[25; 4]).await;
    let small: Vec<String> = (0..10).map(|n| format!("small{n}")).collect();
    for name in &small {
        add_grower(&app, name, &[2]).await;
    }
    app.sim.state().settings.latency_ms = 30;
    let large = connect(&app, "large").await;
    let status_of = |user: &str| format!("/services/fields/api/users/{user}/fields/sync");
    for _ in 0..200 {
        let status = app.call(Method::GET, &status_of(&large), None).await.1;
        if status["organizations"].as_array().map_or(0, Vec::len) == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One after another: each grower begins while the ones before it are still on their way
    // to their first data.
    let mut users = Vec::new();
    for name in &small {
        users.push(connect(&app, name).await);
    }
    for user in &users {
        let mut status = Value::Null;
        for _ in 0..1200 {
            status = app.call(Method::GET, &status_of(user), None).await.1;
            if status["state"] == "DONE" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(status["state"], "DONE", "{status}");
        assert_eq!(app.fields(user, "").await.len(), 2, "{status}");
    }
    // How many times each small grower's fields list was read whole (200) in its first sync.
    let log = app.sim.requests();
    let lists_read: Vec<usize> = small
        .iter()
        .map(|name| {
            log.iter()
                .filter(|e| e.user.as_deref() == Some(name.as_str()) && e.status == 200)
                .filter(|e| {
                    e.path
                        .split(['?', ';'])
                        .next()
                        .is_some_and(|p| p.ends_with("/fields"))
                })
                .count()
        })
        .collect();
    assert!(lists_read.iter().all(|n| *n >= 1), "{lists_read:?}");
    assert!(
        lists_read.iter().any(|n| *n >= 2),
        "no first part was handed back after its first data: {lists_read:?}"
    );
    // The part that ran again stored every signature: nothing is read whole again.
    for (name, user) in small.iter().zip(&users) {
        app.admin(Method::DELETE, "requests", None).await;
        app.sync_now(user).await;
        let again: Vec<_> = app
            .sim
            .requests()
            .into_iter()
            .filter(|e| e.user.as_deref() == Some(name.as_str()) && e.path.starts_with("/platform"))
            .collect();
        assert!(
            !again.is_empty() && again.iter().all(|e| e.status == 304),
            "{name}: {again:?}"
        );
        let paths: std::collections::HashSet<_> = again.iter().map(|e| &e.path).collect();
        assert_eq!(paths.len(), again.len(), "{name}: read twice: {again:?}");
    }
    app.finish().await;
}

both_backends!(
    handed_back,
    parts_handed_back_by_the_newest_growers_run_again
);
