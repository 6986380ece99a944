//! Sync of growers, farms, fields and boundaries from deere-sim, read through Leaf's fields API.

mod common;

use std::time::Duration;

use common::{spawn_with, spawn_with_sim, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ALL_SCOPES: &[&str] = &["ag1", "ag2", "ag3", "files", "offline_access"];

async fn quiet_app(db: Db) -> TestApp {
    // No health checks during these tests: every platform request comes from a sync.
    spawn_with(db, |s| s.health_check_interval_secs = 3600).await
}

/// Waits until the user's sync has finished a run after `after` (a finishedTime or null).
async fn wait_for_sync(app: &TestApp, user: &str, after: &Value) -> Value {
    for _ in 0..300 {
        let (_, s) = app
            .call(
                Method::GET,
                &format!("/services/fields/api/users/{user}/fields/sync"),
                None,
            )
            .await;
        if s["state"] == "DONE" && &s["finishedTime"] != after {
            return s;
        }
        assert_ne!(s["state"], "FAILED", "{s}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("sync did not finish");
}

/// A manual sync of grower001's account, unchanged since its last sync: its status, and its
/// requests to the platform, each of one collection answered 304 — organizations, and clients,
/// farms, fields and files of its 2 connected organizations, and operations of their 6 fields.
async fn unchanged_resync(app: &TestApp, user: &str) -> (Value, Vec<deere_sim::LogEntry>) {
    app.admin(Method::DELETE, "requests", None).await;
    let done = app.sync_now(user).await;
    let platform: Vec<_> = app
        .sim
        .requests()
        .into_iter()
        .filter(|e| e.path.starts_with("/platform"))
        .collect();
    assert!(platform.iter().all(|e| e.status == 304), "{platform:?}");
    assert_eq!(platform.len(), 1 + 4 * 2 + 6, "{platform:?}");
    (done, platform)
}

fn sim_connected_fields(world: &Value, grower: usize) -> Vec<String> {
    let mut ids: Vec<String> = world["growers"][grower]["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            o["connectedApps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "sim-client")
        })
        .flat_map(|o| {
            o["fieldIds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
        })
        .collect();
    ids.sort();
    ids
}

fn assert_valid_multipolygon(geometry: &Value) {
    assert_eq!(geometry["type"], "MultiPolygon");
    for polygon in geometry["coordinates"].as_array().unwrap() {
        for ring in polygon.as_array().unwrap() {
            let points = ring.as_array().unwrap();
            assert!(points.len() >= 4, "a ring has at least 4 positions");
            assert_eq!(points.first(), points.last(), "rings are closed");
            for p in points {
                let (lon, lat) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
                assert!((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat));
                assert!(
                    lon < -80.0 && lat > 35.0,
                    "RFC 7946 order is [lon, lat]: {p}"
                );
            }
        }
    }
}

async fn full_sync_then_incremental(db: Db) {
    let app = quiet_app(db).await;
    let user = app.create_user("syncer").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.1["status"],
        "OK"
    );
    let status = wait_for_sync(&app, &user, &Value::Null).await;
    // The credentials check read the organizations; the first sync started from those.
    let organization_reads = app
        .sim
        .requests()
        .into_iter()
        .filter(|e| e.path.starts_with("/platform/organizations;"))
        .count();
    assert_eq!(organization_reads, 1);

    // Leaf's single-resource reads of a grower and of a user's farm.
    let (_, growers) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/growers?leafUserId={user}"),
            None,
        )
        .await;
    let grower = &growers[0];
    let (found, one) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/growers/{}", grower["id"]),
            None,
        )
        .await;
    assert_eq!((found, &one), (StatusCode::OK, grower));
    let (_, farms) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/farms?leafUserId={user}"),
            None,
        )
        .await;
    let farm = &farms[0];
    let (found, one) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/users/{user}/farms/{}", farm["id"]),
            None,
        )
        .await;
    assert_eq!((found, &one), (StatusCode::OK, farm));
    for missing in [
        "/services/fields/api/growers/12345",
        "/services/fields/api/growers/abc",
    ] {
        assert_eq!(
            app.call(Method::GET, missing, None).await.0,
            StatusCode::NOT_FOUND
        );
    }

    // Every field of the two connected organizations, none of the unconnected one.
    let world = app.admin(Method::GET, "world", None).await;
    let expected = sim_connected_fields(&world, 0);
    let fields = app.fields(&user, "").await;
    let mut got: Vec<String> = fields
        .iter()
        .map(|f| f["providerFieldId"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(status["counts"]["fields"], expected.len());
    for f in &fields {
        assert_eq!(f["providerName"], "JohnDeere");
        assert_eq!(f["status"], "PROCESSED");
        assert!(f["farmId"].is_i64(), "{f}");
        let fid = f["id"].as_str().unwrap();
        let (_, active) = app
            .call(
                Method::GET,
                &format!("/services/fields/api/users/{user}/fields/{fid}/boundary"),
                None,
            )
            .await;
        assert_eq!(active["status"], "ACTIVE");
        assert_valid_multipolygon(&active["geometry"]);
        assert!(active["area"]["value"].as_f64().unwrap() > 1.0);
        assert_eq!(f["providerBoundaryId"], active["providerBoundaryId"]);
    }
    let (_, growers) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/growers?leafUserId={user}"),
            None,
        )
        .await;
    assert_eq!(
        growers.as_array().unwrap().len(),
        2,
        "one client per connected org"
    );
    let (_, farms) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/farms?leafUserId={user}"),
            None,
        )
        .await;
    assert_eq!(farms.as_array().unwrap().len(), 4);
    let farm_id = fields[0]["farmId"].as_i64().unwrap();
    assert!(farms
        .as_array()
        .unwrap()
        .iter()
        .any(|fa| fa["id"] == farm_id));

    // An unchanged account re-syncs with one request per collection, each answered 304.
    let (second, _) = unchanged_resync(&app, &user).await;
    assert_eq!(second["counts"]["notModified"], 15);

    // A boundary edit and a field delete in John Deere show up after the next sync.
    let (edited, deleted) = (expected[0].clone(), expected[1].clone());
    let before = fields
        .iter()
        .find(|f| f["providerFieldId"] == edited.as_str())
        .unwrap()
        .clone();
    app.admin(Method::PUT, &format!("fields/{edited}/boundary"), None)
        .await;
    app.admin(Method::DELETE, &format!("fields/{deleted}"), None)
        .await;
    app.sync_now(&user).await;

    let live = app.fields(&user, "").await;
    assert_eq!(live.len(), expected.len() - 1);
    assert!(live
        .iter()
        .all(|f| f["providerFieldId"] != deleted.as_str()));
    let all = app.fields(&user, "&includeDeleted=true").await;
    let gone = all
        .iter()
        .find(|f| f["providerFieldId"] == deleted.as_str())
        .unwrap();
    assert_eq!(gone["deletedOnProvider"], true);

    let fid = before["id"].as_str().unwrap();
    let (_, history) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/users/{user}/fields/{fid}/boundaries"),
            None,
        )
        .await;
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "ACTIVE").count(),
        1,
        "{history}"
    );
    assert!(statuses.contains(&"OUTDATED_ON_PROVIDER"), "{history}");
    let (_, active) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/users/{user}/fields/{fid}/boundary"),
            None,
        )
        .await;
    assert_ne!(active["providerBoundaryId"], before["providerBoundaryId"]);

    // Idempotent: forgetting every signature and syncing again changes no row.
    let snapshot = dump(&app).await;
    sqlx::query("DELETE FROM deere_signatures")
        .execute(app.furrow.state.store.pool())
        .await
        .unwrap();
    app.sync_now(&user).await;
    assert_eq!(dump(&app).await, snapshot);
    app.finish().await;
}
both_backends!(full_sync, full_sync_then_incremental);

/// John Deere refused some of the first sync's reads for the rate limit (429, retried after
/// `Retry-After`): the unchanged re-sync still makes one request per collection, each answered
/// 304, none read twice.
async fn an_unchanged_resync_after_429s_reads_each_collection_once(db: Db) {
    let app = quiet_app(db).await;
    for path in ["/farms", "/fieldOperations"] {
        app.admin(
            Method::POST,
            "faults",
            Some(json!({"pathContains": path, "times": 2,
                        "kind": {"type": "rateLimit", "retryAfter": 1}})),
        )
        .await;
    }
    let user = app.create_user("refused").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;
    wait_for_sync(&app, &user, &Value::Null).await;
    let refused = app
        .sim
        .requests()
        .into_iter()
        .filter(|e| e.status == 429)
        .count();
    assert_eq!(refused, 4, "the first sync met every 429 injected");

    let (_, platform) = unchanged_resync(&app, &user).await;
    let distinct: std::collections::HashSet<_> = platform.iter().map(|e| &e.path).collect();
    assert_eq!(distinct.len(), platform.len(), "read twice: {platform:?}");
    app.finish().await;
}
both_backends!(
    resync_after_429s,
    an_unchanged_resync_after_429s_reads_each_collection_once
);

/// Every synced row, as text, in a stable order.
async fn dump(app: &TestApp) -> Vec<String> {
    let pool = app.furrow.state.store.pool().clone();
    let mut out = Vec::new();
    for (table, order) in [
        ("growers", "id"),
        ("farms", "id"),
        ("fields", "id"),
        ("boundaries", "id"),
    ] {
        let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY {order}"))
            .fetch_all(&pool)
            .await
            .unwrap();
        for row in rows {
            use sqlx::Row;
            let mut line = table.to_string();
            for i in 0..row.len() {
                let text = row
                    .try_get::<Option<String>, _>(i)
                    .map(|v| v.unwrap_or_default())
                    .or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string()))
                    .or_else(|_| row.try_get::<f64, _>(i).map(|v| v.to_string()))
                    .unwrap_or_default();
                line.push('|');
                line.push_str(&text);
            }
            out.push(line);
        }
    }
    out
}

async fn selected_only_limits_the_sync(db: Db) {
    let app = quiet_app(db).await;
    let user = app.create_user("picky").await;
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/services/config/api/configs/{user}"),
            Some(json!({"organizationDataSync": "SELECTED_ONLY"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let rt = app.grower_refresh_token("grower002", ALL_SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;
    let first = wait_for_sync(&app, &user, &Value::Null).await;
    assert_eq!(first["counts"]["fields"], 0, "nothing is SELECTED yet");
    assert!(app.fields(&user, "").await.is_empty());

    let (_, orgs) = app
        .call(
            Method::GET,
            &format!("/services/usermanagement/api/users/{user}/JohnDeere/organizations"),
            None,
        )
        .await;
    let chosen = orgs[1]["providerOrgId"].as_str().unwrap().to_string();
    let (status, _) = app
        .call(Method::PATCH, &format!("/services/usermanagement/api/users/{user}/JohnDeere/organizations/{chosen}/SELECTED"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    app.sync_now(&user).await;
    let fields = app.fields(&user, "").await;
    assert_eq!(fields.len(), 3);
    assert!(fields
        .iter()
        .all(|f| f["organizationId"] == chosen.as_str()));
    app.finish().await;
}
both_backends!(selected_only, selected_only_limits_the_sync);

async fn forbidden_org_is_skipped_and_others_sync(db: Db) {
    let app = quiet_app(db).await;
    let user = app.create_user("partial").await;
    let world = app.admin(Method::GET, "world", None).await;
    let org = world["growers"][0]["organizations"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.admin(Method::POST, "faults", Some(json!({"orgId": org, "pathContains": "/fields", "kind": {"type": "requiredCustomerAction"}}))).await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;
    let status = wait_for_sync(&app, &user, &Value::Null).await;
    assert_eq!(status["counts"]["organizationsFailed"], json!([org]));
    let fields = app.fields(&user, "").await;
    assert_eq!(fields.len(), 3, "the other organization's fields arrive");
    // The credential says so, and its events record the refusal and the status change.
    let (_, cred) = app.credential(&user).await;
    assert_eq!(cred["status"], "MISSING_PERMISSION", "{cred}");
    let (_, events) = app.events(&user).await;
    let events = events.as_array().unwrap();
    assert!(events.iter().any(|e| e["statusCode"] == 403), "{events:?}");
    assert!(
        events.iter().any(|e| e["body"]
            .as_str()
            .unwrap_or_default()
            .contains("MISSING_PERMISSION")),
        "{events:?}"
    );
    // The organization is marked with the reason; the other is not.
    let (_, marked) = app
        .call(
            Method::GET,
            &format!("/services/usermanagement/api/users/{user}/JohnDeere/organizations/{org}"),
            None,
        )
        .await;
    assert!(
        marked["syncError"]
            .as_str()
            .is_some_and(|e| e.contains("restricted")),
        "{marked}"
    );
    // Once the terms are accepted (the fault gone), the next sync clears the mark.
    app.admin(Method::DELETE, "faults", None).await;
    let status = app.sync_now(&user).await;
    assert_eq!(status["counts"]["organizationsFailed"], json!([]));
    let (_, cleared) = app
        .call(
            Method::GET,
            &format!("/services/usermanagement/api/users/{user}/JohnDeere/organizations/{org}"),
            None,
        )
        .await;
    assert_eq!(cleared["syncError"], Value::Null, "{cleared}");
    let (status, other) = app
        .call(
            Method::GET,
            &format!(
                "/services/fields/api/users/{user}/fields/{}",
                uuid::Uuid::new_v4()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{other}");
    app.finish().await;
}
both_backends!(forbidden_org, forbidden_org_is_skipped_and_others_sync);

/// A new user `name` connected to grower001 with an operations range wide enough for the
/// simulator's seeded operations (2022–2024): its id and its first sync's status, once done.
async fn connect_with_seeded_operations(app: &TestApp, name: &str) -> (String, Value) {
    let user = app.create_user(name).await;
    app.call(
        Method::POST,
        &format!("/services/config/api/configs/{user}"),
        Some(json!({"operationsProcessingRange": 120})),
    )
    .await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;
    let status = wait_for_sync(app, &user, &Value::Null).await;
    (user, status)
}

/// An organization of 150 fields is read in chunks of 64 (the next read while one is stored,
/// several stored together on PostgreSQL), reads in flight growing from 4 while the rate
/// limit has room: every field ends with its own boundary and its own operations, and an
/// unchanged re-sync asks each collection once.
async fn a_large_organization_is_read_in_chunks(db: Db) {
    let mut config = deere_sim::SimConfig {
        world: deere_sim::WorldSize {
            growers: 1,
            connected_orgs_per_grower: 1,
            unconnected_orgs_per_grower: 0,
            fields_per_org: 150,
            operations_per_field: 2,
            files_per_org: 0,
            ..deere_sim::WorldSize::default()
        },
        ..deere_sim::SimConfig::default()
    };
    // Each answer takes a while, so that reads in flight overlap in the simulator's log.
    config.settings.latency_ms = 30;
    let reads_per_part = 4;
    let app = spawn_with_sim(db, config, |s| {
        s.health_check_interval_secs = 3600;
        s.sync_reads_per_part = reads_per_part;
        s.deere_rate_limit = 5000.0;
    })
    .await;
    let (user, status) = connect_with_seeded_operations(&app, "large").await;
    // The fields' reads the simulator had under way at once, at most: more than the setting,
    // which is a floor while the budget has room, and no more than a part ever keeps going.
    let field_reads: Vec<(u64, u64)> = app
        .sim
        .requests()
        .into_iter()
        .filter(|e| e.path.contains("/boundaries") || e.path.contains("/fieldOperations"))
        .map(|e| (e.at_ms, e.at_ms + e.duration_ms))
        .collect();
    assert_eq!(field_reads.len(), 300);
    let most_at_once = field_reads
        .iter()
        .map(|&(start, _)| {
            field_reads
                .iter()
                .filter(|&&(s, end)| s <= start && start < end)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        most_at_once > reads_per_part as usize && most_at_once <= 200,
        "{most_at_once} reads at once"
    );
    assert_eq!(status["counts"]["fields"], 150, "{status}");
    assert_eq!(status["counts"]["boundaries"], 150, "{status}");
    assert_eq!(status["counts"]["operations"], 300, "{status}");
    let mut fields = app.fields(&user, "").await;
    fields.extend(app.fields(&user, "&page=1").await);
    assert_eq!(fields.len(), 150);
    // John Deere's truth: each field's active boundary and its operations, by field id.
    let truth: std::collections::HashMap<String, (String, Vec<String>)> = {
        let state = app.sim.state();
        let fields = state.world.orgs.values().flat_map(|o| o.fields.iter());
        fields
            .map(|f| {
                let boundary = f.active_boundary().expect("seeded with one").id.clone();
                let mut ops: Vec<String> = f.operations.iter().map(|o| o.id.clone()).collect();
                ops.sort();
                (f.id.clone(), (boundary, ops))
            })
            .collect()
    };
    for f in &fields {
        let (boundary_id, op_ids) = &truth[f["providerFieldId"].as_str().unwrap()];
        assert_eq!(f["status"], "PROCESSED", "{f}");
        let fid = f["id"].as_str().unwrap();
        let (_, boundary) = app
            .call(
                Method::GET,
                &format!("/services/fields/api/users/{user}/fields/{fid}/boundary"),
                None,
            )
            .await;
        // The boundary and operations read for this field, not for another of its chunk.
        assert_eq!(boundary["providerBoundaryId"], boundary_id.as_str(), "{f}");
        let (_, ops) = app
            .call(
                Method::GET,
                &format!("/services/operations/api/operations?fieldId={fid}&size=100"),
                None,
            )
            .await;
        let mut got: Vec<&str> = ops
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["providerOperationId"].as_str().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, *op_ids, "{f}");
    }

    // Unchanged: one 304 per collection (organizations; clients, farms, fields and files;
    // each field's operations), none read twice.
    app.admin(Method::DELETE, "requests", None).await;
    app.sync_now(&user).await;
    let platform: Vec<_> = app
        .sim
        .requests()
        .into_iter()
        .filter(|e| e.path.starts_with("/platform"))
        .collect();
    assert!(platform.iter().all(|e| e.status == 304), "{platform:?}");
    assert_eq!(platform.len(), 1 + 4 + 150);
    app.finish().await;
}
both_backends!(large_organization, a_large_organization_is_read_in_chunks);

async fn operations_sync_within_the_processing_range(db: Db) {
    let app = quiet_app(db).await;
    let (user, status) = connect_with_seeded_operations(&app, "operator").await;
    let world = app.admin(Method::GET, "world", None).await;
    let expected: u64 = world["growers"][0]["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            o["connectedApps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "sim-client")
        })
        .map(|o| o["operations"].as_u64().unwrap())
        .sum();
    assert_eq!(status["counts"]["operations"], expected);
    let list = |query: String| {
        let app = &app;
        async move {
            let (status, ops) = app
                .call(
                    Method::GET,
                    &format!("/services/operations/api/operations?size=100{query}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{ops}");
            ops.as_array().unwrap().clone()
        }
    };
    let all = list(format!("&leafUserId={user}")).await;
    assert_eq!(all.len() as u64, expected);
    let harvested = list(format!("&leafUserId={user}&operationType=harvested")).await;
    assert!(!harvested.is_empty() && harvested.len() < all.len());
    let h = &harvested[0];
    assert_eq!(h["providers"], json!(["JohnDeere"]));
    assert!(h["providerOperationId"].is_string());
    let totals = &h["summary"]["measurements"][0]["totals"];
    assert!(totals["yield"]["value"].as_f64().unwrap() > 0.0, "{h}");
    assert_eq!(totals["area"]["unit"], "ha");
    let (status, one) = app
        .call(
            Method::GET,
            &format!(
                "/services/operations/api/operations/{}",
                h["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!((status, &one["id"]), (StatusCode::OK, &h["id"]));
    let (status, p) = app
        .call(
            Method::GET,
            "/services/operations/api/operations?startTime=yesterday",
            None,
        )
        .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("startTime"))
    );

    // A new operation in John Deere arrives with the next sync; a deleted one disappears.
    let field = world["growers"][0]["organizations"][0]["fieldIds"][0]
        .as_str()
        .unwrap();
    let added = app
        .admin(
            Method::POST,
            &format!("fields/{field}/operations"),
            Some(json!({"type": "Seeding"})),
        )
        .await;
    let removed = all[0]["providerOperationId"].as_str().unwrap().to_string();
    app.admin(Method::DELETE, &format!("operations/{removed}"), None)
        .await;
    app.sync_now(&user).await;
    let after = list(format!("&leafUserId={user}")).await;
    assert_eq!(after.len(), all.len());
    assert!(after
        .iter()
        .any(|o| o["providerOperationId"] == added["id"] && o["type"] == "planted"));
    assert!(after
        .iter()
        .all(|o| o["providerOperationId"] != removed.as_str()));
    app.finish().await;
}
both_backends!(operations, operations_sync_within_the_processing_range);

/// Widening operationsProcessingRange after a first sync brings the older operations in at the
/// next sync: the operations lists read under the narrower range are read whole again, not
/// answered "not modified" for the signatures stored then. Narrowing it keeps what is there.
async fn a_wider_processing_range_brings_in_older_operations(db: Db) {
    let app = quiet_app(db).await;
    let user = app.create_user("widened").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;
    // The default range (12 months) holds none of the seeded operations (2022–2024).
    let first = wait_for_sync(&app, &user, &Value::Null).await;
    assert_eq!(first["counts"]["operations"], 0, "{first}");
    let operations = |user: String| {
        let app = &app;
        async move {
            let path = format!("/services/operations/api/operations?leafUserId={user}&size=100");
            let (status, ops) = app.call(Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{ops}");
            ops.as_array().unwrap().len()
        }
    };
    assert_eq!(operations(user.clone()).await, 0);
    let set_range = |months: u32| {
        let (app, user) = (&app, &user);
        async move {
            let path = format!("/services/config/api/configs/{user}");
            let body = json!({"operationsProcessingRange": months});
            let (status, config) = app.call(Method::PATCH, &path, Some(body)).await;
            assert_eq!(status, StatusCode::OK, "{config}");
        }
    };

    set_range(120).await;
    let widened = app.sync_now(&user).await;
    let seeded = widened["counts"]["operations"].as_u64().unwrap();
    assert!(seeded > 0, "{widened}");
    assert_eq!(operations(user.clone()).await as u64, seeded);

    // Back to 12 months: the lists are read under that range again, and the operations
    // outside it are kept, not deleted.
    set_range(12).await;
    let narrowed = app.sync_now(&user).await;
    assert_eq!(narrowed["counts"]["operationsDeleted"], 0, "{narrowed}");
    assert_eq!(operations(user.clone()).await as u64, seeded);
    app.finish().await;
}
both_backends!(
    wider_range,
    a_wider_processing_range_brings_in_older_operations
);

/// A deleted user's synced data goes with it: its fields, boundaries, operations and their
/// processing records (on PostgreSQL the last two through their field's cascade, with no key
/// of their own to the user).
async fn a_deleted_user_takes_its_synced_data_with_it(db: Db) {
    let app = quiet_app(db).await;
    let (user, status) = connect_with_seeded_operations(&app, "gone").await;
    assert_eq!(status["state"], "DONE", "{status}");
    let pool = app.furrow.state.store.pool().clone();
    let rows_of = |table: &'static str| {
        let (pool, user) = (pool.clone(), user.clone());
        async move {
            let sql = match table {
                "boundaries" => "SELECT COUNT(*) FROM boundaries b JOIN fields f ON f.id = b.field_id WHERE f.leaf_user_id = $1".to_string(),
                _ => format!("SELECT COUNT(*) FROM {table} WHERE leaf_user_id = $1"),
            };
            sqlx::query_scalar::<_, i64>(&sql)
                .bind(user)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let tables = ["fields", "boundaries", "operations", "operation_data"];
    for table in tables {
        assert!(rows_of(table).await > 0, "no {table} synced");
    }
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/services/usermanagement/api/users/{user}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for table in tables {
        assert_eq!(rows_of(table).await, 0, "{table} left behind");
    }
    app.finish().await;
}
both_backends!(deleted_user, a_deleted_user_takes_its_synced_data_with_it);

/// Adds a file to the first grower's first organization in the simulator: the world before,
/// that organization's id, and the simulator's answer (the file's `id`).
async fn add_file(app: &TestApp, name: &str, size: u64) -> (Value, String, Value) {
    let world = app.admin(Method::GET, "world", None).await;
    let org = world["growers"][0]["organizations"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let added = app
        .admin(
            Method::POST,
            &format!("orgs/{org}/files"),
            Some(json!({"name": name, "size": size})),
        )
        .await;
    (world, org, added)
}

async fn machine_files_arrive_byte_identical(db: Db) {
    let app = spawn_with(db, |s| {
        s.health_check_interval_secs = 3600;
        s.file_chunk_bytes = 64 * 1024;
    })
    .await;
    let (world, _, big) = add_file(&app, "Big_Harvest.zip", 300_000).await;
    let user = app.create_user("filer").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;
    let status = wait_for_sync(&app, &user, &Value::Null).await;
    let expected: u64 = world["growers"][0]["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            o["connectedApps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "sim-client")
        })
        .map(|o| o["files"].as_u64().unwrap())
        .sum::<u64>()
        + 1;
    assert_eq!(status["counts"]["files"], expected);

    let (_, files) = app
        .call(
            Method::GET,
            &format!("/services/operations/api/files?leafUserId={user}&size=100"),
            None,
        )
        .await;
    let files = files.as_array().unwrap().clone();
    assert_eq!(files.len() as u64, expected);
    // Every file's bytes, through furrow, equal John Deere's, by hash.
    let sim_token = app
        .sim
        .issue_tokens("sim-client", "grower001", ALL_SCOPES)
        .unwrap()
        .access_token;
    let (status, steps) = app
        .call(
            Method::GET,
            &format!(
                "/services/operations/api/files/{}/status",
                files[0]["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(steps["originalFile"]["status"], "processed");
    assert_eq!(steps["standardGeojson"]["status"], "skipped");
    for f in &files {
        assert_eq!(f["status"], "processed");
        let ours = app
            .http
            .get(f["downloadOriginalFile"].as_str().unwrap())
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(ours.status(), StatusCode::OK);
        let ours = ours.bytes().await.unwrap();
        let theirs = app
            .http
            .get(format!(
                "{}/files/{}",
                app.sim.platform_url(),
                f["providerFileId"].as_str().unwrap()
            ))
            .bearer_auth(&sim_token)
            .header("accept", "application/zip")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        use sha2::Digest;
        let hex = |b: &[u8]| {
            sha2::Sha256::digest(b)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
        };
        assert_eq!(hex(&ours), hex(&theirs));
        assert_eq!(f["sha256"], hex(&ours).as_str());
    }
    // The large file came in ranged chunks.
    let big_id = big["id"].as_str().unwrap();
    let ranged = app
        .sim
        .requests()
        .iter()
        .filter(|e| e.path == format!("/platform/files/{big_id}") && e.status == 206)
        .count();
    assert!(ranged >= 5, "{ranged} ranged requests");

    // Another owner cannot download it; a deleted file leaves the list.
    furrow::api::auth::create_owner(
        &app.furrow.state.store,
        "other@example.com",
        "another password",
    )
    .await
    .unwrap();
    let other = app.login("other@example.com", "another password").await;
    let r = app
        .http
        .get(files[0]["downloadOriginalFile"].as_str().unwrap())
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.admin(Method::DELETE, &format!("files/{big_id}"), None)
        .await;
    app.sync_now(&user).await;
    let (_, after) = app
        .call(
            Method::GET,
            &format!("/services/operations/api/files?leafUserId={user}&size=100"),
            None,
        )
        .await;
    assert_eq!(after.as_array().unwrap().len() as u64, expected - 1);
    app.finish().await;
}
both_backends!(files, machine_files_arrive_byte_identical);

async fn without_auto_sync_only_manual_syncs_run(db: Db) {
    let app = quiet_app(db).await;
    let (status, _) = app
        .call(
            Method::PATCH,
            "/services/config/api/configs",
            Some(json!({"fieldsAutoSync": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let user = app.create_user("manual").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, s) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/users/{user}/fields/sync"),
            None,
        )
        .await;
    assert_eq!(s["state"], "IDLE", "no automatic sync: {s}");
    assert!(app.fields(&user, "").await.is_empty());
    app.sync_now(&user).await;
    assert_eq!(app.fields(&user, "").await.len(), 6);
    app.finish().await;
}
both_backends!(manual_only, without_auto_sync_only_manual_syncs_run);

/// A files part whose download fails is retried, and the retry lists the organization's files
/// again rather than being told "not modified": the listing's signature is stored only with
/// every one of its files.
async fn a_failed_download_is_fetched_by_the_parts_retry(db: Db) {
    let app = quiet_app(db).await;
    let (_, org, added) = add_file(&app, "Flaky.zip", 20_000).await;
    let file_id = added["id"].as_str().unwrap().to_string();
    // Three 500s: the first try and both of the client's retries, so the part's first attempt
    // fails on this file.
    app.admin(
        Method::POST,
        "faults",
        Some(
            json!({"pathContains": format!("/files/{file_id}"), "times": 3,
                    "kind": {"type": "status", "status": 500}}),
        ),
    )
    .await;
    let user = app.create_user("flaky").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;
    wait_for_sync(&app, &user, &Value::Null).await;

    let (_, files) = app
        .call(
            Method::GET,
            &format!("/services/operations/api/files?leafUserId={user}&size=100"),
            None,
        )
        .await;
    let flaky = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["providerFileId"] == file_id.as_str())
        .unwrap_or_else(|| panic!("no file {file_id} in {files}"));
    assert_eq!(flaky["status"], "processed", "{flaky}");
    // The organization's files were listed twice, both answered in full.
    let listings: Vec<u16> = app
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains(&format!("/organizations/{org}/files")))
        .map(|r| r.status)
        .collect();
    assert_eq!(listings, [200, 200], "{listings:?}");
    app.finish().await;
}
both_backends!(
    flaky_download,
    a_failed_download_is_fetched_by_the_parts_retry
);

/// A part John Deere keeps refusing for the rate limit, beyond the client's retries and more
/// times than a part's failed attempts allow, goes again after each `Retry-After` until it is
/// answered: the sync ends DONE with every farm, not FAILED.
async fn a_part_refused_for_the_rate_limit_goes_again_until_answered(db: Db) {
    let app = quiet_app(db).await;
    // Each attempt asks five times (the first try and the client's four retries): 35 refusals
    // outlast six attempts.
    app.admin(
        Method::POST,
        "faults",
        Some(json!({"pathContains": "/farms", "times": 35,
                    "kind": {"type": "rateLimit", "retryAfter": 0}})),
    )
    .await;
    let user = app.create_user("refused").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;
    // Seven refused attempts, each put off by a second: up to a minute.
    let mut status = Value::Null;
    for _ in 0..3 {
        status = app.wait_for_sync_done(&user).await;
        if status["state"] != "RUNNING" && status["state"] != "QUEUED" {
            break;
        }
    }
    assert_eq!(status["state"], "DONE", "{status}");
    let refused = app
        .sim
        .requests()
        .into_iter()
        .filter(|e| e.status == 429)
        .count();
    assert_eq!(refused, 35, "every refusal was met");
    assert_eq!(status["counts"]["farms"], 4, "{status}");
    assert_eq!(app.fields(&user, "").await.len(), 6);
    app.finish().await;
}
both_backends!(
    refused_part,
    a_part_refused_for_the_rate_limit_goes_again_until_answered
);
