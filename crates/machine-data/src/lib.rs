//! John Deere field operation exports → Leaf's standard machine data.
//!
//! [`read::read_export`] reads the shapefile zip John Deere's `/fieldOps/{id}` produces into
//! columns (SI units); [`process::process`] writes Leaf's standard GeoJSON, and returns the
//! filtered one as byte ranges of it, the summary Feature, the units and PNG maps. [`synth`] writes realistic exports (the
//! simulator's and the benchmarks' source). No HTTP, no database: callers bring bytes and take
//! bytes.

pub mod geo;
pub mod image;
pub mod layout;
pub mod process;
pub mod properties;
pub mod read;
pub mod synth;
pub mod units;

pub use geo::{Boundary, MultiPolygon};
pub use image::PropertyImage;
pub use layout::OperationKind;
pub use process::{process, ByteRanges, Options, OriginalData, Processed, Removed};
pub use read::{read_export, read_export_bytes, Export};
pub use units::UnitSystem;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("invalid export: {0}")]
    Invalid(String),
    #[error("no points in the export")]
    NoPoints,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
