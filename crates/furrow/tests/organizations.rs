//! Organizations (connected / not connected, sync management) and the Configurations service.

mod common;

use common::{spawn, Db};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ALL_SCOPES: &[&str] = &["ag1", "ag2", "ag3", "files", "offline_access"];

async fn organization_statuses_and_patch_rules(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("orgs").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.1["status"],
        "OK"
    );
    let base = format!("/services/usermanagement/api/users/{user}");

    // grower001 has two organizations connected to sim-client and one not.
    let (status, lists) = app
        .call(
            Method::GET,
            &format!("{base}/organizations/JohnDeere"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{lists}");
    let connected = lists["connectedOrganizations"].as_array().unwrap();
    let not_connected = lists["notConnectedOrganizations"].as_array().unwrap();
    assert_eq!((connected.len(), not_connected.len()), (2, 1));
    assert!(connected[0]["managementUri"]
        .as_str()
        .unwrap()
        .contains("connections-dialog"));
    assert!(not_connected[0]["managementUri"]
        .as_str()
        .unwrap()
        .ends_with("select-organizations"));

    let (_, orgs) = app
        .call(
            Method::GET,
            &format!("{base}/JohnDeere/organizations"),
            None,
        )
        .await;
    let statuses: Vec<&str> = orgs
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["PREVIEW", "PREVIEW", "BLOCKED"]);
    let first = orgs[0]["providerOrgId"].as_str().unwrap().to_string();
    let blocked = orgs[2]["providerOrgId"].as_str().unwrap().to_string();

    let (status, o) = app
        .call(
            Method::PATCH,
            &format!("{base}/JohnDeere/organizations/{first}/SELECTED"),
            None,
        )
        .await;
    assert_eq!(
        (status, o["status"].as_str()),
        (StatusCode::OK, Some("SELECTED"))
    );
    let (_, o) = app
        .call(
            Method::GET,
            &format!("{base}/JohnDeere/organizations/{first}"),
            None,
        )
        .await;
    assert_eq!(o["status"], "SELECTED");
    let (status, p) = app
        .call(
            Method::PATCH,
            &format!("{base}/JohnDeere/organizations/{blocked}/SELECTED"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        p["detail"].as_str().unwrap().contains("managementUri"),
        "{p}"
    );
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("{base}/JohnDeere/organizations/{first}/BLOCKED"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("{base}/JohnDeere/organizations/{first}/ACTIVE"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .call(
            Method::GET,
            &format!("{base}/JohnDeere/organizations/999999"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(Method::GET, &format!("{base}/Trimble/organizations"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The PATCH started a sync; let it finish first (a sync that read John Deere's list before
    // the connection below would otherwise race the manual re-read).
    let patched = furrow::store::leaf_time_now();
    for _ in 0..300 {
        let (_, s) = app
            .call(
                Method::GET,
                &format!("/services/fields/api/users/{user}/fields/sync"),
                None,
            )
            .await;
        if s["state"] == "DONE"
            && s["finishedTime"]
                .as_str()
                .is_some_and(|t| t > patched.as_str())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The grower connects the blocked org; a sync turns it into PREVIEW and keeps SELECTED.
    app.admin(
        Method::PUT,
        &format!("orgs/{blocked}/connections/sim-client"),
        Some(json!({"connected": true})),
    )
    .await;
    let (status, synced) = app
        .call(
            Method::POST,
            &format!("{base}/JohnDeere/organizations/sync"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{synced}");
    let statuses: Vec<&str> = synced
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["SELECTED", "PREVIEW", "PREVIEW"]);

    // Another owner sees none of it.
    furrow::api::auth::create_owner(
        &app.furrow.state.store,
        "other@example.com",
        "another password",
    )
    .await
    .unwrap();
    let other = app.login("other@example.com", "another password").await;
    let (status, _) = app
        .call_as(
            &other,
            Method::GET,
            &format!("{base}/JohnDeere/organizations"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call_as(
            &other,
            Method::POST,
            &format!("{base}/JohnDeere/organizations/sync"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.finish().await;
}
both_backends!(organizations, organization_statuses_and_patch_rules);

async fn configs_inherit_and_validate(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("configured").await;
    let (status, owner_cfg) = app
        .call(Method::GET, "/services/config/api/configs", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(owner_cfg["organizationDataSync"], "ALL");
    assert_eq!(owner_cfg["apiOwnerUsername"], "owner@example.com");
    assert_eq!(owner_cfg["leafUserId"], "");

    let (status, _) = app
        .call(
            Method::PATCH,
            "/services/config/api/configs",
            Some(json!({"operationsProcessingRange": 24})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let user_path = format!("/services/config/api/configs/{user}");
    let (_, inherited) = app.call(Method::GET, &user_path, None).await;
    assert_eq!(inherited["operationsProcessingRange"], 24);
    assert_eq!(inherited["leafUserId"], user.as_str());

    let (status, created) = app
        .call(
            Method::POST,
            &user_path,
            Some(json!({"organizationDataSync": "SELECTED_ONLY"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["organizationDataSync"], "SELECTED_ONLY");
    assert_eq!(
        app.call(Method::POST, &user_path, Some(json!({}))).await.0,
        StatusCode::CONFLICT
    );

    // A key set at user level stays when the owner's changes; others still inherit.
    app.call(
        Method::PATCH,
        "/services/config/api/configs",
        Some(json!({"organizationDataSync": "ALL", "fieldsAutoSync": false})),
    )
    .await;
    let (_, mixed) = app.call(Method::GET, &user_path, None).await;
    assert_eq!(mixed["organizationDataSync"], "SELECTED_ONLY");
    assert_eq!(mixed["fieldsAutoSync"], false);

    for (body, field) in [
        (
            json!({"organizationDataSync": "SOME"}),
            "organizationDataSync",
        ),
        (json!({"unknownKey": 1}), "unknownKey"),
        (
            json!({"operationsProcessingRange": -1}),
            "operationsProcessingRange",
        ),
        (json!({"fieldsAutoSync": null}), "fieldsAutoSync"),
    ] {
        let (status, p) = app
            .call(Method::PATCH, &user_path, Some(body.clone()))
            .await;
        assert_eq!(
            (status, p["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}: {p}"
        );
    }
    let (_, unchanged) = app.call(Method::GET, &user_path, None).await;
    assert_eq!(unchanged, mixed, "rejected patches change nothing");

    assert_eq!(
        app.call(Method::DELETE, &user_path, None).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, back) = app.call(Method::GET, &user_path, None).await;
    assert_eq!(back["organizationDataSync"], "ALL");
    assert_eq!(
        app.call(Method::DELETE, &user_path, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _): (StatusCode, Value) = app
        .call(
            Method::GET,
            &format!("/services/config/api/configs/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.finish().await;
}
both_backends!(configs, configs_inherit_and_validate);
