//! Machine data: each synced field operation's John Deere shapefile export becomes Leaf's
//! standard and filtered GeoJSON, summary, units and images, compared point for point with
//! what deere-sim generated.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use common::{spawn_with, Db, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ALL_SCOPES: &[&str] = &["ag1", "ag2", "ag3", "files", "offline_access"];
const OPS: &str = "/services/operations/api/operations";

async fn alert_receiver() -> (Arc<Mutex<Vec<Value>>>, String) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = Router::new()
        .route(
            "/alerts",
            post(
                |State(got): State<Arc<Mutex<Vec<Value>>>>, body: String| async move {
                    if let Ok(v) = serde_json::from_str::<Value>(&body) {
                        got.lock().unwrap().push(v);
                    }
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (got, url)
}

/// Polls an operation's processing until it leaves QUEUED/PROCESSING.
async fn wait_processed(app: &TestApp, op: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let (status, s) = app
            .call(Method::GET, &format!("{OPS}/{op}/status"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{s}");
        if matches!(
            s["status"].as_str(),
            Some("PROCESSED" | "NO_DATA" | "FAILED")
        ) {
            return s;
        }
        last = s;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("operation {op} was not processed; last status {last}");
}

async fn download(app: &TestApp, url: &str) -> (StatusCode, String, Vec<u8>) {
    let r = app
        .http
        .get(url)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, r.bytes().await.unwrap().to_vec())
}

async fn geojson(app: &TestApp, op: &str, which: &str) -> Value {
    let (status, links) = app
        .call(Method::GET, &format!("{OPS}/{op}/{which}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{links}");
    let url = links[format!("download{}{}", &which[..1].to_uppercase(), &which[1..])]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(links[which], url.as_str());
    let (status, content_type, body) = download(app, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/geo+json");
    serde_json::from_slice(&body).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

struct Setup {
    app: TestApp,
    user: String,
    /// John Deere operation id → furrow's, by John Deere type.
    ops: HashMap<&'static str, (String, String)>,
    field_id: String,
    alerts: Arc<Mutex<Vec<Value>>>,
}

async fn setup(db: Db) -> Setup {
    let app = spawn_with(db, |s| {
        s.health_check_interval_secs = 3600;
        s.export_poll_ms = 10;
        s.alert_retry_scale = 0.0005;
        // The alert receiver listens on loopback.
        s.alert_allow_private_networks = true;
    })
    .await;
    app.admin(
        Method::PATCH,
        "settings",
        Some(json!({"exportTillage": true, "exportPoints": 700})),
    )
    .await;
    let (status, _) = app
        .call(
            Method::PATCH,
            "/services/config/api/configs",
            Some(json!({"operationsImageCreation": true, "operationsProcessingRange": 120})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (alerts, url) = alert_receiver().await;
    let (status, hook) = app
        .call(
            Method::POST,
            "/services/alerts/api/alerts/webhooks",
            Some(json!({"events": ["operationProcessingFinished"], "name": "machine data", "secret": "a-webhook-secret", "url": url})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");

    app.admin(
        Method::POST,
        "growers",
        Some(json!({"userName": "machinist", "organizations": [{"name": "Machine Farms", "connectedTo": "sim-client", "fields": 1, "operationsPerField": 0, "files": 0}]})),
    )
    .await;
    let world = app.admin(Method::GET, "world", None).await;
    let grower = world["growers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["userName"] == "machinist")
        .unwrap();
    let jd_field = grower["organizations"][0]["fieldIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let mut jd_ops = HashMap::new();
    for kind in ["harvest", "seeding", "application", "tillage"] {
        let created = app
            .admin(
                Method::POST,
                &format!("fields/{jd_field}/operations"),
                Some(json!({"type": kind})),
            )
            .await;
        jd_ops.insert(kind, created["id"].as_str().unwrap().to_string());
    }
    let created = app
        .admin(
            Method::POST,
            &format!("fields/{jd_field}/operations"),
            Some(json!({"type": "harvest", "noSpatialData": true})),
        )
        .await;
    jd_ops.insert("none", created["id"].as_str().unwrap().to_string());

    let user = app.create_user("machinist").await;
    let rt = app.grower_refresh_token("machinist", ALL_SCOPES);
    assert_eq!(
        app.post_credentials(&user, &rt, "STAGE").await.1["status"],
        "OK"
    );
    // The operations appear with the first sync.
    let mut ops = HashMap::new();
    for _ in 0..300 {
        let (_, list) = app
            .call(
                Method::GET,
                &format!("{OPS}?leafUserId={user}&size=100"),
                None,
            )
            .await;
        for o in list.as_array().into_iter().flatten() {
            let provider = o["providerOperationId"].as_str().unwrap();
            if let Some((kind, _)) = jd_ops.iter().find(|(_, id)| *id == provider) {
                ops.insert(
                    *kind,
                    (provider.to_string(), o["id"].as_str().unwrap().to_string()),
                );
            }
        }
        if ops.len() == jd_ops.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(ops.len(), jd_ops.len(), "every operation synced");
    let (_, fields) = app
        .call(
            Method::GET,
            &format!("/services/fields/api/fields?leafUserId={user}"),
            None,
        )
        .await;
    let field_id = fields[0]["id"].as_str().unwrap().to_string();
    Setup {
        app,
        user,
        ops,
        field_id,
        alerts,
    }
}

async fn truth(app: &TestApp, jd_op: &str, query: &str) -> Value {
    app.admin(
        Method::GET,
        &format!("operations/{jd_op}/export?{query}"),
        None,
    )
    .await
}

async fn every_type_matches_the_simulator(db: Db) {
    let s = setup(db).await;
    let app = &s.app;
    let (_, field) = app
        .call(
            Method::GET,
            &format!(
                "/services/fields/api/users/{}/fields/{}",
                s.user, s.field_id
            ),
            None,
        )
        .await;
    let ring = field["geometry"]["coordinates"][0][0]
        .as_array()
        .unwrap()
        .clone();
    let lons: Vec<f64> = ring.iter().map(|p| p[0].as_f64().unwrap()).collect();
    let (field_w, field_e) = (
        lons.iter().cloned().fold(f64::INFINITY, f64::min),
        lons.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    );

    for (kind, leaf_type, wanted) in [
        (
            "harvest",
            "harvested",
            vec![
                "wetMass",
                "dryVolumePerArea",
                "harvestMoisture",
                "wetMassPerArea",
            ],
        ),
        (
            "seeding",
            "planted",
            vec!["seedRate", "seedRateTarget", "downForce", "singulation"],
        ),
        (
            "application",
            "applied",
            vec!["appliedRate", "appliedRateTarget"],
        ),
        (
            "tillage",
            "tillage",
            vec!["tillageDepthActual", "tillageDepthTarget"],
        ),
    ] {
        let (jd_op, op) = &s.ops[kind];
        let status = wait_processed(app, op).await;
        assert_eq!(status["status"], "PROCESSED", "{kind}: {status}");
        assert_eq!(status["standardGeojson"]["status"], "processed");
        let t = truth(app, jd_op, "uom=ENGLISH").await;
        let points = t["points"].as_u64().unwrap() as usize;
        assert_eq!(points, 700);

        // Standard GeoJSON: exactly the simulator's points, in order, with Leaf's names.
        let standard = geojson(app, op, "standardGeojson").await;
        let features = standard["features"].as_array().unwrap();
        assert_eq!(features.len(), points, "{kind}");
        for (f, c) in features.iter().zip(t["coordinates"].as_array().unwrap()) {
            for axis in 0..2 {
                let got = f["geometry"]["coordinates"][axis].as_f64().unwrap();
                assert!(
                    (got - c[axis].as_f64().unwrap()).abs() < 1e-9,
                    "{kind}: {f} vs {c}"
                );
            }
        }
        let props = features[points / 2]["properties"].as_object().unwrap();
        for key in [
            "distance",
            "heading",
            "speed",
            "elevation",
            "equipmentWidth",
            "area",
            "timestamp",
            "machinery",
        ]
        .iter()
        .chain(wanted.iter())
        {
            assert!(
                props.contains_key(*key),
                "{kind}: {key} missing in {props:?}"
            );
        }
        assert_eq!(props["operationType"], leaf_type);

        // Units: DEFAULT keeps John Deere's (the organization prefers ENGLISH).
        let (_, units) = app
            .call(Method::GET, &format!("{OPS}/{op}/units"), None)
            .await;
        assert_eq!(units["speed"], "mi/hr", "{kind}: {units}");
        assert_eq!(units["distance"], "ft");
        assert_eq!(units["area"], "m2");

        // Summary: totals equal the simulator's.
        let (_, summary) = app
            .call(Method::GET, &format!("{OPS}/{op}/summary"), None)
            .await;
        assert_eq!(summary["type"], "Feature");
        assert_eq!(summary["geometry"]["type"], "MultiPolygon");
        let p = &summary["properties"];
        assert_eq!(p["operationType"], leaf_type);
        assert_eq!(p["totalArea"]["unit"], "m2");
        let area = t["areaM2"].as_f64().unwrap();
        assert!(
            close(p["totalArea"]["value"].as_f64().unwrap(), area, 0.01),
            "{kind}: {p}"
        );
        match kind {
            "harvest" => {
                let lb = p["totalWetMass"]["value"].as_f64().unwrap();
                assert_eq!(p["totalWetMass"]["unit"], "lb");
                assert!(
                    close(lb * 0.453_592_37, t["wetMassKg"].as_f64().unwrap(), 1e-6),
                    "{p}"
                );
                let bu = p["totalDryVolume"]["value"].as_f64().unwrap();
                assert!(close(
                    bu * 0.035_239_070_166_88,
                    t["dryVolumeM3"].as_f64().unwrap(),
                    1e-6
                ));
                // Leaf's normalised crop: John Deere's `CORN_WET` is `corn`.
                let crop = p["crop"][0].as_str().unwrap();
                assert!(
                    !crop.is_empty() && crop == crop.to_lowercase() && !crop.contains('_'),
                    "{crop}"
                );
            }
            "seeding" => {
                let seeds = p["totalPlanted"]["value"].as_f64().unwrap();
                assert!((seeds - t["seeds"].as_f64().unwrap()).abs() <= 1.0, "{p}");
            }
            "application" => {
                let gal = p["totalApplied"]["value"].as_f64().unwrap();
                assert_eq!(p["totalApplied"]["unit"], "gal");
                assert!(close(
                    gal * 0.003_785_411_784,
                    t["appliedM3"].as_f64().unwrap(),
                    1e-6
                ));
            }
            _ => {}
        }
        assert_eq!(p["machinery"].as_array().unwrap().len(), 2, "both machines");

        // Filtered: the zero-speed, outside and (harvest) outlier points the simulator planted go.
        let filtered = geojson(app, op, "filteredGeojson").await;
        let dropped = t["zeroSpeedPoints"].as_u64().unwrap()
            + t["outsidePoints"].as_u64().unwrap()
            + t["outlierPoints"].as_u64().unwrap();
        assert!(t["zeroSpeedPoints"].as_u64().unwrap() > 0);
        assert_eq!(kind == "harvest", t["outlierPoints"].as_u64().unwrap() > 0);
        assert_eq!(
            filtered["features"].as_array().unwrap().len(),
            points - dropped as usize,
            "{kind}: {status} vs {}",
            json!({"zero": t["zeroSpeedPoints"], "outside": t["outsidePoints"], "outliers": t["outlierPoints"]})
        );
        assert!(filtered["features"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["properties"]["speed"].as_f64().unwrap() > 0.0));
        // And they are the standard features, unchanged and in order.
        let mut standard_features = features.iter();
        assert!(
            filtered["features"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| standard_features.any(|s| s == f)),
            "{kind}: the filtered features are a subsequence of the standard ones"
        );

        // Images: PNGs whose extent lies on the field and spans most of it.
        let (_, images) = app
            .call(Method::GET, &format!("{OPS}/{op}/imagesV2"), None)
            .await;
        let images = images.as_array().unwrap();
        assert!(images.len() >= 3, "{kind}: {images:?}");
        for image in images {
            assert_eq!(image["legend"]["ranges"].as_array().unwrap().len(), 7);
            let e = &image["extent"];
            let (xmin, xmax) = (e["xmin"].as_f64().unwrap(), e["xmax"].as_f64().unwrap());
            assert!(
                xmin >= field_w - 1e-9 && xmax <= field_e + 1e-9,
                "{e} inside {field_w}..{field_e}"
            );
            assert!(
                xmax - xmin > 0.9 * (field_e - field_w),
                "{e} spans the field"
            );
            let (status, content_type, png) = download(app, image["url"].as_str().unwrap()).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(content_type, "image/png");
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
            assert_eq!(json!(width), image["width"]);
        }
        let (_, v1) = app
            .call(Method::GET, &format!("{OPS}/{op}/images"), None)
            .await;
        assert_eq!(v1[0]["ramp"]["0%"], json!([200, 0, 0]));

        // The operation links to its field with the covered share.
        let (_, operation) = app.call(Method::GET, &format!("{OPS}/{op}"), None).await;
        assert_eq!(operation["fields"][0]["id"], s.field_id.as_str());
        let coverage = operation["fields"][0]["coverage"].as_f64().unwrap();
        assert!(coverage > 95.0 && coverage < 100.0, "{coverage}");
    }

    // The export answered 202 twice, then 307, and the pre-signed download carried no token.
    let requests = app.admin(Method::GET, "requests", None).await;
    let harvest_jd = &s.ops["harvest"].0;
    let statuses: Vec<u64> = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .contains(&format!("/fieldOps/{harvest_jd}"))
        })
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 202, 307]);
    assert!(requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/presigned/"))
        .all(|r| r["authorizationSent"] == false));

    // 406: recorded as "no spatial data", nothing to download.
    let none = wait_processed(app, &s.ops["none"].1).await;
    assert_eq!(none["status"], "NO_DATA", "{none}");
    assert!(none["message"]
        .as_str()
        .unwrap()
        .contains("no spatial data"));
    assert_eq!(none["originalFile"]["status"], "failed");
    let (status, _) = app
        .call(
            Method::GET,
            &format!("{OPS}/{}/summary", s.ops["none"].1),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // operationProcessingFinished, once per processed operation.
    for _ in 0..300 {
        if s.alerts.lock().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts = s.alerts.lock().unwrap().clone();
    for kind in ["harvest", "seeding", "application", "tillage"] {
        let n = alerts
            .iter()
            .filter(|a| {
                a["type"] == "operationProcessingFinished"
                    && a["operationId"] == s.ops[kind].1.as_str()
            })
            .count();
        assert_eq!(n, 1, "{kind}: {alerts:?}");
    }
    let finished = alerts
        .iter()
        .filter(|a| a["type"] == "operationProcessingFinished")
        .count();
    assert_eq!(
        finished, 4,
        "none for the operation without data: {alerts:?}"
    );
    s.app.finish().await;
}
both_backends!(every_type, every_type_matches_the_simulator);

async fn imperial_expired_urls_and_tenancy(db: Db) {
    let s = setup(db).await;
    let app = &s.app;
    let (jd_op, op) = s.ops["harvest"].clone();
    // Every first processing is over before the log is read.
    for (_, id) in s.ops.values() {
        wait_processed(app, id).await;
    }

    // IMPERIAL converts: speed in ft/s, total area in acres.
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/services/config/api/configs/{}", s.user),
            Some(json!({"unitMeasurement": "IMPERIAL",
                        "operationsImageAttributeCreation": {"harvested": {"wetMass": true, "speed": true, "elevation": false}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The first pre-signed download is refused as expired: furrow asks for a new export.
    app.admin(
        Method::POST,
        "faults",
        Some(json!({"pathContains": "/presigned/", "kind": {"type": "status", "status": 403}, "times": 1})),
    )
    .await;
    app.admin(Method::DELETE, "requests", None).await;
    let (status, queued) = app
        .call(Method::POST, &format!("{OPS}/{op}/reprocess"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let done = wait_processed(app, &op).await;
    assert_eq!(done["status"], "PROCESSED", "{done}");
    let presigned: Vec<u64> = app
        .admin(Method::GET, "requests", None)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/presigned/"))
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(presigned, [403, 200], "an expired URL is re-requested");
    // operationsImageAttributeCreation picks the maps.
    let (_, images) = app
        .call(Method::GET, &format!("{OPS}/{op}/imagesV2"), None)
        .await;
    let mut drawn: Vec<&str> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["property"].as_str().unwrap())
        .collect();
    drawn.sort();
    assert_eq!(drawn, ["speed", "wetMass"]);
    let (_, units) = app
        .call(Method::GET, &format!("{OPS}/{op}/units"), None)
        .await;
    assert_eq!(units["speed"], "ft/s");
    assert_eq!(units["wetMass"], "lb");
    let (_, summary) = app
        .call(Method::GET, &format!("{OPS}/{op}/summary"), None)
        .await;
    let p = &summary["properties"];
    assert_eq!(p["totalArea"]["unit"], "ac");
    let t = truth(app, &jd_op, "uom=ENGLISH").await;
    assert!(close(
        p["totalArea"]["value"].as_f64().unwrap() * 4_046.856_422_4,
        t["areaM2"].as_f64().unwrap(),
        1e-6
    ));
    let speed = p["speed"]["max"].as_f64().unwrap();
    assert!(
        speed > 6.0 && speed < 9.0,
        "about 2.2 m/s is 7.2 ft/s: {speed}"
    );

    // METRIC: the same operation in metric units.
    app.call(
        Method::PATCH,
        &format!("/services/config/api/configs/{}", s.user),
        Some(json!({"unitMeasurement": "METRIC"})),
    )
    .await;
    app.call(Method::POST, &format!("{OPS}/{op}/reprocess"), None)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(wait_processed(app, &op).await["status"], "PROCESSED");
    let (_, summary) = app
        .call(Method::GET, &format!("{OPS}/{op}/summary"), None)
        .await;
    let p = &summary["properties"];
    assert_eq!(p["totalArea"]["unit"], "ha");
    assert_eq!(p["totalWetMass"]["unit"], "t");
    assert!(close(
        p["totalWetMass"]["value"].as_f64().unwrap() * 1000.0,
        t["wetMassKg"].as_f64().unwrap(),
        1e-3
    ));

    // Another owner sees none of it; bad ids are 404s.
    furrow::api::auth::create_owner(
        &app.furrow.state.store,
        "other@example.com",
        "another long password",
    )
    .await
    .unwrap();
    let other = app
        .login("other@example.com", "another long password")
        .await;
    for path in [
        "summary",
        "units",
        "standardGeojson",
        "imagesV2",
        "status",
        "standardGeojson/download",
    ] {
        let (status, _) = app
            .call_as(&other, Method::GET, &format!("{OPS}/{op}/{path}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = app
        .call(Method::GET, &format!("{OPS}/not-a-uuid/summary"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.app.finish().await;
}
both_backends!(imperial_and_expiry, imperial_expired_urls_and_tenancy);
