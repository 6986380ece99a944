//! Leaf's standard properties per operation type and how each comes from John Deere's columns.

use crate::layout::{Col, OperationKind};
use crate::read::Export;
use crate::units::Quantity;

/// How a property's SI value is found for a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Column(Col),
    /// distance × swath width
    Area,
    WetMassPerArea,
    WetVolume,
    WetVolumePerArea,
    DryMass,
    DryMassPerArea,
    DryVolume,
}

#[derive(Debug, Clone, Copy)]
pub struct Property {
    pub name: &'static str,
    pub quantity: Quantity,
    pub source: Source,
}

const fn prop(name: &'static str, quantity: Quantity, source: Source) -> Property {
    Property {
        name,
        quantity,
        source,
    }
}

use Quantity as Q;
use Source::Column as C;

const COMMON: [Property; 6] = [
    prop("distance", Q::Length, C(Col::Distance)),
    prop("heading", Q::Angle, C(Col::Heading)),
    prop("speed", Q::Speed, C(Col::Speed)),
    prop("elevation", Q::Length, C(Col::Elevation)),
    prop("equipmentWidth", Q::Length, C(Col::SwathWidth)),
    prop("area", Q::PointArea, Source::Area),
];

const PLANTED: [Property; 6] = [
    prop("seedRate", Q::SeedsPerArea, C(Col::SeedRate)),
    prop("seedRateTarget", Q::SeedsPerArea, C(Col::SeedRateTarget)),
    prop("downForce", Q::Force, C(Col::DownForce)),
    prop("singulation", Q::Percent, C(Col::Singulation)),
    prop("skips", Q::Percent, C(Col::Skips)),
    prop("doubles", Q::Percent, C(Col::Doubles)),
];

const APPLIED: [Property; 2] = [
    prop("appliedRate", Q::LiquidPerArea, C(Col::AppliedRate)),
    prop(
        "appliedRateTarget",
        Q::LiquidPerArea,
        C(Col::AppliedRateTarget),
    ),
];

const HARVESTED: [Property; 9] = [
    prop("harvestMoisture", Q::Moisture, C(Col::Moisture)),
    prop("wetMass", Q::Mass, C(Col::WetMass)),
    prop("wetMassPerArea", Q::MassPerArea, Source::WetMassPerArea),
    prop("wetVolume", Q::Volume, Source::WetVolume),
    prop(
        "wetVolumePerArea",
        Q::VolumePerArea,
        Source::WetVolumePerArea,
    ),
    prop("dryMass", Q::Mass, Source::DryMass),
    prop("dryMassPerArea", Q::MassPerArea, Source::DryMassPerArea),
    prop("dryVolume", Q::Volume, Source::DryVolume),
    prop("dryVolumePerArea", Q::VolumePerArea, C(Col::DryYieldVolume)),
];

const TILLAGE: [Property; 2] = [
    prop("tillageDepthActual", Q::Depth, C(Col::Depth)),
    prop("tillageDepthTarget", Q::Depth, C(Col::DepthTarget)),
];

/// The numeric properties of `kind` that `export` can fill, in output order.
pub fn properties(kind: OperationKind, export: &Export) -> Vec<Property> {
    let specific: &[Property] = match kind {
        OperationKind::Planted => &PLANTED,
        OperationKind::Applied => &APPLIED,
        OperationKind::Harvested => &HARVESTED,
        OperationKind::Tillage => &TILLAGE,
    };
    COMMON
        .iter()
        .chain(specific)
        .filter(|p| needs(p.source).iter().all(|c| export.has(*c)))
        .copied()
        .collect()
}

fn needs(source: Source) -> Vec<Col> {
    match source {
        Source::Column(c) => vec![c],
        Source::Area => vec![Col::Distance, Col::SwathWidth],
        Source::WetMassPerArea | Source::WetVolume | Source::WetVolumePerArea => {
            vec![Col::WetMass, Col::Distance, Col::SwathWidth]
        }
        Source::DryMass | Source::DryMassPerArea | Source::DryVolume => {
            vec![Col::DryYieldVolume, Col::Distance, Col::SwathWidth]
        }
    }
}

/// Grain density (kg/m³) at the crop's standard bushel weight: 56 lb/bu for corn, 60 lb/bu
/// for soybeans and wheat.
pub fn grain_density(crop: &str) -> f64 {
    let crop = crop.to_ascii_lowercase();
    if crop.contains("soy") || crop.contains("wheat") {
        772.3
    } else {
        720.8
    }
}

/// Per-point computation of SI values.
pub struct Values<'a> {
    export: &'a Export,
    density: f64,
}

impl<'a> Values<'a> {
    pub fn new(export: &'a Export) -> Self {
        let crop = export
            .crop
            .first()
            .map(|&c| export.name(c).to_string())
            .unwrap_or_default();
        Self {
            export,
            density: grain_density(&crop),
        }
    }

    pub fn area(&self, i: usize) -> f64 {
        self.export.value(Col::Distance, i) * self.export.value(Col::SwathWidth, i)
    }

    pub fn get(&self, source: Source, i: usize) -> f64 {
        let e = self.export;
        let per_area = |v: f64| {
            let area = self.area(i);
            if area > 0.0 {
                v / area
            } else {
                0.0
            }
        };
        match source {
            Source::Column(c) => e.value(c, i),
            Source::Area => self.area(i),
            Source::WetMassPerArea => per_area(e.value(Col::WetMass, i)),
            Source::WetVolume => e.value(Col::WetMass, i) / self.density,
            Source::WetVolumePerArea => per_area(e.value(Col::WetMass, i) / self.density),
            Source::DryVolume => e.value(Col::DryYieldVolume, i) * self.area(i),
            Source::DryMass => e.value(Col::DryYieldVolume, i) * self.area(i) * self.density,
            Source::DryMassPerArea => e.value(Col::DryYieldVolume, i) * self.density,
        }
    }
}

/// Leaf's normalised crop name: `CORN_WET` → `corn`.
pub fn normalise_crop(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let base = lower
        .trim_end_matches("_wet")
        .trim_end_matches("_dry")
        .trim_end_matches("_silage");
    base.replace('_', " ")
}
