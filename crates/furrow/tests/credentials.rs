//! The seed documents' flows over real HTTP: furrow + deere-sim, on SQLite and PostgreSQL.

mod common;

use common::{spawn, spawn_with, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ALL_SCOPES: &[&str] = &["ag1", "ag2", "ag3", "files", "offline_access"];

async fn create_get_events_delete(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("grower").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);

    let (status, created) = app.post_credentials(&user, &rt, "STAGE").await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "OK");
    assert_eq!(created["clientEnvironment"], "STAGE");
    assert_eq!(created["clientKey"], "sim-client");
    assert_eq!(created["refreshToken"], rt.as_str());
    let scopes: Vec<&str> = created["tokenMetadata"]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(scopes, ALL_SCOPES);
    let created_time = created["createdTime"].as_str().unwrap();
    assert_eq!(
        created_time.len(),
        "2026-01-01T00:00:00.000000Z".len(),
        "{created_time}"
    );

    let (status, fetched) = app.credential(&user).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["id"], created["id"]);
    assert!(fetched["accessToken"].as_str().unwrap().starts_with("eyJ"));

    // The user embeds its credentials.
    let (_, u) = app
        .call(
            Method::GET,
            &format!("/services/usermanagement/api/users/{user}"),
            None,
        )
        .await;
    assert_eq!(u["johnDeereCredentials"]["id"], created["id"]);

    // Events: the token exchange, redacted; newest first.
    let (status, events) = app.events(&user).await;
    assert_eq!(status, StatusCode::OK);
    let events = events.as_array().unwrap();
    let exchange = events
        .iter()
        .find(|e| e["url"].as_str().is_some_and(|u| u.ends_with("/v1/token")))
        .expect("token call recorded");
    assert_eq!(exchange["statusCode"], 200);
    let text = Value::Array(events.clone()).to_string();
    for secret in [
        rt.as_str(),
        "sim-secret",
        fetched["accessToken"].as_str().unwrap(),
    ] {
        assert!(
            !text.contains(secret),
            "a secret leaked into events: {text}"
        );
    }
    assert!(exchange["body"].as_str().unwrap().contains("[REDACTED]"));
    let dates: Vec<&str> = events
        .iter()
        .map(|e| e["createdDate"].as_str().unwrap())
        .collect();
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted, "newest first");

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/services/usermanagement/api/users/{user}/john-deere-credentials"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.credential(&user).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.events(&user).await.0, StatusCode::NOT_FOUND);
    app.finish().await;
}
both_backends!(create_get_events_delete, create_get_events_delete);

async fn revoked_grant_becomes_unauthenticated_without_a_client_call(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("revoked").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.1["status"],
        "OK"
    );

    app.admin(
        Method::POST,
        "grants/revoke",
        Some(json!({"userName": "grower001"})),
    )
    .await;
    app.wait_for_status(&user, "UNAUTHENTICATED").await;
    let (_, events) = app.events(&user).await;
    let change = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["body"]
                .as_str()
                .unwrap()
                .contains("\"status\":\"UNAUTHENTICATED\"")
        })
        .expect("a status-change event");
    assert!(
        change["body"].as_str().unwrap().contains("invalid grant"),
        "{change}"
    );

    // No more calls for an UNAUTHENTICATED credential (once a request already in flight when the
    // status changed, e.g. a sync part's read, has landed).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = app.sim.requests().len();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(app.sim.requests().len(), before);
    app.finish().await;
}
both_backends!(
    revoked_grant,
    revoked_grant_becomes_unauthenticated_without_a_client_call
);

async fn outage_is_temporary(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("outage").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.1["status"],
        "OK"
    );
    app.admin(
        Method::POST,
        "faults",
        Some(json!({"kind": {"type": "status", "status": 503}})),
    )
    .await;
    app.wait_for_status(&user, "TEMPORARILY_UNAVAILABLE").await;
    app.admin(Method::DELETE, "faults", None).await;
    app.wait_for_status(&user, "OK").await;
    app.finish().await;
}
both_backends!(outage, outage_is_temporary);

async fn narrow_scopes_are_missing_permission(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("narrow").await;
    let rt = app.grower_refresh_token("grower001", &["ag1", "offline_access"]);
    let (status, c) = app.post_credentials(&user, &rt, "STAGE").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(c["status"], "MISSING_PERMISSION");
    // An invalid refresh token is stored as UNAUTHENTICATED, with the reason in the events.
    let (status, c) = app
        .post_credentials(&user, "sim-rt-not-valid", "STAGE")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(c["status"], "UNAUTHENTICATED");
    let (_, events) = app.events(&user).await;
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["statusCode"] == 400));
    assert!(!events.to_string().contains("sim-rt-not-valid"));
    app.finish().await;
}
both_backends!(narrow_scopes, narrow_scopes_are_missing_permission);

async fn environments_use_their_own_hosts(db: Db) {
    let production = deere_sim::start(
        deere_sim::SimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let prod_url = production.platform_url().to_string();
    let app = spawn_with(db, |s| s.deere_production_api_url = prod_url.clone()).await;
    let stage_user = app.create_user("stage").await;
    let prod_user = app.create_user("prod").await;
    let rt1 = app.grower_refresh_token("grower001", ALL_SCOPES);
    let rt2 = app.grower_refresh_token("grower002", ALL_SCOPES);
    assert_eq!(
        app.post_credentials(&stage_user, &rt1, "STAGE").await.1["status"],
        "OK"
    );
    // The production host does not know the stage server's tokens: the platform refuses them.
    let (_, prod) = app.post_credentials(&prod_user, &rt2, "PRODUCTION").await;
    assert_eq!(prod["status"], "UNAUTHENTICATED");
    // Each credential's platform calls went to its own host: the stage host saw only the stage
    // grower, the production host only the production credential (whose token it refused).
    let stage_calls: Vec<_> = app
        .sim
        .requests()
        .into_iter()
        .filter(|e| e.path.starts_with("/platform"))
        .collect();
    let prod_calls: Vec<_> = production
        .requests()
        .into_iter()
        .filter(|e| e.path.starts_with("/platform"))
        .collect();
    assert!(!stage_calls.is_empty() && !prod_calls.is_empty());
    assert!(
        stage_calls
            .iter()
            .all(|e| e.user.as_deref() == Some("grower001")),
        "{stage_calls:?}"
    );
    assert!(prod_calls.iter().all(|e| e.status == 401), "{prod_calls:?}");
    app.finish().await;
    production.shutdown().await;
}
both_backends!(environments, environments_use_their_own_hosts);

async fn response_without_refresh_token_keeps_the_old_one(db: Db) {
    let app = spawn_with(db, |s| {
        // Refresh on every run: the access token always counts as expiring.
        s.refresh_margin_secs = 100_000;
    })
    .await;
    app.admin(
        Method::PATCH,
        "settings",
        Some(json!({"omitRefreshTokenOnRefresh": true})),
    )
    .await;
    let user = app.create_user("keeper").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    let (_, c) = app.post_credentials(&user, &rt, "STAGE").await;
    assert_eq!(c["status"], "OK");
    // Let the engine refresh a few times.
    let count_refreshes = || {
        app.sim
            .requests()
            .iter()
            .filter(|e| e.path.ends_with("/v1/token"))
            .count()
    };
    for _ in 0..100 {
        if count_refreshes() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(count_refreshes() >= 3);
    let (_, c) = app.credential(&user).await;
    assert_eq!(
        c["refreshToken"],
        rt.as_str(),
        "the old refresh token is kept"
    );
    assert_eq!(c["status"], "OK");
    app.finish().await;
}
both_backends!(
    keeps_refresh_token,
    response_without_refresh_token_keeps_the_old_one
);

async fn tenancy_and_bad_input(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("mine").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    app.post_credentials(&user, &rt, "STAGE").await;

    furrow::api::auth::create_owner(
        &app.furrow.state.store,
        "other@example.com",
        "another password",
    )
    .await
    .unwrap();
    let other = app.login("other@example.com", "another password").await;
    let base = format!("/services/usermanagement/api/users/{user}");
    for (method, path) in [
        (Method::GET, base.clone()),
        (Method::PATCH, base.clone()),
        (Method::DELETE, base.clone()),
        (Method::GET, format!("{base}/john-deere-credentials")),
        (Method::DELETE, format!("{base}/john-deere-credentials")),
        (Method::GET, format!("{base}/john-deere-credentials/events")),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"name": "stolen"}));
        let (status, problem) = app.call_as(&other, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {problem}");
        assert_eq!(problem["status"], 404);
    }
    let (status, _) = app.post_credentials(&user, &rt, "STAGE").await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, listed) = app
        .call_as(
            &other,
            Method::GET,
            "/services/usermanagement/api/users",
            None,
        )
        .await;
    assert_eq!(listed, json!([]));

    // Bad input: 4xx with a problem body naming the field; nothing written.
    let creds = format!("{base}/john-deere-credentials");
    let cases = [
        (
            json!({"clientKey": "k", "clientSecret": "s", "refreshToken": "r", "clientEnvironment": "SANDBOX"}),
            "clientEnvironment",
        ),
        (
            json!({"clientSecret": "s", "refreshToken": "r", "clientEnvironment": "STAGE"}),
            "clientKey",
        ),
        (
            json!({"clientKey": "k", "clientSecret": "s", "refreshToken": 5, "clientEnvironment": "STAGE"}),
            "refreshToken",
        ),
        (
            json!({"clientKey": "k", "clientSecret": "s", "refreshToken": "r", "clientEnvironment": "STAGE", "extra": 1}),
            "extra",
        ),
    ];
    let before = app.credential(&user).await.1;
    for (body, field) in cases {
        let (status, problem) = app.call(Method::POST, &creds, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert_eq!(
        app.credential(&user).await.1,
        before,
        "nothing written by rejected requests"
    );

    let raw = app
        .http
        .post(app.url(&creds))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    assert_eq!(raw.headers()["content-type"], "application/problem+json");
    let huge = app
        .http
        .post(app.url("/services/usermanagement/api/users"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(format!("{{\"name\":\"{}\"}}", "x".repeat(400_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = app
        .call(
            Method::GET,
            "/services/usermanagement/api/users/not-a-uuid",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, p) = app
        .call(
            Method::GET,
            "/services/usermanagement/api/users?size=1000",
            None,
        )
        .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("size"))
    );

    // Auth: missing, forged and expired tokens.
    let (status, _) = app
        .call_as("", Method::GET, "/services/usermanagement/api/users", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let forged = format!("{}x", app.token);
    assert_eq!(
        app.call_as(
            &forged,
            Method::GET,
            "/services/usermanagement/api/users",
            None
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "x", "email": "e", "iat": 0, "exp": 4_000_000_000u64, "iss": "furrow"}),
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    assert_eq!(
        app.call_as(
            &wrong_key,
            Method::GET,
            "/services/usermanagement/api/users",
            None
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    app.finish().await;
}
both_backends!(tenancy, tenancy_and_bad_input);

async fn no_secret_in_clear_at_rest(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("rest").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    let (_, c) = app.post_credentials(&user, &rt, "STAGE").await;
    let access = c["accessToken"].as_str().unwrap().to_string();
    let pool = app.furrow.state.store.pool().clone();
    let mut dump = String::new();
    for table in [
        "jd_credentials",
        "credential_events",
        "instance_secrets",
        "api_owners",
        "jobs",
    ] {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&pool)
            .await
            .unwrap();
        for row in rows {
            use sqlx::Row;
            for i in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                    dump.push_str(&text);
                    dump.push('\n');
                }
            }
        }
    }
    assert!(dump.contains("enc:v1:"), "ciphertexts are there");
    for secret in [
        rt.as_str(),
        access.as_str(),
        "sim-secret",
        "correct horse battery",
    ] {
        assert!(
            !dump.contains(secret),
            "{secret} found in clear in the database"
        );
    }

    // Key rotation rewraps every secret and the API still reads them.
    let state = &app.furrow.state;
    let old_key = state.keyring.current_key_id();
    furrow::crypto::append_key(
        &app.data_dir.join(furrow::crypto::KEY_FILE),
        &furrow::crypto::generate_key(),
    )
    .unwrap();
    state.keyring.reload().unwrap();
    assert_ne!(state.keyring.current_key_id(), old_key);
    let rewrapped = furrow::app::rewrap_all(&state.store, &state.keyring)
        .await
        .unwrap();
    assert!(
        rewrapped >= 2,
        "credential and JWT key rewrapped: {rewrapped}"
    );
    let stored = state.store.all_credentials().await.unwrap();
    assert!(stored
        .iter()
        .all(|c| state.keyring.is_current(&c.refresh_token_enc)
            && state.keyring.is_current(&c.client_secret_enc)));
    let (_, again) = app.credential(&user).await;
    assert_eq!(again["refreshToken"], rt.as_str());
    app.finish().await;
}
both_backends!(at_rest, no_secret_in_clear_at_rest);

async fn repeated_failed_logins_are_slowed_down(db: Db) {
    let app = spawn(db).await;
    let attempt = |password: &'static str| {
        let http = app.http.clone();
        let url = app.url("/api/authenticate");
        async move {
            http.post(url)
                .json(&json!({"username": "owner@example.com", "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        assert_eq!(
            attempt("wrong password").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        attempt("wrong password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let locked = attempt("correct horse battery").await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().contains_key("retry-after"));
    app.finish().await;
}
both_backends!(login_throttle, repeated_failed_logins_are_slowed_down);

async fn old_events_are_removed_by_retention(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("retained").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    let (_, c) = app.post_credentials(&user, &rt, "STAGE").await;
    let pool = app.furrow.state.store.pool().clone();
    let old_us = (chrono::Utc::now() - chrono::Duration::days(31)).timestamp_micros();
    sqlx::query(
        "INSERT INTO credential_events (id, credential_id, created_at, created_us, headers, body) VALUES ($1, $2, $3, $4, '{}', 'old')",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(c["id"].as_str().unwrap())
    .bind("2026-01-01T00:00:00.000000Z")
    .bind(old_us)
    .execute(&pool)
    .await
    .unwrap();
    let count = |body: &'static str| {
        let pool = pool.clone();
        async move {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM credential_events WHERE body = $1")
                .bind(body)
                .fetch_one(&pool)
                .await
                .unwrap();
            sqlx::Row::try_get::<i64, _>(&row, "n").unwrap()
        }
    };
    assert_eq!(count("old").await, 1);
    // A replica runs retention when its engine starts (and hourly after).
    let second = furrow::app::start(app.settings.clone()).await.unwrap();
    for _ in 0..100 {
        if count("old").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(count("old").await, 0, "a 31-day-old event is removed");
    let (_, events) = app.events(&user).await;
    assert!(!events.as_array().unwrap().is_empty(), "recent events stay");
    second.shutdown().await;
    app.finish().await;
}
both_backends!(retention, old_events_are_removed_by_retention);

/// A refresh whose response is lost (furrow crashed, or the connection died, after John Deere
/// acted): what happens next depends on John Deere's rotation, and each case is handled.
async fn lost_token_response(db: Db, rotate: bool, grace_secs: u64) -> (String, TestApp) {
    let app = spawn_with(db, |s| s.refresh_margin_secs = 100_000).await;
    {
        let mut state = app.sim.state();
        state.settings.rotate_refresh_tokens = rotate;
        state.settings.rotation_grace_secs = grace_secs;
    }
    let user = app.create_user("lost").await;
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.1["status"],
        "OK"
    );
    app.admin(
        Method::POST,
        "faults",
        Some(json!({"pathContains": "/v1/token", "kind": {"type": "dropResponse"}, "times": 1})),
    )
    .await;
    for _ in 0..200 {
        if app.sim.state().faults.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        app.sim.state().faults.is_empty(),
        "the lost response happened"
    );
    (user, app)
}

fn token_statuses(app: &TestApp) -> Vec<u16> {
    app.sim
        .requests()
        .iter()
        .filter(|e| e.path.ends_with("/v1/token"))
        .map(|e| e.status)
        .collect()
}

fn token_calls(app: &TestApp) -> usize {
    token_statuses(app).len()
}

async fn wait_for_token_calls(app: &TestApp, at_least: usize) {
    for _ in 0..200 {
        if token_calls(app) >= at_least {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

async fn lost_response_without_rotation_recovers(db: Db) {
    let (user, app) = lost_token_response(db, false, 0).await;
    // Let a few more refreshes happen after the lost one.
    wait_for_token_calls(&app, token_calls(&app) + 3).await;
    app.wait_for_status(&user, "OK").await;
    assert!(token_statuses(&app).iter().all(|s| *s == 200));
    app.finish().await;
}
both_backends!(
    lost_response_no_rotation,
    lost_response_without_rotation_recovers
);

async fn lost_response_with_rotation_grace_recovers(db: Db) {
    let (user, app) = lost_token_response(db, true, 30).await;
    // Let a few more refreshes happen after the lost one.
    wait_for_token_calls(&app, token_calls(&app) + 3).await;
    let c = app.wait_for_status(&user, "OK").await;
    assert!(token_statuses(&app).iter().all(|s| *s == 200));
    // What furrow stores now is the live refresh token.
    let refreshed = app.sim.state().settings.clone();
    assert!(refreshed.rotate_refresh_tokens);
    let check = app
        .http
        .post(format!("{}/v1/token", app.sim.issuer_url()))
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", c["refreshToken"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), StatusCode::OK);
    app.finish().await;
}
both_backends!(
    lost_response_rotation_grace,
    lost_response_with_rotation_grace_recovers
);

async fn lost_response_with_strict_rotation_is_reported(db: Db) {
    let (user, app) = lost_token_response(db, true, 0).await;
    // The rotated token never reached furrow and the old one is dead: the grower must
    // reconnect. furrow says so instead of failing silently.
    app.wait_for_status(&user, "UNAUTHENTICATED").await;
    let (_, events) = app.events(&user).await;
    let events = events.as_array().unwrap();
    assert!(events
        .iter()
        .any(|e| e["statusCode"] == 400 && e["body"].as_str().unwrap().contains("invalid_grant")));
    assert!(events.iter().any(|e| e["body"]
        .as_str()
        .unwrap()
        .contains("\"status\":\"UNAUTHENTICATED\"")));
    app.finish().await;
}
both_backends!(
    lost_response_strict_rotation,
    lost_response_with_strict_rotation_is_reported
);
