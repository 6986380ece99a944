//! Leaf's "create a field" and "upload a field to provider": a field made in furrow is created,
//! with its boundary, in the grower's John Deere organization, and the next sync reads it back
//! into the same field — once in John Deere, once in furrow.

mod common;

use common::{spawn, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SCOPES: &[&str] = &["ag1", "ag2", "ag3", "files", "offline_access"];

fn square(lon: f64, lat: f64, side: f64) -> Value {
    json!({"type": "MultiPolygon", "coordinates": [[[
        [lon, lat], [lon + side, lat], [lon + side, lat + side], [lon, lat + side], [lon, lat]
    ]]]})
}

/// The simulator's live fields of a grower's connected organizations: (org, field id, name).
async fn sim_fields(app: &TestApp, grower: &str) -> Vec<(String, String)> {
    let world = app.admin(Method::GET, "world", None).await;
    let growers = world["growers"].as_array().unwrap();
    let orgs = growers.iter().find(|g| g["userName"] == grower).unwrap()["organizations"]
        .as_array()
        .unwrap()
        .clone();
    orgs.iter()
        .filter(|o| !o["connectedApps"].as_array().unwrap().is_empty())
        .flat_map(|o| {
            let org = o["id"].as_str().unwrap().to_string();
            o["fieldIds"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |f| (org.clone(), f.as_str().unwrap().to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn a_field_written_back_exists_once_on_each_side(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("writer").await;
    let rt = app.grower_refresh_token("grower001", SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.0,
        StatusCode::CREATED
    );
    assert_eq!(app.wait_for_sync_done(&user).await["state"], "DONE");
    let synced = app.fields(&user, "").await;
    let before = sim_fields(&app, "grower001").await;
    assert_eq!(synced.len(), before.len());
    let org = before[0].0.clone();
    let create = format!("/services/fields/api/users/{user}/fields");

    // Bad input: 400 (or 409), and nothing written.
    for (bad, field) in [
        (
            json!({"geometry": {"type": "Polygon", "coordinates": []}}),
            "geometry.type",
        ),
        (
            json!({"geometry": {"type": "MultiPolygon", "coordinates": [[[[-93.5, 41.7], [-93.49, 41.7], [-93.49, 41.71]]]]}}),
            "geometry.coordinates",
        ),
        (
            json!({"id": "idTest", "geometry": square(-93.5, 41.7, 0.005)}),
            "id",
        ),
        (
            json!({"geometry": square(-93.5, 41.7, 0.005), "farm": 1}),
            "farm",
        ),
    ] {
        let (status, body) = app.call(Method::POST, &create, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["field"], field, "{body}");
    }
    assert_eq!(app.fields(&user, "").await.len(), synced.len());

    let geometry = square(-93.5, 41.7, 0.005);
    let response = app
        .http
        .post(app.url(&create))
        .bearer_auth(&app.token)
        .json(&json!({"name": "Back Forty", "geometry": geometry}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let mine: Value = response.json().await.unwrap();
    let id = mine["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("{create}/{id}"));
    assert_eq!(mine["providerName"], "Leaf");
    assert_eq!(mine["geometry"], geometry);
    // 0.005° square at 41.7°N: about 555 m x 415 m.
    let area = mine["area"]["value"].as_f64().unwrap();
    assert!((area - 23.0).abs() < 1.0, "{area}");
    let (status, _) = app
        .call(
            Method::POST,
            &create,
            Some(json!({"id": id, "geometry": square(-93.4, 41.7, 0.004)})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Refusals: another provider, no or an unknown organization, a field from John Deere.
    let send = |field: &str, query: &str| {
        format!("/services/fields/api/users/{user}/fields/{field}/integration/{query}")
    };
    let from_deere = synced[0]["id"].as_str().unwrap();
    for path in [
        send(&id, "ClimateFieldView?organizationId=1"),
        send(&id, "JohnDeere"),
        send(&id, "JohnDeere?organizationId=999999"),
        send(from_deere, &format!("JohnDeere?organizationId={org}")),
    ] {
        let (status, body) = app.call(Method::POST, &path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    assert_eq!(sim_fields(&app, "grower001").await, before);

    // Sent: John Deere has it once, with the boundary.
    let (status, body) = app
        .call(
            Method::POST,
            &send(&id, &format!("JohnDeere?organizationId={org}")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deere_id = body[0][&id]["JohnDeere"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(body[0][&id]["JohnDeere"]["status"], "SUCCESS");
    let after = sim_fields(&app, "grower001").await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(
        after
            .iter()
            .filter(|(o, f)| *o == org && *f == deere_id)
            .count(),
        1
    );
    let (status, _) = app
        .call(
            Method::POST,
            &send(&id, &format!("JohnDeere?organizationId={org}")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(sim_fields(&app, "grower001").await.len(), after.len());

    // The next sync reads John Deere's field into the same furrow field: no copy, same boundary,
    // and a rename made in John Deere meanwhile.
    app.admin(
        Method::PATCH,
        &format!("fields/{deere_id}"),
        Some(json!({"name": "Back Forty (JD)"})),
    )
    .await;
    app.sync_now(&user).await;
    let now = app.fields(&user, "").await;
    assert_eq!(
        now.len(),
        after.len(),
        "one furrow field per John Deere field"
    );
    let ours: Vec<&Value> = now
        .iter()
        .filter(|f| f["providerFieldId"] == deere_id.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{now:?}");
    assert_eq!(ours[0]["id"], id.as_str());
    assert_eq!(ours[0]["name"], "Back Forty (JD)");
    assert_eq!(ours[0]["organizationId"], org.as_str());
    assert_eq!(ours[0]["geometry"], geometry);
    assert_eq!(
        ours[0]["boundaries"].as_array().unwrap().len(),
        1,
        "{}",
        ours[0]
    );
    app.finish().await;
}
both_backends!(write_back, a_field_written_back_exists_once_on_each_side);
