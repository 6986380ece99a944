//! The `deere` client against `deere-sim` over real HTTP on loopback.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use deere::api::ExportPolling;
use deere::models::{Field, File, HasLinks, OrgConnection, Organization};
use deere::{DeereError, ForbiddenKind, Listing, Pkce};
use deere_sim::SimConfig;
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use common::{start, Harness};

async fn default_harness() -> Harness {
    start(SimConfig::default()).await
}

#[tokio::test]
async fn follows_next_page_links_through_a_large_collection() {
    let h = default_harness().await;
    let orgs = h.grower("big", json!([{"connectedTo": "sim-client", "fields": 150, "operationsPerField": 0, "files": 0}])).await;
    let (token, _) = h.tokens("big", None).await;
    let url = h.url(&format!("organizations/{}/fields", orgs[0]));

    let fields: Vec<Field> = h.api.collect_all(&token, &url).await.unwrap();
    assert_eq!(fields.len(), 150);
    let unique: HashSet<_> = fields.iter().map(|f| f.id.clone()).collect();
    assert_eq!(unique.len(), 150, "no duplicates across pages");
    // Default page size 10: 15 requests, each following the previous page's nextPage link.
    let log = h.log_for("/fields");
    assert_eq!(log.len(), 15);
    assert!(
        log[1].path.contains(";start=10;count=10"),
        "{}",
        log[1].path
    );

    // A caller can also process page by page, and a larger page size means fewer pages.
    let url100 = h.url(&format!("organizations/{}/fields;count=100", orgs[0]));
    let Listing::Changed(mut pager) = h.api.list::<Field>(&token, &url100, None).await.unwrap()
    else {
        panic!("expected pages");
    };
    let mut sizes = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        assert_eq!(page.total, Some(150));
        sizes.push(page.values.len());
    }
    assert_eq!(sizes, [100, 50]);
}

#[tokio::test]
async fn page_stream_yields_every_page() {
    use futures_util::StreamExt;
    let h = default_harness().await;
    let orgs = h.grower("streamer", json!([{"connectedTo": "sim-client", "fields": 25, "operationsPerField": 0, "files": 0}])).await;
    let (token, _) = h.tokens("streamer", None).await;
    let url = h.url(&format!("organizations/{}/fields", orgs[0]));
    let Listing::Changed(pager) = h.api.list::<Field>(&token, &url, None).await.unwrap() else {
        panic!("expected pages");
    };
    let pages: Vec<_> = pager.into_stream().collect().await;
    let counts: Vec<usize> = pages.into_iter().map(|p| p.unwrap().values.len()).collect();
    assert_eq!(counts, [10, 10, 5]);
}

#[tokio::test]
async fn signature_gives_304_when_unchanged_and_a_delta_after_a_change() {
    let h = default_harness().await;
    let orgs = h.grower("sig", json!([{"connectedTo": "sim-client", "fields": 5, "operationsPerField": 0, "files": 0}])).await;
    let (token, _) = h.tokens("sig", None).await;
    let url = h.url(&format!("organizations/{}/fields", orgs[0]));

    let Listing::Changed(pager) = h.api.list::<Field>(&token, &url, None).await.unwrap() else {
        panic!("first read is a full list");
    };
    let signature = pager.signature().expect("signature returned").to_string();
    let all = pager.collect_values().await.unwrap();
    assert_eq!(all.len(), 5);

    assert!(matches!(
        h.api
            .list::<Field>(&token, &url, Some(&signature))
            .await
            .unwrap(),
        Listing::NotModified
    ));
    let last = h.log_for("/fields").pop().unwrap();
    assert_eq!(last.status, 304);
    assert!(last.signature_sent);

    h.admin(
        Method::PATCH,
        &format!("fields/{}", all[0].id),
        Some(json!({"name": "Renamed"})),
    )
    .await;
    h.admin(Method::DELETE, &format!("fields/{}", all[1].id), None)
        .await;

    let Listing::Changed(pager) = h
        .api
        .list::<Field>(&token, &url, Some(&signature))
        .await
        .unwrap()
    else {
        panic!("a change yields a delta");
    };
    let next_signature = pager.signature().unwrap().to_string();
    assert_ne!(next_signature, signature);
    let delta = pager.collect_values().await.unwrap();
    assert_eq!(delta.len(), 2, "only what changed: {delta:?}");
    let renamed = delta.iter().find(|f| f.id == all[0].id).unwrap();
    assert_eq!(renamed.name, "Renamed");
    assert!(!renamed.is_deleted());
    assert!(delta
        .iter()
        .find(|f| f.id == all[1].id)
        .unwrap()
        .is_deleted());

    // The new signature is current again; an unknown one restarts with the full list.
    assert!(matches!(
        h.api
            .list::<Field>(&token, &url, Some(&next_signature))
            .await
            .unwrap(),
        Listing::NotModified
    ));
    let Listing::Changed(pager) = h
        .api
        .list::<Field>(&token, &url, Some("not-a-signature"))
        .await
        .unwrap()
    else {
        panic!("reset");
    };
    assert_eq!(pager.collect_values().await.unwrap().len(), 4);
}

#[tokio::test]
async fn refresh_without_rotation_returns_the_same_refresh_token() {
    let h = default_harness().await;
    let (_, rt) = h.tokens("grower001", None).await;
    let rt = rt.unwrap();
    let first = h.oauth.refresh(&rt).await.unwrap();
    assert_eq!(first.refresh_token.as_ref().unwrap().expose(), rt.expose());
    assert_eq!(first.expires_in, Some(Duration::from_secs(43_200)));
    assert!(first.scopes.contains(&"ag1".to_string()));
    // Still valid: refreshing again works.
    let second = h.oauth.refresh(&rt).await.unwrap();
    assert_ne!(second.access_token.expose(), first.access_token.expose());
    let orgs = h.api.organizations(&second.access_token).await.unwrap();
    assert_eq!(orgs.len(), 3);
}

#[tokio::test]
async fn refresh_with_rotation_returns_a_new_token_and_retires_the_old_one() {
    let h = default_harness().await;
    h.settings(json!({"rotateRefreshTokens": true})).await;
    let (_, rt) = h.tokens("grower001", None).await;
    let rt = rt.unwrap();
    let refreshed = h.oauth.refresh(&rt).await.unwrap();
    let new_rt = refreshed
        .refresh_token
        .expect("rotated token returned to the caller");
    assert_ne!(new_rt.expose(), rt.expose());
    assert!(matches!(
        h.oauth.refresh(&rt).await,
        Err(DeereError::InvalidGrant { .. })
    ));
    let again = h.oauth.refresh(&new_rt).await.unwrap();
    assert!(again.refresh_token.is_some());
}

#[tokio::test]
async fn reuse_detection_revokes_the_whole_grant() {
    let h = default_harness().await;
    h.settings(json!({"rotateRefreshTokens": true, "reuseDetection": true}))
        .await;
    let (_, rt) = h.tokens("grower001", None).await;
    let new_rt = h
        .oauth
        .refresh(&rt.clone().unwrap())
        .await
        .unwrap()
        .refresh_token
        .unwrap();
    assert!(matches!(
        h.oauth.refresh(&rt.unwrap()).await,
        Err(DeereError::InvalidGrant { .. })
    ));
    assert!(matches!(
        h.oauth.refresh(&new_rt).await,
        Err(DeereError::InvalidGrant { .. })
    ));
}

#[tokio::test]
async fn invalid_grant_and_invalid_client_are_typed() {
    let h = default_harness().await;
    let err = h
        .oauth
        .refresh(&deere::RefreshToken::new("sim-rt-unknown"))
        .await
        .unwrap_err();
    assert!(matches!(err, DeereError::InvalidGrant { .. }), "{err:?}");
    assert!(err.is_credential_failure());

    let wrong = deere::OAuthClient::new(
        h.http.clone(),
        &url::Url::parse(&h.sim.issuer_url()).unwrap(),
        "sim-client",
        secrecy::SecretString::from("wrong".to_string()),
    )
    .unwrap();
    let (_, rt) = h.tokens("grower001", None).await;
    assert!(matches!(
        wrong.refresh(&rt.unwrap()).await,
        Err(DeereError::InvalidClient { .. })
    ));

    // Revoking the grant in the simulator kills the refresh token.
    let (_, rt) = h.tokens("grower002", None).await;
    h.admin(
        Method::POST,
        "grants/revoke",
        Some(json!({"userName": "grower002"})),
    )
    .await;
    assert!(matches!(
        h.oauth.refresh(&rt.unwrap()).await,
        Err(DeereError::InvalidGrant { .. })
    ));
}

#[tokio::test]
async fn no_offline_access_means_no_refresh_token_and_narrowed_scopes_are_reported() {
    let h = default_harness().await;
    let (_, rt) = h.tokens("grower001", Some("ag1 ag2")).await;
    assert!(rt.is_none());
    h.admin(
        Method::PUT,
        "growers/grower002/scopes",
        Some(json!({"scopes": ["ag1", "offline_access"]})),
    )
    .await;
    let (_, rt) = h.tokens("grower002", None).await;
    let refreshed = h.oauth.refresh(&rt.unwrap()).await.unwrap();
    assert_eq!(refreshed.scopes, ["ag1", "offline_access"]);
}

#[tokio::test]
async fn rate_limit_retry_after_is_honoured() {
    let h = default_harness().await;
    let (token, _) = h.tokens("grower001", None).await;
    h.fault(json!({"pathContains": "/organizations", "kind": {"type": "rateLimit", "retryAfter": 1}, "times": 1})).await;
    let orgs = h.api.organizations(&token).await.unwrap();
    assert_eq!(orgs.len(), 3);
    let log = h.log_for("/platform/organizations");
    assert_eq!(log.iter().map(|e| e.status).collect::<Vec<_>>(), [429, 200]);
    let waited = log[1].at_ms - log[0].at_ms;
    assert!(
        waited >= 1000,
        "retried after {waited} ms, Retry-After was 1 s"
    );
}

#[tokio::test]
async fn rate_limit_beyond_the_budget_is_reported_typed() {
    let h = default_harness().await;
    let (token, _) = h.tokens("grower001", None).await;
    h.fault(
        json!({"pathContains": "/organizations", "kind": {"type": "rateLimit", "retryAfter": 600}}),
    )
    .await;
    let err = h.api.organizations(&token).await.unwrap_err();
    assert!(
        matches!(err, DeereError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(600))
    );
    assert_eq!(
        h.log_for("/platform/organizations").len(),
        1,
        "a Retry-After beyond the cap is not slept through"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let h = default_harness().await;
    let (token, _) = h.tokens("grower001", None).await;
    h.fault(json!({"pathContains": "/organizations", "kind": {"type": "status", "status": 503}, "times": 2})).await;
    assert_eq!(h.api.organizations(&token).await.unwrap().len(), 3);
    let statuses: Vec<u16> = h
        .log_for("/platform/organizations")
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[tokio::test]
async fn cut_connections_are_retried() {
    let h = default_harness().await;
    let (token, _) = h.tokens("grower001", None).await;
    h.fault(
        json!({"pathContains": "/organizations", "kind": {"type": "connectionReset"}, "times": 1}),
    )
    .await;
    assert_eq!(h.api.organizations(&token).await.unwrap().len(), 3);
    assert_eq!(h.log_for("/platform/organizations").len(), 2);
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    let h = default_harness().await;
    let (token, _) = h.tokens("grower001", None).await;
    h.fault(json!({"pathContains": "/organizations", "kind": {"type": "status", "status": 404}, "times": 1})).await;
    assert!(matches!(
        h.api.organizations(&token).await,
        Err(DeereError::NotFound { .. })
    ));
    let bogus = deere::AccessToken::new("not-a-token");
    assert!(matches!(
        h.api.organizations(&bogus).await,
        Err(DeereError::Unauthorized { .. })
    ));
    let log = h.log_for("/platform/organizations");
    assert_eq!(log.len(), 2, "one request each: {log:?}");
}

#[tokio::test]
async fn organization_access_errors_are_distinguished() {
    let h = default_harness().await;
    let (token, _) = h.tokens("grower001", None).await;
    let orgs: Vec<Organization> = h.api.organizations(&token).await.unwrap();
    let connected: Vec<_> = orgs
        .iter()
        .filter(|o| matches!(o.connection(), OrgConnection::Connected { .. }))
        .collect();
    let unconnected: Vec<_> = orgs
        .iter()
        .filter(|o| matches!(o.connection(), OrgConnection::NotConnected { .. }))
        .collect();
    assert_eq!((connected.len(), unconnected.len()), (2, 1));

    // Unconnected: no data links; building the URL by hand gets 403 Access Denied.
    assert!(unconnected[0].link("fields").is_none());
    let err = h
        .api
        .collect_all::<Field>(
            &token,
            &h.url(&format!("organizations/{}/fields", unconnected[0].id)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeereError::Forbidden {
                kind: ForbiddenKind::AccessDenied,
                ..
            }
        ),
        "{err:?}"
    );

    // Required customer action on one org.
    let org = &connected[0].id;
    h.fault(json!({"orgId": org, "kind": {"type": "requiredCustomerAction"}}))
        .await;
    let fields_url = h
        .api
        .link_url(connected[0].link("fields").unwrap())
        .unwrap();
    match h.api.collect_all::<Field>(&token, &fields_url).await {
        Err(DeereError::RequiredCustomerAction { terms_location, .. }) => {
            assert_eq!(
                terms_location.unwrap(),
                format!("https://teammanager.deere.com/organizations/{org}/terms")
            );
        }
        other => panic!("{other:?}"),
    }

    // A token without the files scope: 403 "proper access".
    let (narrow, _) = h.tokens("grower001", Some("ag1 ag2")).await;
    let files_url = h.api.link_url(connected[1].link("files").unwrap()).unwrap();
    let err = h
        .api
        .collect_all::<File>(&narrow, &files_url)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeereError::Forbidden {
                kind: ForbiddenKind::MissingScope,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired_access_tokens_get_401() {
    let h = default_harness().await;
    h.settings(json!({"tokenTtlSecs": 0})).await;
    let (token, _) = h.tokens("grower001", None).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(matches!(
        h.api.organizations(&token).await,
        Err(DeereError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn shapefile_export_polls_through_202s_then_fetches_the_presigned_url_without_a_token() {
    let h = default_harness().await;
    let (token, _) = h.tokens("grower001", None).await;
    let world = h.admin(Method::GET, "world", None).await;
    let field_id = world["growers"][0]["organizations"][0]["fieldIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let org_id = world["growers"][0]["organizations"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ops: Vec<deere::models::FieldOperation> = h
        .api
        .collect_all(
            &token,
            &h.url(&format!(
                "organizations/{org_id}/fields/{field_id}/fieldOperations"
            )),
        )
        .await
        .unwrap();
    let harvest = ops
        .iter()
        .find(|o| o.field_operation_type == deere::models::FieldOperationType::Harvest)
        .unwrap();
    let tillage = ops
        .iter()
        .find(|o| o.field_operation_type == deere::models::FieldOperationType::Tillage)
        .unwrap();
    let polling = ExportPolling {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_polls: 10,
    };

    let export_url = h
        .api
        .link_url(harvest.link("shapeFileAsync").unwrap())
        .unwrap();
    let export = h
        .api
        .request_shapefile(&token, &export_url, None, &polling)
        .await
        .unwrap();
    assert_eq!(export.polls, 2);
    let statuses: Vec<u16> = h.log_for("/fieldOps/").iter().map(|e| e.status).collect();
    assert_eq!(statuses, [202, 202, 307]);

    let mut zip = Vec::new();
    let download = h
        .api
        .download_presigned(&export.presigned_url, &mut zip)
        .await
        .unwrap();
    assert_eq!(&zip[..4], b"PK\x03\x04");
    assert_eq!(download.bytes_written as usize, zip.len());
    let presigned_log = h.log_for("/presigned/");
    assert_eq!(presigned_log.len(), 1);
    assert!(
        !presigned_log[0].authorization_sent,
        "no bearer token on the pre-signed request"
    );

    // The pre-signed URL really rejects a bearer token.
    let with_auth = h
        .http
        .get(export.presigned_url.clone())
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(with_auth.status(), StatusCode::BAD_REQUEST);

    // The export is a real shapefile zip of the operation's points.
    let names: Vec<String> = zip::ZipArchive::new(std::io::Cursor::new(&zip))
        .unwrap()
        .file_names()
        .map(str::to_string)
        .collect();
    for part in [".shp", ".shx", ".dbf", ".prj", "machines.json"] {
        assert!(
            names.iter().any(|n| n.ends_with(part)),
            "{part} in {names:?}"
        );
    }

    // The yield measurement as a map image: a PNG, a seven-class legend, an extent.
    let measurements: serde_json::Value = h
        .api
        .get_json(
            &token,
            &h.api
                .link_url(harvest.link("measurementTypes").unwrap())
                .unwrap(),
        )
        .await
        .unwrap();
    let yield_url = measurements["values"][0]["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "self")
        .unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let image = h
        .api
        .measurement_image(&token, &h.api.link_url(&yield_url).unwrap())
        .await
        .unwrap();
    assert_eq!(&image.png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(image.legend["ranges"].as_array().unwrap().len(), 7);
    let (xmin, xmax) = (
        image.extent["xmin"].as_f64().unwrap(),
        image.extent["xmax"].as_f64().unwrap(),
    );
    assert!(
        xmin < xmax && xmin > -180.0 && xmax < 180.0,
        "{}",
        image.extent
    );

    let tillage_url = h
        .api
        .link_url(tillage.link("shapeFileAsync").unwrap())
        .unwrap();
    assert!(matches!(
        h.api
            .request_shapefile(&token, &tillage_url, None, &polling)
            .await,
        Err(DeereError::NotAcceptable { .. })
    ));
}

#[tokio::test]
async fn ranged_download_reassembles_byte_identical() {
    let h = default_harness().await;
    let orgs = h
        .grower(
            "filer",
            json!([{"connectedTo": "sim-client", "fields": 0, "files": 0}]),
        )
        .await;
    let created = h
        .admin(
            Method::POST,
            &format!("orgs/{}/files", orgs[0]),
            Some(json!({"name": "Big_Harvest.zip", "size": 300_000})),
        )
        .await;
    let file_id = created["id"].as_str().unwrap();
    let (token, _) = h.tokens("filer", None).await;

    let files: Vec<File> = h
        .api
        .collect_all(&token, &h.url(&format!("organizations/{}/files", orgs[0])))
        .await
        .unwrap();
    let meta = files.iter().find(|f| f.id == file_id).unwrap();
    let file_url = h.api.link_url(meta.link("self").unwrap()).unwrap();

    let mut chunked = Vec::new();
    let download = h
        .api
        .download_file(&token, &file_url, 64 * 1024, &mut chunked)
        .await
        .unwrap();
    assert_eq!(download.file_name.as_deref(), Some("Big_Harvest.zip"));
    assert!(download.requests >= 5, "{} requests", download.requests);
    assert!(chunked.len() > 300_000);

    // The same file in one unranged request.
    let whole = h
        .http
        .get(file_url.clone())
        .bearer_auth(token.expose())
        .header("accept", "application/zip")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Sha256::digest(&chunked), Sha256::digest(&whole));

    let ranged: Vec<_> = h
        .log_for(&format!("/files/{file_id}"))
        .into_iter()
        .filter(|e| e.status == 206)
        .collect();
    assert_eq!(ranged.len() as u32, download.requests);
}

#[tokio::test]
async fn authorization_code_flow_with_pkce() {
    let h = default_harness().await;
    let oauth = deere::OAuthClient::discover(
        h.http.clone(),
        &url::Url::parse(&h.sim.issuer_url()).unwrap(),
        "sim-client",
        secrecy::SecretString::from("sim-secret".to_string()),
    )
    .await
    .unwrap();
    assert_eq!(
        oauth.token_endpoint().as_str(),
        format!("{}/v1/token", h.sim.issuer_url())
    );
    let pkce = Pkce::generate();
    let redirect = "http://127.0.0.1:1/callback";
    let authorize = oauth.authorize_url(
        redirect,
        &["ag1", "ag2", "offline_access"],
        "xyz",
        Some(&pkce),
    );
    let page = h.http.get(authorize.clone()).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("<form method=\"post\">"));

    // The browser submits the consent form.
    let form = [
        ("client_id", "sim-client"),
        ("redirect_uri", redirect),
        ("scope", "ag1 ag2 offline_access"),
        ("state", "xyz"),
        ("code_challenge", pkce.challenge.as_str()),
        ("user", "grower001"),
        ("decision", "allow"),
    ];
    let consent = h
        .http
        .post(authorize.as_str().split('?').next().unwrap())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(consent.status().is_redirection());
    let location = url::Url::parse(consent.headers()["location"].to_str().unwrap()).unwrap();
    let params: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(params["state"], "xyz");
    let code = params["code"].clone();

    let wrong = Pkce::generate();
    assert!(matches!(
        oauth
            .exchange_code(&code, redirect, Some(&wrong.verifier))
            .await,
        Err(DeereError::InvalidGrant { .. })
    ));

    // Codes are single-use: run the flow again for the right verifier.
    let consent = h
        .http
        .post(authorize.as_str().split('?').next().unwrap())
        .form(&form)
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(consent.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens = oauth
        .exchange_code(&code, redirect, Some(&pkce.verifier))
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_some());
    assert_eq!(tokens.scopes, ["ag1", "ag2", "offline_access"]);
    assert!(matches!(
        oauth
            .exchange_code(&code, redirect, Some(&pkce.verifier))
            .await,
        Err(DeereError::InvalidGrant { .. })
    ));

    // Refusal.
    let mut deny = form.to_vec();
    deny.retain(|(k, _)| *k != "decision");
    deny.push(("decision", "deny"));
    let refused = h
        .http
        .post(authorize.as_str().split('?').next().unwrap())
        .form(&deny)
        .send()
        .await
        .unwrap();
    let location = refused.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("error=access_denied"), "{location}");
}

#[tokio::test]
async fn connections_page_connects_an_org_and_redirects() {
    let h = default_harness().await;
    let (token, _) = h.tokens("grower001", None).await;
    let orgs = h.api.organizations(&token).await.unwrap();
    let target = orgs
        .iter()
        .find(|o| matches!(o.connection(), OrgConnection::NotConnected { .. }))
        .unwrap();
    let OrgConnection::NotConnected { connect_uri } = target.connection() else {
        unreachable!()
    };
    let page = h
        .http
        .get(format!(
            "{connect_uri}?redirect_uri=http://127.0.0.1:1/back"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let mut form: Vec<(String, String)> = orgs
        .iter()
        .filter(|o| matches!(o.connection(), OrgConnection::Connected { .. }))
        .map(|o| ("org".to_string(), o.id.clone()))
        .collect();
    form.push(("org".into(), target.id.clone()));
    form.push(("redirect_uri".into(), "http://127.0.0.1:1/back".into()));
    let saved = h.http.post(&connect_uri).form(&form).send().await.unwrap();
    assert_eq!(saved.headers()["location"], "http://127.0.0.1:1/back");
    let after = h.api.organizations(&token).await.unwrap();
    assert!(after
        .iter()
        .all(|o| matches!(o.connection(), OrgConnection::Connected { .. })));
}

#[tokio::test]
async fn bearer_token_never_leaves_the_api_host() {
    let h = default_harness().await;
    let (token, _) = h.tokens("grower001", None).await;
    let foreign = url::Url::parse("http://127.0.0.2:9/platform/organizations").unwrap();
    let err = h
        .api
        .get_json::<Organization>(&token, &foreign)
        .await
        .unwrap_err();
    assert!(matches!(err, DeereError::InvalidUrl(_)));
    assert!(!format!("{token:?}").contains(token.expose()));
}
