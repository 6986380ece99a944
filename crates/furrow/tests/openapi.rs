//! The OpenAPI description against the router it describes: served at `/openapi.json` as
//! OpenAPI 3.1, every operation in it is routed, every route is in it, and `/docs` serves the
//! embedded UI. (Each answer's conformance to its schema is checked by the fuzz run,
//! `scripts/fuzz`.)

mod common;

use common::Db;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A path with each `{param}` filled: ids are UUIDs or integers as the spec says.
fn concrete(path: &str, operation: &Value) -> String {
    let mut out = path.to_string();
    for p in operation["parameters"].as_array().into_iter().flatten() {
        if p["in"] != "path" {
            continue;
        }
        let name = p["name"].as_str().unwrap();
        let value = match (p["schema"]["type"].as_str(), p["schema"]["format"].as_str()) {
            (_, Some("uuid")) => "00000000-0000-4000-8000-000000000000",
            (Some("integer"), _) => "1",
            _ => "JohnDeere",
        };
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_description_covers_every_route_and_only_routes() {
    let app = common::spawn(Db::Sqlite).await;
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let spec: Value = response.json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let paths = spec["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let url = app.url(&concrete(path, operation));
            let response = app
                .http
                .request(method.clone(), &url)
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            // The router's own answers for a path or method it does not have.
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !body.contains("resource not found"),
                "{method} {path} is described but not routed: {status} {body}"
            );
            // Every documented operation has an id, a tag and a success answer.
            assert!(operation["operationId"].is_string(), "{method} {path}");
            assert!(operation["tags"][0].is_string(), "{method} {path}");
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || s.starts_with('3')),
                "{method} {path} has no success answer"
            );
            operations += 1;
        }
    }
    assert!(operations >= 70, "only {operations} operations described");

    // An operation not in the description is not served either.
    let (status, body) = app
        .call(Method::GET, "/services/fields/api/not-a-route", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The UI is embedded: its page and script come from furrow itself.
    let page = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
    let script = app
        .http
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.bytes().await.unwrap().len() > 100_000);
    let config = app
        .http
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(config.contains("/openapi.json"), "{config}");
    app.finish().await;
}

/// Routes are registered only through `utoipa_axum::routes!`, which adds each to the
/// description: a plain axum `.route(` in the API would serve an undocumented path.
#[test]
fn no_route_is_registered_around_the_description() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if code.contains(".route(")
                || code.contains(".route_service(")
                || code.contains(".nest(")
            {
                offenders.push(format!("{}:{}: {code}", path.display(), n + 1));
            }
        }
    }
    assert!(offenders.is_empty(), "undocumented routes: {offenders:#?}");
}
