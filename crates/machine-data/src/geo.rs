//! Small planar geometry on a local projection: enough to walk passes across a field, test
//! points against a boundary and rasterise maps. Distances are metres on an equirectangular
//! projection around a reference point, accurate to well under 1 % across a farm.

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A local projection centred on (lon0, lat0).
#[derive(Debug, Clone, Copy)]
pub struct Local {
    lon0: f64,
    lat0: f64,
    m_per_deg_lon: f64,
    m_per_deg_lat: f64,
}

impl Local {
    pub fn new(lon0: f64, lat0: f64) -> Self {
        let m_per_deg_lat = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
        Self {
            lon0,
            lat0,
            m_per_deg_lon: m_per_deg_lat * lat0.to_radians().cos(),
            m_per_deg_lat,
        }
    }

    pub fn to_xy(&self, lon: f64, lat: f64) -> (f64, f64) {
        (
            (lon - self.lon0) * self.m_per_deg_lon,
            (lat - self.lat0) * self.m_per_deg_lat,
        )
    }

    pub fn to_lonlat(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.lon0 + x / self.m_per_deg_lon,
            self.lat0 + y / self.m_per_deg_lat,
        )
    }

    pub fn m_per_deg_lon(&self) -> f64 {
        self.m_per_deg_lon
    }

    pub fn m_per_deg_lat(&self) -> f64 {
        self.m_per_deg_lat
    }
}

/// A GeoJSON MultiPolygon's coordinates: polygons of rings of [lon, lat].
pub type MultiPolygon = Vec<Vec<Vec<[f64; 2]>>>;

/// Ray casting with a bounding-box check first; holes (rings after the first) exclude.
#[derive(Debug, Clone)]
pub struct Boundary {
    polygons: MultiPolygon,
    bbox: [f64; 4],
}

impl Boundary {
    pub fn new(polygons: MultiPolygon) -> Option<Self> {
        let mut bbox = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for p in polygons.iter().flatten().flatten() {
            bbox[0] = bbox[0].min(p[0]);
            bbox[1] = bbox[1].min(p[1]);
            bbox[2] = bbox[2].max(p[0]);
            bbox[3] = bbox[3].max(p[1]);
        }
        bbox[0].is_finite().then_some(Self { polygons, bbox })
    }

    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        if lon < self.bbox[0] || lon > self.bbox[2] || lat < self.bbox[1] || lat > self.bbox[3] {
            return false;
        }
        self.polygons.iter().any(|polygon| {
            let mut rings = polygon.iter();
            rings
                .next()
                .is_some_and(|outer| ring_contains(outer, lon, lat))
                && !rings.any(|hole| ring_contains(hole, lon, lat))
        })
    }
}

pub fn ring_contains(ring: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut inside = false;
    let n = ring.len();
    if n < 3 {
        return false;
    }
    let mut j = n - 1;
    for i in 0..n {
        let (xi, yi) = (ring[i][0], ring[i][1]);
        let (xj, yj) = (ring[j][0], ring[j][1]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Where a horizontal line at `y` crosses a ring (local metres), sorted.
pub fn crossings(ring: &[(f64, f64)], y: f64) -> Vec<f64> {
    let mut xs = Vec::new();
    let n = ring.len();
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        if (a.1 > y) != (b.1 > y) {
            xs.push(a.0 + (y - a.1) * (b.0 - a.0) / (b.1 - a.1));
        }
    }
    xs.sort_by(f64::total_cmp);
    xs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_round_trips_and_measures_metres() {
        let local = Local::new(-89.8, 40.47);
        let (x, y) = local.to_xy(-89.79, 40.48);
        let (lon, lat) = local.to_lonlat(x, y);
        assert!((lon + 89.79).abs() < 1e-12 && (lat - 40.48).abs() < 1e-12);
        // 0.01° of latitude is about 1,112 m; of longitude at 40.47° about 847 m.
        assert!((y - 1111.95).abs() < 1.0, "{y}");
        assert!((x - 846.4).abs() < 2.0, "{x}");
    }

    #[test]
    fn boundary_contains_inside_points_and_not_holes() {
        let square = vec![
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 10.0],
            [0.0, 10.0],
            [0.0, 0.0],
        ];
        let hole = vec![[4.0, 4.0], [6.0, 4.0], [6.0, 6.0], [4.0, 6.0], [4.0, 4.0]];
        let b = Boundary::new(vec![vec![square, hole]]).unwrap();
        assert!(b.contains(1.0, 1.0));
        assert!(!b.contains(5.0, 5.0));
        assert!(!b.contains(11.0, 5.0));
        assert!(!b.contains(-0.1, 5.0));
        assert_eq!(
            crossings(&[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)], 5.0),
            vec![0.0, 10.0]
        );
    }
}

/// Area in hectares of a GeoJSON MultiPolygon (holes subtracted), on a local projection around
/// its first point: accurate to well under 1 % for a field.
pub fn area_ha(polygons: &MultiPolygon) -> f64 {
    let Some(origin) = polygons.iter().flatten().flatten().next() else {
        return 0.0;
    };
    let local = Local::new(origin[0], origin[1]);
    let ring_m2 = |ring: &Vec<[f64; 2]>| {
        let points: Vec<(f64, f64)> = ring.iter().map(|p| local.to_xy(p[0], p[1])).collect();
        let twice: f64 = points
            .iter()
            .zip(points.iter().cycle().skip(1))
            .map(|(a, b)| a.0 * b.1 - b.0 * a.1)
            .sum();
        (twice / 2.0).abs()
    };
    polygons
        .iter()
        .map(|rings| {
            let mut rings = rings.iter();
            let outer = rings.next().map(ring_m2).unwrap_or(0.0);
            outer - rings.map(ring_m2).sum::<f64>()
        })
        .sum::<f64>()
        / 10_000.0
}

#[cfg(test)]
mod area_tests {
    use super::*;

    #[test]
    fn a_square_kilometre_with_a_hole_is_ninety_nine_hectares() {
        // 1 km x 1 km at 41.7°N, with a 100 m x 100 m hole.
        let local = Local::new(-93.5, 41.7);
        let ring = |x0: f64, y0: f64, side: f64| -> Vec<[f64; 2]> {
            [
                (0.0, 0.0),
                (side, 0.0),
                (side, side),
                (0.0, side),
                (0.0, 0.0),
            ]
            .iter()
            .map(|(dx, dy)| {
                let (lon, lat) = local.to_lonlat(x0 + dx, y0 + dy);
                [lon, lat]
            })
            .collect()
        };
        let field = vec![vec![ring(0.0, 0.0, 1000.0), ring(400.0, 400.0, 100.0)]];
        let area = area_ha(&field);
        assert!((area - 99.0).abs() < 0.01, "{area}");
        assert_eq!(area_ha(&Vec::new()), 0.0);
    }
}
