//! Leaf's own client against furrow: the John Deere-relevant requests of Leaf's public Postman
//! collection (Leaf-Agriculture/Leaf-API-Postman-Collection, "Leaf API"), in its order, with its
//! paths as written there (trailing slashes included) and only the base URL changed, replayed by
//! this runner (newman's job, without Node in the test run). Ids flow from one answer to the next
//! as the collection's scripts pass them (`Location` of a 201, the first item of a list). The
//! bodies are ours (the collection's carry placeholders).
//!
//! Every request furrow serves must answer as Leaf documents (its status); the requests for what
//! furrow does not do (yet) must be clean 4xx answers. The test prints the tally.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{receiver, spawn_with, Db, TestApp};
use reqwest::Method;
use serde_json::Value;

/// What Leaf documents for a request, or that furrow does not serve it.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Status(&'static [u16]),
    NotServed,
}
use Expect::*;

/// One request of the collection; `{{var}}` in the path and body are filled from earlier
/// answers. `capture`: (variable, `location` or a JSON pointer into the answer).
struct Step {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    expect: Expect,
    capture: &'static [(&'static str, &'static str)],
}

const fn step(method: &'static str, path: &'static str, expect: Expect) -> Step {
    Step {
        method,
        path,
        body: None,
        expect,
        capture: &[],
    }
}

const OK: Expect = Status(&[200]);
const CREATED: Expect = Status(&[201]);
const GONE: Expect = Status(&[200, 204]);

const SQUARE: &str = r#"{"type": "MultiPolygon", "coordinates": [[[[-93.48, 41.77], [-93.475, 41.77], [-93.475, 41.775], [-93.48, 41.775], [-93.48, 41.77]]]]}"#;

fn steps() -> Vec<Step> {
    let with = |mut s: Step, body: &'static str| {
        s.body = Some(body);
        s
    };
    let capture = |mut s: Step, c: &'static [(&'static str, &'static str)]| {
        s.capture = c;
        s
    };
    vec![
        // Leaf auth; users.
        with(
            step("POST", "/api/authenticate", OK),
            r#"{"username": "owner@example.com", "password": "correct horse battery", "rememberMe": "true"}"#,
        ),
        capture(
            with(
                step("POST", "/services/usermanagement/api/users/", CREATED),
                r#"{"name": "Postman grower", "email": "postman@example.com"}"#,
            ),
            &[("leaf_user_id", "location")],
        ),
        step("GET", "/services/usermanagement/api/users/", OK),
        step(
            "GET",
            "/services/usermanagement/api/users/{{leaf_user_id}}",
            OK,
        ),
        with(
            step("PUT", "/services/usermanagement/api/users/", OK),
            r#"{"id": "{{leaf_user_id}}", "name": "Postman grower", "email": "postman@example.com", "climateFieldViewCredentials": null, "trimbleCredentials": null}"#,
        ),
        // John Deere credentials and organizations.
        with(
            step(
                "POST",
                "/services/usermanagement/api/users/{{leaf_user_id}}/john-deere-credentials",
                CREATED,
            ),
            r#"{"clientKey": "sim-client", "clientSecret": "sim-secret", "refreshToken": "{{refresh_token}}", "clientEnvironment": "STAGE"}"#,
        ),
        step(
            "GET",
            "/services/usermanagement/api/users/{{leaf_user_id}}/john-deere-credentials",
            OK,
        ),
        step(
            "GET",
            "/services/usermanagement/api/users/{{leaf_user_id}}/john-deere-credentials/events",
            OK,
        ),
        step(
            "GET",
            "/services/usermanagement/api/users/{{leaf_user_id}}/organizations/JohnDeere",
            OK,
        ),
        // Configurations.
        step("GET", "/services/config/api/configs", OK),
        with(
            step("PATCH", "/services/config/api/configs", OK),
            r#"{"operationsProcessingRange": 120, "machinesAutoSync": true, "implementsAutoSync": true, "operatorsAutoSync": true}"#,
        ),
        with(
            step(
                "POST",
                "/services/config/api/configs/{{leaf_user_id}}",
                Status(&[200, 201]),
            ),
            r#"{"unitMeasurement": "METRIC"}"#,
        ),
        step("GET", "/services/config/api/configs/{{leaf_user_id}}", OK),
        with(
            step("PATCH", "/services/config/api/configs/{{leaf_user_id}}", OK),
            r#"{"operationsOutliersLimit": 2.5}"#,
        ),
        // The sync the configuration asks for (the collection's user waits for it too). Asked
        // while the first sync still runs, it runs after it: the wait is for a run other than
        // the one running then.
        capture(
            step("POST", "/services/fields/api/users/{{leaf_user_id}}/fields/sync", Status(&[200, 202])),
            &[("sync_state", "/state"), ("sync_started", "/startedTime")],
        ),
        step("WAIT", "sync", OK),
        // Alerts.
        capture(
            with(
                step("POST", "/services/alerts/api/alerts/webhooks", CREATED),
                r#"{"events": ["fieldCreated"], "name": "postman", "secret": "postman-secret", "url": "{{receiver}}"}"#,
            ),
            &[("webhook_id", "location")],
        ),
        step("GET", "/services/alerts/api/alerts/webhooks", OK),
        step("GET", "/services/alerts/api/alerts/webhooks/{{webhook_id}}", OK),
        // Fields, boundaries, farms, growers.
        capture(
            step("GET", "/services/fields/api/fields?leafUserId={{leaf_user_id}}", OK),
            &[("field_id", "/0/id"), ("organization_id", "/0/organizationId")],
        ),
        step(
            "GET",
            "/services/fields/api/users/{{leaf_user_id}}/fields/{{field_id}}",
            OK,
        ),
        capture(
            with(
                step("POST", "/services/fields/api/users/{{leaf_user_id}}/fields", CREATED),
                SQUARE_BODY,
            ),
            &[("new_field_id", "/id")],
        ),
        step(
            "POST",
            "/services/fields/api/users/{{leaf_user_id}}/fields/{{new_field_id}}/integration/JohnDeere?organizationId={{organization_id}}",
            OK,
        ),
        with(
            step("POST", "/services/fields/api/fields/query/intersects", NotServed),
            SQUARE,
        ),
        with(
            step(
                "POST",
                "/services/fields/api/users/{{leaf_user_id}}/fields/intersect",
                NotServed,
            ),
            r#"{"fields": ["{{field_id}}", "{{new_field_id}}"]}"#,
        ),
        step(
            "DELETE",
            "/services/fields/api/users/{{leaf_user_id}}/fields/{{field_id}}",
            NotServed,
        ),
        with(
            step(
                "PATCH",
                "/services/fields/api/users/{{leaf_user_id}}/fields/{{field_id}}",
                NotServed,
            ),
            r#"{"name": "Renamed"}"#,
        ),
        capture(
            step(
                "GET",
                "/services/fields/api/users/{{leaf_user_id}}/fields/{{field_id}}/boundaries",
                OK,
            ),
            &[("boundary_id", "/0/id")],
        ),
        step(
            "GET",
            "/services/fields/api/users/{{leaf_user_id}}/fields/{{field_id}}/boundaries/{{boundary_id}}",
            OK,
        ),
        step(
            "GET",
            "/services/fields/api/users/{{leaf_user_id}}/fields/{{field_id}}/boundary",
            OK,
        ),
        with(
            step(
                "PUT",
                "/services/fields/api/users/{{leaf_user_id}}/fields/{{field_id}}/boundary",
                NotServed,
            ),
            SQUARE,
        ),
        capture(
            step("GET", "/services/fields/api/farms", OK),
            &[("farm_id", "/0/id")],
        ),
        step(
            "GET",
            "/services/fields/api/users/{{leaf_user_id}}/farms/{{farm_id}}",
            OK,
        ),
        with(
            step("POST", "/services/fields/api/users/{{leaf_user_id}}/farms", NotServed),
            r#"{"name": "New farm"}"#,
        ),
        with(
            step(
                "PUT",
                "/services/fields/api/users/{{leaf_user_id}}/farms/{{farm_id}}",
                NotServed,
            ),
            r#"{"name": "Farm"}"#,
        ),
        capture(
            step("GET", "/services/fields/api/growers", OK),
            &[("grower_id", "/0/id")],
        ),
        step("GET", "/services/fields/api/growers/{{grower_id}}", OK),
        with(
            step("POST", "/services/fields/api/users/{{leaf_user_id}}/growers", NotServed),
            r#"{"name": "New grower"}"#,
        ),
        with(
            step(
                "PUT",
                "/services/fields/api/users/{{leaf_user_id}}/growers/{{grower_id}}",
                NotServed,
            ),
            r#"{"name": "Grower"}"#,
        ),
        with(
            step("POST", "/services/fields/api/growers/enableSync", OK),
            r#"{"growerIds": [{{grower_id}}]}"#,
        ),
        step(
            "GET",
            "/services/fields/api/users/{{leaf_user_id}}/fields/{{field_id}}/operations",
            NotServed,
        ),
        // Files.
        capture(
            step("GET", "/services/operations/api/files", OK),
            &[("file_id", "/0/id")],
        ),
        step("GET", "/services/operations/api/files/{{file_id}}", OK),
        step("GET", "/services/operations/api/files/{{file_id}}/images", NotServed),
        step("GET", "/services/operations/api/files/{{file_id}}/summary", NotServed),
        step("GET", "/services/operations/api/files/{{file_id}}/units", NotServed),
        step("GET", "/services/operations/api/files/{{file_id}}/status", OK),
        step(
            "GET",
            "/services/operations/api/files/uncoveredFiles?leafUserId={{leaf_user_id}}",
            NotServed,
        ),
        step("GET", "/services/operations/api/batch", NotServed),
        with(
            step("POST", "/services/operations/api/files/merge", NotServed),
            r#"{"ids": ["{{file_id}}"]}"#,
        ),
        // Operations and their machine data.
        capture(
            step(
                "GET",
                "/services/operations/api/operations?leafUserId={{leaf_user_id}}&operationType=harvested",
                OK,
            ),
            &[("operation_id", "/0/id")],
        ),
        step("GET", "/services/operations/api/operations/{{operation_id}}", OK),
        step("WAIT", "processed", OK),
        step(
            "GET",
            "/services/operations/api/operations/{{operation_id}}/summary",
            OK,
        ),
        step(
            "GET",
            "/services/operations/api/operations/{{operation_id}}/filteredGeojson",
            OK,
        ),
        step(
            "GET",
            "/services/operations/api/operations/{{operation_id}}/standardGeojson",
            OK,
        ),
        step(
            "GET",
            "/services/operations/api/operations/{{operation_id}}/images",
            OK,
        ),
        step(
            "GET",
            "/services/operations/api/operations/{{operation_id}}/imagesV2",
            OK,
        ),
        step(
            "GET",
            "/services/operations/api/operations/{{operation_id}}/geotiffImages",
            NotServed,
        ),
        step(
            "GET",
            "/services/operations/api/operations/{{operation_id}}/units",
            OK,
        ),
        step(
            "POST",
            "/services/operations/api/operations/{{operation_id}}/reprocess",
            Status(&[200, 202]),
        ),
        with(
            step(
                "POST",
                "/services/operations/api/operations/CropOperationByField",
                NotServed,
            ),
            r#"{"operationId": "{{operation_id}}", "fieldId": "{{field_id}}"}"#,
        ),
        // Assets (beta).
        capture(
            step("GET", "/services/beta/api/users/{{leaf_user_id}}/machines", OK),
            &[("machine_id", "/0/id")],
        ),
        step(
            "GET",
            "/services/beta/api/users/{{leaf_user_id}}/machines/{{machine_id}}",
            OK,
        ),
        capture(
            with(
                step("POST", "/services/beta/api/users/{{leaf_user_id}}/machines", CREATED),
                r#"{"name": "Postman tractor", "serialNumber": "123456", "vin": "1234567890ABC", "model": "ModelName", "make": "MakerOfMachine", "category": "Tractor", "modelYear": 2020}"#,
            ),
            &[("own_machine_id", "location")],
        ),
        with(
            step(
                "PATCH",
                "/services/beta/api/users/{{leaf_user_id}}/machines/{{own_machine_id}}",
                OK,
            ),
            r#"{"name": "updatedName", "modelYear": 2021}"#,
        ),
        step(
            "DELETE",
            "/services/beta/api/users/{{leaf_user_id}}/machines/{{own_machine_id}}",
            GONE,
        ),
        step(
            "GET",
            "/services/beta/api/users/{{leaf_user_id}}/machines/{{machine_id}}/files",
            NotServed,
        ),
        capture(
            step("GET", "/services/beta/api/users/{{leaf_user_id}}/implements", OK),
            &[("implement_id", "/0/id")],
        ),
        step(
            "GET",
            "/services/beta/api/users/{{leaf_user_id}}/implements/{{implement_id}}",
            OK,
        ),
        capture(
            step("GET", "/services/beta/api/users/{{leaf_user_id}}/operators", OK),
            &[("operator_id", "/0/id")],
        ),
        step(
            "GET",
            "/services/beta/api/users/{{leaf_user_id}}/operators/{{operator_id}}",
            OK,
        ),
        step("GET", "/services/beta/api/products", NotServed),
        step(
            "GET",
            "/services/beta/prescription/api/users/{{leaf_user_id}}/johnDeere?organizationId={{organization_id}}",
            NotServed,
        ),
        // John Deere app keys, magic links, integrations.
        with(
            step(
                "POST",
                "/services/usermanagement/api/app-keys/JohnDeere/postman-app/STAGE",
                CREATED,
            ),
            r#"{"clientKey": "sim-client", "clientSecret": "sim-secret"}"#,
        ),
        step("GET", "/services/usermanagement/api/app-keys/JohnDeere", OK),
        step(
            "GET",
            "/services/usermanagement/api/app-keys/JohnDeere/postman-app/STAGE",
            OK,
        ),
        with(
            step(
                "PUT",
                "/services/usermanagement/api/app-keys/JohnDeere/postman-app/STAGE",
                OK,
            ),
            r#"{"clientKey": "sim-client", "clientSecret": "sim-secret"}"#,
        ),
        capture(
            with(
                step(
                    "POST",
                    "/services/widgets/api/magic-link/users/{{leaf_user_id}}/provider",
                    CREATED,
                ),
                r#"{"expiresIn": 3600, "allowedProviders": ["JohnDeere"]}"#,
            ),
            &[("magic_link_id", "/id")],
        ),
        step("GET", "/services/widgets/api/magic-link/provider", OK),
        step(
            "GET",
            "/services/widgets/api/magic-link/provider/{{magic_link_id}}",
            OK,
        ),
        step(
            "DELETE",
            "/services/widgets/api/magic-link/provider/{{magic_link_id}}",
            GONE,
        ),
        capture(
            with(
                step(
                    "POST",
                    "/services/widgets/api/magic-link/users/{{leaf_user_id}}/authentication",
                    CREATED,
                ),
                r#"{"expiresIn": 3600, "provider": "JohnDeere"}"#,
            ),
            &[("auth_link_id", "/id")],
        ),
        step("GET", "/services/widgets/api/magic-link/authentication", OK),
        step(
            "GET",
            "/services/widgets/api/magic-link/authentication/{{auth_link_id}}",
            OK,
        ),
        step(
            "DELETE",
            "/services/widgets/api/magic-link/authentication/{{auth_link_id}}",
            GONE,
        ),
        step("GET", "/services/integrations/api/resources", OK),
        // Clean-up, as the collection's delete requests.
        step(
            "DELETE",
            "/services/usermanagement/api/app-keys/JohnDeere/postman-app/STAGE",
            GONE,
        ),
        step("DELETE", "/services/alerts/api/alerts/webhooks/{{webhook_id}}", GONE),
        step("DELETE", "/services/config/api/configs/{{leaf_user_id}}", GONE),
        step(
            "DELETE",
            "/services/usermanagement/api/users/{{leaf_user_id}}/john-deere-credentials",
            GONE,
        ),
    ]
}

const SQUARE_BODY: &str = r#"{"name": "Postman field", "geometry": {"type": "MultiPolygon", "coordinates": [[[[-93.48, 41.77], [-93.475, 41.77], [-93.475, 41.775], [-93.48, 41.775], [-93.48, 41.77]]]]}}"#;

fn fill(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = text.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    out
}

/// A value of an answer as a variable of the collection: a string as it is, anything else as
/// JSON.
fn as_var(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Waits for what the collection's user waits for between requests.
async fn wait(app: &TestApp, what: &str, vars: &HashMap<String, String>) {
    let user = &vars["leaf_user_id"];
    let mut last = Value::Null;
    for _ in 0..600 {
        let done = match what {
            "sync" => {
                let status = app.wait_for_sync_done(user).await;
                let running_then = vars["sync_state"] == "RUNNING";
                status["state"] == "DONE"
                    && !(running_then && as_var(&status["startedTime"]) == vars["sync_started"])
            }
            _ => {
                let op = &vars["operation_id"];
                let path = format!("/services/operations/api/operations/{op}/status");
                let (_, status) = app.call(Method::GET, &path, None).await;
                last = status;
                last["status"] == "PROCESSED"
            }
        };
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} never finished: {last}");
}

async fn replay(db: Db) {
    let app = spawn_with(db, |s| {
        s.alert_allow_private_networks = true;
        s.alert_retry_scale = 0.0005;
        s.export_poll_ms = 10;
    })
    .await;
    app.admin(
        Method::PATCH,
        "settings",
        Some(serde_json::json!({"exportPoints": 200})),
    )
    .await;
    let (_rx, receiver_url) = receiver().await;
    let mut vars = HashMap::from([
        (
            "refresh_token".to_string(),
            app.grower_refresh_token(
                "grower001",
                &["ag1", "ag2", "ag3", "eq1", "files", "offline_access"],
            ),
        ),
        ("receiver".to_string(), receiver_url),
    ]);
    let (mut as_leaf, mut served, mut not_served, mut clean_4xx) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for s in steps() {
        if s.method == "WAIT" {
            wait(&app, s.path, &vars).await;
            continue;
        }
        let path = fill(s.path, &vars);
        let mut request = app
            .http
            .request(
                Method::from_bytes(s.method.as_bytes()).unwrap(),
                app.url(&path),
            )
            .bearer_auth(&app.token);
        if let Some(body) = s.body {
            request = request
                .header("content-type", "application/json")
                .body(fill(body, &vars));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match s.expect {
            Status(statuses) => {
                served += 1;
                if statuses.contains(&status.as_u16()) {
                    as_leaf += 1;
                } else {
                    failures.push(format!("{} {path}: {status} {text}", s.method));
                }
            }
            NotServed => {
                not_served += 1;
                if status.is_client_error() {
                    clean_4xx += 1;
                } else {
                    failures.push(format!("{} {path} (not served): {status} {text}", s.method));
                }
            }
        }
        for (name, source) in s.capture {
            let value = if *source == "location" {
                location
                    .as_deref()
                    .and_then(|l| l.rsplit('/').next())
                    .map(str::to_string)
            } else {
                body.pointer(source).map(as_var)
            };
            match value {
                Some(v) => {
                    vars.insert(name.to_string(), v);
                }
                None => failures.push(format!("{} {path}: no {name} in {status} {text}", s.method)),
            }
        }
    }
    println!(
        "Leaf's collection ({db:?}): {as_leaf} of {served} served requests answered as Leaf documents; \
         {not_served} requests for what furrow does not do, {clean_4xx} of them clean 4xx answers"
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(as_leaf, served);
    assert_eq!(clean_4xx, not_served);
    app.finish().await;
}
both_backends!(leaf_postman_collection, replay);
