//! Synthetic but realistic John Deere exports, for the simulator and benchmarks: a machine
//! drives passes across the field (boustrophedon, one point per `spacing` along the pass),
//! with the defects real data has — zero-speed points at headland turns, a few points driven
//! outside the boundary, a yield spike (harvest), and the last quarter of passes by a second
//! machine. Everything is a pure function of the spec; [`Truth`] tells what was written.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use dbase::{FieldWriter, TableWriterBuilder, WritableRecord};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use zip::write::SimpleFileOptions;

use crate::geo::{crossings, Local};
use crate::layout::{self, Col, OperationKind, COLUMN_COUNT};
use crate::units::si_factor;
use crate::DataError;

#[derive(Debug, Clone)]
pub struct SynthMachine {
    pub machine_id: u64,
    pub serial: String,
    pub name: String,
    pub make: String,
    pub operator_id: String,
    pub operator_name: String,
}

#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub kind: OperationKind,
    /// Points in the export, defects included.
    pub points: usize,
    pub seed: u64,
    /// The field's rings, [lon, lat]: the exterior first, then holes the machine drives around.
    pub boundary: Vec<Vec<[f64; 2]>>,
    pub start_ms: i64,
    /// John Deere's ENGLISH units (else METRIC).
    pub english: bool,
    pub crop: String,
    pub variety: String,
    pub product: String,
    /// The first drives most passes; the second the last quarter.
    pub machines: [SynthMachine; 2],
    /// One polygon per point (`shapeType=Polygon`) instead of a point.
    pub polygons: bool,
}

/// What the export holds, for tests to compare against.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Truth {
    pub points: usize,
    pub zero_speed_points: usize,
    pub outlier_points: usize,
    pub outside_points: usize,
    pub second_machine_points: usize,
    /// Per `.dbf` column, the sum of the written values in SI units.
    pub column_totals_si: BTreeMap<String, f64>,
    /// Σ distance × swath width, m².
    pub area_m2: f64,
    /// Σ wet mass (kg), harvest.
    pub wet_mass_kg: f64,
    /// Σ dry yield volume per area × area (m³), harvest.
    pub dry_volume_m3: f64,
    /// Σ seed rate × area, planting.
    pub seeds: f64,
    /// Σ applied rate × area (m³), application.
    pub applied_m3: f64,
    /// Coordinates of every point in file order (centres for polygons).
    pub coordinates: Vec<[f64; 2]>,
    /// [min lon, min lat, max lon, max lat] of the points.
    pub extent: [f64; 4],
}

/// Swath width (m) and working speed (m/s) by kind.
fn implement(kind: OperationKind) -> (f64, f64) {
    match kind {
        OperationKind::Harvested => (10.668, 2.2),
        OperationKind::Planted => (12.192, 2.7),
        OperationKind::Applied => (27.432, 5.0),
        OperationKind::Tillage => (9.144, 3.0),
    }
}

/// Corn: kg per m³ of grain at a 56 lb bushel.
const GRAIN_DENSITY: f64 = 720.8;

struct Point {
    lon: f64,
    lat: f64,
    time_ms: i64,
    machine: u16,
    /// Values in SI, per column.
    nums: [f64; COLUMN_COUNT],
}

struct Record<'a> {
    spec: &'a SynthSpec,
    columns: &'a [(Col, f64, u8)],
    point: &'a Point,
}

impl WritableRecord for Record<'_> {
    fn write_using<W: Write>(&self, w: &mut FieldWriter<'_, W>) -> Result<(), dbase::FieldError> {
        w.write_next_field_value(&f64::from(self.point.machine))?;
        let time = chrono::DateTime::from_timestamp_millis(self.point.time_ms)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        w.write_next_field_value(&time)?;
        w.write_next_field_value(&self.spec.crop.as_str())?;
        match self.spec.kind {
            OperationKind::Planted | OperationKind::Harvested => {
                w.write_next_field_value(&self.spec.variety.as_str())?
            }
            OperationKind::Applied => w.write_next_field_value(&self.spec.product.as_str())?,
            OperationKind::Tillage => {}
        }
        for (col, factor, decimals) in self.columns {
            let value = rounded(self.point.nums[*col as usize] / factor, *decimals);
            w.write_next_field_value(&value)?;
        }
        Ok(())
    }
}

fn rounded(value: f64, decimals: u8) -> f64 {
    let scale = 10f64.powi(decimals as i32);
    (value * scale).round() / scale
}

/// Writes the export zip and says what it holds.
pub fn synthesize(spec: &SynthSpec) -> Result<(Vec<u8>, Truth), DataError> {
    let walked = walk(spec)?;
    let points = &walked.points;
    // Each column with its factor from SI to the unit written, and its decimals.
    let columns: Vec<(Col, f64, u8)> = spec
        .kind
        .columns()
        .iter()
        .map(|&col| {
            let s = col.spec();
            let unit = if spec.english { s.english } else { s.metric };
            (col, si_factor(unit).unwrap_or(1.0), s.decimals)
        })
        .collect();

    let name = |n: &str| n.try_into().map_err(|e: &str| DataError::Invalid(e.into()));
    let mut table = TableWriterBuilder::new()
        .add_numeric_field(name(layout::MACHINE_COLUMN)?, 3, 0)
        .add_character_field(name(layout::TIME_COLUMN)?, 24)
        .add_character_field(name(layout::CROP_COLUMN)?, 24);
    match spec.kind {
        OperationKind::Planted | OperationKind::Harvested => {
            table = table.add_character_field(name(layout::VARIETY_COLUMN)?, 32)
        }
        OperationKind::Applied => {
            table = table.add_character_field(name(layout::PRODUCT_COLUMN)?, 32)
        }
        OperationKind::Tillage => {}
    }
    for (col, _, decimals) in &columns {
        table = table.add_numeric_field(name(col.spec().name)?, 14, *decimals);
    }
    let (mut shp, mut shx, mut dbf) = (
        Cursor::new(Vec::new()),
        Cursor::new(Vec::new()),
        Cursor::new(Vec::new()),
    );
    let mut truth = Truth {
        points: points.len(),
        extent: [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ],
        ..Truth::default()
    };
    {
        let shapes = shapefile::ShapeWriter::with_shx(&mut shp, &mut shx);
        let mut writer = shapefile::Writer::new(shapes, table.build_with_dest(&mut dbf));
        let local = Local::new(spec.boundary[0][0][0], spec.boundary[0][0][1]);
        let invalid = |e: shapefile::Error| DataError::Invalid(e.to_string());
        for p in points {
            let record = Record {
                spec,
                columns: &columns,
                point: p,
            };
            if spec.polygons {
                let ring = swath_rectangle(&local, p);
                let polygon = shapefile::Polygon::new(shapefile::PolygonRing::Outer(ring));
                writer
                    .write_shape_and_record(&polygon, &record)
                    .map_err(invalid)?;
            } else {
                writer
                    .write_shape_and_record(&shapefile::Point::new(p.lon, p.lat), &record)
                    .map_err(invalid)?;
            }
            // What a reader gets back: the rounded value in the written unit, in SI.
            let mut written = [f64::NAN; COLUMN_COUNT];
            for (col, factor, decimals) in &columns {
                let v = rounded(p.nums[*col as usize] / factor, *decimals) * factor;
                written[*col as usize] = v;
                *truth
                    .column_totals_si
                    .entry(col.spec().name.to_string())
                    .or_default() += v;
            }
            let area = written[Col::Distance as usize] * written[Col::SwathWidth as usize];
            truth.area_m2 += area;
            match spec.kind {
                OperationKind::Harvested => {
                    truth.wet_mass_kg += written[Col::WetMass as usize];
                    truth.dry_volume_m3 += written[Col::DryYieldVolume as usize] * area;
                }
                OperationKind::Planted => truth.seeds += written[Col::SeedRate as usize] * area,
                OperationKind::Applied => {
                    truth.applied_m3 += written[Col::AppliedRate as usize] * area
                }
                OperationKind::Tillage => {}
            }
            truth.coordinates.push([p.lon, p.lat]);
            truth.extent = [
                truth.extent[0].min(p.lon),
                truth.extent[1].min(p.lat),
                truth.extent[2].max(p.lon),
                truth.extent[3].max(p.lat),
            ];
            truth.second_machine_points += usize::from(p.machine == 1);
        }
        // Both writers write their headers (sizes, record counts) when dropped.
        drop(writer);
    }
    truth.zero_speed_points = points
        .iter()
        .filter(|p| p.nums[Col::Speed as usize] == 0.0)
        .count();
    truth.outside_points = walked.outside;
    truth.outlier_points = walked.outliers;

    let units: BTreeMap<&str, &str> = columns
        .iter()
        .map(|(col, _, _)| {
            let s = col.spec();
            (s.name, if spec.english { s.english } else { s.metric })
        })
        .collect();
    let machines: BTreeMap<String, serde_json::Value> = spec
        .machines
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                i.to_string(),
                serde_json::json!({
                    "MachineId": m.machine_id, "MachineSerial": m.serial, "OperatorId": m.operator_id,
                    "MachineName": m.name, "Make": m.make, "OperatorName": m.operator_name,
                }),
            )
        })
        .collect();
    let sidecar = serde_json::json!({
        "uom": if spec.english { "ENGLISH" } else { "METRIC" },
        "units": units,
        "machines": machines,
    });
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let zip_error = |e: zip::result::ZipError| DataError::Invalid(e.to_string());
    for (entry, bytes) in [
        ("fieldOperation.shp", shp.into_inner()),
        ("fieldOperation.shx", shx.into_inner()),
        ("fieldOperation.dbf", dbf.into_inner()),
        (
            "fieldOperation.prj",
            br#"GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]"#.to_vec(),
        ),
        (layout::SIDECAR, sidecar.to_string().into_bytes()),
    ] {
        zip.start_file(entry, options).map_err(zip_error)?;
        zip.write_all(&bytes)?;
    }
    let bytes = zip.finish().map_err(zip_error)?.into_inner();
    Ok((bytes, truth))
}

/// The swath a point stands for, as a closed ring (clockwise, as shapefiles want outer rings).
fn swath_rectangle(local: &Local, p: &Point) -> Vec<shapefile::Point> {
    let (x, y) = local.to_xy(p.lon, p.lat);
    let half_w = p.nums[Col::SwathWidth as usize] / 2.0;
    let half_d = p.nums[Col::Distance as usize].max(0.1) / 2.0;
    let heading = p.nums[Col::Heading as usize].to_radians();
    // Heading is clockwise from north: along = (sin, cos), across = (cos, -sin).
    let (ax, ay) = (heading.sin(), heading.cos());
    let (cx, cy) = (ay, -ax);
    let corner = |s: f64, t: f64| {
        let (lon, lat) = local.to_lonlat(
            x + ax * s * half_d + cx * t * half_w,
            y + ay * s * half_d + cy * t * half_w,
        );
        shapefile::Point::new(lon, lat)
    };
    vec![
        corner(-1.0, -1.0),
        corner(1.0, -1.0),
        corner(1.0, 1.0),
        corner(-1.0, 1.0),
        corner(-1.0, -1.0),
    ]
}

/// The passes, in metres: (y, x_from, x_to) for each stretch inside the field (between the
/// crossings of every ring, so holes are driven around).
fn passes(rings: &[Vec<(f64, f64)>], width: f64) -> Vec<(f64, f64, f64)> {
    let (ymin, ymax) = rings[0]
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let mut out = Vec::new();
    let mut y = ymin + width / 2.0;
    let mut forward = true;
    while y < ymax {
        let mut xs: Vec<f64> = rings.iter().flat_map(|r| crossings(r, y)).collect();
        xs.sort_by(f64::total_cmp);
        let mut segments: Vec<(f64, f64)> = xs
            .chunks_exact(2)
            .map(|c| (c[0] + 0.5, c[1] - 0.5))
            .filter(|(a, b)| b > a)
            .collect();
        if !forward {
            segments.reverse();
        }
        for (a, b) in segments {
            out.push(if forward { (y, a, b) } else { (y, b, a) });
        }
        forward = !forward;
        y += width;
    }
    out
}

struct Walked {
    points: Vec<Point>,
    outside: usize,
    outliers: usize,
}

fn walk(spec: &SynthSpec) -> Result<Walked, DataError> {
    if spec.boundary.first().is_none_or(|r| r.len() < 3) {
        return Err(DataError::Invalid("the boundary needs three points".into()));
    }
    let local = Local::new(spec.boundary[0][0][0], spec.boundary[0][0][1]);
    let rings: Vec<Vec<(f64, f64)>> = spec
        .boundary
        .iter()
        .map(|ring| ring.iter().map(|p| local.to_xy(p[0], p[1])).collect())
        .collect();
    let ring = &rings[0];
    let (width, speed) = implement(spec.kind);
    let segments = passes(&rings, width);
    if segments.is_empty() {
        return Err(DataError::Invalid(
            "the field is narrower than one pass".into(),
        ));
    }
    let n = spec.points.max(10);
    let outside = (n / 200).max(2);
    let zero = (3 * (segments.len() - 1)).min(n / 20);
    let main = n - outside - zero;
    let outliers = if spec.kind == OperationKind::Harvested {
        (main / 500).max(1)
    } else {
        0
    };
    let total: f64 = segments.iter().map(|s| (s.2 - s.1).abs()).sum();
    let spacing = total / main as f64;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut out = Vec::with_capacity(n);
    let mut time = spec.start_ms;
    let xmin = ring.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let y0 = segments[0].0;

    let point = |x: f64, y: f64, heading: f64, distance: f64, machine: u16, rng: &mut StdRng| {
        let (lon, lat) = local.to_lonlat(x, y);
        let mut nums = [f64::NAN; COLUMN_COUNT];
        let moving = distance > 0.0;
        let v = if moving {
            speed * rng.random_range(0.95..1.05)
        } else {
            0.0
        };
        nums[Col::Distance as usize] = distance;
        nums[Col::Heading as usize] = heading;
        nums[Col::SwathWidth as usize] = width;
        nums[Col::Speed as usize] = v;
        nums[Col::Elevation as usize] = 180.0 + 3.0 * (x / 150.0).sin() + 2.0 * (y / 120.0).cos();
        let area = distance * width;
        let pattern = 1.0 + 0.12 * (x / 90.0).sin() * (y / 70.0).cos();
        match spec.kind {
            OperationKind::Harvested => {
                let yield_kg_m2 = if moving {
                    1.1 * pattern * rng.random_range(0.97..1.03)
                } else {
                    0.0
                };
                let moisture = 18.0 + 2.0 * (y / 80.0).sin() + rng.random_range(-0.5..0.5);
                nums[Col::WetMass as usize] = yield_kg_m2 * area;
                nums[Col::Moisture as usize] = moisture;
                nums[Col::DryYieldVolume as usize] =
                    yield_kg_m2 * (1.0 - moisture / 100.0) / (1.0 - 0.155) / GRAIN_DENSITY;
            }
            OperationKind::Planted => {
                let target = 34_000.0 / 4_046.856_422_4;
                nums[Col::SeedRateTarget as usize] = target;
                nums[Col::SeedRate as usize] = if moving {
                    target * pattern.sqrt() * rng.random_range(0.97..1.03)
                } else {
                    0.0
                };
                nums[Col::DownForce as usize] = 534.0 * rng.random_range(0.8..1.2);
                nums[Col::Singulation as usize] = rng.random_range(98.0..100.0);
                nums[Col::Skips as usize] = rng.random_range(0.0..1.5);
                nums[Col::Doubles as usize] = rng.random_range(0.0..1.2);
            }
            OperationKind::Applied => {
                let target = 15.0 * 0.003_785_411_784 / 4_046.856_422_4;
                nums[Col::AppliedRateTarget as usize] = target;
                nums[Col::AppliedRate as usize] = if moving {
                    target * rng.random_range(0.96..1.04)
                } else {
                    0.0
                };
            }
            OperationKind::Tillage => {
                nums[Col::DepthTarget as usize] = 0.1016;
                nums[Col::Depth as usize] = 0.1016 + rng.random_range(-0.005..0.005);
            }
        }
        Point {
            lon,
            lat,
            time_ms: 0,
            machine,
            nums,
        }
    };

    // Driving in from the road: points west of the field, outside its boundary.
    for i in 0..outside {
        let x = xmin - 30.0 - (outside - i) as f64 * spacing;
        let mut p = point(x, y0, 90.0, spacing, 0, &mut rng);
        time += (spacing / speed * 1000.0) as i64;
        p.time_ms = time;
        out.push(p);
    }
    let zero_per_turn = 3;
    let mut zero_left = zero;
    let second_from = segments.len() * 3 / 4;
    let outlier_every = main.checked_div(outliers).unwrap_or(usize::MAX);
    let mut placed = 0usize;
    let mut offset = spacing / 2.0;
    for (s, &(y, from, to)) in segments.iter().enumerate() {
        let length = (to - from).abs();
        let dir = (to - from).signum();
        let heading = if dir > 0.0 { 90.0 } else { 270.0 };
        let machine = u16::from(s >= second_from);
        let mut at = offset;
        let mut last = None;
        while at <= length && placed < main {
            let x = from + dir * at;
            let mut p = point(x, y, heading, spacing, machine, &mut rng);
            if spec.kind == OperationKind::Harvested && placed % outlier_every == outlier_every / 2
            {
                p.nums[Col::WetMass as usize] *= 8.0;
                p.nums[Col::DryYieldVolume as usize] *= 8.0;
            }
            time += (spacing / p.nums[Col::Speed as usize] * 1000.0) as i64;
            p.time_ms = time;
            last = Some((x, y, heading, machine));
            out.push(p);
            placed += 1;
            at += spacing;
        }
        offset = at - length;
        // The headland turn: the machine stands still for a few seconds.
        if let Some((x, y, heading, machine)) = last {
            if s + 1 < segments.len() {
                for _ in 0..zero_per_turn.min(zero_left) {
                    let mut p = point(x, y, heading, 0.0, machine, &mut rng);
                    time += 1000;
                    p.time_ms = time;
                    out.push(p);
                    zero_left -= 1;
                }
            }
        }
    }
    // Rounding can leave the last pass a point short.
    while placed < main {
        let &(y, _, to) = segments.last().expect("checked above");
        let mut p = point(to, y, 90.0, spacing, 1, &mut rng);
        time += 1000;
        p.time_ms = time;
        out.push(p);
        placed += 1;
    }
    while zero_left > 0 {
        let last = out.last().expect("points were placed");
        let (x, y) = local.to_xy(last.lon, last.lat);
        let mut p = point(x, y, 90.0, 0.0, last.machine, &mut rng);
        time += 1000;
        p.time_ms = time;
        out.push(p);
        zero_left -= 1;
    }
    Ok(Walked {
        points: out,
        outside,
        outliers,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(kind: OperationKind, points: usize) -> SynthSpec {
        let machine = |i: u64| SynthMachine {
            machine_id: 637_795 + i,
            serial: format!("1H0S780SXXX00000{i}"),
            name: format!("Combine {i}"),
            make: "John Deere".into(),
            operator_id: format!("OP-{i}"),
            operator_name: format!("Operator {i}"),
        };
        SynthSpec {
            kind,
            points,
            seed: 7,
            boundary: vec![vec![
                [-89.8080, 40.4700],
                [-89.8000, 40.4700],
                [-89.8000, 40.4760],
                [-89.8080, 40.4760],
                [-89.8080, 40.4700],
            ]],
            start_ms: 1_696_342_333_000,
            english: true,
            crop: "CORN_WET".into(),
            variety: "P1185".into(),
            product: "Fastac EC".into(),
            machines: [machine(0), machine(1)],
            polygons: false,
        }
    }

    #[test]
    fn exports_hold_exactly_the_requested_points_with_defects() {
        for kind in [
            OperationKind::Harvested,
            OperationKind::Planted,
            OperationKind::Applied,
            OperationKind::Tillage,
        ] {
            let (zip, truth) = synthesize(&spec(kind, 3000)).unwrap();
            assert_eq!(&zip[..4], b"PK\x03\x04");
            assert_eq!(truth.points, 3000, "{kind:?}");
            assert_eq!(truth.coordinates.len(), 3000);
            assert!(truth.zero_speed_points > 0 && truth.outside_points > 0);
            assert!(truth.second_machine_points > 0);
            assert_eq!(truth.outlier_points > 0, kind == OperationKind::Harvested);
            // Roughly the field: 0.008° × 0.006° at 40.47° is about 678 m × 667 m = 45 ha.
            assert!(
                truth.area_m2 > 400_000.0 && truth.area_m2 < 460_000.0,
                "{}",
                truth.area_m2
            );
        }
        // Deterministic.
        let a = synthesize(&spec(OperationKind::Harvested, 500)).unwrap();
        let b = synthesize(&spec(OperationKind::Harvested, 500)).unwrap();
        assert_eq!(a.0, b.0);
    }
}
