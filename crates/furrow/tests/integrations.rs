//! Leaf's integrations summary (`/services/integrations/api/resources`) against the simulator's
//! world.

mod common;

use common::{spawn, Db};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SCOPES: &[&str] = &["ag1", "ag2", "files", "offline_access"];

async fn the_summary_counts_what_john_deere_holds(db: Db) {
    let app = spawn(db).await;
    let first = app.create_user("first").await;
    let second = app.create_user("second").await;
    let _without_credentials = app.create_user("none").await;
    for (user, grower) in [(&first, "grower001"), (&second, "grower002")] {
        let rt = app.grower_refresh_token(grower, SCOPES);
        assert_eq!(
            app.post_credentials(user, &rt, "STAGE").await.0,
            StatusCode::CREATED
        );
    }
    let s1 = app.wait_for_sync_done(&first).await;
    let s2 = app.wait_for_sync_done(&second).await;
    assert_eq!(
        (&s1["state"], &s2["state"]),
        (&json!("DONE"), &json!("DONE"))
    );

    let (status, all) = app
        .call(Method::GET, "/services/integrations/api/resources", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["message"], "SUCCESS");
    let summaries = all["summaries"].as_array().unwrap();
    assert_eq!(
        summaries.len(),
        2,
        "users without credentials are not listed: {all}"
    );

    for (user, grower, sync) in [(&first, "grower001", &s1), (&second, "grower002", &s2)] {
        let (growers, farms, fields) = {
            let state = app.sim.sim.state();
            let orgs: Vec<_> = state
                .world
                .user_orgs(grower)
                .into_iter()
                .filter(|o| o.connected_apps.contains("sim-client"))
                .collect();
            (
                orgs.iter().map(|o| o.clients.len()).sum::<usize>(),
                orgs.iter().map(|o| o.farms.len()).sum::<usize>(),
                orgs.iter()
                    .map(|o| o.fields.iter().filter(|f| !f.archived).count())
                    .sum::<usize>(),
            )
        };
        assert!(fields > 0);
        let (status, one) = app
            .call(
                Method::GET,
                &format!(
                    "/services/integrations/api/resources?leafUserId={user}&provider=JohnDeere"
                ),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let s = &one["summaries"][0];
        assert_eq!(one["summaries"].as_array().unwrap().len(), 1);
        assert_eq!(s["provider"], "JohnDeere");
        assert_eq!(s["leafUserId"], json!(user));
        assert_eq!(
            (
                s["growers"].as_u64(),
                s["farms"].as_u64(),
                s["fields"].as_u64()
            ),
            (
                Some(growers as u64),
                Some(farms as u64),
                Some(fields as u64)
            ),
            "{one}"
        );
        // The end of the last sync: this one, or a later one (a webhook may start another).
        let reference = s["syncReferenceTime"].as_str().expect("a reference time");
        assert!(
            reference >= sync["finishedTime"].as_str().unwrap(),
            "{one} {sync}"
        );
    }

    // Paging Leaf's way, another provider, an unknown user.
    let r = app
        .http
        .get(app.url("/services/integrations/api/resources?size=1&page=1"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], "2");
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["summaries"].as_array().unwrap().len(), 1);
    for query in ["provider=ClimateFieldView", "leafUserId=not-a-user"] {
        let (status, none) = app
            .call(
                Method::GET,
                &format!("/services/integrations/api/resources?{query}"),
                None,
            )
            .await;
        assert_eq!((status, &none["summaries"]), (StatusCode::OK, &json!([])));
    }
    let (status, _) = app
        .call(
            Method::GET,
            "/services/integrations/api/resources?size=0",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.finish().await;
}
both_backends!(summary, the_summary_counts_what_john_deere_holds);
