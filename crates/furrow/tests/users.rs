//! Leaf users: CRUD, Leaf paging and filters, PUT semantics, cascade on delete.

mod common;

use common::{spawn, Db};
use reqwest::{Method, StatusCode};
use serde_json::json;

const USERS: &str = "/services/usermanagement/api/users";

async fn crud_paging_and_filters(db: Db) {
    let app = spawn(db).await;
    for i in 0..25 {
        let (status, _) = app
            .call(Method::POST, USERS, Some(json!({"name": format!("user{i:02}"), "email": format!("u{i}@example.com"), "externalId": format!("ext-{i}")})))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let response = app
        .http
        .get(app.url(&format!("{USERS}?page=1&size=10&sort=name,asc")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-total-count"], "25");
    let link = response.headers()["link"].to_str().unwrap().to_string();
    assert!(link.contains("page=2&size=10>; rel=\"next\""), "{link}");
    assert!(link.contains("page=0&size=10>; rel=\"first\""), "{link}");
    assert!(link.contains("page=2&size=10>; rel=\"last\""), "{link}");
    let page: serde_json::Value = response.json().await.unwrap();
    let names: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        (10..20).map(|i| format!("user{i:02}")).collect::<Vec<_>>()
    );

    let (_, found) = app
        .call(Method::GET, &format!("{USERS}?externalId=ext-7"), None)
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["email"], "u7@example.com");
    let (_, none) = app
        .call(
            Method::GET,
            &format!("{USERS}?email=nobody@example.com"),
            None,
        )
        .await;
    assert_eq!(none, json!([]));

    // PATCH changes only what it names.
    let id = found[0]["id"].as_str().unwrap().to_string();
    let (status, patched) = app
        .call(
            Method::PATCH,
            &format!("{USERS}/{id}"),
            Some(json!({"phone": "555"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["phone"], "555");
    assert_eq!(patched["name"], "user07");
    let (status, p) = app
        .call(
            Method::PATCH,
            &format!("{USERS}/{id}"),
            Some(json!({"email": "not-an-email"})),
        )
        .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("email"))
    );

    // PUT replaces everything and, without the credential reference, drops the credentials.
    let rt = app.grower_refresh_token("grower001", &["ag1", "ag2", "files", "offline_access"]);
    let (_, cred) = app.post_credentials(&id, &rt, "STAGE").await;
    let cred_id = cred["id"].as_str().unwrap().to_string();
    let (status, kept) = app
        .call(
            Method::PUT,
            USERS,
            Some(json!({"id": id, "name": "renamed", "johnDeereCredentials": {"id": cred_id}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["name"], "renamed");
    assert_eq!(
        kept["phone"],
        serde_json::Value::Null,
        "PUT replaces the whole user"
    );
    assert_eq!(kept["johnDeereCredentials"]["id"], cred_id.as_str());
    let (status, p) = app
        .call(
            Method::PUT,
            USERS,
            Some(
                json!({"id": id, "johnDeereCredentials": {"id": uuid::Uuid::new_v4().to_string()}}),
            ),
        )
        .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("johnDeereCredentials.id"))
    );
    let (_, dropped) = app
        .call(
            Method::PUT,
            USERS,
            Some(json!({"id": id, "name": "renamed"})),
        )
        .await;
    assert!(dropped.get("johnDeereCredentials").is_none());
    assert_eq!(app.credential(&id).await.0, StatusCode::NOT_FOUND);

    // DELETE takes the credentials and events with it.
    app.post_credentials(&id, &rt, "STAGE").await;
    let (status, _) = app
        .call(Method::DELETE, &format!("{USERS}/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.call(Method::GET, &format!("{USERS}/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert!(app
        .furrow
        .state
        .store
        .all_credentials()
        .await
        .unwrap()
        .is_empty());
    let pool = app.furrow.state.store.pool().clone();
    let events: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT COUNT(*) AS n FROM credential_events")
            .fetch_one(&pool)
            .await
            .unwrap(),
        "n",
    )
    .unwrap();
    assert_eq!(events, 0);
    let jobs: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT COUNT(*) AS n FROM jobs")
            .fetch_one(&pool)
            .await
            .unwrap(),
        "n",
    )
    .unwrap();
    assert_eq!(jobs, 0);

    // Leaf's clients: other providers' credential references are accepted (and ignored), the
    // trailing-slash form of the collection works, and a 201 says where the user lives.
    let response = app
        .http
        .post(app.url(&format!("{USERS}/")))
        .bearer_auth(&app.token)
        .json(&json!({"name": "x", "climateFieldViewCredentials": {"id": "c"}, "cnhiCredentials": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("{USERS}/{}", created["id"].as_str().unwrap())
    );
    let (status, fetched) = app.call(Method::GET, &location, None).await;
    assert_eq!(status, StatusCode::OK);
    // What a GET returned can be PUT back as it is.
    let mut full = fetched.clone();
    full["name"] = json!("renamed");
    let (status, put) = app
        .call(Method::PUT, &format!("{USERS}/"), Some(full))
        .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["name"], "renamed");
    let (status, listed) = app
        .call(Method::GET, &format!("{USERS}/?name=renamed"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Anything else unknown is still refused.
    let (status, p) = app
        .call(
            Method::POST,
            USERS,
            Some(json!({"name": "x", "favouriteColour": "green"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    app.finish().await;
}
both_backends!(crud, crud_paging_and_filters);
