//! The sync status shows each part's progress while it runs: items and requests so far and the
//! request rate, updated as the part works, then its last figures once it is done.

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
