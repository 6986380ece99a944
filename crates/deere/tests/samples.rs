//! Parsing of the sample JSON of `deere-api.md` §11 (copied to `tests/samples/`), including the
//! quirks of John Deere's own examples, and a field-for-field comparison of the simulator's
//! responses with the same samples.

mod common;

use std::collections::BTreeMap;

use deere::models::{
    ApiCatalog, Boundary, Client, CollectionPage, DeliveredEvent, EventSubscription, Farm, Field,
    FieldOperation, FieldOperationType, File, HasLinks, Measurement, OrgConnection, Organization,
};
use deere::TokenResponse;
use reqwest::Method;
use serde_json::{json, Value};

fn sample(name: &str) -> Value {
    let path = format!("{}/tests/samples/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn parse<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

#[test]
fn parses_every_sample() {
    let catalog: ApiCatalog = parse(sample("catalog"));
    assert_eq!(catalog.link("organizations"), Some("{base}/organizations"));

    let orgs: CollectionPage<Organization> = parse(sample("organizations"));
    assert_eq!(orgs.total, Some(12));
    assert_eq!(
        orgs.link("nextPage"),
        Some("{base}/organizations;start=10;count=10")
    );
    assert!(
        matches!(orgs.values[0].connection(), OrgConnection::Connected { manage_uri } if manage_uri.contains("connections-dialog?orgId=440001"))
    );
    assert!(
        matches!(orgs.values[1].connection(), OrgConnection::NotConnected { connect_uri } if connect_uri.ends_with("select-organizations"))
    );

    let farms: CollectionPage<Farm> = parse(sample("farms"));
    assert!(farms.values[0]
        .client_uri
        .as_deref()
        .unwrap()
        .contains("/clients/"));

    let fields: CollectionPage<Field> = parse(sample("fields"));
    let field = &fields.values[0];
    assert_eq!(field.name, "North 80");
    assert!(field.link("activeBoundary").is_some());

    let boundaries: CollectionPage<Boundary> = parse(sample("boundaries"));
    let b = &boundaries.values[0];
    assert_eq!(b.area.as_ref().unwrap().value_as_double, 32.37);
    let ring = &b.multipolygons[0].rings[0];
    assert_eq!(ring.points.len(), 5);
    assert_eq!(ring.points.first(), ring.points.last());
    assert!(!ring.is_interior());

    let ops: CollectionPage<FieldOperation> = parse(sample("field_operations"));
    let op = &ops.values[0];
    assert_eq!(op.field_operation_type, FieldOperationType::Harvest);
    assert_eq!(op.crop_season.as_deref(), Some("2024"));
    assert_eq!(op.varieties[0].name.as_deref(), Some("P1185"));
    assert_eq!(
        op.field_operation_machines[0].machine_id.as_deref(),
        Some("637795")
    );
    assert_eq!(
        op.field_operation_machines[0].operators[0].name.as_deref(),
        Some("Sam")
    );

    let measurements: CollectionPage<Measurement> = parse(sample("measurement_types"));
    let m = &measurements.values[0];
    assert_eq!(m.measurement_name, "HarvestYieldResult");
    assert_eq!(m.total("averageMoisture").unwrap().value, 17.9);
    assert_eq!(m.total("yield").unwrap().unit_id.as_deref(), Some("bu"));

    let files: CollectionPage<File> = parse(sample("files"));
    assert_eq!(files.values[0].native_size, Some(72946));
    assert_eq!(files.values[0].status.as_deref(), Some("READY"));

    let sub: EventSubscription = parse(sample("event_subscription"));
    assert_eq!(sub.filters[0].values, ["440001"]);
    assert!(
        !format!("{sub:?}").contains("c2ltLXNlY3JldA=="),
        "token kept out of Debug"
    );

    let delivered: Vec<DeliveredEvent> = parse(sample("delivery"));
    assert_eq!(delivered[0].event_type_id, "fieldOperation");
    assert_eq!(delivered[0].metadata[0].value, "440001");

    let token = TokenResponse::parse(sample("token").to_string().as_bytes()).unwrap();
    assert_eq!(token.scopes.len(), 5);

    let errors = deere::error::ApiErrors::parse(sample("errors").to_string().as_bytes());
    assert_eq!(errors.message_or(""), "Access Denied");
}

#[test]
fn tolerates_the_documented_quirks() {
    // Upper/lower case operation types, cropSeason as a number, products as one object,
    // booleans and sizes as strings, missing machines, unknown machine type.
    let op: FieldOperation = parse(json!({
        "id": "x", "fieldOperationType": "Tillage", "cropSeason": 2012, "adaptMachineType": "unknown",
        "product": {"name": "Urea", "tankMix": "false", "rate": {"value": "120.5", "unitId": "kg1ha-1"}}
    }));
    assert_eq!(op.field_operation_type, FieldOperationType::Tillage);
    assert_eq!(op.crop_season.as_deref(), Some("2012"));
    assert_eq!(op.products.len(), 1);
    assert_eq!(op.products[0].rate.as_ref().unwrap().value, 120.5);
    assert!(op.field_operation_machines.is_empty());

    let op: FieldOperation = parse(json!({"id": "y", "fieldOperationType": "APPLICATION",
        "products": [{"name": "A"}, {"name": "B"}]}));
    assert_eq!(op.field_operation_type, FieldOperationType::Application);
    assert_eq!(op.products.len(), 2);

    let op: FieldOperation = parse(json!({"id": "z", "fieldOperationType": "spreading"}));
    assert_eq!(
        op.field_operation_type,
        FieldOperationType::Other("spreading".into())
    );

    let file: File = parse(
        json!({"id": 577499742, "name": "a.zip", "nativeSize": "72946",
        "transferPending": "false", "shared": "true", "archived": false}),
    );
    assert_eq!(file.id, "577499742");
    assert_eq!(file.native_size, Some(72946));
    assert!(file.shared && !file.transfer_pending);

    // A field with no active boundary has no activeBoundary link.
    let field: Field =
        parse(json!({"id": "f", "name": "n", "links": [{"rel": "self", "uri": "u"}]}));
    assert!(field.link("activeBoundary").is_none());

    // A delta tombstone.
    let gone: Field = parse(
        json!({"id": "f", "links": [{"rel": "self", "uri": "u"}, {"rel": "delete", "uri": "u"}]}),
    );
    assert!(gone.is_deleted());
}

/// The structure of a JSON value: object keys with the shapes of their values, the shape of an
/// array's first element, and scalar kinds (an integer and a float are both "number").
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let shaped: BTreeMap<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), shape(v))).collect();
            json!(shaped)
        }
        Value::Array(items) => json!([items.first().map(shape).unwrap_or(Value::Null)]),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

/// Shapes of every link-free element: link lists differ in their rels, not their shape.
fn assert_same_shape(what: &str, sample: &Value, actual: &Value) {
    let (s, a) = (shape(sample), shape(actual));
    assert_eq!(
        s, a,
        "{what}: simulator shape differs from the §11 sample\nsample: {s:#}\nsimulator: {a:#}"
    );
}

#[tokio::test]
async fn simulator_responses_match_the_sample_shapes() {
    let h = common::start(deere_sim::SimConfig::default()).await;
    let (token, _) = h
        .tokens("grower001", Some("ag1 ag2 ag3 files offline_access"))
        .await;
    let get = |path: String| {
        let http = h.http.clone();
        let token = token.expose().to_string();
        async move {
            let response = http
                .get(path)
                .bearer_auth(token)
                .header("accept", "application/vnd.deere.axiom.v3+json")
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()
        }
    };
    let base = h.sim.platform_url().to_string();

    assert_same_shape(
        "catalog",
        &sample("catalog"),
        &get(format!("{base}/")).await,
    );

    // Organizations: one connected, one not (the sample shows both, and a nextPage link).
    let mut orgs = get(format!("{base}/organizations;start=0;count=2")).await;
    let connected = orgs["values"][0].clone();
    assert!(connected["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["rel"] == "manage_connections"));
    let unconnected = get(format!("{base}/organizations")).await["values"][2].clone();
    assert!(unconnected["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["rel"] == "connections"));
    let s = sample("organizations");
    assert_same_shape("connected organization", &s["values"][0], &connected);
    assert_same_shape("unconnected organization", &s["values"][1], &unconnected);
    orgs["values"] = json!([]);
    let mut s_page = s.clone();
    s_page["values"] = json!([]);
    assert_same_shape("organizations page", &s_page, &orgs);

    let org = connected["id"].as_str().unwrap().to_string();
    assert_same_shape(
        "farms",
        &sample("farms"),
        &get(format!("{base}/organizations/{org}/farms")).await,
    );

    let fields = get(format!("{base}/organizations/{org}/fields;start=0;count=1")).await;
    let mut fields_sample = sample("fields");
    fields_sample["links"] = json!([{"rel": "self", "uri": ""}, {"rel": "nextPage", "uri": ""}]);
    assert_same_shape("fields", &fields_sample, &fields);
    let field = fields["values"][0]["id"].as_str().unwrap().to_string();
    let single = get(format!("{base}/organizations/{org}/fields/{field}")).await;
    assert_same_shape("single field", &sample("fields")["values"][0], &single);

    // The sample boundary has one exterior ring; compare with a boundary that has no hole.
    let boundaries = get(format!("{base}/organizations/{org}/boundaries;count=100")).await;
    let plain = boundaries["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["multipolygons"][0]["rings"].as_array().unwrap().len() == 1)
        .expect("a boundary without holes")
        .clone();
    assert_same_shape("boundary", &sample("boundaries")["values"][0], &plain);

    let ops = get(format!(
        "{base}/organizations/{org}/fields/{field}/fieldOperations"
    ))
    .await;
    let harvest = ops["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["fieldOperationType"] == "harvest")
        .unwrap()
        .clone();
    assert_same_shape(
        "field operation",
        &sample("field_operations")["values"][0],
        &harvest,
    );
    let op_id = harvest["id"].as_str().unwrap();
    assert_same_shape(
        "single operation",
        &sample("field_operations")["values"][0],
        &get(format!("{base}/fieldOperations/{op_id}")).await,
    );
    assert_same_shape(
        "measurement types",
        &sample("measurement_types"),
        &get(format!("{base}/fieldOperations/{op_id}/measurementTypes")).await,
    );

    assert_same_shape(
        "files",
        &sample("files"),
        &get(format!("{base}/organizations/{org}/files;count=1")).await,
    );

    // Errors body: an unconnected org's data.
    let unconnected_id = unconnected["id"].as_str().unwrap();
    assert_same_shape(
        "errors",
        &sample("errors"),
        &get(format!("{base}/organizations/{unconnected_id}/fields")).await,
    );

    // Event subscription as created.
    let created: Value = h
        .http
        .post(format!("{base}/eventSubscriptions"))
        .bearer_auth(token.expose())
        .header("accept", "application/vnd.deere.axiom.v3+json")
        .header("content-type", "application/vnd.deere.axiom.v3+json")
        .json(&json!({"eventTypeId": "fieldOperation",
                      "filters": [{"key": "orgId", "values": [org]}],
                      "targetEndpoint": {"targetType": "https", "uri": "https://receiver.example/deere/events"},
                      "status": "Active", "displayName": "shape test", "token": "c2ltLXNlY3JldA=="}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_same_shape(
        "event subscription",
        &sample("event_subscription"),
        &created,
    );

    // OAuth metadata and token response.
    let metadata: Value = h
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            h.sim.issuer_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_same_shape("metadata", &sample("metadata"), &metadata);
    let issued = h
        .admin(
            Method::POST,
            "tokens",
            Some(json!({"userName": "grower001", "scope": "ag1 ag2 ag3 files offline_access"})),
        )
        .await;
    assert_same_shape("token", &sample("token"), &issued);
}

#[test]
fn delta_tombstones_parse_for_every_resource() {
    let tombstone = |id: &str| json!({"id": id, "links": [{"rel": "self", "uri": "u"}, {"rel": "delete", "uri": "u"}]});
    assert!(parse::<Field>(tombstone("f")).is_deleted());
    assert!(parse::<FieldOperation>(tombstone("o")).is_deleted());
    assert!(parse::<Boundary>(tombstone("b")).is_deleted());
    assert!(parse::<File>(tombstone("1")).is_deleted());
    assert!(parse::<Farm>(tombstone("fa")).is_deleted());
    assert!(parse::<Client>(tombstone("c")).is_deleted());
}
