//! Leaf's `syncPartnerData`: organizations a grower reaches through a John Deere partnership
//! (`member: false`) are listed, marked as partners, and synced only when the setting is on.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{spawn, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SCOPES: &[&str] = &["ag1", "ag2", "files", "offline_access"];

/// The organization ids of the user's fields.
async fn field_orgs(app: &TestApp, user: &str) -> Vec<String> {
    let (status, fields) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/fields?leafUserId={user}&size=100"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fields}");
    fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["organizationId"].as_str().unwrap().to_string())
        .collect()
}

async fn partner_organizations_sync_only_when_asked(db: Db) {
    let app = spawn(db).await;
    let created = app
        .admin(
            Method::POST,
            "growers",
            Some(json!({"userName": "partnered", "organizations": [
                {"connectedTo": "sim-client", "fields": 2, "operationsPerField": 1, "files": 0},
                {"connectedTo": "sim-client", "partner": true, "fields": 3, "operationsPerField": 1, "files": 0},
            ]})),
        )
        .await;
    let own = created["organizationIds"][0].as_str().unwrap().to_string();
    let partner = created["organizationIds"][1].as_str().unwrap().to_string();

    let user = app.create_user("agronomist").await;
    let rt = app.grower_refresh_token("partnered", SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.0,
        StatusCode::CREATED
    );
    let sync = app.wait_for_sync_done(&user).await;
    assert_eq!(sync["state"], "DONE", "{sync}");
    // Progress per organization: only the grower's own was synced, all its parts done.
    let progress = sync["organizations"]
        .as_array()
        .expect("per-organization progress");
    assert_eq!(progress.len(), 1, "{sync}");
    assert_eq!(progress[0]["organizationId"], json!(own));
    assert!(progress[0]["partsTotal"].as_u64() >= Some(1));
    assert_eq!(progress[0]["partsDone"], progress[0]["partsTotal"]);
    let fields_part = progress[0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["resource"] == "fields")
        .expect("a fields part");
    assert_eq!(fields_part["state"], "DONE");
    assert_eq!(fields_part["counts"]["fields"], 2, "{sync}");

    // Both are listed; the partner's is marked.
    let (status, orgs) = app
        .call(
            Method::GET,
            &format!("/services/usermanagement/api/users/{user}/JohnDeere/organizations"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{orgs}");
    let marked: Vec<(String, Value)> = orgs
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["providerOrgId"].as_str().unwrap().into(),
                o["partner"].clone(),
            )
        })
        .collect();
    assert_eq!(
        marked,
        vec![(own.clone(), json!(false)), (partner.clone(), json!(true))]
    );

    // Leaf's default (false): only the grower's own organization's fields.
    let orgs = field_orgs(&app, &user).await;
    assert_eq!(orgs.len(), 2, "{orgs:?}");
    assert!(orgs.iter().all(|o| *o == own), "{orgs:?}");

    // On: the next sync reads the partner organization too.
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/services/config/api/configs/{user}"),
            Some(json!({"syncPartnerData": true})),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    app.call(
        Method::POST,
        &format!("/services/fields/api/users/{user}/fields/sync"),
        None,
    )
    .await;
    let mut orgs = Vec::new();
    for _ in 0..200 {
        orgs = field_orgs(&app, &user).await;
        if orgs.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(orgs.len(), 5, "{orgs:?}");
    assert_eq!(
        orgs.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([own, partner])
    );
    app.finish().await;
}
both_backends!(partners, partner_organizations_sync_only_when_asked);
