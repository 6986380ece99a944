//! One pass over an export held in columns: every point becomes a standard GeoJSON Feature
//! (serialised once and written to the standard output; the filtered output is the byte ranges
//! of it that hold the points passing Leaf's cleaning), while the summary's statistics
//! accumulate; then the maps are drawn.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Datelike, Timelike};
use serde_json::{json, Map, Value};

use crate::geo::{Boundary, Local};
use crate::image::{Canvas, PropertyImage};
use crate::layout::{Col, OperationKind};
use crate::properties::{normalise_crop, properties, Property, Source, Values};
use crate::read::Export;
use crate::units::{from_si, leaf_unit, si_factor, Quantity, UnitSystem};
use crate::DataError;

/// Leaf's cleaning: slower than this (m/s) is not working.
pub const MIN_SPEED_M_S: f64 = 0.5;

/// The names Leaf repeats under `originalOperationData`.
#[derive(Debug, Clone, Default)]
pub struct OriginalData {
    pub farm: Option<String>,
    pub field: Option<String>,
    pub grower: Option<String>,
    /// John Deere's `fieldOperationType`.
    pub operation_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Options<'a> {
    pub kind: OperationKind,
    pub system: UnitSystem,
    /// `operationsRemoveOutliers`: drop harvest points whose dry volume per area is more than
    /// `outliers_limit` standard deviations from the mean.
    pub remove_outliers: bool,
    pub outliers_limit: f64,
    /// Draw the maps.
    pub images: bool,
    /// Longer side of each map, pixels.
    pub image_size: u32,
    /// Which properties get a map (Leaf's `operationsImageAttributeCreation`); `None`: the
    /// type's main ones.
    pub image_properties: Option<Vec<String>>,
    /// The field's active boundary: points outside are left out of the filtered output.
    pub boundary: Option<&'a Boundary>,
    pub original: OriginalData,
}

/// Why points were left out of the filtered output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    pub slow: usize,
    pub outside_boundary: usize,
    pub outliers: usize,
}

#[derive(Debug)]
pub struct Processed {
    /// Leaf's summary Feature.
    pub summary: Value,
    /// Property → Leaf unit.
    pub units: Value,
    pub images: Vec<PropertyImage>,
    pub points: usize,
    pub filtered_points: usize,
    pub removed: Removed,
    /// Share of the operation's area inside the boundary, 0–100 (with a boundary).
    pub coverage: Option<f64>,
    /// The filtered GeoJSON, as the byte ranges of the standard one that make it up.
    pub filtered: ByteRanges,
}

/// Byte ranges `[start, end)` of a text, in order and apart. The filtered GeoJSON is the
/// standard one without the features Leaf's cleaning drops, byte for byte, so it is kept as
/// the ranges of the standard text that make it up instead of being written a second time.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ByteRanges(Vec<[u64; 2]>);

impl ByteRanges {
    /// Appends `[start, end)`, joined to the last range when they touch.
    fn push(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        match self.0.last_mut() {
            Some(last) if last[1] == start => last[1] = end,
            _ => self.0.push([start, end]),
        }
    }

    pub fn into_ranges(self) -> Vec<[u64; 2]> {
        self.0
    }

    /// Bytes in all the ranges.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|[a, b]| b.saturating_sub(*a)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ranges of `text`, one after the other (ranges past its end are cut short).
    pub fn select(&self, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len().min(text.len() as u64) as usize);
        let end = text.len() as u64;
        for &[a, b] in &self.0 {
            let (a, b) = (a.min(end) as usize, b.min(end) as usize);
            out.extend_from_slice(&text[a..b.max(a)]);
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    min: f64,
    max: f64,
    sum: f64,
    n: u64,
}

impl Default for Stat {
    fn default() -> Self {
        Self {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            n: 0,
        }
    }
}

impl Stat {
    fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            self.sum += v;
            self.n += 1;
        }
    }

    fn merge(&mut self, other: &Stat) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.n += other.n;
    }

    fn json(&self, unit: &str) -> Value {
        if self.n == 0 {
            return Value::Null;
        }
        json!({"avg": from_si(self.sum / self.n as f64, unit), "min": from_si(self.min, unit),
               "max": from_si(self.max, unit), "unit": unit})
    }
}

/// Totals of one variety or product.
#[derive(Debug, Default, Clone)]
struct Group {
    area: f64,
    wet_mass: f64,
    dry_mass: f64,
    wet_volume: f64,
    dry_volume: f64,
    seeds: f64,
    applied: f64,
    moisture: Stat,
    rate: Stat,
    target: Stat,
}

impl Group {
    fn merge(&mut self, other: &Group) {
        self.area += other.area;
        self.wet_mass += other.wet_mass;
        self.dry_mass += other.dry_mass;
        self.wet_volume += other.wet_volume;
        self.dry_volume += other.dry_volume;
        self.seeds += other.seeds;
        self.applied += other.applied;
        self.moisture.merge(&other.moisture);
        self.rate.merge(&other.rate);
        self.target.merge(&other.target);
    }
}

fn amount(value: f64, unit: &str) -> Value {
    json!({"value": from_si(value, unit), "unit": unit})
}

/// Writes JSON text fast: numbers through `ryu`/`itoa`, non-finite numbers as `null`.
struct Json<'b>(&'b mut Vec<u8>);

impl Json<'_> {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// Property values keep six decimals: finer than any sensor, and half the text. Written
    /// as an integer and a fraction, which is several times faster than shortest-float text.
    fn rounded(&mut self, v: f64) {
        let scaled = (v * 1e6).round();
        if !scaled.is_finite() || scaled.abs() >= 9e15 {
            return self.number(v);
        }
        let scaled = scaled as i64;
        if scaled < 0 {
            self.0.push(b'-');
        }
        let (whole, mut fraction) = (
            scaled.unsigned_abs() / 1_000_000,
            scaled.unsigned_abs() % 1_000_000,
        );
        let mut b = itoa::Buffer::new();
        self.raw(b.format(whole));
        if fraction == 0 {
            return;
        }
        let mut digits = [b'0'; 6];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        let len = 6 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        self.0.push(b'.');
        self.0.extend_from_slice(&digits[..len]);
    }

    fn number(&mut self, v: f64) {
        if v.is_finite() {
            let mut b = ryu::Buffer::new();
            self.raw(b.format_finite(v));
        } else {
            self.raw("null");
        }
    }
}

/// A JSON string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `yyyy-MM-ddTHH:mm:ss` of a second, cached: neighbouring points share it.
#[derive(Default)]
struct Clock {
    second: i64,
    text: String,
}

impl Clock {
    fn write(&mut self, out: &mut Json, ms: i64) {
        if ms == i64::MIN {
            out.raw("null");
            return;
        }
        let second = ms.div_euclid(1000);
        if second != self.second || self.text.is_empty() {
            self.second = second;
            // Written digit by digit: chrono's formatter per point was a tenth of the work.
            let t = chrono::DateTime::from_timestamp(second, 0).unwrap_or_default();
            let mut text = [0u8; 19];
            let mut put = |at: usize, width: usize, mut v: u32| {
                for d in text[at..at + width].iter_mut().rev() {
                    *d = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            };
            put(0, 4, t.year().clamp(0, 9999) as u32);
            put(5, 2, t.month());
            put(8, 2, t.day());
            put(11, 2, t.hour());
            put(14, 2, t.minute());
            put(17, 2, t.second());
            for (at, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
                text[at] = c;
            }
            self.text = String::from_utf8_lossy(&text).into_owned();
        }
        let millis = ms.rem_euclid(1000) as u32;
        let digits = [
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
            b'"',
        ];
        out.raw("\"");
        out.raw(&self.text);
        out.0.extend_from_slice(&digits);
    }
}

/// Points serialised per task.
const CHUNK_POINTS: usize = 4_096;

/// Summary statistics of a run of points; runs merge.
struct Accumulator {
    stats: Vec<Stat>,
    groups: BTreeMap<u32, Group>,
    /// Indexes into the export's names.
    crops: BTreeSet<u32>,
    machines_used: Vec<bool>,
    total_area: f64,
    total_distance: f64,
    inside_area: f64,
    start: i64,
    end: i64,
    removed: Removed,
    filtered_points: usize,
}

impl Accumulator {
    fn new(properties: usize, machines: usize) -> Self {
        Self {
            stats: vec![Stat::default(); properties],
            groups: BTreeMap::new(),
            crops: BTreeSet::new(),
            machines_used: vec![false; machines.max(1)],
            total_area: 0.0,
            total_distance: 0.0,
            inside_area: 0.0,
            start: i64::MAX,
            end: i64::MIN,
            removed: Removed::default(),
            filtered_points: 0,
        }
    }

    fn merge(&mut self, other: Accumulator) {
        for (a, b) in self.stats.iter_mut().zip(other.stats) {
            a.merge(&b);
        }
        for (key, g) in other.groups {
            self.groups.entry(key).or_default().merge(&g);
        }
        self.crops.extend(other.crops);
        for (a, b) in self.machines_used.iter_mut().zip(other.machines_used) {
            *a |= b;
        }
        self.total_area += other.total_area;
        self.total_distance += other.total_distance;
        self.inside_area += other.inside_area;
        self.start = self.start.min(other.start);
        self.end = self.end.max(other.end);
        self.removed.slow += other.removed.slow;
        self.removed.outside_boundary += other.removed.outside_boundary;
        self.removed.outliers += other.removed.outliers;
        self.filtered_points += other.filtered_points;
    }
}

/// A run of points serialised: each feature preceded by `,\n`. The filtered output is the
/// same text without the `dropped` byte ranges.
struct Chunk {
    index: usize,
    standard: Vec<u8>,
    dropped: Vec<std::ops::Range<usize>>,
    keep: Vec<bool>,
    acc: Accumulator,
}

/// Everything a worker needs, computed once.
struct Context<'a> {
    export: &'a Export,
    options: &'a Options<'a>,
    props: Vec<Property>,
    units: Vec<&'static str>,
    /// SI per output unit, per property.
    factors: Vec<f64>,
    keys: Vec<String>,
    fixed: String,
    original_type: String,
    name_json: Vec<String>,
    crop_json: Vec<String>,
    machinery_json: Vec<String>,
    values: Values<'a>,
    outlier_bounds: Option<(f64, f64)>,
    applied_rate: Option<usize>,
}

impl<'a> Context<'a> {
    fn new(export: &'a Export, options: &'a Options<'a>) -> Self {
        let props = properties(options.kind, export);
        let units: Vec<&'static str> = props
            .iter()
            .map(|p| leaf_unit(p.quantity, options.system, export.english))
            .collect();
        let original_type = options
            .original
            .operation_type
            .clone()
            .unwrap_or_else(|| options.kind.as_str().to_string());
        let fixed = format!(
            ",\"operationType\":\"{}\",\"originalOperationType\":{},\"recordingStatus\":\"On\"",
            options.kind.as_str(),
            quoted(&original_type)
        );
        let machinery_json = export
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let name = m
                    .machine_name
                    .clone()
                    .or_else(|| m.machine_serial.clone())
                    .unwrap_or_else(|| format!("machine {i}"));
                format!("[{}]", quoted(&name))
            })
            .collect();
        let applied_rate = props.iter().position(|p| p.name == "appliedRate");
        let keys = props.iter().map(|p| format!("\"{}\":", p.name)).collect();
        Self {
            factors: units.iter().map(|u| si_factor(u).unwrap_or(1.0)).collect(),
            export,
            options,
            outlier_bounds: outlier_bounds(export, options),
            keys,
            fixed,
            original_type,
            name_json: export.names.iter().map(|s| quoted(s)).collect(),
            crop_json: export
                .names
                .iter()
                .map(|s| quoted(&normalise_crop(s)))
                .collect(),
            machinery_json,
            values: Values::new(export),
            applied_rate,
            props,
            units,
        }
    }

    /// Leaf's cleaning: why point `i` stays out of the filtered output, if it does.
    fn rejection(&self, i: usize, inside: bool) -> Option<fn(&mut Removed)> {
        let e = self.export;
        if e.value(Col::Speed, i) < MIN_SPEED_M_S {
            Some(|r| r.slow += 1)
        } else if !inside {
            Some(|r| r.outside_boundary += 1)
        } else if self.outlier_bounds.is_some_and(|(lo, hi)| {
            let v = e.value(Col::DryYieldVolume, i);
            v < lo || v > hi
        }) {
            Some(|r| r.outliers += 1)
        } else {
            None
        }
    }

    /// Serialises the points `range` into `standard` (a buffer from the pool, emptied).
    fn chunk(&self, index: usize, range: std::ops::Range<usize>, mut standard: Vec<u8>) -> Chunk {
        let e = self.export;
        let mut acc = Accumulator::new(self.props.len(), e.machines.len());
        standard.clear();
        let mut dropped: Vec<std::ops::Range<usize>> = Vec::new();
        let mut keep = Vec::with_capacity(range.len());
        let mut clock = Clock::default();
        let mut si = vec![0.0; self.props.len()];
        for i in range {
            for (k, p) in self.props.iter().enumerate() {
                si[k] = self.values.get(p.source, i);
            }
            let start = standard.len();
            self.write_feature(&mut Json(&mut standard), &mut clock, i, &si);
            let inside = self
                .options
                .boundary
                .is_none_or(|b| b.contains(e.lon[i], e.lat[i]));
            match self.rejection(i, inside) {
                Some(count) => {
                    count(&mut acc.removed);
                    keep.push(false);
                    match dropped.last_mut() {
                        Some(last) if last.end == start => last.end = standard.len(),
                        _ => dropped.push(start..standard.len()),
                    }
                }
                None => {
                    acc.filtered_points += 1;
                    keep.push(true);
                }
            }
            self.account(&mut acc, i, &si, inside);
        }
        Chunk {
            index,
            standard,
            dropped,
            keep,
            acc,
        }
    }

    fn write_feature(&self, out: &mut Json, clock: &mut Clock, i: usize, si: &[f64]) {
        let e = self.export;
        out.raw(",\n{\"type\":\"Feature\",\"geometry\":");
        write_geometry(out, e, i);
        out.raw(",\"properties\":{");
        for (k, key) in self.keys.iter().enumerate() {
            if k > 0 {
                out.raw(",");
            }
            out.raw(key);
            out.rounded(si[k] / self.factors[k]);
        }
        out.raw(",\"timestamp\":");
        clock.write(out, e.time_ms[i]);
        out.raw(&self.fixed);
        let crop = e.crop[i];
        if crop != 0 {
            out.raw(",\"crop\":");
            out.raw(&self.crop_json[crop as usize]);
        }
        let variety = e.variety[i];
        if variety != 0 {
            out.raw(",\"variety\":");
            out.raw(&self.name_json[variety as usize]);
        }
        let product = e.product[i];
        if product != 0 {
            out.raw(",\"products\":[{\"name\":");
            out.raw(&self.name_json[product as usize]);
            out.raw(",\"rate\":{\"value\":");
            out.rounded(
                self.applied_rate
                    .map_or(f64::NAN, |k| si[k] / self.factors[k]),
            );
            out.raw("}}]");
        }
        if let Some(m) = self.machinery_json.get(e.machine[i] as usize) {
            out.raw(",\"machinery\":");
            out.raw(m);
        }
        out.raw("}}");
    }

    /// Adds point `i` to the summary's statistics (over every point, as Leaf's are).
    fn account(&self, acc: &mut Accumulator, i: usize, si: &[f64], inside: bool) {
        let e = self.export;
        for (k, v) in si.iter().enumerate() {
            acc.stats[k].add(*v);
        }
        let area = self.values.area(i);
        let area = if area.is_finite() { area } else { 0.0 };
        acc.total_area += area;
        if inside {
            acc.inside_area += area;
        }
        acc.total_distance += e.value(Col::Distance, i).max(0.0);
        let t = e.time_ms[i];
        if t != i64::MIN {
            acc.start = acc.start.min(t);
            acc.end = acc.end.max(t);
        }
        if e.crop[i] != 0 {
            acc.crops.insert(e.crop[i]);
        }
        if let Some(used) = acc.machines_used.get_mut(e.machine[i] as usize) {
            *used = true;
        }
        let group_key = if e.product[i] != 0 {
            e.product[i]
        } else {
            e.variety[i]
        };
        if group_key == 0 {
            return;
        }
        let g = acc.groups.entry(group_key).or_default();
        g.area += area;
        match self.options.kind {
            OperationKind::Harvested => {
                g.wet_mass += self.values.get(Source::Column(Col::WetMass), i);
                g.dry_mass += self.values.get(Source::DryMass, i);
                g.wet_volume += self.values.get(Source::WetVolume, i);
                g.dry_volume += self.values.get(Source::DryVolume, i);
                g.moisture.add(e.value(Col::Moisture, i));
            }
            OperationKind::Planted => {
                let rate = e.value(Col::SeedRate, i);
                g.seeds += rate * area;
                g.rate.add(rate);
                g.target.add(e.value(Col::SeedRateTarget, i));
            }
            OperationKind::Applied => {
                let rate = e.value(Col::AppliedRate, i);
                g.applied += rate * area;
                g.rate.add(rate);
                g.target.add(e.value(Col::AppliedRateTarget, i));
            }
            OperationKind::Tillage => {}
        }
    }
}

/// Harvest outlier limits: mean ± limit × standard deviation of the moving points' dry volume
/// per area.
fn outlier_bounds(export: &Export, options: &Options) -> Option<(f64, f64)> {
    if options.kind != OperationKind::Harvested
        || !options.remove_outliers
        || !export.has(Col::DryYieldVolume)
    {
        return None;
    }
    let (mut sum, mut sq, mut k) = (0.0, 0.0, 0.0);
    for i in 0..export.len() {
        let v = export.value(Col::DryYieldVolume, i);
        if export.value(Col::Speed, i) >= MIN_SPEED_M_S && v.is_finite() {
            sum += v;
            sq += v * v;
            k += 1.0;
        }
    }
    (k > 1.0).then(|| {
        let mean = sum / k;
        let sd = ((sq / k) - mean * mean).max(0.0).sqrt();
        (
            mean - options.outliers_limit * sd,
            mean + options.outliers_limit * sd,
        )
    })
}

pub fn process(
    export: &Export,
    options: &Options,
    standard: &mut dyn Write,
) -> Result<Processed, DataError> {
    let n = export.len();
    if n == 0 {
        return Err(DataError::NoPoints);
    }
    let ctx = Context::new(export, options);
    let props = &ctx.props;
    let units = &ctx.units;
    let unit_of = |q: Quantity| leaf_unit(q, options.system, export.english);
    let values = &ctx.values;
    let original_type = ctx.original_type.clone();

    // Chunks of points are serialised on every core; this thread writes them in order.
    let chunks = n.div_ceil(CHUNK_POINTS);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let next = AtomicUsize::new(0);
    // Chunks written so far: a worker stays within a window of them, so a stalled chunk cannot
    // make finished ones pile up in memory behind it.
    let written = AtomicUsize::new(0);
    let window = workers * 2;
    // Written chunks' buffers go back to the workers: fresh multi-megabyte buffers cost page
    // faults and zeroing in the kernel for every chunk.
    let pool = std::sync::Mutex::new(Vec::<Vec<u8>>::new());
    let mut keep = vec![false; n];
    let mut acc = Accumulator::new(props.len(), export.machines.len());
    const HEADER: &[u8] = b"{\"type\":\"FeatureCollection\",\"features\":[\n";
    const FOOTER: &[u8] = b"\n]}\n";
    standard.write_all(HEADER)?;
    let mut filtered = ByteRanges::default();
    filtered.push(0, HEADER.len() as u64);
    let mut position = HEADER.len() as u64;
    std::thread::scope(|scope| -> Result<(), DataError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(workers);
        for _ in 0..workers {
            let (tx, ctx, next, written, pool) = (tx.clone(), &ctx, &next, &written, &pool);
            scope.spawn(move || loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= chunks {
                    break;
                }
                while index >= written.load(Ordering::Acquire) + window {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                let from = index * CHUNK_POINTS;
                let buffer = pool
                    .lock()
                    .ok()
                    .and_then(|mut p| p.pop())
                    .unwrap_or_else(|| Vec::with_capacity(CHUNK_POINTS * 600));
                let chunk = ctx.chunk(index, from..(from + CHUNK_POINTS).min(n), buffer);
                if tx.send(chunk).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut wanted = 0;
        // Every feature comes with a leading separator; the first one written to an output
        // goes without it.
        let (mut standard_started, mut filtered_started) = (false, false);
        for chunk in rx {
            pending.insert(chunk.index, chunk);
            while let Some(chunk) = pending.remove(&wanted) {
                let text = &chunk.standard;
                let skip = if standard_started || text.is_empty() {
                    0
                } else {
                    2
                };
                standard_started |= !text.is_empty();
                standard.write_all(&text[skip..])?;
                // Chunk offset `at` is at `start + at` in the standard output (`at >= skip`).
                let start = position - skip as u64;
                let mut kept = |from: usize, to: usize| {
                    let skip = if filtered_started || from == to { 0 } else { 2 };
                    filtered_started |= from < to;
                    filtered.push(start + (from + skip) as u64, start + to as u64);
                };
                let mut at = 0;
                for gap in &chunk.dropped {
                    kept(at, gap.start);
                    at = gap.end;
                }
                kept(at, text.len());
                position += (text.len() - skip) as u64;
                let from = chunk.index * CHUNK_POINTS;
                keep[from..from + chunk.keep.len()].copy_from_slice(&chunk.keep);
                acc.merge(chunk.acc);
                if let Ok(mut p) = pool.lock() {
                    p.push(chunk.standard);
                }
                wanted += 1;
                written.store(wanted, Ordering::Release);
            }
        }
        Ok(())
    })?;
    standard.write_all(FOOTER)?;
    filtered.push(position, position + FOOTER.len() as u64);
    standard.flush()?;
    let Accumulator {
        stats,
        groups,
        crops,
        machines_used,
        total_area,
        total_distance,
        inside_area,
        start,
        end,
        removed,
        filtered_points,
    } = acc;

    // Summary.
    let mut p = Map::new();
    let stat_of = |name: &str| props.iter().position(|p| p.name == name);
    p.insert(
        "totalDistance".into(),
        amount(total_distance, unit_of(Quantity::Length)),
    );
    for name in ["speed", "elevation"] {
        if let Some(k) = stat_of(name) {
            p.insert(name.into(), stats[k].json(units[k]));
        }
    }
    p.insert("startTime".into(), json!(leaf_time(start)));
    p.insert("endTime".into(), json!(leaf_time(end)));
    p.insert(
        "totalArea".into(),
        amount(total_area, unit_of(Quantity::TotalArea)),
    );
    if !crops.is_empty() {
        let names: BTreeSet<String> = crops
            .iter()
            .map(|&c| normalise_crop(export.name(c)))
            .collect();
        p.insert("crop".into(), json!(names));
    }
    p.insert("operationType".into(), json!(options.kind.as_str()));
    p.insert("originalOperationType".into(), json!(original_type));
    let group_name = |key: &u32| export.name(*key).to_string();
    match options.kind {
        OperationKind::Harvested => {
            for (k, prop) in props.iter().enumerate().skip(6) {
                p.insert(prop.name.into(), stats[k].json(units[k]));
            }
            let totals = [
                ("totalWetMass", "wetMass", Quantity::Mass),
                ("totalDryMass", "dryMass", Quantity::Mass),
                ("totalWetVolume", "wetVolume", Quantity::Volume),
                ("totalDryVolume", "dryVolume", Quantity::Volume),
            ];
            for (total, of, q) in totals {
                if let Some(k) = stat_of(of) {
                    p.insert(total.into(), amount(stats[k].sum, unit_of(q)));
                }
            }
            let per_area = |v: f64, area: f64, q| json!({"value": from_si(if area > 0.0 { v / area } else { 0.0 }, unit_of(q)), "unit": unit_of(q)});
            let varieties: Vec<Value> = groups
                .iter()
                .map(|(key, g)| {
                    json!({
                        "name": group_name(key),
                        "harvestMoisture": g.moisture.json(unit_of(Quantity::Moisture)),
                        "wetMass": amount(g.wet_mass, unit_of(Quantity::Mass)),
                        "wetMassPerArea": per_area(g.wet_mass, g.area, Quantity::MassPerArea),
                        "wetVolume": amount(g.wet_volume, unit_of(Quantity::Volume)),
                        "area": amount(g.area, unit_of(Quantity::PointArea)),
                        "dryVolume": amount(g.dry_volume, unit_of(Quantity::Volume)),
                        "dryMassPerArea": per_area(g.dry_mass, g.area, Quantity::MassPerArea),
                        "dryMass": amount(g.dry_mass, unit_of(Quantity::Mass)),
                    })
                })
                .collect();
            p.insert("varieties".into(), json!(varieties));
        }
        OperationKind::Planted => {
            for (k, prop) in props.iter().enumerate().skip(6) {
                p.insert(prop.name.into(), stats[k].json(units[k]));
            }
            let seeds: f64 = groups.values().map(|g| g.seeds).sum();
            p.insert(
                "totalPlanted".into(),
                json!({"value": seeds.round(), "unit": "seeds"}),
            );
            let rate_unit = unit_of(Quantity::SeedsPerArea);
            let varieties: Vec<Value> = groups
                .iter()
                .map(|(key, g)| {
                    let mut rate = g.rate.json(rate_unit);
                    if let (Some(r), true) = (rate.as_object_mut(), g.target.n > 0) {
                        r.insert("minTarget".into(), json!(from_si(g.target.min, rate_unit)));
                        r.insert("maxTarget".into(), json!(from_si(g.target.max, rate_unit)));
                        r.insert(
                            "avgTarget".into(),
                            json!(from_si(g.target.sum / g.target.n as f64, rate_unit)),
                        );
                    }
                    json!({
                        "name": group_name(key), "rate": rate,
                        "area": amount(g.area, unit_of(Quantity::PointArea)),
                        "totalPlanted": {"value": g.seeds.round(), "unit": "seeds"},
                    })
                })
                .collect();
            p.insert("varieties".into(), json!(varieties));
        }
        OperationKind::Applied => {
            for (k, prop) in props.iter().enumerate().skip(6) {
                p.insert(prop.name.into(), stats[k].json(units[k]));
            }
            let applied: f64 = groups.values().map(|g| g.applied).sum();
            p.insert(
                "totalApplied".into(),
                amount(applied, unit_of(Quantity::Liquid)),
            );
            p.insert("tankMix".into(), json!(groups.len() > 1));
            let rate_unit = unit_of(Quantity::LiquidPerArea);
            let products: Vec<Value> = groups
                .iter()
                .map(|(key, g)| {
                    json!({
                        "name": group_name(key), "type": if groups.len() > 1 { "Component" } else { "Product" },
                        "rate": {"unit": rate_unit, "value": from_si(if g.rate.n > 0 { g.rate.sum / g.rate.n as f64 } else { 0.0 }, rate_unit)},
                        "totalApplied": amount(g.applied, unit_of(Quantity::Liquid)),
                        "area": amount(g.area, unit_of(Quantity::PointArea)),
                    })
                })
                .collect();
            p.insert("products".into(), json!(products));
        }
        OperationKind::Tillage => {
            for (k, prop) in props.iter().enumerate().skip(6) {
                p.insert(prop.name.into(), stats[k].json(units[k]));
            }
        }
    }
    let machinery: Vec<Value> = export
        .machines
        .iter()
        .zip(&machines_used)
        .filter(|(_, used)| **used)
        .map(|(m, _)| {
            json!({"name": m.machine_name.clone().or_else(|| m.machine_serial.clone()),
                   "type": "machine", "serialNumber": m.machine_serial, "brand": m.make.clone().unwrap_or_else(|| "unknown".into())})
        })
        .collect();
    p.insert("machinery".into(), json!(machinery));
    let o = &options.original;
    p.insert(
        "originalOperationData".into(),
        json!({"originalOperationFarm": o.farm, "originalOperationField": o.field,
               "originalOperationGrower": o.grower, "originalOperationType": original_type}),
    );
    let summary =
        json!({"type": "Feature", "properties": p, "geometry": covered_area(export, values)});
    let units_json: Map<String, Value> = props
        .iter()
        .zip(units)
        .map(|(p, u)| (p.name.to_string(), json!(u)))
        .collect();
    let images = if options.images {
        draw(
            export,
            values,
            props,
            units,
            &keep,
            filtered_points,
            options,
        )?
    } else {
        Vec::new()
    };
    Ok(Processed {
        summary,
        units: Value::Object(units_json),
        images,
        points: n,
        filtered_points,
        removed,
        filtered,
        coverage: options.boundary.map(|_| {
            if total_area > 0.0 {
                inside_area / total_area * 100.0
            } else {
                0.0
            }
        }),
    })
}

fn write_geometry(out: &mut Json, export: &Export, i: usize) {
    match &export.polygons {
        None => {
            out.raw("{\"type\":\"Point\",\"coordinates\":[");
            out.number(export.lon[i]);
            out.raw(",");
            out.number(export.lat[i]);
            out.raw("]}");
        }
        Some(polys) => {
            out.raw("{\"type\":\"Polygon\",\"coordinates\":[");
            let rings = polys.poly_starts[i] as usize..polys.poly_starts[i + 1] as usize;
            for (r, ring) in rings.enumerate() {
                if r > 0 {
                    out.raw(",");
                }
                out.raw("[");
                let coords = polys.ring_starts[ring] as usize..polys.ring_starts[ring + 1] as usize;
                for (c, p) in polys.coords[coords].iter().enumerate() {
                    if c > 0 {
                        out.raw(",");
                    }
                    out.raw("[");
                    out.number(p[0]);
                    out.raw(",");
                    out.number(p[1]);
                    out.raw("]");
                }
                out.raw("]");
            }
            out.raw("]}");
        }
    }
}

fn leaf_time(ms: i64) -> Option<String> {
    (ms != i64::MIN && ms != i64::MAX).then(|| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    })
}

/// The area the machine covered, as a MultiPolygon of grid rows: every cell (about a swath
/// wide, at most 256 across) holding a working point, merged into runs along each row.
fn covered_area(export: &Export, values: &Values) -> Value {
    let working: Vec<usize> = (0..export.len())
        .filter(|&i| values.area(i) > 0.0 && export.lon[i].is_finite())
        .collect();
    let Some(&first) = working.first() else {
        return Value::Null;
    };
    let local = Local::new(export.lon[first], export.lat[first]);
    let xy: Vec<(f64, f64)> = working
        .iter()
        .map(|&i| local.to_xy(export.lon[i], export.lat[i]))
        .collect();
    let (mut x0, mut y0, mut x1, mut y1) = (
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in &xy {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    let width = export
        .columns
        .get(Col::SwathWidth as usize)
        .and_then(|c| c.iter().copied().find(|w| w.is_finite() && *w > 0.0))
        .unwrap_or(10.0);
    let cell = width.max((x1 - x0).max(y1 - y0) / 256.0);
    // The grid starts half a swath beyond the outermost points, so each point's swath fits.
    let (ox, oy) = (x0 - width / 2.0, y0 - width / 2.0);
    let cols = (((x1 - x0) + width) / cell).ceil() as usize + 1;
    let rows = (((y1 - y0) + width) / cell).ceil() as usize + 1;
    let mut grid = vec![false; cols * rows];
    for &(x, y) in &xy {
        let (c, r) = (((x - ox) / cell) as usize, ((y - oy) / cell) as usize);
        grid[r.min(rows - 1) * cols + c.min(cols - 1)] = true;
    }
    let mut polygons = Vec::new();
    for r in 0..rows {
        let mut c = 0;
        while c < cols {
            if !grid[r * cols + c] {
                c += 1;
                continue;
            }
            let from = c;
            while c < cols && grid[r * cols + c] {
                c += 1;
            }
            let corner = |cx: usize, cy: usize| {
                let (lon, lat) = local.to_lonlat(ox + cx as f64 * cell, oy + cy as f64 * cell);
                json!([lon, lat])
            };
            polygons.push(json!([[
                corner(from, r),
                corner(c, r),
                corner(c, r + 1),
                corner(from, r + 1),
                corner(from, r)
            ]]));
        }
    }
    json!({"type": "MultiPolygon", "coordinates": polygons})
}

/// The maps Leaf draws per type, from the filtered points (or all, when none passed).
fn draw(
    export: &Export,
    values: &Values,
    props: &[Property],
    units: &[&str],
    keep: &[bool],
    kept: usize,
    options: &Options,
) -> Result<Vec<PropertyImage>, DataError> {
    let defaults: &[&str] = match options.kind {
        OperationKind::Harvested => &[
            "dryVolumePerArea",
            "wetMassPerArea",
            "harvestMoisture",
            "speed",
            "elevation",
        ],
        OperationKind::Planted => &["seedRate", "speed", "elevation"],
        OperationKind::Applied => &["appliedRate", "speed", "elevation"],
        OperationKind::Tillage => &["tillageDepthActual", "speed", "elevation"],
    };
    let wanted: Vec<&str> = match &options.image_properties {
        Some(chosen) => chosen.iter().map(String::as_str).collect(),
        None => defaults.to_vec(),
    };
    let chosen: Vec<usize> = (0..export.len())
        .filter(|&i| kept == 0 || keep[i])
        .collect();
    let lon: Vec<f64> = chosen.iter().map(|&i| export.lon[i]).collect();
    let lat: Vec<f64> = chosen.iter().map(|&i| export.lat[i]).collect();
    let widths: Vec<f64> = chosen
        .iter()
        .map(|&i| export.value(Col::SwathWidth, i))
        .collect();
    let Some(canvas) = Canvas::covering(&lon, &lat, options.image_size) else {
        return Ok(Vec::new());
    };
    let jobs: Vec<(&str, usize)> = wanted
        .into_iter()
        .filter_map(|name| Some((name, props.iter().position(|p| p.name == name)?)))
        .collect();
    // The maps are independent: drawn on every core, kept in the order asked.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_worker = jobs.len().div_ceil(workers.max(1)).max(1);
    let (lon, lat, widths, canvas, chosen) = (&lon, &lat, &widths, &canvas, &chosen);
    let images = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(per_worker)
            .map(|batch| {
                scope.spawn(move || {
                    batch
                        .iter()
                        .map(|&(name, k)| {
                            let v: Vec<f64> = chosen
                                .iter()
                                .map(|&i| from_si(values.get(props[k].source, i), units[k]))
                                .collect();
                            canvas.render(name, lon, lat, widths, &v)
                        })
                        .collect::<Result<Vec<_>, DataError>>()
                })
            })
            .collect();
        let mut images = Vec::with_capacity(jobs.len());
        for handle in handles {
            let batch = handle
                .join()
                .map_err(|_| DataError::Invalid("a map-drawing thread failed".into()))??;
            images.extend(batch);
        }
        Ok::<_, DataError>(images)
    })?;
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` points on a line, 1 m/s except where `slow` says.
    fn line_export(n: usize, slow: impl Fn(usize) -> bool) -> Export {
        let mut columns = vec![Vec::new(); crate::layout::COLUMN_COUNT];
        columns[Col::Speed as usize] = (0..n).map(|i| if slow(i) { 0.0 } else { 1.0 }).collect();
        columns[Col::Elevation as usize] = (0..n).map(|i| i as f64).collect();
        Export {
            lon: (0..n).map(|i| -89.8 + i as f64 * 1e-6).collect(),
            lat: vec![40.47; n],
            time_ms: (0..n as i64)
                .map(|i| 1_700_000_000_000 + i * 1000)
                .collect(),
            machine: vec![0; n],
            columns,
            crop: vec![0; n],
            variety: vec![0; n],
            product: vec![0; n],
            names: vec![String::new()],
            machines: vec![Default::default()],
            english: false,
            polygons: None,
        }
    }

    #[test]
    fn the_filtered_ranges_hold_exactly_the_standard_features_that_pass() {
        let options = Options {
            kind: OperationKind::Tillage,
            system: UnitSystem::Metric,
            remove_outliers: false,
            outliers_limit: 3.0,
            images: false,
            image_size: 64,
            image_properties: None,
            boundary: None,
            original: OriginalData::default(),
        };
        type Case = (&'static str, usize, fn(usize) -> bool);
        let cases: [Case; 4] = [
            // The first point is dropped (its separator must go with it), and a whole chunk.
            ("scattered", 3 * CHUNK_POINTS + 17, |i| {
                i % 7 == 0 || (CHUNK_POINTS..2 * CHUNK_POINTS).contains(&i)
            }),
            ("first chunk dropped", 2 * CHUNK_POINTS + 5, |i| {
                i < CHUNK_POINTS + 3
            }),
            ("all kept", 50, |_| false),
            ("none kept", 50, |_| true),
        ];
        for (case, n, slow) in cases {
            let export = line_export(n, slow);
            let mut text = Vec::new();
            let processed = process(&export, &options, &mut text).unwrap();
            let standard: Value = serde_json::from_slice(&text).unwrap();
            let filtered_text = processed.filtered.select(&text);
            let filtered: Value = serde_json::from_slice(&filtered_text)
                .unwrap_or_else(|e| panic!("{case}: the filtered GeoJSON does not parse: {e}"));
            let standard = standard["features"].as_array().unwrap();
            assert_eq!(standard.len(), n, "{case}");
            let passing: Vec<&Value> = (0..n).filter(|&i| !slow(i)).map(|i| &standard[i]).collect();
            let filtered: Vec<&Value> = filtered["features"].as_array().unwrap().iter().collect();
            assert_eq!(filtered, passing, "{case}");
            assert_eq!(processed.filtered_points, passing.len(), "{case}");
            assert_eq!(
                processed.filtered.len(),
                filtered_text.len() as u64,
                "{case}"
            );
        }
    }

    #[test]
    fn clock_text_equals_chronos_rfc3339_with_millis() {
        let mut clock = Clock::default();
        // Leap day, a second boundary, the epoch, before it, and a repeat of the cached second.
        for ms in [
            1_709_208_000_123,
            1_709_208_000_999,
            1_709_208_001_000,
            0,
            -1,
            1_696_342_333_050,
        ] {
            let mut buf = Vec::new();
            clock.write(&mut Json(&mut buf), ms);
            let expected = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("\"%Y-%m-%dT%H:%M:%S%.3fZ\"")
                .to_string();
            assert_eq!(String::from_utf8(buf).unwrap(), expected, "{ms}");
        }
    }

    #[test]
    fn rounded_numbers_are_exact_decimal_text() {
        let text = |v: f64| {
            let mut buf = Vec::new();
            Json(&mut buf).rounded(v);
            String::from_utf8(buf).unwrap()
        };
        assert_eq!(text(7.333_333_333), "7.333333");
        assert_eq!(text(-0.5), "-0.5");
        assert_eq!(text(12.0), "12");
        assert_eq!(text(0.000_000_4), "0");
        assert_eq!(text(-89.804_348_945), "-89.804349");
        assert_eq!(text(f64::NAN), "null");
        assert_eq!(text(1e300), "1e300");
    }
}
