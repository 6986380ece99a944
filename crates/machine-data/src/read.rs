//! Reads a shapefile export zip into columns held once in memory: coordinates, time, machine
//! index, text attributes as indexes into a name table, and every numeric column in SI units.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use dbase::{FieldIterator, FieldValue, ReadableRecord};
use serde::Deserialize;
use shapefile::{ShapeReader, ShapeType};

use crate::layout::{self, Col, COLUMNS, COLUMN_COUNT};
use crate::units::si_factor;
use crate::DataError;

/// One machine of the sidecar JSON, keyed by the `.dbf` machine index.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct MachineInfo {
    #[serde(default)]
    pub machine_id: Option<serde_json::Value>,
    #[serde(default)]
    pub machine_serial: Option<String>,
    #[serde(default)]
    pub operator_id: Option<String>,
    #[serde(default)]
    pub machine_name: Option<String>,
    #[serde(default)]
    pub make: Option<String>,
    #[serde(default)]
    pub operator_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Sidecar {
    #[serde(default)]
    uom: Option<String>,
    #[serde(default)]
    units: HashMap<String, String>,
    #[serde(default)]
    machines: HashMap<String, MachineInfo>,
}

/// Geometry of the points: a point each, or a polygon each (`shapeType=Polygon`).
#[derive(Debug, Default)]
pub struct Polygons {
    /// Flat [lon, lat] pairs of every polygon's rings.
    pub coords: Vec<[f64; 2]>,
    /// For polygon i, its rings are `ring_starts[poly_starts[i]..poly_starts[i + 1]]`.
    pub ring_starts: Vec<u32>,
    pub poly_starts: Vec<u32>,
}

/// An export held in columns. `lon`/`lat` are the point (or the polygon's centre).
#[derive(Debug, Default)]
pub struct Export {
    pub lon: Vec<f64>,
    pub lat: Vec<f64>,
    pub time_ms: Vec<i64>,
    pub machine: Vec<u16>,
    /// Per column, the values in SI units (NaN where the record had none); empty when the
    /// export has no such column.
    pub columns: Vec<Vec<f64>>,
    pub crop: Vec<u32>,
    pub variety: Vec<u32>,
    pub product: Vec<u32>,
    /// Interned text values; index 0 is the empty string.
    pub names: Vec<String>,
    pub machines: Vec<MachineInfo>,
    /// John Deere exported in its ENGLISH system (what `DEFAULT` units keep).
    pub english: bool,
    pub polygons: Option<Polygons>,
}

impl Export {
    /// Appends the records of `other` (read from the same file), re-indexing its names.
    fn append(&mut self, other: Export) {
        let mut index: HashMap<String, u32> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        let remap: Vec<u32> = other
            .names
            .into_iter()
            .map(|name| {
                *index.entry(name.clone()).or_insert_with(|| {
                    self.names.push(name);
                    (self.names.len() - 1) as u32
                })
            })
            .collect();
        for (mine, theirs) in self.columns.iter_mut().zip(other.columns) {
            mine.extend(theirs);
        }
        self.time_ms.extend(other.time_ms);
        self.machine.extend(other.machine);
        self.crop
            .extend(other.crop.iter().map(|&i| remap[i as usize]));
        self.variety
            .extend(other.variety.iter().map(|&i| remap[i as usize]));
        self.product
            .extend(other.product.iter().map(|&i| remap[i as usize]));
    }

    pub fn len(&self) -> usize {
        self.lon.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lon.is_empty()
    }

    pub fn has(&self, col: Col) -> bool {
        !self.columns[col as usize].is_empty()
    }

    pub fn value(&self, col: Col, i: usize) -> f64 {
        self.columns[col as usize]
            .get(i)
            .copied()
            .unwrap_or(f64::NAN)
    }

    pub fn name(&self, index: u32) -> &str {
        &self.names[index as usize]
    }
}

/// One `.dbf` record as read: numbers in the export's units, text as given.
struct Row {
    nums: [f64; COLUMN_COUNT],
    machine: f64,
    time: Option<String>,
    crop: Option<String>,
    variety: Option<String>,
    product: Option<String>,
}

impl ReadableRecord for Row {
    fn read_using<S: Read + Seek, M: Read + Seek>(
        fields: &mut FieldIterator<S, M>,
    ) -> Result<Self, dbase::FieldError> {
        let mut row = Row {
            nums: [f64::NAN; COLUMN_COUNT],
            machine: 0.0,
            time: None,
            crop: None,
            variety: None,
            product: None,
        };
        // The iterator ends at the record's last field.
        for field in fields.by_ref() {
            let field = field?;
            let number = match &field.value {
                FieldValue::Numeric(v) => *v,
                FieldValue::Float(v) => v.map(f64::from),
                FieldValue::Double(v) => Some(*v),
                FieldValue::Integer(v) => Some(f64::from(*v)),
                _ => None,
            };
            let text = match field.value {
                FieldValue::Character(s) => s,
                _ => None,
            };
            match field.name {
                layout::TIME_COLUMN => row.time = text,
                layout::CROP_COLUMN => row.crop = text,
                layout::VARIETY_COLUMN => row.variety = text,
                layout::PRODUCT_COLUMN => row.product = text,
                layout::MACHINE_COLUMN => row.machine = number.unwrap_or(0.0),
                name => {
                    if let Some(col) = Col::by_name(name) {
                        row.nums[col as usize] = number.unwrap_or(f64::NAN);
                    }
                }
            }
        }
        Ok(row)
    }
}

/// Interns text values so that a million points share a handful of strings.
#[derive(Default)]
struct Interner {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Interner {
    fn new() -> Self {
        let mut i = Self::default();
        i.intern(Some(String::new()));
        i
    }

    fn intern(&mut self, value: Option<String>) -> u32 {
        let value = value.unwrap_or_default();
        if let Some(&i) = self.index.get(&value) {
            return i;
        }
        let i = self.names.len() as u32;
        self.index.insert(value.clone(), i);
        self.names.push(value);
        i
    }
}

/// Reads `zip_path`: the `.shp` and the `.dbf` are decompressed and parsed at the same time,
/// each on its own thread, straight from the archive.
pub fn read_export(zip_path: &Path) -> Result<Export, DataError> {
    read_with(|| Ok(BufReader::new(File::open(zip_path)?)), SPLIT_FROM)
}

/// [`read_export`] of a zip in memory.
pub fn read_export_bytes(zip: &[u8]) -> Result<Export, DataError> {
    read_with(|| Ok(std::io::Cursor::new(zip)), SPLIT_FROM)
}

/// Exports of at least this many records are read by two threads.
const SPLIT_FROM: usize = 100_000;

/// Reads an export whose bytes `source` opens (once per reading thread).
fn read_with<R, F>(source: F, split_from: usize) -> Result<Export, DataError>
where
    R: Read + Seek + Send,
    F: Fn() -> Result<R, DataError> + Sync,
{
    let open = || -> Result<zip::ZipArchive<R>, DataError> {
        zip::ZipArchive::new(source()?)
            .map_err(|e| DataError::Invalid(format!("not a zip archive: {e}")))
    };
    let mut archive = open()?;
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let find = |suffix: &str| {
        names
            .iter()
            .find(|n| n.to_ascii_lowercase().ends_with(suffix))
            .cloned()
            .ok_or_else(|| DataError::Invalid(format!("the export has no {suffix} file")))
    };
    let (shp_name, dbf_name) = (find(".shp")?, find(".dbf")?);
    let sidecar: Sidecar = match names.iter().find(|n| n.ends_with(".json")) {
        Some(name) => {
            let mut text = String::new();
            archive
                .by_name(name)
                .map_err(|e| DataError::Invalid(e.to_string()))?
                .read_to_string(&mut text)?;
            serde_json::from_str(&text).map_err(|e| DataError::Invalid(format!("{name}: {e}")))?
        }
        None => Sidecar {
            uom: None,
            units: HashMap::new(),
            machines: HashMap::new(),
        },
    };
    let english = !matches!(sidecar.uom.as_deref(), Some("METRIC"));
    let max_index = sidecar
        .machines
        .keys()
        .filter_map(|k| k.parse::<usize>().ok())
        .max();
    let machines = (0..=max_index.unwrap_or(0))
        .map(|i| {
            sidecar
                .machines
                .get(&i.to_string())
                .cloned()
                .unwrap_or_default()
        })
        .collect();

    // The attribute records are split in two halves read at once (the second reader inflates
    // its way past the first half): parsing them is most of the work.
    let dbf = |archive: &mut zip::ZipArchive<R>, range: Option<(usize, usize)>| {
        let file = archive
            .by_name(&dbf_name)
            .map_err(|e| DataError::Invalid(e.to_string()))?;
        read_records(
            ForwardSeek::new(BufReader::with_capacity(1 << 16, file)),
            &sidecar,
            english,
            range,
        )
    };
    let records_total = {
        let file = archive
            .by_name(&dbf_name)
            .map_err(|e| DataError::Invalid(e.to_string()))?;
        dbase::Reader::new(ForwardSeek::new(BufReader::new(file)))
            .map_err(|e| DataError::Invalid(format!("dbf: {e}")))?
            .header()
            .num_records as usize
    };
    let half = if records_total >= split_from {
        records_total / 2
    } else {
        records_total
    };
    let (shapes, records) = std::thread::scope(|scope| {
        let shapes = scope.spawn(|| {
            let mut archive = open()?;
            let file = archive
                .by_name(&shp_name)
                .map_err(|e| DataError::Invalid(e.to_string()))?;
            read_shapes(ForwardSeek::new(BufReader::with_capacity(1 << 16, file)))
        });
        let second = (half < records_total)
            .then(|| scope.spawn(|| dbf(&mut open()?, Some((half, records_total - half)))));
        let failed = || DataError::Invalid("a reader thread failed".into());
        let records = dbf(&mut archive, Some((0, half))).and_then(|mut first| {
            if let Some(second) = second {
                first.append(second.join().map_err(|_| failed())??);
            }
            Ok(first)
        });
        (shapes.join().map_err(|_| failed()).and_then(|s| s), records)
    });
    let (lon, lat, polygons) = shapes?;
    let records = records?;
    if records.time_ms.len() != lon.len() {
        return Err(DataError::Invalid(format!(
            "{} shapes but {} attribute records",
            lon.len(),
            records.time_ms.len()
        )));
    }
    Ok(Export {
        lon,
        lat,
        polygons,
        machines,
        english,
        ..records
    })
}

/// Lets the readers "seek" in a decompressing stream: forward only, by reading past bytes.
/// The shapefile and dBase readers only ever move forward when reading front to back. (It
/// wraps the buffer, never the other way round: a `BufReader` turns forward seeks into
/// backward ones on what it wraps.)
struct ForwardSeek<R> {
    inner: R,
    position: u64,
}

impl<R: Read> ForwardSeek<R> {
    fn new(inner: R) -> Self {
        Self { inner, position: 0 }
    }
}

impl<R: Read> Read for ForwardSeek<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Read> Seek for ForwardSeek<R> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::Current(d) => self.position.checked_add_signed(d),
            std::io::SeekFrom::End(_) => None,
        };
        match target {
            Some(t) if t >= self.position => {
                let skip = t - self.position;
                let skipped = std::io::copy(&mut (&mut *self).take(skip), &mut std::io::sink())?;
                if skipped < skip {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                Ok(self.position)
            }
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the export is read front to back",
            )),
        }
    }
}

type Shapes = (Vec<f64>, Vec<f64>, Option<Polygons>);

fn read_shapes<R: Read + Seek>(source: R) -> Result<Shapes, DataError> {
    let mut export = Export::default();
    let mut reader =
        ShapeReader::new(source).map_err(|e| DataError::Invalid(format!("shapefile: {e}")))?;
    let bad = |e: shapefile::Error| DataError::Invalid(format!("shapefile: {e}"));
    match reader.header().shape_type {
        ShapeType::Point | ShapeType::PointM | ShapeType::PointZ => {
            for shape in reader.iter_shapes() {
                let (x, y) = match shape.map_err(bad)? {
                    shapefile::Shape::Point(p) => (p.x, p.y),
                    shapefile::Shape::PointM(p) => (p.x, p.y),
                    shapefile::Shape::PointZ(p) => (p.x, p.y),
                    other => {
                        return Err(DataError::Invalid(format!(
                            "a {} among points",
                            other.shapetype()
                        )))
                    }
                };
                export.lon.push(x);
                export.lat.push(y);
            }
        }
        ShapeType::Polygon => {
            let mut polygons = Polygons::default();
            for shape in reader.iter_shapes_as::<shapefile::Polygon>() {
                let polygon = shape.map_err(bad)?;
                polygons.poly_starts.push(polygons.ring_starts.len() as u32);
                let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
                for ring in polygon.rings() {
                    polygons.ring_starts.push(polygons.coords.len() as u32);
                    for p in ring.points() {
                        polygons.coords.push([p.x, p.y]);
                        sx += p.x;
                        sy += p.y;
                        n += 1.0;
                    }
                }
                export.lon.push(if n > 0.0 { sx / n } else { f64::NAN });
                export.lat.push(if n > 0.0 { sy / n } else { f64::NAN });
            }
            polygons.poly_starts.push(polygons.ring_starts.len() as u32);
            polygons.ring_starts.push(polygons.coords.len() as u32);
            export.polygons = Some(polygons);
        }
        other => {
            return Err(DataError::Invalid(format!(
                "unsupported shape type {other}: points or polygons expected"
            )))
        }
    }
    Ok((export.lon, export.lat, export.polygons))
}

/// The attribute columns; coordinates and machines are filled in by the caller.
/// `range`: the records `(first, count)` to read, else all.
fn read_records<R: Read + Seek>(
    source: R,
    sidecar: &Sidecar,
    english: bool,
    range: Option<(usize, usize)>,
) -> Result<Export, DataError> {
    let mut export = Export {
        english,
        columns: vec![Vec::new(); COLUMN_COUNT],
        ..Export::default()
    };
    let mut reader =
        dbase::Reader::new(source).map_err(|e| DataError::Invalid(format!("dbf: {e}")))?;
    // Each present column's factor from the export's unit to SI.
    let mut factors = [f64::NAN; COLUMN_COUNT];
    for field in reader.fields() {
        let Some(col) = Col::by_name(field.name()) else {
            continue;
        };
        let spec = col.spec();
        let unit = sidecar
            .units
            .get(spec.name)
            .map(String::as_str)
            .unwrap_or(if export.english {
                spec.english
            } else {
                spec.metric
            });
        factors[col as usize] = si_factor(unit).ok_or_else(|| {
            DataError::Invalid(format!("column {}: unknown unit {unit}", spec.name))
        })?;
    }
    let total = reader.header().num_records as usize;
    let (first, n) = range.unwrap_or((0, total));
    if first > 0 {
        reader
            .seek(first)
            .map_err(|e| DataError::Invalid(format!("dbf: {e}")))?;
    }
    for spec in COLUMNS.iter() {
        if !factors[spec.col as usize].is_nan() {
            export.columns[spec.col as usize] = Vec::with_capacity(n);
        }
    }
    export.time_ms.reserve(n);
    export.machine.reserve(n);
    let mut interner = Interner::new();
    let (mut last_time, mut last_ms) = (String::new(), 0i64);
    for row in reader.iter_records_as::<Row>().take(n) {
        let row = row.map_err(|e| DataError::Invalid(format!("dbf: {e}")))?;
        for (i, factor) in factors.iter().enumerate() {
            if !factor.is_nan() {
                export.columns[i].push(row.nums[i] * factor);
            }
        }
        let ms = match row.time {
            // Neighbouring points often share a timestamp string.
            Some(t) if t == last_time => last_ms,
            Some(t) => {
                last_ms = chrono::DateTime::parse_from_rfc3339(&t)
                    .map(|d| d.timestamp_millis())
                    .map_err(|e| {
                        DataError::Invalid(format!("{}: {t}: {e}", layout::TIME_COLUMN))
                    })?;
                last_time = t;
                last_ms
            }
            None => i64::MIN,
        };
        export.time_ms.push(ms);
        export
            .machine
            .push(row.machine.clamp(0.0, u16::MAX as f64) as u16);
        export.crop.push(interner.intern(row.crop));
        export.variety.push(interner.intern(row.variety));
        export.product.push(interner.intern(row.product));
    }
    export.names = interner.names;
    Ok(export)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::tests::spec;
    use crate::OperationKind;

    #[test]
    fn records_read_in_two_halves_equal_one_read() {
        let (zip, truth) = crate::synth::synthesize(&spec(OperationKind::Planted, 3001)).unwrap();
        let open = || Ok(std::io::Cursor::new(zip.as_slice()));
        let whole = read_with(open, usize::MAX).unwrap();
        let halves = read_with(open, 1000).unwrap();
        assert_eq!(whole.len(), truth.points);
        assert_eq!(halves.len(), truth.points);
        assert_eq!(whole.lon, halves.lon);
        assert_eq!(whole.time_ms, halves.time_ms);
        assert_eq!(whole.machine, halves.machine);
        for (a, b) in whole.columns.iter().zip(&halves.columns) {
            assert_eq!(a.len(), b.len());
            assert!(a
                .iter()
                .zip(b)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())));
        }
        let names = |e: &Export, ids: &[u32]| {
            ids.iter()
                .map(|&i| e.name(i).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&whole, &whole.variety),
            names(&halves, &halves.variety)
        );
        assert_eq!(names(&whole, &whole.crop), names(&halves, &halves.crop));
    }
}
