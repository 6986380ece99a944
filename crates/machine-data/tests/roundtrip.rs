//! Synthetic exports read back and processed: the outputs hold exactly what was written.

use machine_data::synth::{synthesize, SynthMachine, SynthSpec, Truth};
use machine_data::units::si_factor;
use machine_data::{
    process, read_export, Boundary, OperationKind, Options, OriginalData, Processed, UnitSystem,
};
use serde_json::Value;

const FIELD: [[f64; 2]; 5] = [
    [-89.8080, 40.4700],
    [-89.8000, 40.4700],
    [-89.8000, 40.4760],
    [-89.8080, 40.4760],
    [-89.8080, 40.4700],
];

fn spec(kind: OperationKind, points: usize, english: bool, polygons: bool) -> SynthSpec {
    let machine = |i: u64| SynthMachine {
        machine_id: 100 + i,
        serial: format!("SERIAL{i}"),
        name: format!("Machine {i}"),
        make: "John Deere".into(),
        operator_id: format!("OP-{i}"),
        operator_name: format!("Operator {i}"),
    };
    SynthSpec {
        kind,
        points,
        seed: 42,
        boundary: vec![FIELD.to_vec()],
        start_ms: 1_700_000_000_000,
        english,
        crop: "CORN_WET".into(),
        variety: "P1185".into(),
        product: "Fastac EC".into(),
        machines: [machine(0), machine(1)],
        polygons,
    }
}

struct Run {
    truth: Truth,
    processed: Processed,
    standard: Value,
    filtered: Value,
}

fn run(spec: &SynthSpec, system: UnitSystem, remove_outliers: bool) -> Run {
    let (zip, truth) = synthesize(spec).unwrap();
    let dir = std::env::temp_dir().join(format!("md-rt-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("e.zip");
    std::fs::write(&path, zip).unwrap();
    let export = read_export(&path).unwrap();
    let boundary = Boundary::new(vec![vec![FIELD.to_vec()]]).unwrap();
    let options = Options {
        kind: spec.kind,
        system,
        remove_outliers,
        outliers_limit: 3.0,
        images: true,
        image_size: 256,
        image_properties: None,
        boundary: Some(&boundary),
        original: OriginalData {
            farm: Some("Farm".into()),
            field: Some("North".into()),
            grower: Some("Grower".into()),
            operation_type: Some("harvest".into()),
        },
    };
    let mut standard = Vec::new();
    let processed = process(&export, &options, &mut standard).unwrap();
    let filtered = processed.filtered.select(&standard);
    let _ = std::fs::remove_dir_all(dir);
    Run {
        truth,
        processed,
        standard: serde_json::from_slice(&standard).expect("standard GeoJSON parses"),
        filtered: serde_json::from_slice(&filtered).expect("filtered GeoJSON parses"),
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn harvest_outputs_hold_every_point_and_the_exact_totals() {
    let r = run(
        &spec(OperationKind::Harvested, 2000, true, false),
        UnitSystem::Default,
        true,
    );
    let features = r.standard["features"].as_array().unwrap();
    assert_eq!(features.len(), r.truth.points);
    for (f, c) in features.iter().zip(&r.truth.coordinates) {
        assert_eq!(f["geometry"]["type"], "Point");
        // serde_json's default float parsing may be one ulp off ryu's exact output.
        assert!((f["geometry"]["coordinates"][0].as_f64().unwrap() - c[0]).abs() < 1e-12);
        assert!((f["geometry"]["coordinates"][1].as_f64().unwrap() - c[1]).abs() < 1e-12);
    }
    let props = features[100]["properties"].as_object().unwrap();
    for key in [
        "distance",
        "heading",
        "speed",
        "elevation",
        "equipmentWidth",
        "area",
        "harvestMoisture",
        "wetMass",
        "wetMassPerArea",
        "wetVolume",
        "wetVolumePerArea",
        "dryMass",
        "dryMassPerArea",
        "dryVolume",
        "dryVolumePerArea",
        "timestamp",
        "operationType",
        "crop",
        "variety",
        "machinery",
    ] {
        assert!(props.contains_key(key), "{key} missing from {props:?}");
    }
    assert_eq!(props["operationType"], "harvested");
    assert_eq!(props["crop"], "corn");
    // DEFAULT keeps John Deere's ENGLISH units, named as Leaf names them.
    assert_eq!(r.processed.units["speed"], "mi/hr");
    assert_eq!(r.processed.units["wetMass"], "lb");
    assert_eq!(r.processed.units["dryVolumePerArea"], "bu/ac");
    assert_eq!(r.processed.units["area"], "m2");

    let s = &r.processed.summary["properties"];
    assert_eq!(s["operationType"], "harvested");
    assert_eq!(s["totalArea"]["unit"], "m2");
    assert!(close(
        s["totalArea"]["value"].as_f64().unwrap(),
        r.truth.area_m2,
        1e-9
    ));
    let lb = si_factor("lb").unwrap();
    assert!(close(
        s["totalWetMass"]["value"].as_f64().unwrap() * lb,
        r.truth.wet_mass_kg,
        1e-9
    ));
    let bu = si_factor("bu").unwrap();
    assert!(close(
        s["totalDryVolume"]["value"].as_f64().unwrap() * bu,
        r.truth.dry_volume_m3,
        1e-9
    ));
    assert_eq!(s["varieties"][0]["name"], "P1185");
    assert_eq!(
        s["machinery"].as_array().unwrap().len(),
        2,
        "both machines worked"
    );
    assert_eq!(r.processed.summary["geometry"]["type"], "MultiPolygon");

    // Filtered: the zero-speed, outside and outlier points go, nothing else.
    let removed = r.processed.removed;
    assert_eq!(removed.slow, r.truth.zero_speed_points);
    assert_eq!(removed.outside_boundary, r.truth.outside_points);
    assert_eq!(removed.outliers, r.truth.outlier_points);
    let kept = r.filtered["features"].as_array().unwrap().len();
    assert_eq!(
        kept,
        r.truth.points
            - r.truth.zero_speed_points
            - r.truth.outside_points
            - r.truth.outlier_points
    );
    assert_eq!(kept, r.processed.filtered_points);
    // Coverage: everything but the road points' area is inside the field.
    let coverage = r.processed.coverage.unwrap();
    assert!(coverage > 98.0 && coverage < 100.0, "{coverage}");

    let names: Vec<&str> = r
        .processed
        .images
        .iter()
        .map(|i| i.property.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "dryVolumePerArea",
            "wetMassPerArea",
            "harvestMoisture",
            "speed",
            "elevation"
        ]
    );
    let image = &r.processed.images[0];
    assert_eq!(&image.png[1..4], b"PNG");
    // The image's extent covers the field (filtered points are all inside it).
    assert!(image.extent.xmin >= FIELD[0][0] && image.extent.xmax <= FIELD[1][0]);
    assert!(image.extent.xmax - image.extent.xmin > 0.9 * (FIELD[1][0] - FIELD[0][0]));
}

#[test]
fn outliers_stay_when_their_removal_is_off() {
    let r = run(
        &spec(OperationKind::Harvested, 1500, true, false),
        UnitSystem::Default,
        false,
    );
    assert_eq!(r.processed.removed.outliers, 0);
    assert_eq!(
        r.processed.filtered_points,
        r.truth.points - r.truth.zero_speed_points - r.truth.outside_points
    );
}

#[test]
fn imperial_and_metric_convert_every_unit() {
    let metric_source = spec(OperationKind::Planted, 1200, false, false);
    let imperial = run(&metric_source, UnitSystem::Imperial, true);
    assert_eq!(imperial.processed.units["speed"], "ft/s");
    assert_eq!(imperial.processed.units["seedRate"], "seeds/ac");
    assert_eq!(imperial.processed.units["downForce"], "lbf");
    let s = &imperial.processed.summary["properties"];
    assert_eq!(s["totalArea"]["unit"], "ac");
    assert!(close(
        s["totalArea"]["value"].as_f64().unwrap() * 4_046.856_422_4,
        imperial.truth.area_m2,
        1e-9
    ));
    let seed_rate = s["seedRate"]["avg"].as_f64().unwrap();
    assert!(
        seed_rate > 30_000.0 && seed_rate < 40_000.0,
        "{seed_rate} seeds/ac"
    );
    assert!(close(
        s["totalPlanted"]["value"].as_f64().unwrap(),
        imperial.truth.seeds.round(),
        1e-9
    ));

    let metric = run(
        &spec(OperationKind::Applied, 1200, true, false),
        UnitSystem::Metric,
        true,
    );
    assert_eq!(metric.processed.units["speed"], "m/s");
    assert_eq!(metric.processed.units["appliedRate"], "L/ha");
    let s = &metric.processed.summary["properties"];
    assert_eq!(s["totalArea"]["unit"], "ha");
    assert!(close(
        s["totalApplied"]["value"].as_f64().unwrap() / 1000.0,
        metric.truth.applied_m3,
        1e-9
    ));
    let rate = s["appliedRate"]["avg"].as_f64().unwrap();
    // 15 gal/ac is 140 L/ha; zero-speed points pull the plain mean down a little.
    assert!(rate > 120.0 && rate < 150.0, "{rate} L/ha");
    assert_eq!(s["products"][0]["name"], "Fastac EC");
}

#[test]
fn tillage_and_polygon_exports_are_read() {
    let r = run(
        &spec(OperationKind::Tillage, 800, true, true),
        UnitSystem::Default,
        true,
    );
    let features = r.standard["features"].as_array().unwrap();
    assert_eq!(features.len(), 800);
    assert_eq!(features[0]["geometry"]["type"], "Polygon");
    assert_eq!(
        features[0]["geometry"]["coordinates"][0]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(r.processed.units["tillageDepthActual"], "in");
    let depth = r.processed.summary["properties"]["tillageDepthTarget"]["avg"]
        .as_f64()
        .unwrap();
    assert!((depth - 4.0).abs() < 0.01, "{depth} in");
}
