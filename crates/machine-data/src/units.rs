//! Units: John Deere's unit ids in an export, furrow's canonical SI values in memory, and Leaf's
//! unit names in every output. A value is converted once on read (to SI) and once on write.

use serde::{Deserialize, Serialize};

/// Leaf's `unitMeasurement`: `DEFAULT` keeps the system John Deere exported in (the
/// organization's preference), `METRIC` and `IMPERIAL` convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum UnitSystem {
    #[default]
    Default,
    Metric,
    Imperial,
}

impl UnitSystem {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "DEFAULT" => Some(Self::Default),
            "METRIC" => Some(Self::Metric),
            "IMPERIAL" => Some(Self::Imperial),
            _ => None,
        }
    }
}

/// What a number measures; decides its SI base and its Leaf unit in each system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// m/s
    Speed,
    /// m (distance, elevation, equipment width)
    Length,
    /// m² (area a point represents)
    PointArea,
    /// m² (an operation's total area)
    TotalArea,
    /// kg
    Mass,
    /// m³
    Volume,
    /// kg/m²
    MassPerArea,
    /// m³/m²
    VolumePerArea,
    /// seeds/m²
    SeedsPerArea,
    /// m³/m² of liquid product
    LiquidPerArea,
    /// m³ of liquid product
    Liquid,
    /// m (tillage depth)
    Depth,
    /// N
    Force,
    /// % of the Leaf sample's `prcnt` properties (singulation, skips, doubles)
    Percent,
    /// % (harvest moisture; Leaf calls it `percentage`)
    Moisture,
    /// degrees
    Angle,
    /// seeds
    Seeds,
}

/// How many SI units one of `unit` is (John Deere ids and Leaf names alike).
pub fn si_factor(unit: &str) -> Option<f64> {
    const ACRE: f64 = 4_046.856_422_4;
    const BUSHEL: f64 = 0.035_239_070_166_88;
    const GALLON: f64 = 0.003_785_411_784;
    Some(match unit {
        "m" | "m2" | "m1s-1" | "m/s" | "kg" | "m3" | "m³" | "prcnt" | "percentage" | "deg"
        | "arcdeg" | "seeds" | "N" => 1.0,
        "ft" => 0.3048,
        "cm" => 0.01,
        "in" => 0.0254,
        "km1hr-1" | "km/hr" => 1.0 / 3.6,
        "mi1hr-1" | "mi/hr" => 0.447_04,
        "ft/s" => 0.3048,
        "lb" => 0.453_592_37,
        "t" => 1000.0,
        "ha" => 10_000.0,
        "ac" => ACRE,
        "bu" => BUSHEL,
        "gal" => GALLON,
        "L" => 0.001,
        "bu1ac-1" | "bu/ac" => BUSHEL / ACRE,
        "L1ha-1" | "L/ha" => 0.001 / 10_000.0,
        "m³/ha" => 1.0 / 10_000.0,
        "gal1ac-1" | "gal/ac" => GALLON / ACRE,
        "kg1ha-1" | "kg/ha" => 1.0 / 10_000.0,
        "t/ha" => 1000.0 / 10_000.0,
        "lb/ac" => 0.453_592_37 / ACRE,
        "seeds1ac-1" | "seeds/ac" => 1.0 / ACRE,
        "seeds1ha-1" | "seeds/ha" => 1.0 / 10_000.0,
        "lbf" => 4.448_221_615_260_5,
        "kgf" | "Kgf" => 9.806_65,
        _ => return None,
    })
}

/// Leaf's unit name for `quantity` in `system`; `english_source` says which system John Deere
/// exported in (what `DEFAULT` keeps).
pub fn leaf_unit(quantity: Quantity, system: UnitSystem, english_source: bool) -> &'static str {
    use Quantity::*;
    let imperial = match system {
        UnitSystem::Imperial => true,
        UnitSystem::Metric => false,
        UnitSystem::Default => english_source,
    };
    // DEFAULT keeps John Deere's own units (miles per hour, km/h) where they differ from Leaf's
    // converted systems (ft/s, m/s), as Leaf's sample output shows.
    let default = system == UnitSystem::Default;
    match (quantity, imperial) {
        (Speed, true) if default => "mi/hr",
        (Speed, false) if default => "km/hr",
        (Speed, true) => "ft/s",
        (Speed, false) => "m/s",
        (Length, true) => "ft",
        (Length, false) => "m",
        (PointArea, _) => "m2",
        (TotalArea, _) if default => "m2",
        (TotalArea, true) => "ac",
        (TotalArea, false) => "ha",
        (Mass, true) => "lb",
        (Mass, false) if default => "kg",
        (Mass, false) => "t",
        (Volume, true) => "bu",
        (Volume, false) => "m³",
        (MassPerArea, true) => "lb/ac",
        (MassPerArea, false) if default => "kg/ha",
        (MassPerArea, false) => "t/ha",
        (VolumePerArea, true) => "bu/ac",
        (VolumePerArea, false) => "m³/ha",
        (SeedsPerArea, true) => "seeds/ac",
        (SeedsPerArea, false) => "seeds/ha",
        (LiquidPerArea, true) => "gal/ac",
        (LiquidPerArea, false) => "L/ha",
        (Liquid, true) => "gal",
        (Liquid, false) => "L",
        (Depth, true) => "in",
        (Depth, false) => "cm",
        (Force, true) => "lbf",
        (Force, false) => "Kgf",
        (Percent, _) => "prcnt",
        (Moisture, _) => "percentage",
        (Angle, _) => "arcdeg",
        (Seeds, _) => "seeds",
    }
}

/// Converts an SI value to `unit` (a name [`si_factor`] knows; unknown names pass through).
pub fn from_si(value: f64, unit: &str) -> f64 {
    si_factor(unit).map_or(value, |f| value / f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_match_known_figures() {
        // 1 bu/ac of corn volume is 0.087 m³/ha.
        let si = si_factor("bu1ac-1").unwrap();
        assert!((from_si(si, "m³/ha") - 0.087_077).abs() < 1e-5);
        // 5 mph = 7.333 ft/s = 2.235 m/s.
        let speed = 5.0 * si_factor("mi1hr-1").unwrap();
        assert!((from_si(speed, "ft/s") - 7.333_333).abs() < 1e-5);
        assert!((from_si(speed, "m/s") - 2.235_2).abs() < 1e-9);
        // 34,000 seeds/ac = 84,016 seeds/ha.
        let seeds = 34_000.0 * si_factor("seeds1ac-1").unwrap();
        assert!((from_si(seeds, "seeds/ha") - 84_015.8).abs() < 0.1);
        assert!((from_si(1.0, "ac") - 1.0 / 4_046.856_422_4).abs() < 1e-15);
        assert_eq!(si_factor("furlongs"), None);
    }

    #[test]
    fn every_leaf_unit_is_convertible() {
        use Quantity::*;
        for q in [
            Speed,
            Length,
            PointArea,
            TotalArea,
            Mass,
            Volume,
            MassPerArea,
            VolumePerArea,
            SeedsPerArea,
            LiquidPerArea,
            Liquid,
            Depth,
            Force,
            Percent,
            Moisture,
            Angle,
            Seeds,
        ] {
            for system in [
                UnitSystem::Default,
                UnitSystem::Metric,
                UnitSystem::Imperial,
            ] {
                for english in [true, false] {
                    let unit = leaf_unit(q, system, english);
                    assert!(si_factor(unit).is_some(), "{unit} ({q:?})");
                }
            }
        }
        assert_eq!(leaf_unit(Speed, UnitSystem::Imperial, false), "ft/s");
        assert_eq!(leaf_unit(Speed, UnitSystem::Default, true), "mi/hr");
        assert_eq!(leaf_unit(TotalArea, UnitSystem::Metric, true), "ha");
    }
}
