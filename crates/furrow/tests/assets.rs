//! Leaf's assets (beta): John Deere machines, implements and operators synced with
//! `machinesAutoSync`, `implementsAutoSync` and `operatorsAutoSync`, linked from the operations
//! that used them, with their alerts; machines a user creates.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{receiver, spawn_with, wait_until, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SCOPES: &[&str] = &["ag1", "ag2", "eq1", "files", "offline_access"];

async fn list(app: &TestApp, path: &str) -> Vec<Value> {
    let (status, body) = app.call(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body.as_array().unwrap().clone()
}

/// The simulator's organizations of a grower that furrow may read (connected to its app).
fn connected_orgs(world: &Value, grower: &str) -> Vec<Value> {
    world["growers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["userName"] == grower)
        .unwrap()["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| !o["connectedApps"].as_array().unwrap().is_empty())
        .cloned()
        .collect()
}

async fn assets_match_the_simulator(db: Db) {
    let app = spawn_with(db, |s| {
        s.alert_retry_scale = 0.0005;
        s.alert_allow_private_networks = true;
    })
    .await;
    let (rx, url) = receiver().await;
    let events = [
        "machineCreated",
        "machineUpdated",
        "implementCreated",
        "implementUpdated",
    ];
    let (status, _) = app
        .call(
            Method::POST,
            "/services/alerts/api/alerts/webhooks",
            Some(
                json!({"events": events, "name": "assets", "secret": "s3cret-assets", "url": url}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // One user with the three asset syncs on, one with Leaf's defaults (off).
    let user = app.create_user("fleet").await;
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/services/config/api/configs/{user}"),
            Some(json!({"machinesAutoSync": true, "implementsAutoSync": true,
                        "operatorsAutoSync": true, "operationsProcessingRange": 120})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let other = app.create_user("no-fleet").await;
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/services/config/api/configs/{other}"),
            Some(json!({"operationsProcessingRange": 120})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    for (u, grower) in [(&user, "grower001"), (&other, "grower002")] {
        let rt = app.grower_refresh_token(grower, SCOPES);
        assert_eq!(
            app.post_credentials(u, &rt, "STAGE").await.0,
            StatusCode::CREATED
        );
    }
    app.wait_for_sync_done(&user).await;
    app.wait_for_sync_done(&other).await;

    let world = app.admin(Method::GET, "world", None).await;
    let orgs = connected_orgs(&world, "grower001");
    assert!(!orgs.is_empty());
    let sim_equipment = |kind: &str| -> BTreeSet<(String, String, String)> {
        orgs.iter()
            .flat_map(|o| o["equipment"].as_array().unwrap().clone())
            .filter(|e| e["type"] == kind)
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_string(),
                    e["name"].as_str().unwrap().to_string(),
                    e["serialNumber"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    let machines = list(
        &app,
        &format!("/services/beta/api/users/{user}/machines?size=100"),
    )
    .await;
    let got: BTreeSet<_> = machines
        .iter()
        .map(|m| {
            assert_eq!(m["provider"], "JohnDeere");
            assert_eq!(m["originType"], "PROVIDER_POOLED");
            assert_eq!(m["leafUserId"], user.as_str());
            (
                m["providerMachineId"].as_str().unwrap().to_string(),
                m["name"].as_str().unwrap().to_string(),
                m["serialNumber"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, sim_equipment("Machine"));
    let implements = list(
        &app,
        &format!("/services/beta/api/users/{user}/implements?size=100"),
    )
    .await;
    let got: BTreeSet<_> = implements
        .iter()
        .map(|i| {
            (
                i["providerImplementId"].as_str().unwrap().to_string(),
                i["name"].as_str().unwrap().to_string(),
                i["serialNumber"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, sim_equipment("Implement"));
    let operators = list(
        &app,
        &format!("/services/beta/api/users/{user}/operators?size=100"),
    )
    .await;
    let got: BTreeSet<_> = operators
        .iter()
        .map(|o| {
            assert_eq!(o["status"], "ACTIVE");
            (
                o["providerOperatorId"].as_str().unwrap().to_string(),
                o["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let sim_operators: BTreeSet<_> = orgs
        .iter()
        .flat_map(|o| o["operators"].as_array().unwrap().clone())
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_string(),
                o["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, sim_operators);
    // Filters and single reads.
    let combines = list(
        &app,
        &format!("/services/beta/api/users/{user}/machines?name=S780%20Combine"),
    )
    .await;
    assert_eq!(combines.len(), orgs.len());
    let one = &machines[0];
    let (status, read) = app
        .call(
            Method::GET,
            &format!(
                "/services/beta/api/users/{user}/machines/{}",
                one["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!((status, &read), (StatusCode::OK, one));
    // Leaf's defaults: no asset sync for the other user.
    assert!(
        list(&app, &format!("/services/beta/api/users/{other}/machines"))
            .await
            .is_empty()
    );
    assert!(
        list(&app, &format!("/services/beta/api/users/{other}/operators"))
            .await
            .is_empty()
    );

    // Every operation names the machine that worked it, its implements and its operator.
    let ops = list(
        &app,
        &format!("/services/operations/api/operations?leafUserId={user}&size=100"),
    )
    .await;
    assert!(!ops.is_empty());
    let by_id = |items: &[Value], id: &Value| -> Value {
        items
            .iter()
            .find(|i| &i["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    for op in &ops {
        let id = op["id"].as_str().unwrap();
        let path = |what: &str| format!("/services/operations/api/operations/{id}/{what}");
        let used = app.call(Method::GET, &path("machines"), None).await.1;
        let used = used["machines"].as_array().unwrap().clone();
        assert_eq!(used.len(), 1, "{op}");
        let machine = by_id(&machines, &used[0]);
        let (category, implement) = match op["type"].as_str().unwrap() {
            "harvested" => ("Combine", Some("745FD Header")),
            "applied" => ("Sprayer", None),
            "planted" => ("Tractor", Some("DB60 Planter")),
            _ => ("Tractor", Some("2730 Ripper")),
        };
        assert_eq!(machine["category"], category, "{op} {machine}");
        let attached = app.call(Method::GET, &path("implements"), None).await.1;
        let names: Vec<Value> = attached["implements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| by_id(&implements, i)["name"].clone())
            .collect();
        assert_eq!(
            names,
            implement.map(|n| json!(n)).into_iter().collect::<Vec<_>>()
        );
        let ran = app.call(Method::GET, &path("operators"), None).await.1;
        let ran = ran["operators"].as_array().unwrap().clone();
        assert_eq!(ran.len(), 1, "{op}");
        assert!(by_id(&operators, &ran[0])["name"].is_string());
    }
    // The other user's operations exist but link to no asset.
    let theirs = list(
        &app,
        &format!("/services/operations/api/operations?leafUserId={other}&size=1"),
    )
    .await;
    let (_, none) = app
        .call(
            Method::GET,
            &format!(
                "/services/operations/api/operations/{}/machines",
                theirs[0]["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(none, json!({"machines": []}));

    // One alert per machine and implement created; a rename in John Deere is one update.
    wait_until("the asset alerts", || {
        rx.count("machineCreated") == machines.len()
            && rx.count("implementCreated") == implements.len()
    })
    .await;
    let org = orgs[0]["id"].as_str().unwrap();
    let renamed = orgs[0]["equipment"][0]["id"].as_str().unwrap();
    app.admin(
        Method::PATCH,
        &format!("orgs/{org}/equipment/{renamed}"),
        Some(json!({"name": "Big Red"})),
    )
    .await;
    app.sync_now(&user).await;
    wait_until("machineUpdated", || rx.count("machineUpdated") == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (
            rx.count("machineCreated"),
            rx.count("machineUpdated"),
            rx.count("implementUpdated")
        ),
        (machines.len(), 1, 0)
    );
    let renamed_now = list(
        &app,
        &format!("/services/beta/api/users/{user}/machines?providerMachineId={renamed}"),
    )
    .await;
    assert_eq!(renamed_now.len(), 1);
    assert_eq!(renamed_now[0]["name"], "Big Red");
    app.finish().await;
}
both_backends!(synced_assets, assets_match_the_simulator);

async fn users_own_machines(db: Db) {
    let app = spawn_with(db, |_| {}).await;
    let user = app.create_user("owner-of-tractor").await;
    let base = format!("/services/beta/api/users/{user}/machines");
    // Bad input: 400 and nothing written.
    for bad in [
        json!({"serialNumber": "no name"}),
        json!({"name": "x", "colour": "green"}),
        json!({"name": "x", "modelYear": "twenty"}),
    ] {
        let (status, body) = app.call(Method::POST, &base, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert!(list(&app, &base).await.is_empty());
    let response = reqwest::Client::new()
        .post(app.url(&base))
        .bearer_auth(&app.token)
        .json(&json!({"name": "Old Blue", "serialNumber": "123456", "vin": "1234567890ABC",
                      "model": "4020", "make": "JOHN DEERE", "category": "Tractor", "modelYear": 1965}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("{base}/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(created["originType"], "USER_CREATED");
    assert_eq!(created["provider"], "Leaf");
    assert_eq!(created["modelYear"], 1965);
    let (status, patched) = app
        .call(
            Method::PATCH,
            &location,
            Some(json!({"name": "Older Blue", "modelYear": 1964})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (&patched["name"], &patched["modelYear"], &patched["vin"]),
        (&json!("Older Blue"), &json!(1964), &json!("1234567890ABC"))
    );
    assert_eq!(list(&app, &format!("{base}?provider=Leaf")).await.len(), 1);
    assert!(list(&app, &format!("{base}?provider=JohnDeere"))
        .await
        .is_empty());
    let (status, _) = app.call(Method::DELETE, &location, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.call(Method::GET, &location, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another user's id, or one that is no UUID: 404.
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/services/beta/api/users/{}/machines", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(Method::GET, &format!("{base}/not-a-uuid"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.finish().await;
}
both_backends!(own_machines, users_own_machines);
