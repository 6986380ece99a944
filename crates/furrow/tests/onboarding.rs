//! Grower onboarding over real HTTP: app keys, magic links, the authorization-URL helper, and
//! each step a browser takes (cookies and redirects followed by hand, so every hop is checked):
//! furrow's landing page → the simulator's consent page → furrow's callback → the simulator's
//! connections page → furrow → the application's return URL. The same flow in a real browser
//! is `tests/onboarding_browser.rs`.

mod common;

use common::{spawn, Db, TestApp};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use url::Url;

const APP_KEY: &str = "/services/usermanagement/api/app-keys/JohnDeere/MyApp/STAGE";
const RETURN_URL: &str = "https://app.example/connected?session=s1";

/// A browser that does not follow redirects, keeping furrow's and the simulator's cookies.
struct Browser {
    http: reqwest::Client,
    furrow_cookie: Option<String>,
    sim_cookie: Option<String>,
    /// Every URL the browser was sent to, and every page body it saw.
    seen: Vec<String>,
}

struct Hop {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            furrow_cookie: None,
            sim_cookie: None,
            seen: Vec::new(),
        }
    }

    fn cookie_for(&self, url: &str, app: &TestApp) -> Option<String> {
        if url.starts_with(&app.furrow.base_url()) {
            self.furrow_cookie.clone()
        } else {
            self.sim_cookie.clone()
        }
    }

    async fn finish(&mut self, app: &TestApp, url: &str, r: reqwest::Response) -> Hop {
        for value in r.headers().get_all(SET_COOKIE) {
            let pair = value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            if url.starts_with(&app.furrow.base_url()) {
                self.furrow_cookie = Some(pair);
            } else {
                self.sim_cookie = Some(pair);
            }
        }
        let status = r.status();
        let location = r
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        let body = r.text().await.unwrap();
        self.seen.push(url.to_string());
        self.seen.extend(location.clone());
        self.seen.push(body.clone());
        Hop {
            status,
            location,
            body,
        }
    }

    async fn get(&mut self, app: &TestApp, url: &str) -> Hop {
        let mut request = self.http.get(url);
        if let Some(c) = self.cookie_for(url, app) {
            request = request.header(COOKIE, c);
        }
        let r = request.send().await.unwrap();
        self.finish(app, url, r).await
    }

    async fn post_form(&mut self, app: &TestApp, url: &str, form: &[(&str, &str)]) -> Hop {
        let mut request = self.http.post(url).form(form);
        if let Some(c) = self.cookie_for(url, app) {
            request = request.header(COOKIE, c);
        }
        let r = request.send().await.unwrap();
        self.finish(app, url, r).await
    }

    /// Opens a magic link and presses "Continue": the consent URL John Deere is asked for.
    async fn open_link(&mut self, app: &TestApp, link: &str) -> Hop {
        let landing = self.get(app, link).await;
        assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
        let csrf = hidden(&landing.body, "csrf");
        self.post_form(app, link, &[("csrf", &csrf)]).await
    }

    /// Opens a magic link, answers the consent page as `user` and follows John Deere's
    /// redirect to furrow's callback: what the callback answered.
    async fn through_consent(
        &mut self,
        app: &TestApp,
        link: &str,
        user: &str,
        decision: &str,
    ) -> Hop {
        let to_deere = self.open_link(app, link).await;
        let answered = self
            .consent(app, &to_deere.location.unwrap(), user, decision)
            .await;
        self.get(app, &answered.location.unwrap()).await
    }

    /// Answers the simulator's consent page as `user`.
    async fn consent(
        &mut self,
        app: &TestApp,
        authorize_url: &str,
        user: &str,
        decision: &str,
    ) -> Hop {
        let page = self.get(app, authorize_url).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let url = Url::parse(authorize_url).unwrap();
        let q = |k: &str| {
            url.query_pairs()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        let form = [
            ("client_id", q("client_id")),
            ("redirect_uri", q("redirect_uri")),
            ("scope", q("scope")),
            ("state", q("state")),
            ("code_challenge", q("code_challenge")),
            ("user", user.to_string()),
            ("decision", decision.to_string()),
        ];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let target = format!("{}{}", app.sim.root_url(), url.path());
        self.post_form(app, &target, &form).await
    }
}

/// The value of a hidden form field.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

fn query(url: &str) -> Vec<(String, String)> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn param(url: &str, key: &str) -> Option<String> {
    query(url)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

async fn register_app(app: &TestApp) {
    let (status, key) = app
        .call(
            Method::POST,
            APP_KEY,
            Some(json!({"clientKey": "sim-client", "clientSecret": "sim-secret"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
}

async fn magic_link(app: &TestApp, user: &str, extra: Value) -> Value {
    let mut body = json!({"expiresIn": 3600, "allowedProviders": ["JohnDeere"],
                          "settings": {"companyName": "Acme Agronomy"}});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, link) = app
        .call(
            Method::POST,
            &format!("/services/widgets/api/magic-link/users/{user}/provider"),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    link
}

async fn app_keys_and_magic_links_validate_and_stay_private(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("links").await;
    let link_path = format!("/services/widgets/api/magic-link/users/{user}/provider");
    // No app registered yet: the link cannot be made, and says how to fix that.
    let (status, p) = app
        .call(Method::POST, &link_path, Some(json!({"expiresIn": 900})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        p["detail"].as_str().unwrap().contains("app-keys/JohnDeere"),
        "{p}"
    );

    let (status, created) = app
        .call(
            Method::POST,
            APP_KEY,
            Some(
                json!({"clientKey": "sim-client", "clientSecret": "sim-secret",
                        "scopes": ["FIELDS:READ", "OPERATIONS:READ"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["scopes"], json!(["ag1", "ag2", "files"]));
    assert!(created["redirectUri"]
        .as_str()
        .unwrap()
        .ends_with("/connect/john-deere/callback"));
    assert!(!created.to_string().contains("sim-secret"), "{created}");
    // Posting again replaces it (200); the list shows one, never the secret.
    let (status, _) = app
        .call(
            Method::POST,
            APP_KEY,
            Some(json!({"clientKey": "sim-client", "clientSecret": "sim-secret"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = app
        .call(
            Method::GET,
            "/services/usermanagement/api/app-keys/JohnDeere",
            None,
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("sim-secret"));
    for (path, body, field) in [
        (APP_KEY, json!({"clientKey": "k"}), "clientSecret"),
        (
            "/services/usermanagement/api/app-keys/JohnDeere/MyApp/SANDBOX",
            json!({"clientKey": "k", "clientSecret": "s"}),
            "clientEnvironment",
        ),
        (
            "/services/usermanagement/api/app-keys/CNHI/MyApp/STAGE",
            json!({"clientKey": "k", "clientSecret": "s"}),
            "provider",
        ),
        (
            APP_KEY,
            json!({"clientKey": "k", "clientSecret": "s", "scopes": ["EVERYTHING"]}),
            "scopes",
        ),
    ] {
        let (status, p) = app.call(Method::POST, path, Some(body)).await;
        assert_eq!(
            (status, p["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{p}"
        );
    }

    for (body, field) in [
        (json!({"expiresIn": 899}), "expiresIn"),
        (json!({"expiresIn": 366 * 86400}), "expiresIn"),
        (
            json!({"allowedProviders": ["ClimateFieldView"]}),
            "allowedProviders",
        ),
        (json!({"allowedProviders": []}), "allowedProviders"),
        (json!({"returnUrl": "javascript:alert(1)"}), "returnUrl"),
        (json!({"maxUsage": 0}), "maxUsage"),
        (
            json!({"settings": {"backgroundColor": "red;}"}}),
            "settings.backgroundColor",
        ),
        (
            json!({"settings": {"companyLogo": "http://insecure.example/logo.png"}}),
            "settings.companyLogo",
        ),
    ] {
        let (status, p) = app.call(Method::POST, &link_path, Some(body.clone())).await;
        assert_eq!(
            (status, p["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}: {p}"
        );
    }
    let (_, none) = app
        .call(
            Method::GET,
            "/services/widgets/api/magic-link/provider",
            None,
        )
        .await;
    assert_eq!(none, json!([]), "refused links leave nothing behind");

    // Leaf's defaults: 900 s, John Deere.
    let (status, link) = app.call(Method::POST, &link_path, Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let id = link["id"].as_str().unwrap();
    assert!(link["link"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/connect/{id}")));
    let (_, got) = app
        .call(
            Method::GET,
            &format!("/services/widgets/api/magic-link/provider/{id}"),
            None,
        )
        .await;
    assert_eq!(got["widget"], "PROVIDER");
    assert_eq!(got["allowedProviders"], json!(["JohnDeere"]));
    assert_eq!(
        (got["maxUsage"].as_i64(), got["usageCount"].as_i64()),
        (Some(3), Some(0))
    );
    let created = chrono::DateTime::parse_from_rfc3339(got["createdAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(got["expiresAt"].as_str().unwrap()).unwrap();
    assert!(((expires - created).num_seconds() - 900).abs() <= 2);

    // Another owner sees none of it, and cannot make links for this owner's user.
    furrow::api::auth::create_owner(
        &app.furrow.state.store,
        "other@example.com",
        "another good password",
    )
    .await
    .unwrap();
    let other = app
        .login("other@example.com", "another good password")
        .await;
    let link_url = format!("/services/widgets/api/magic-link/provider/{id}");
    assert_eq!(
        app.call_as(&other, Method::GET, &link_url, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call_as(&other, Method::DELETE, &link_url, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call_as(&other, Method::POST, &link_path, Some(json!({})))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, theirs) = app
        .call_as(
            &other,
            Method::GET,
            "/services/widgets/api/magic-link/provider",
            None,
        )
        .await;
    assert_eq!(theirs, json!([]));

    assert_eq!(
        app.call(Method::DELETE, &link_url, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Method::GET, &link_url, None).await.0,
        StatusCode::NOT_FOUND
    );
    // The deleted link's page says so.
    let mut browser = Browser::new();
    let page = browser.get(&app, link["link"].as_str().unwrap()).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("does not exist"), "{}", page.body);
    app.finish().await;
}
both_backends!(
    app_keys_and_links,
    app_keys_and_magic_links_validate_and_stay_private
);

async fn a_magic_link_connects_a_grower_end_to_end(db: Db) {
    let app = spawn(db).await;
    register_app(&app).await;
    let user = app.create_user("grower").await;
    let link = magic_link(&app, &user, json!({"returnUrl": RETURN_URL})).await;
    let link_url = link["link"].as_str().unwrap();

    let mut browser = Browser::new();
    let landing = browser.get(&app, link_url).await;
    assert!(landing.body.contains("Acme Agronomy"));
    assert!(landing.body.contains("see your field operations"));
    // A form posted without the page's cookie (another site) is refused; nothing is used up.
    let forged = Browser::new()
        .post_form(&app, link_url, &[("csrf", &hidden(&landing.body, "csrf"))])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let to_deere = browser
        .post_form(&app, link_url, &[("csrf", &hidden(&landing.body, "csrf"))])
        .await;
    assert_eq!(to_deere.status, StatusCode::SEE_OTHER, "{}", to_deere.body);
    let authorize = to_deere.location.unwrap();
    assert!(authorize.starts_with(&app.sim.issuer_url()), "{authorize}");
    assert_eq!(
        param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(param(&authorize, "scope")
        .unwrap()
        .contains("offline_access"));
    let callback = param(&authorize, "redirect_uri").unwrap();
    assert_eq!(callback, app.url("/connect/john-deere/callback"));

    let back = browser
        .consent(&app, &authorize, "grower001", "allow")
        .await;
    let callback_url = back.location.unwrap();
    assert!(callback_url.starts_with(&callback));
    // The callback carried to another browser (login CSRF) is refused, and does not use the
    // flow up: the grower's own browser still completes it.
    let elsewhere = Browser::new().get(&app, &callback_url).await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    assert!(elsewhere.body.contains("another browser"));
    assert_eq!(app.credential(&user).await.0, StatusCode::NOT_FOUND);

    // grower001 has an organization not yet connected: on to John Deere's connections page.
    let to_connections = browser.get(&app, &callback_url).await;
    assert_eq!(
        to_connections.status,
        StatusCode::FOUND,
        "{}",
        to_connections.body
    );
    let connections = to_connections.location.unwrap();
    assert!(connections.starts_with(app.sim.root_url()), "{connections}");
    assert!(connections.contains("select-organizations"));
    let furrow_return = param(&connections, "redirect_uri").unwrap();
    assert!(furrow_return.starts_with(&app.url("/connect/john-deere/organizations/")));
    // The credential is stored and OK already; one organization is BLOCKED.
    assert_eq!(app.credential(&user).await.1["status"], "OK");

    // The reused callback is refused and changes nothing.
    let again = browser.get(&app, &callback_url).await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // The connections page lists grower001's organizations only; the grower ticks them all.
    let page = browser.get(&app, &connections).await;
    let grower_orgs: Vec<String> = app
        .sim
        .sim
        .state()
        .world
        .user_orgs("grower001")
        .iter()
        .map(|o| o.id.clone())
        .collect();
    let listed = page.body.matches("name=\"org\"").count();
    assert_eq!(listed, grower_orgs.len(), "{}", page.body);
    let action = format!(
        "{}{}",
        app.sim.root_url(),
        Url::parse(&connections).unwrap().path()
    );
    let mut form: Vec<(&str, &str)> = vec![("redirect_uri", &furrow_return), ("scope_org", "")];
    form.extend(grower_orgs.iter().map(|id| ("org", id.as_str())));
    let saved = browser.post_form(&app, &action, &form).await;
    assert_eq!(saved.location.as_deref(), Some(furrow_return.as_str()));

    let done = browser.get(&app, &furrow_return).await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.body);
    let outcome = done.location.unwrap();
    assert!(
        outcome.starts_with("https://app.example/connected?session=s1&"),
        "{outcome}"
    );
    assert_eq!(
        param(&outcome, "leafUserId").as_deref(),
        Some(user.as_str())
    );
    assert_eq!(param(&outcome, "status").as_deref(), Some("OK"));
    let mut connected: Vec<String> = param(&outcome, "connected")
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    connected.sort();
    let mut expected = grower_orgs.clone();
    expected.sort();
    assert_eq!(connected, expected);
    assert_eq!(param(&outcome, "notConnected").as_deref(), Some(""));

    // Stored as POST …/john-deere-credentials stores it; the attempt is in its events; the
    // first sync runs and reaches the newly connected organization too.
    let cred = app.wait_for_status(&user, "OK").await;
    let refresh_token = cred["refreshToken"].as_str().unwrap().to_string();
    assert!(refresh_token.starts_with("sim-rt-"), "{cred}");
    for seen in &browser.seen {
        assert!(
            !seen.contains(&refresh_token),
            "the refresh token reached the browser: {seen}"
        );
    }
    let (_, events) = app.events(&user).await;
    let attempt = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["body"]
                .as_str()
                .unwrap_or("")
                .contains("connectionAttempt")
        })
        .unwrap_or_else(|| panic!("no connection event in {events}"));
    assert!(attempt["body"].as_str().unwrap().contains("CONNECTED"));
    let (_, orgs) = app
        .call(
            Method::GET,
            &format!("/services/usermanagement/api/users/{user}/organizations/JohnDeere"),
            None,
        )
        .await;
    assert_eq!(orgs["notConnectedOrganizations"], json!([]), "{orgs}");
    let sync = app.wait_for_sync_done(&user).await;
    let (_, fields) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/fields?leafUserId={user}&size=100"),
            None,
        )
        .await;
    assert!(
        fields.as_array().is_some_and(|f| !f.is_empty()),
        "the first sync brought no fields: sync {sync}, fields {fields}"
    );

    // The link counted one use.
    let (_, got) = app
        .call(
            Method::GET,
            &format!(
                "/services/widgets/api/magic-link/provider/{}",
                link["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(got["usageCount"], 1);
    assert!(got["lastAccessedAt"].is_string());
    app.finish().await;
}
both_backends!(magic_link_flow, a_magic_link_connects_a_grower_end_to_end);

async fn failures_are_clear_and_store_nothing(db: Db) {
    let app = spawn(db).await;
    register_app(&app).await;
    let user = app.create_user("refuser").await;

    // Consent refused: back to the application with access_denied; nothing stored.
    let link = magic_link(&app, &user, json!({"returnUrl": RETURN_URL})).await;
    let mut browser = Browser::new();
    let back = browser
        .through_consent(&app, link["link"].as_str().unwrap(), "grower001", "deny")
        .await;
    let outcome = back.location.expect("back to the application");
    assert!(outcome.starts_with("https://app.example/connected"));
    assert_eq!(param(&outcome, "error").as_deref(), Some("access_denied"));
    assert!(param(&outcome, "error_description")
        .unwrap()
        .contains("did not allow"));
    assert_eq!(app.credential(&user).await.0, StatusCode::NOT_FOUND);

    // A tampered state is not recognised; nothing stored.
    let tampered = browser
        .get(
            &app,
            &app.url("/connect/john-deere/callback?code=sim-code-x&state=not-a-state"),
        )
        .await;
    assert_eq!(tampered.status, StatusCode::NOT_FOUND);
    assert!(tampered.body.contains("not known"), "{}", tampered.body);
    assert_eq!(app.credential(&user).await.0, StatusCode::NOT_FOUND);

    // John Deere's token endpoint down: a clear error back at the application, nothing stored.
    app.admin(
        Method::POST,
        "faults",
        Some(json!({"pathContains": "/v1/token", "kind": {"type": "status", "status": 503}})),
    )
    .await;
    let back = browser
        .through_consent(&app, link["link"].as_str().unwrap(), "grower001", "allow")
        .await;
    let outcome = back.location.expect("back to the application");
    assert_eq!(
        param(&outcome, "error").as_deref(),
        Some("temporarily_unavailable"),
        "{outcome}"
    );
    assert_eq!(app.credential(&user).await.0, StatusCode::NOT_FOUND);
    app.admin(Method::DELETE, "faults", None).await;

    // The link allowed three starts; this is the third, the fourth is refused.
    let third = browser
        .open_link(&app, link["link"].as_str().unwrap())
        .await;
    assert_eq!(third.status, StatusCode::SEE_OTHER);
    let landing = browser.get(&app, link["link"].as_str().unwrap()).await;
    assert_eq!(landing.status, StatusCode::GONE);
    assert!(
        landing.body.contains("already been used"),
        "{}",
        landing.body
    );

    // An expired link says so (time moved on: its expiry is put in the past).
    let expired = magic_link(&app, &user, json!({})).await;
    sqlx::query("UPDATE magic_links SET expires_at_ms = 0 WHERE id = $1")
        .bind(expired["id"].as_str().unwrap())
        .execute(app.furrow.state.store.pool())
        .await
        .unwrap();
    let page = browser.get(&app, expired["link"].as_str().unwrap()).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.body.contains("expired"), "{}", page.body);

    // A sign-in that took longer than the flow's lifetime is refused at the callback.
    let fresh = magic_link(&app, &user, json!({})).await;
    let to_deere = browser
        .open_link(&app, fresh["link"].as_str().unwrap())
        .await;
    let consented = browser
        .consent(&app, &to_deere.location.unwrap(), "grower001", "allow")
        .await;
    sqlx::query("UPDATE oauth_flows SET expires_at_ms = 0 WHERE magic_link_id = $1")
        .bind(fresh["id"].as_str().unwrap())
        .execute(app.furrow.state.store.pool())
        .await
        .unwrap();
    let late = browser.get(&app, &consented.location.unwrap()).await;
    assert_eq!(late.status, StatusCode::GONE);
    assert_eq!(app.credential(&user).await.0, StatusCode::NOT_FOUND);

    // The wrong environment: the token exchange works but the platform refuses the app (401).
    // The grower hears what that likely means; the credentials are kept, UNAUTHENTICATED, with
    // their events, as POST …/john-deere-credentials keeps rejected ones.
    app.admin(
        Method::POST,
        "faults",
        Some(json!({"pathContains": "/organizations", "kind": {"type": "unlicensed"}})),
    )
    .await;
    let wrong_env = magic_link(&app, &user, json!({"returnUrl": RETURN_URL})).await;
    let back = browser
        .through_consent(
            &app,
            wrong_env["link"].as_str().unwrap(),
            "grower001",
            "allow",
        )
        .await;
    let outcome = back.location.expect("back to the application");
    assert_eq!(
        param(&outcome, "error").as_deref(),
        Some("credentials_rejected"),
        "{outcome}"
    );
    assert!(param(&outcome, "error_description")
        .unwrap()
        .contains("environment"));
    assert_eq!(app.credential(&user).await.1["status"], "UNAUTHENTICATED");
    let (_, events) = app.events(&user).await;
    assert!(
        events.to_string().contains("credentials_rejected"),
        "{events}"
    );
    app.admin(Method::DELETE, "faults", None).await;
    app.finish().await;
}
both_backends!(failures, failures_are_clear_and_store_nothing);

async fn the_authorization_url_helper_and_a_reconnection(db: Db) {
    let app = spawn(db).await;
    let user = app.create_user("helper").await;
    let base =
        format!("/services/usermanagement/api/users/{user}/john-deere-credentials/authorize");
    // Client key and secret given in the request (no app key stored).
    let (status, created) = app
        .call(
            Method::POST,
            &base,
            Some(
                json!({"clientKey": "sim-client", "clientSecret": "sim-secret",
                        "clientEnvironment": "STAGE", "scopes": ["ag1", "ag2", "files"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "NEW");
    assert!(!created.to_string().contains("sim-secret"));
    let start = created["url"].as_str().unwrap().to_string();

    let mut browser = Browser::new();
    let to_deere = browser.get(&app, &start).await;
    assert_eq!(to_deere.status, StatusCode::FOUND, "{}", to_deere.body);
    let authorize = to_deere.location.unwrap();
    assert_eq!(
        param(&authorize, "client_id").as_deref(),
        Some("sim-client")
    );
    // The start URL works once.
    assert_eq!(browser.get(&app, &start).await.status, StatusCode::CONFLICT);

    // grower002 (one unconnected organization too) leaves it unticked at John Deere.
    let consented = browser
        .consent(&app, &authorize, "grower002", "allow")
        .await;
    let to_connections = browser.get(&app, &consented.location.unwrap()).await;
    let connections = to_connections.location.unwrap();
    let furrow_return = param(&connections, "redirect_uri").unwrap();
    let action = format!(
        "{}{}",
        app.sim.root_url(),
        Url::parse(&connections).unwrap().path()
    );
    let already: Vec<String> = app
        .sim
        .sim
        .state()
        .world
        .user_orgs("grower002")
        .iter()
        .filter(|o| o.connected_apps.contains("sim-client"))
        .map(|o| o.id.clone())
        .collect();
    let mut form: Vec<(&str, &str)> = vec![("redirect_uri", &furrow_return), ("scope_org", "")];
    form.extend(already.iter().map(|id| ("org", id.as_str())));
    browser.post_form(&app, &action, &form).await;
    // No return URL: furrow's own page tells the grower what was and was not shared.
    let done = browser.get(&app, &furrow_return).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("is connected"));
    assert!(done.body.contains("id=\"not-connected\""));

    let flow_path = format!("{base}/{}", created["id"].as_str().unwrap());
    let (_, flow) = app.call(Method::GET, &flow_path, None).await;
    assert_eq!(flow["status"], "DONE");
    assert_eq!(
        flow["outcome"]["notConnected"].as_array().unwrap().len(),
        1,
        "{flow}"
    );
    assert_eq!(
        app.wait_for_status(&user, "OK").await["tokenMetadata"]["scopes"],
        json!(["ag1", "ag2", "files", "offline_access"])
    );

    // Re-authorising an existing credential replaces it; a refused attempt on the way is
    // recorded in the existing credential's events.
    let (_, second) = app
        .call(
            Method::POST,
            &base,
            Some(json!({"clientKey": "sim-client", "clientSecret": "sim-secret", "clientEnvironment": "STAGE"})),
        )
        .await;
    let to_deere = browser.get(&app, second["url"].as_str().unwrap()).await;
    let denied = browser
        .consent(&app, &to_deere.location.unwrap(), "grower002", "deny")
        .await;
    let page = browser.get(&app, &denied.location.unwrap()).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("did not allow"));
    let (_, events) = app.events(&user).await;
    assert!(events.to_string().contains("access_denied"), "{events}");
    assert_eq!(
        app.credential(&user).await.1["status"],
        "OK",
        "a refusal leaves the credential as it was"
    );

    // Bad requests: both an app name and a key, an unknown app, a relative return URL.
    for (body, field) in [
        (
            json!({"appName": "Nope", "clientEnvironment": "STAGE"}),
            "appName",
        ),
        (
            json!({"clientKey": "k", "clientSecret": "s", "clientEnvironment": "STAGE", "appName": "A"}),
            "appName",
        ),
        (json!({"clientSecret": "s"}), "clientKey"),
        (
            json!({"clientKey": "k", "clientSecret": "s", "clientEnvironment": "STAGE", "returnUrl": "/relative"}),
            "returnUrl",
        ),
    ] {
        let (status, p) = app.call(Method::POST, &base, Some(body.clone())).await;
        assert_eq!(
            (status, p["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}: {p}"
        );
    }
    app.finish().await;
}
both_backends!(helper, the_authorization_url_helper_and_a_reconnection);
