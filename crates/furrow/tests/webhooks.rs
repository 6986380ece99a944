//! John Deere → furrow: event subscriptions (one per event type, covering the synced
//! organizations), verified deliveries, and changes that become readable without a poll.

mod common;

use std::time::Duration;

use common::{spawn_with, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ALL_SCOPES: &[&str] = &["ag1", "ag2", "ag3", "files", "offline_access"];

/// furrow with no periodic work of its own: whatever changes after the first sync came by webhook.
async fn app_without_polling(db: Db) -> TestApp {
    spawn_with(db, |s| {
        s.health_check_interval_secs = 3600;
        s.sync_interval_secs = 86_400;
        s.deere_webhook_authorization = None;
    })
    .await
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..250 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn sync_status(app: &TestApp, user: &str) -> Value {
    app.call(
        Method::GET,
        &format!("/services/fields/api/users/{user}/fields/sync"),
        None,
    )
    .await
    .1
}

/// A Leaf user with credentials whose first sync is done (operations from any year included).
async fn synced_user(app: &TestApp, config: Value) -> String {
    let user = app.create_user("grower").await;
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/services/config/api/configs/{user}"),
            Some(config),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let rt = app.grower_refresh_token("grower001", ALL_SCOPES);
    let (status, _) = app.post_credentials(&user, &rt, "STAGE").await;
    assert_eq!(status, StatusCode::CREATED);
    wait_for("the first sync", async || {
        let s = sync_status(app, &user).await;
        assert_ne!(s["state"], "FAILED", "{s}");
        (s["state"] == "DONE").then_some(())
    })
    .await;
    user
}

/// (org id, its first field id) of each of the simulated grower's connected organizations.
async fn connected_orgs(app: &TestApp) -> Vec<(String, String)> {
    let world = app.admin(Method::GET, "world", None).await;
    world["growers"][0]["organizations"]
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
        .map(|org| {
            (
                org["id"].as_str().unwrap().to_string(),
                org["fieldIds"][0].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// (org id, its first field id) of the simulated grower's first connected organization.
async fn connected_org(app: &TestApp) -> (String, String) {
    connected_orgs(app).await.swap_remove(0)
}

/// The simulator's active subscriptions for an organization (all, with `None`).
fn sim_subscriptions(app: &TestApp, org: Option<&str>) -> Vec<deere_sim::Subscription> {
    app.sim
        .sim
        .state()
        .subscriptions
        .values()
        .filter(|s| {
            org.is_none_or(|org| {
                s.filters
                    .iter()
                    .any(|(k, v)| k == "orgId" && v.iter().any(|x| x == org))
            })
        })
        .cloned()
        .collect()
}

/// The event types of these subscriptions, sorted.
fn event_types(subscriptions: &[deere_sim::Subscription]) -> Vec<&str> {
    let mut types: Vec<&str> = subscriptions
        .iter()
        .map(|s| s.event_type_id.as_str())
        .collect();
    types.sort();
    types
}

/// All of a user's operations, page by page.
async fn operations_of(app: &TestApp, user: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 0.. {
        let (status, ops) = app
            .call(
                Method::GET,
                &format!(
                    "/services/operations/api/operations?leafUserId={user}&size=100&page={page}"
                ),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{ops}");
        let ops = ops.as_array().unwrap().clone();
        let last = ops.len() < 100;
        all.extend(ops);
        if last {
            break;
        }
    }
    all
}

fn last_request_id(app: &TestApp) -> u64 {
    app.sim.sim.state().log.last().map_or(0, |e| e.id)
}

async fn changes_arrive_by_webhook(db: Db) {
    let app = app_without_polling(db).await;
    let user = synced_user(&app, json!({"operationsProcessingRange": 120})).await;
    let status = sync_status(&app, &user).await;
    assert_eq!(status["counts"]["webhooks"], "WEBHOOKS", "{status}");
    let (org, field) = connected_org(&app).await;
    let subscribed = sim_subscriptions(&app, Some(&org));
    assert_eq!(
        event_types(&subscribed),
        ["boundary", "field", "fieldOperation", "file"]
    );
    for s in &subscribed {
        assert!(
            s.target_uri.ends_with("/api/deere/events"),
            "{}",
            s.target_uri
        );
        assert!(s.token.as_ref().is_some_and(|t| t.len() >= 40));
    }
    let tokens: std::collections::HashSet<_> = subscribed.iter().map(|s| s.token.clone()).collect();
    assert_eq!(tokens.len(), subscribed.len(), "one token per subscription");

    // Every event is delivered twice from now on: duplicates must change nothing.
    app.admin(
        Method::PATCH,
        "settings",
        Some(json!({"duplicateDeliveries": true})),
    )
    .await;
    let before = operations_of(&app, &user).await.len();
    let mark = last_request_id(&app);
    let op = app
        .admin(
            Method::POST,
            &format!("fields/{field}/operations"),
            Some(json!({"type": "seeding"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let arrived = wait_for("the new operation", async || {
        operations_of(&app, &user)
            .await
            .into_iter()
            .find(|o| o["providerOperationId"] == op.as_str())
    })
    .await;
    assert_eq!(arrived["type"], "planted", "{arrived}");
    // Both copies delivered and handled, nothing left queued.
    wait_for("both deliveries", async || {
        let delivered = app
            .sim
            .sim
            .state()
            .deliveries
            .iter()
            .filter(|d| d.status == Some(204))
            .count();
        (delivered >= 2).then_some(())
    })
    .await;
    wait_for("an empty inbox", async || {
        (app.furrow.state.store.inbox_len().await.unwrap() == 0).then_some(())
    })
    .await;
    let after = operations_of(&app, &user).await;
    assert_eq!(after.len(), before + 1);
    assert_eq!(
        after
            .iter()
            .filter(|o| o["providerOperationId"] == op.as_str())
            .count(),
        1
    );
    // No poll: the only platform reads were of the operation the event named.
    let requests: Vec<String> = app
        .sim
        .sim
        .state()
        .log
        .iter()
        .filter(|e| e.id > mark && e.path.starts_with("/platform"))
        .map(|e| e.path.clone())
        .collect();
    assert!(!requests.is_empty());
    for path in &requests {
        assert!(path.contains(&format!("/fieldOperations/{op}")), "{path}");
    }

    // A renamed field and a new machine file arrive the same way.
    app.admin(
        Method::PATCH,
        &format!("fields/{field}"),
        Some(json!({"name": "Renamed by webhook"})),
    )
    .await;
    let file = app
        .admin(
            Method::POST,
            &format!("orgs/{org}/files"),
            Some(json!({"name": "webhook.zip", "size": 2048})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the renamed field", async || {
        app.fields(&user, "")
            .await
            .iter()
            .any(|f| f["providerFieldId"] == field.as_str() && f["name"] == "Renamed by webhook")
            .then_some(())
    })
    .await;
    wait_for("the new file", async || {
        let (_, files) = app
            .call(
                Method::GET,
                &format!("/services/operations/api/files?leafUserId={user}&size=100"),
                None,
            )
            .await;
        files
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["providerFileId"] == file.as_str() && f["status"] == "processed")
            .then_some(())
    })
    .await;
    // Still no full sync: the scheduled one is a day away.
    assert_eq!(
        sync_status(&app, &user).await["finishedTime"],
        status["finishedTime"]
    );
    app.finish().await;
}

async fn forged_deliveries_are_refused(db: Db) {
    let app = spawn_with(db, |s| {
        s.health_check_interval_secs = 3600;
        s.deere_webhook_authorization = Some("Bearer deliveries-only".into());
    })
    .await;
    let user = synced_user(&app, json!({"operationsProcessingRange": 120})).await;
    let (org, field) = connected_org(&app).await;
    let real_token = sim_subscriptions(&app, Some(&org))
        .into_iter()
        .find(|s| s.event_type_id == "fieldOperation")
        .and_then(|s| s.token)
        .unwrap();
    let platform = app.sim.platform_url().to_string();
    let event = |token: &str, target: &str| {
        json!({"clientKey": "sim-client", "eventTypeId": "fieldOperation", "targetResource": target,
               "token": token, "metadata": [{"key": "orgId", "value": org}], "links": []})
    };
    let target = format!("{platform}/fieldOperations/not-a-real-operation");
    let deliver = async |auth: Option<&str>, body: Value| {
        let mut request = app.http.post(app.url("/api/deere/events")).json(&body);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send().await.unwrap().status()
    };
    let auth = Some("Bearer deliveries-only");
    let before = operations_of(&app, &user).await;
    // Unknown token, a forged event next to a genuine one, no token, wrong Authorization.
    assert_eq!(
        deliver(auth, json!([event("Zm9yZ2Vk", &target)])).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(
            auth,
            json!([event(&real_token, &target), event("Zm9yZ2Vk", &target)])
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    let mut tokenless = event("x", &target);
    tokenless.as_object_mut().unwrap().remove("token");
    assert_eq!(
        deliver(auth, json!([tokenless])).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(Some("Bearer guessed"), json!([event(&real_token, &target)])).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(None, json!([event(&real_token, &target)])).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.furrow.state.store.inbox_len().await.unwrap(),
        0,
        "nothing queued"
    );
    // Malformed bodies are 400s.
    assert_eq!(
        deliver(auth, json!({"not": "an array"})).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        deliver(auth, json!([{"token": real_token}])).await,
        StatusCode::BAD_REQUEST
    );

    // A genuine token pointing furrow at another host: accepted, but the token never leaves
    // for that host and nothing is stored.
    let mark = last_request_id(&app);
    assert_eq!(
        deliver(
            auth,
            json!([event(&real_token, "http://127.0.0.1:9/fieldOperations/x")])
        )
        .await,
        StatusCode::NO_CONTENT
    );
    // And a genuine one for an operation that does not exist: fetched, nothing stored.
    assert_eq!(
        deliver(auth, json!([event(&real_token, &target)])).await,
        StatusCode::NO_CONTENT
    );
    wait_for("an empty inbox", async || {
        (app.furrow.state.store.inbox_len().await.unwrap() == 0).then_some(())
    })
    .await;
    assert_eq!(operations_of(&app, &user).await, before, "nothing changed");
    let fetched: Vec<String> = app
        .sim
        .sim
        .state()
        .log
        .iter()
        .filter(|e| e.id > mark && e.path.starts_with("/platform"))
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert!(fetched[0].contains("/fieldOperations/not-a-real-operation"));
    let _ = field;
    app.finish().await;
}

async fn subscriptions_follow_selection_and_credentials(db: Db) {
    let app = app_without_polling(db).await;
    let user = synced_user(&app, json!({"organizationDataSync": "SELECTED_ONLY"})).await;
    let (org, _) = connected_org(&app).await;
    assert!(
        sim_subscriptions(&app, None).is_empty(),
        "nothing selected, nothing subscribed"
    );
    let set = async |status: &str| {
        let (code, body) = app
            .call(
                Method::PATCH,
                &format!("/services/usermanagement/api/users/{user}/JohnDeere/organizations/{org}/{status}"),
                None,
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    };
    set("SELECTED").await;
    wait_for("subscriptions of the selected org", async || {
        (sim_subscriptions(&app, Some(&org)).len() == 4).then_some(())
    })
    .await;
    assert_eq!(
        sim_subscriptions(&app, None).len(),
        4,
        "only the selected org"
    );
    set("PREVIEW").await;
    wait_for("the deselected org's subscriptions to go", async || {
        sim_subscriptions(&app, None).is_empty().then_some(())
    })
    .await;
    set("SELECTED").await;
    wait_for("subscriptions again", async || {
        (sim_subscriptions(&app, None).len() == 4).then_some(())
    })
    .await;
    let (code, _) = app
        .call(
            Method::DELETE,
            &format!("/services/usermanagement/api/users/{user}/john-deere-credentials"),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    wait_for("deleted credentials' subscriptions to go", async || {
        sim_subscriptions(&app, None).is_empty().then_some(())
    })
    .await;
    app.finish().await;
}

/// A grower's organizations share one subscription per event type (its `orgId` filter lists
/// them); an event is stored under the organization it names; an organization no longer synced
/// takes its subscriptions with it, and the others are covered again.
async fn one_subscription_per_event_type_covers_the_organizations(db: Db) {
    let app = app_without_polling(db).await;
    // Every organization synced: the first sync subscribes to both at once.
    let user = synced_user(&app, json!({})).await;
    let synced = sync_status(&app, &user).await;
    let orgs = connected_orgs(&app).await;
    assert_eq!(
        orgs.len(),
        2,
        "the simulated grower has two connected organizations"
    );
    // The organizations a subscription's filter lists, sorted.
    let covered = |s: &deere_sim::Subscription| {
        let mut orgs: Vec<String> = s
            .filters
            .iter()
            .filter(|(k, _)| k == "orgId")
            .flat_map(|(_, v)| v.clone())
            .collect();
        orgs.sort();
        orgs
    };
    let mut both = vec![orgs[0].0.clone(), orgs[1].0.clone()];
    both.sort();
    let subscribed = sim_subscriptions(&app, None);
    assert_eq!(
        event_types(&subscribed),
        ["boundary", "field", "fieldOperation", "file"]
    );
    assert!(
        subscribed.iter().all(|s| covered(s) == both),
        "{subscribed:?}"
    );
    assert_eq!(synced["counts"]["webhooks"], "WEBHOOKS", "{synced}");

    // A new field in each organization: each event, delivered by a subscription both share,
    // is applied under the organization it names.
    for (org, _) in &orgs {
        let name = format!("New in {org}");
        let field = app
            .admin(
                Method::POST,
                &format!("orgs/{org}/fields"),
                Some(json!({"name": name})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let arrived = wait_for("the new field", async || {
            app.fields(&user, "")
                .await
                .into_iter()
                .find(|f| f["providerFieldId"] == field.as_str())
        })
        .await;
        assert_eq!(arrived["organizationId"], org.as_str(), "{arrived}");
        assert_eq!(arrived["name"], name.as_str(), "{arrived}");
    }
    // By webhook, not by a sync: the scheduled one is a day away.
    assert_eq!(
        sync_status(&app, &user).await["finishedTime"],
        synced["finishedTime"]
    );

    // An event naming none of its subscription's organizations: accepted, nothing queued
    // under a guessed organization, and a sync of the credential reads what changed instead.
    wait_for("an empty inbox", async || {
        (app.furrow.state.store.inbox_len().await.unwrap() == 0).then_some(())
    })
    .await;
    let token = subscribed
        .iter()
        .find(|s| s.event_type_id == "field")
        .and_then(|s| s.token.clone())
        .unwrap();
    let stray = json!([{"clientKey": "sim-client", "eventTypeId": "field",
        "targetResource": format!("{}/organizations/999/fields/x", app.sim.platform_url()),
        "token": token, "metadata": [{"key": "orgId", "value": "999"}], "links": []}]);
    let answer = app
        .http
        .post(app.url("/api/deere/events"))
        .json(&stray)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.furrow.state.store.inbox_len().await.unwrap(), 0);
    wait_for("a sync instead", async || {
        let now = sync_status(&app, &user).await;
        (now["state"] == "DONE" && now["finishedTime"] != synced["finishedTime"]).then_some(())
    })
    .await;

    // Only the second organization synced from now on: the shared subscriptions go, and the
    // second organization is subscribed on its own.
    let (first, second) = (&orgs[0].0, &orgs[1].0);
    let (code, body) = app
        .call(
            Method::PATCH,
            &format!("/services/config/api/configs/{user}"),
            Some(json!({"organizationDataSync": "SELECTED_ONLY"})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, body) = app
        .call(
            Method::PATCH,
            &format!("/services/usermanagement/api/users/{user}/JohnDeere/organizations/{second}/SELECTED"),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_for(
        "subscriptions of the second organization only",
        async || {
            let all = sim_subscriptions(&app, None);
            (all.len() == 4 && all.iter().all(|s| covered(s) == [second.clone()])).then_some(())
        },
    )
    .await;
    let now = sim_subscriptions(&app, None);
    assert!(subscribed
        .iter()
        .all(|old| now.iter().all(|s| s.id != old.id)));
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deere_subscriptions WHERE provider_org_id = $1")
            .bind(first)
            .fetch_one(app.furrow.state.store.pool())
            .await
            .unwrap();
    assert_eq!(
        rows, 0,
        "nothing recorded for the organization no longer synced"
    );
    app.finish().await;
}

/// A sync recording a subscription while the credentials are being deleted: it either comes
/// first (and the deletion returns it, to remove on John Deere) or is refused (and the sync
/// removes it itself) — never left behind with the credentials' rows. On PostgreSQL the
/// recording waits for the deleting transaction's lock and then meets the foreign key.
async fn a_subscription_recorded_during_a_deletion_is_refused(db: Db) {
    let app = app_without_polling(db).await;
    let user = synced_user(&app, json!({})).await;
    let store = &app.furrow.state.store;
    let cred = store.credential_of(&user).await.unwrap().unwrap();
    let subscription = |n: u32| {
        furrow::store::SubscriptionRecord::new(
            &cred.id,
            "race-org",
            &format!("fieldOperation{n}"),
            &format!("race-{n}"),
            &format!("https://example.invalid/eventSubscriptions/race-{n}"),
            &format!("race-token-{n}"),
        )
    };
    // Recorded before the deletion: the deletion hands it back.
    assert!(store
        .insert_subscriptions(&[subscription(1)])
        .await
        .unwrap());
    let owner = store
        .owner_by_email("owner@example.com")
        .await
        .unwrap()
        .unwrap();
    let uris = store
        .delete_user(&owner.id, &user)
        .await
        .unwrap()
        .expect("the user was there");
    assert!(
        uris.iter().any(|u| u.ends_with("/race-1")),
        "the deletion returns what was recorded: {uris:?}"
    );

    // Recorded while another transaction deletes the credentials.
    let user = synced_user(&app, json!({})).await;
    let cred = store.credential_of(&user).await.unwrap().unwrap();
    let racing = furrow::store::SubscriptionRecord {
        credential_id: cred.id.clone(),
        ..subscription(2)
    };
    let raw = sqlx::AnyPool::connect(&app.database_url).await.unwrap();
    let mut deleting = raw.begin().await.unwrap();
    sqlx::query("DELETE FROM jd_credentials WHERE id = $1")
        .bind(&cred.id)
        .execute(&mut *deleting)
        .await
        .unwrap();
    let recording = tokio::spawn({
        let store = store.clone();
        async move { store.insert_subscriptions(&[racing]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    deleting.commit().await.unwrap();
    let recorded = recording.await.unwrap();
    assert!(
        matches!(recorded, Ok(false)),
        "refused as deleted, not an error: {recorded:?}"
    );
    raw.close().await;
    app.finish().await;
}

async fn without_webhook_access_furrow_polls(db: Db) {
    let app = app_without_polling(db).await;
    app.admin(
        Method::PATCH,
        "apps/sim-client",
        Some(json!({"webhookAccess": false})),
    )
    .await;
    let user = synced_user(&app, json!({})).await;
    let status = sync_status(&app, &user).await;
    assert_eq!(status["counts"]["webhooks"], "POLLING", "{status}");
    assert!(
        status["counts"]["webhooksDetail"]
            .as_str()
            .unwrap()
            .contains("Webhook"),
        "{status}"
    );
    assert!(
        status["counts"]["fields"].as_u64().unwrap() > 0,
        "the sync itself went on"
    );
    assert!(sim_subscriptions(&app, None).is_empty());
    let (_, events) = app.events(&user).await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["statusCode"] == 403
                && e["url"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("eventSubscriptions")),
        "the refusal is in the credential's events: {events}"
    );
    app.finish().await;
}

/// John Deere ends a subscription on its own (Terminated): the next health check notices, and
/// furrow subscribes again.
async fn ended_subscriptions_are_replaced(db: Db) {
    let app = spawn_with(db, |s| s.health_check_interval_secs = 3600).await;
    let user = synced_user(&app, json!({})).await;
    let before = sim_subscriptions(&app, None);
    assert_eq!(
        before.len(),
        4,
        "one per event type, for both organizations"
    );
    let ended = before[0].clone();
    app.admin(
        Method::PATCH,
        &format!("subscriptions/{}", ended.id),
        Some(json!({"status": "Terminated"})),
    )
    .await;
    // A health check now: the credential job runs it when due.
    sqlx::query("UPDATE jd_credentials SET last_check_ms = 0")
        .execute(app.furrow.state.store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET run_at_ms = 0 WHERE kind = 'credential'")
        .execute(app.furrow.state.store.pool())
        .await
        .unwrap();
    wait_for("a replacement subscription", async || {
        let now = sim_subscriptions(&app, None);
        let active = now.iter().filter(|s| s.status == "Active").count();
        let replaced = now.iter().all(|s| s.id != ended.id);
        (active == 4 && replaced).then_some(())
    })
    .await;
    let renewed = sim_subscriptions(&app, None)
        .into_iter()
        .find(|s| s.event_type_id == ended.event_type_id && s.filters == ended.filters)
        .unwrap();
    assert_ne!(renewed.token, ended.token, "a fresh token");
    let _ = user;
    app.finish().await;
}

both_backends!(webhook_changes, changes_arrive_by_webhook);
both_backends!(ended, ended_subscriptions_are_replaced);
both_backends!(forged, forged_deliveries_are_refused);
both_backends!(selection, subscriptions_follow_selection_and_credentials);
both_backends!(
    shared_subscriptions,
    one_subscription_per_event_type_covers_the_organizations
);
both_backends!(no_webhook_access, without_webhook_access_furrow_polls);
both_backends!(
    recorded_during_deletion,
    a_subscription_recorded_during_a_deletion_is_refused
);
