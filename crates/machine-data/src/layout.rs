//! The layout of a John Deere field operation shapefile export as this crate reads it and the
//! simulator writes it: one `.dbf` column per attribute John Deere records, with each column's
//! unit in the sidecar JSON (`machines.json`) next to the machine index.
//!
//! John Deere documents the export's parts (`.shp`, `.shx`, `.dbf`, `.prj`, a JSON file mapping the
//! `.dbf` machine index to `MachineId`, `MachineSerial`, `OperatorId`) but not every column name;
//! the names here are the simulator's, chosen to fit dBase's 10-character limit.

use crate::units::Quantity;

/// A numeric attribute column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Col {
    Distance,
    Heading,
    SwathWidth,
    Speed,
    Elevation,
    WetMass,
    Moisture,
    DryYieldVolume,
    SeedRate,
    SeedRateTarget,
    DownForce,
    Singulation,
    Skips,
    Doubles,
    AppliedRate,
    AppliedRateTarget,
    Depth,
    DepthTarget,
}

pub const COLUMN_COUNT: usize = 18;

/// One column's name in the `.dbf`, what it measures, John Deere's unit ids in the ENGLISH and
/// METRIC systems, and the decimals written.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    pub col: Col,
    pub name: &'static str,
    pub quantity: Quantity,
    pub english: &'static str,
    pub metric: &'static str,
    pub decimals: u8,
}

const fn spec(
    col: Col,
    name: &'static str,
    quantity: Quantity,
    english: &'static str,
    metric: &'static str,
    decimals: u8,
) -> ColumnSpec {
    ColumnSpec {
        col,
        name,
        quantity,
        english,
        metric,
        decimals,
    }
}

use Quantity as Q;
pub const COLUMNS: [ColumnSpec; COLUMN_COUNT] = [
    spec(Col::Distance, "Distance", Q::Length, "ft", "m", 3),
    spec(Col::Heading, "Heading", Q::Angle, "deg", "deg", 1),
    spec(Col::SwathWidth, "SwathWdth", Q::Length, "ft", "m", 2),
    spec(Col::Speed, "Speed", Q::Speed, "mi1hr-1", "km1hr-1", 2),
    spec(Col::Elevation, "Elevation", Q::Length, "ft", "m", 2),
    spec(Col::WetMass, "WetMass", Q::Mass, "lb", "kg", 3),
    spec(Col::Moisture, "Moisture", Q::Moisture, "prcnt", "prcnt", 2),
    spec(
        Col::DryYieldVolume,
        "YldVolDry",
        Q::VolumePerArea,
        "bu1ac-1",
        "L1ha-1",
        2,
    ),
    spec(
        Col::SeedRate,
        "SeedRate",
        Q::SeedsPerArea,
        "seeds1ac-1",
        "seeds1ha-1",
        0,
    ),
    spec(
        Col::SeedRateTarget,
        "SeedTgt",
        Q::SeedsPerArea,
        "seeds1ac-1",
        "seeds1ha-1",
        0,
    ),
    spec(Col::DownForce, "DownForce", Q::Force, "lbf", "kgf", 1),
    spec(
        Col::Singulation,
        "Singulatn",
        Q::Percent,
        "prcnt",
        "prcnt",
        2,
    ),
    spec(Col::Skips, "Skips", Q::Percent, "prcnt", "prcnt", 2),
    spec(Col::Doubles, "Doubles", Q::Percent, "prcnt", "prcnt", 2),
    spec(
        Col::AppliedRate,
        "AppRate",
        Q::LiquidPerArea,
        "gal1ac-1",
        "L1ha-1",
        3,
    ),
    spec(
        Col::AppliedRateTarget,
        "AppTgt",
        Q::LiquidPerArea,
        "gal1ac-1",
        "L1ha-1",
        3,
    ),
    spec(Col::Depth, "Depth", Q::Depth, "in", "cm", 2),
    spec(Col::DepthTarget, "DepthTgt", Q::Depth, "in", "cm", 2),
];

impl Col {
    pub fn spec(self) -> &'static ColumnSpec {
        &COLUMNS[self as usize]
    }

    pub fn by_name(name: &str) -> Option<Col> {
        COLUMNS.iter().find(|c| c.name == name).map(|c| c.col)
    }
}

/// Text columns.
pub const TIME_COLUMN: &str = "IsoTime";
pub const MACHINE_COLUMN: &str = "Machine";
pub const CROP_COLUMN: &str = "Crop";
pub const VARIETY_COLUMN: &str = "Variety";
pub const PRODUCT_COLUMN: &str = "Product";

/// The sidecar JSON's name inside the zip.
pub const SIDECAR: &str = "machines.json";

/// Leaf's operation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    Planted,
    Applied,
    Harvested,
    Tillage,
}

impl OperationKind {
    pub fn parse(leaf_type: &str) -> Option<Self> {
        match leaf_type {
            "planted" => Some(Self::Planted),
            "applied" => Some(Self::Applied),
            "harvested" => Some(Self::Harvested),
            "tillage" => Some(Self::Tillage),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planted => "planted",
            Self::Applied => "applied",
            Self::Harvested => "harvested",
            Self::Tillage => "tillage",
        }
    }

    /// The columns John Deere records for this kind of work (beyond the common ones).
    pub fn columns(self) -> &'static [Col] {
        const COMMON: usize = 5;
        const PLANTED: [Col; COMMON + 6] = [
            Col::Distance,
            Col::Heading,
            Col::SwathWidth,
            Col::Speed,
            Col::Elevation,
            Col::SeedRate,
            Col::SeedRateTarget,
            Col::DownForce,
            Col::Singulation,
            Col::Skips,
            Col::Doubles,
        ];
        const APPLIED: [Col; COMMON + 2] = [
            Col::Distance,
            Col::Heading,
            Col::SwathWidth,
            Col::Speed,
            Col::Elevation,
            Col::AppliedRate,
            Col::AppliedRateTarget,
        ];
        const HARVESTED: [Col; COMMON + 3] = [
            Col::Distance,
            Col::Heading,
            Col::SwathWidth,
            Col::Speed,
            Col::Elevation,
            Col::WetMass,
            Col::Moisture,
            Col::DryYieldVolume,
        ];
        const TILLAGE: [Col; COMMON + 2] = [
            Col::Distance,
            Col::Heading,
            Col::SwathWidth,
            Col::Speed,
            Col::Elevation,
            Col::Depth,
            Col::DepthTarget,
        ];
        match self {
            Self::Planted => &PLANTED,
            Self::Applied => &APPLIED,
            Self::Harvested => &HARVESTED,
            Self::Tillage => &TILLAGE,
        }
    }
}
