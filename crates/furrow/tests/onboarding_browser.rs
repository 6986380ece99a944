//! A grower connects in a real headless browser (Debian's Chromium, driven through
//! chromedriver by fantoccini): magic link → furrow's page → John Deere's (simulated) consent
//! page → its connections page → the application's return URL.
//!
//! Needs `chromium` and `chromium-driver` (`scripts/test` installs them). Without them the test
//! fails, saying so, unless `FURROW_SKIP_BROWSER_TESTS=1`. With `FURROW_SCREENSHOT_DIR` set, the
//! pages are saved there as PNG (the README's pictures come from here).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::extract::RawQuery;
use axum::routing::get;
use common::{spawn, Db};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// chromedriver, killed when the test ends.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .chain(candidates.iter().map(PathBuf::from))
        .find(|p| p.exists())
}

async fn start_driver() -> Option<(Driver, PathBuf)> {
    let driver = find_binary("FURROW_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
    let browser = find_binary(
        "FURROW_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let (Some(driver), Some(browser)) = (driver, browser) else {
        if std::env::var("FURROW_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
            eprintln!("browser test skipped (FURROW_SKIP_BROWSER_TESTS=1)");
            return None;
        }
        panic!(
            "the browser test needs Chromium and chromedriver: run `bash scripts/test` (it installs \
             Debian's chromium and chromium-driver), or set FURROW_SKIP_BROWSER_TESTS=1"
        );
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let driver = Driver { child, url };
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await {
            if r.json::<Value>().await.unwrap_or_default()["value"]["ready"] == true {
                return Some((driver, browser));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not become ready");
}

async fn open_browser(driver: &Driver, browser: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": browser,
            // A phone-sized window: the pages must work there.
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=412,915"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

async fn screenshot(client: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("FURROW_SCREENSHOT_DIR") {
        let png = client.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
    }
}

/// The application: a page at `/back` that shows what furrow sent it.
async fn start_application() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/back",
        get(|RawQuery(q): RawQuery| async move {
            axum::response::Html(format!(
                "<!doctype html><title>Application</title><h1 id=\"app\">Application received</h1><pre>{}</pre>",
                q.unwrap_or_default().replace('<', "&lt;")
            ))
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/back")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grower_connects_in_a_real_browser() {
    let Some((driver, browser)) = start_driver().await else {
        return;
    };
    let app = spawn(Db::Sqlite).await;
    let application = start_application().await;
    let (status, _) = app
        .call(
            Method::POST,
            "/services/usermanagement/api/app-keys/JohnDeere/AcmeApp/STAGE",
            Some(json!({"clientKey": "sim-client", "clientSecret": "sim-secret"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let user = app.create_user("Grower One").await;
    let (status, link) = app
        .call(
            Method::POST,
            &format!("/services/widgets/api/magic-link/users/{user}/provider"),
            Some(
                json!({"expiresIn": 86400, "allowedProviders": ["JohnDeere"],
                        "returnUrl": application,
                        "settings": {"companyName": "Acme Agronomy", "showLeafUserName": true}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let link = link["link"].as_str().unwrap().to_string();

    let client = open_browser(&driver, &browser).await;
    let mut visited = Vec::new();
    client.goto(&link).await.unwrap();
    let landing = client.source().await.unwrap();
    assert!(
        landing.contains("Acme Agronomy") && landing.contains("Grower One"),
        "{landing}"
    );
    screenshot(&client, "onboarding-1-magic-link").await;
    client
        .find(Locator::Css("#continue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // John Deere's consent page (the simulator's): sign in as grower001 and allow.
    let user_select = client
        .wait()
        .for_element(Locator::Css("select[name=user]"))
        .await
        .unwrap();
    visited.push(client.current_url().await.unwrap().to_string());
    assert!(visited[0].starts_with(&app.sim.issuer_url()), "{visited:?}");
    user_select.select_by_value("grower001").await.unwrap();
    screenshot(&client, "onboarding-2-consent").await;
    client
        .find(Locator::Css("button[value=allow]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // John Deere's connections page: grower001's organizations, one not yet shared.
    client
        .wait()
        .for_element(Locator::Css("input[name=org]"))
        .await
        .unwrap();
    visited.push(client.current_url().await.unwrap().to_string());
    assert!(visited[1].contains("select-organizations"), "{visited:?}");
    let boxes = client
        .find_all(Locator::Css("input[name=org]"))
        .await
        .unwrap();
    assert_eq!(boxes.len(), 3, "grower001 has three organizations");
    for checkbox in &boxes {
        if !checkbox.is_selected().await.unwrap() {
            checkbox.click().await.unwrap();
        }
    }
    screenshot(&client, "onboarding-3-connections").await;
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Back at the application, with the outcome.
    client.wait().for_element(Locator::Id("app")).await.unwrap();
    let back = client.current_url().await.unwrap();
    visited.push(back.to_string());
    assert!(back.as_str().starts_with(&application), "{back}");
    let q: Vec<(String, String)> = back.query_pairs().into_owned().collect();
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(get("leafUserId"), Some(user.clone()));
    assert_eq!(get("status").as_deref(), Some("OK"));
    assert_eq!(get("connected").unwrap().split(',').count(), 3, "{back}");
    assert_eq!(get("notConnected").as_deref(), Some(""));
    let final_page = client.source().await.unwrap();
    client.close().await.unwrap();

    // The credentials are OK, the first sync runs, and the refresh token was never in any URL
    // or page the browser saw.
    let cred = app.wait_for_status(&user, "OK").await;
    let refresh_token = cred["refreshToken"].as_str().unwrap();
    assert!(refresh_token.starts_with("sim-rt-"));
    for seen in visited.iter().chain([&landing, &final_page]) {
        assert!(!seen.contains(refresh_token), "{seen}");
    }
    let sync = app.wait_for_sync_done(&user).await;
    assert_eq!(sync["state"], "DONE", "{sync}");
    app.finish().await;
}
