//! Leaf's preview mode (`customDataSync`): fields arrive without boundaries or operations until
//! enabled, one by one or by grower.

mod common;

use std::time::Duration;

use common::{spawn, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SCOPES: &[&str] = &["ag1", "ag2", "files", "offline_access"];

async fn operations_of(app: &TestApp, user: &str, field: &str) -> usize {
    let (_, ops) = app
        .call(
            Method::GET,
            &format!(
                "/services/operations/api/operations?leafUserId={user}&fieldId={field}&size=100"
            ),
            None,
        )
        .await;
    ops.as_array().map_or(0, Vec::len)
}

/// Polls one field until its status is `status`.
async fn wait_for_field(app: &TestApp, user: &str, field: &str, status: &str) -> Value {
    let path = format!("/services/fields/api/users/{user}/fields/{field}");
    let mut last = Value::Null;
    for _ in 0..400 {
        last = app.call(Method::GET, &path, None).await.1;
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("field never became {status}: {last}");
}

async fn preview_fields_wait_to_be_enabled(db: Db) {
    let app = spawn(db).await;
    let (status, _) = app
        .call(
            Method::PATCH,
            "/services/config/api/configs",
            Some(json!({"customDataSync": true, "operationsProcessingRange": 120})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let user = app.create_user("preview").await;
    let rt = app.grower_refresh_token("grower001", SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.0,
        StatusCode::CREATED
    );
    assert_eq!(app.wait_for_sync_done(&user).await["state"], "DONE");

    // Listed, but no geometry, no boundaries, no operations.
    let all = app.fields(&user, "").await;
    assert!(all.len() >= 2, "{all:?}");
    for f in &all {
        assert_eq!(f["status"], "PREVIEW", "{f}");
        assert_eq!(f["geometry"], Value::Null);
        assert_eq!(f["boundaries"], json!([]));
        assert_eq!(
            operations_of(&app, &user, f["id"].as_str().unwrap()).await,
            0
        );
    }

    // One field enabled: WAITING at once, then PROCESSED with its boundary and operations.
    let first = all[0]["id"].as_str().unwrap().to_string();
    let (status, enabled) = app
        .call(
            Method::POST,
            &format!("/services/fields/api/users/{user}/fields/{first}/enableSync"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert!(
        enabled["status"] == "WAITING" || enabled["status"] == "PROCESSED",
        "{enabled}"
    );
    let processed = wait_for_field(&app, &user, &first, "PROCESSED").await;
    assert!(processed["geometry"].is_object(), "{processed}");
    assert_eq!(processed["boundaries"].as_array().unwrap().len(), 1);
    let mut ops = 0;
    for _ in 0..200 {
        ops = operations_of(&app, &user, &first).await;
        if ops > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ops > 0, "the enabled field's operations were not read");
    // The others stay in preview.
    let others: Vec<Value> = app
        .fields(&user, "")
        .await
        .into_iter()
        .filter(|f| f["id"] != first.as_str())
        .collect();
    assert!(others.iter().all(|f| f["status"] == "PREVIEW"));

    // By grower: an unknown grower changes nothing; the user's growers enable the rest.
    let (status, p) = app
        .call(
            Method::POST,
            "/services/fields/api/growers/enableSync",
            Some(json!({"growerIds": [1]})),
        )
        .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("growerIds"))
    );
    let (_, growers) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/growers?leafUserId={user}&size=100"),
            None,
        )
        .await;
    let ids: Vec<i64> = growers
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_i64().unwrap())
        .collect();
    let (status, body) = app
        .call(
            Method::POST,
            "/services/fields/api/growers/enableSync",
            Some(json!({"growerIds": ids})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let with_farm = others.iter().filter(|f| f["farmId"].is_number()).count();
    assert!(
        with_farm > 0,
        "the simulator's fields have farms: {others:?}"
    );
    assert_eq!(
        body["enabledFields"].as_u64(),
        Some(with_farm as u64),
        "{body}"
    );
    for f in others.iter().filter(|f| f["farmId"].is_number()) {
        let done = wait_for_field(&app, &user, f["id"].as_str().unwrap(), "PROCESSED").await;
        assert!(done["geometry"].is_object(), "{done}");
    }
    // Another owner's field is a 404.
    let (status, _) = app
        .call(
            Method::POST,
            &format!(
                "/services/fields/api/users/{user}/fields/{}/enableSync",
                uuid::Uuid::new_v4()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.finish().await;
}
both_backends!(preview, preview_fields_wait_to_be_enabled);

async fn turning_custom_data_sync_off_reads_previews_whole(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("later").await;
    let config = format!("/services/config/api/configs/{user}");
    let (status, _) = app
        .call(Method::POST, &config, Some(json!({"customDataSync": true})))
        .await;
    assert!(status.is_success(), "{status}");
    let rt = app.grower_refresh_token("grower001", SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;
    app.wait_for_sync_done(&user).await;
    let first = app.fields(&user, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        wait_for_field(&app, &user, &first, "PREVIEW").await["geometry"],
        Value::Null
    );
    let (status, _) = app
        .call(
            Method::PATCH,
            &config,
            Some(json!({"customDataSync": false})),
        )
        .await;
    assert!(status.is_success(), "{status}");
    app.call(
        Method::POST,
        &format!("/services/fields/api/users/{user}/fields/sync"),
        None,
    )
    .await;
    let done = wait_for_field(&app, &user, &first, "PROCESSED").await;
    assert!(done["geometry"].is_object(), "{done}");
    app.finish().await;
}
both_backends!(
    custom_off,
    turning_custom_data_sync_off_reads_previews_whole
);
