//! `cargo bench -p machine-data --bench process`: reads and processes a synthetic harvest export
//! of `FURROW_BENCH_POINTS` (1,000,000) points — unzip, parse, standard GeoJSON to a file
//! (the filtered one as byte ranges of it), summary, images — and prints points per second and the process's peak memory.

use std::io::BufWriter;
use std::time::Instant;

use machine_data::synth::{synthesize, SynthMachine, SynthSpec};
use machine_data::{process, read_export, OperationKind, Options, OriginalData, UnitSystem};

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn current_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let points: usize = std::env::var("FURROW_BENCH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let machine = |i: u64| SynthMachine {
        machine_id: 1000 + i,
        serial: format!("1H0S780SXXX00000{i}"),
        name: format!("Combine {i}"),
        make: "John Deere".into(),
        operator_id: format!("OP-{i}"),
        operator_name: format!("Operator {i}"),
    };
    // A 160 ha field: 0.016° × 0.009° at 40.47°N.
    let spec = SynthSpec {
        kind: OperationKind::Harvested,
        points,
        seed: 1,
        boundary: vec![vec![
            [-89.816, 40.470],
            [-89.800, 40.470],
            [-89.800, 40.479],
            [-89.816, 40.479],
            [-89.816, 40.470],
        ]],
        start_ms: 1_696_342_333_000,
        english: true,
        crop: "CORN_WET".into(),
        variety: "P1185".into(),
        product: String::new(),
        machines: [machine(0), machine(1)],
        polygons: false,
    };
    let dir = std::env::temp_dir().join(format!("machine-data-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The export is kept between runs: synthesising a million points takes longer than
    // processing them.
    let zip_path = std::env::temp_dir().join(format!("machine-data-bench-export-{points}.zip"));
    if !zip_path.exists() {
        let t = Instant::now();
        let (zip, truth) = synthesize(&spec).expect("synthesise");
        std::fs::write(&zip_path, &zip).unwrap();
        println!(
            "synthesised {} points ({:.1} MiB zip) in {:.1} s",
            truth.points,
            zip.len() as f64 / 1048576.0,
            t.elapsed().as_secs_f64()
        );
    }
    // Forget the high-water mark of what came before (Linux: "5" resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = current_rss_mib().unwrap_or(0.0);

    let t = Instant::now();
    let export = read_export(&zip_path).expect("read");
    let read_s = t.elapsed().as_secs_f64();
    let mut standard = BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(dir.join("standard.geojson")).unwrap(),
    );
    let options = Options {
        kind: OperationKind::Harvested,
        system: UnitSystem::Default,
        remove_outliers: true,
        outliers_limit: 3.0,
        images: true,
        image_size: 512,
        image_properties: None,
        boundary: None,
        original: OriginalData::default(),
    };
    let processed = process(&export, &options, &mut standard).expect("process");
    drop(standard);
    let total = t.elapsed().as_secs_f64();
    let size = |name: &str| {
        std::fs::metadata(dir.join(name))
            .map(|m| m.len())
            .unwrap_or(0) as f64
            / 1048576.0
    };
    println!(
        "read {:.2} s, processed (standard {:.0} MiB, filtered {:.0} MiB as byte ranges of it, {} images) in {:.2} s total",
        read_s,
        size("standard.geojson"),
        processed.filtered.len() as f64 / 1048576.0,
        processed.images.len(),
        total
    );
    println!(
        "{:.0} points/s (goal ≥ 500,000); peak memory {:.0} MiB, of which {:.0} MiB above the {:.0} MiB before processing (goal < 300 MiB)",
        processed.points as f64 / total,
        peak_rss_mib().unwrap_or(0.0),
        peak_rss_mib().unwrap_or(0.0) - before,
        before
    );
    let _ = std::fs::remove_dir_all(dir);
}
