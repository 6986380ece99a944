//! PNG maps of one property: points painted as swath-wide dots on a north-up raster, coloured
//! by seven quantile classes with Leaf's fixed ramp (images V2), transparent where there is no
//! data.

use serde::Serialize;

use crate::geo::Local;
use crate::DataError;

/// Leaf's standard ramp, low to high.
pub const RAMP: [[u8; 3]; 7] = [
    [200, 0, 0],
    [255, 40, 0],
    [255, 150, 0],
    [255, 240, 0],
    [0, 230, 0],
    [0, 190, 0],
    [0, 130, 0],
];

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LegendRange {
    pub color_code: String,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Extent {
    pub xmin: f64,
    pub xmax: f64,
    pub ymin: f64,
    pub ymax: f64,
}

#[derive(Debug, Clone)]
pub struct PropertyImage {
    pub property: String,
    pub png: Vec<u8>,
    pub legend: Vec<LegendRange>,
    pub extent: Extent,
    pub width: u32,
    pub height: u32,
}

/// The points of one map: positions and swath widths are shared by every property's image.
pub struct Canvas {
    local: Local,
    extent: Extent,
    metres_per_px: f64,
    width: u32,
    height: u32,
}

impl Canvas {
    /// A canvas covering `lon`/`lat` whose longer side is `size` pixels.
    pub fn covering(lon: &[f64], lat: &[f64], size: u32) -> Option<Self> {
        let mut e = Extent {
            xmin: f64::INFINITY,
            xmax: f64::NEG_INFINITY,
            ymin: f64::INFINITY,
            ymax: f64::NEG_INFINITY,
        };
        for (&x, &y) in lon.iter().zip(lat) {
            if x.is_finite() && y.is_finite() {
                e.xmin = e.xmin.min(x);
                e.xmax = e.xmax.max(x);
                e.ymin = e.ymin.min(y);
                e.ymax = e.ymax.max(y);
            }
        }
        if !e.xmin.is_finite() {
            return None;
        }
        let local = Local::new(e.xmin, e.ymax);
        let span_x = (e.xmax - e.xmin) * local.m_per_deg_lon();
        let span_y = (e.ymax - e.ymin) * local.m_per_deg_lat();
        let size = size.max(16) as f64;
        let metres_per_px = (span_x.max(span_y) / (size - 1.0)).max(0.01);
        Some(Self {
            local,
            extent: e,
            metres_per_px,
            width: (span_x / metres_per_px).ceil() as u32 + 1,
            height: (span_y / metres_per_px).ceil() as u32 + 1,
        })
    }

    pub fn extent(&self) -> Extent {
        self.extent
    }

    /// Paints `values` (NaN = none) and encodes the PNG. `widths` are swath widths in metres.
    pub fn render(
        &self,
        property: &str,
        lon: &[f64],
        lat: &[f64],
        widths: &[f64],
        values: &[f64],
    ) -> Result<PropertyImage, DataError> {
        let breaks = quantile_breaks(values);
        let (w, h) = (self.width as usize, self.height as usize);
        let (sum, count) = self.paint(lon, lat, widths, values);
        let mut rgba = vec![0u8; w * h * 4];
        for cell in 0..w * h {
            if count[cell] == 0 {
                continue;
            }
            let v = sum[cell] / f64::from(count[cell]);
            let class = breaks.iter().position(|b| v <= *b).unwrap_or(6);
            rgba[cell * 4..cell * 4 + 3].copy_from_slice(&RAMP[class]);
            rgba[cell * 4 + 3] = 255;
        }
        let mut png_bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut png_bytes, self.width, self.height);
            encoder.set_color(png::ColorType::Rgba);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_compression(png::Compression::Fast);
            let mut writer = encoder
                .write_header()
                .map_err(|e| DataError::Invalid(format!("png: {e}")))?;
            writer
                .write_image_data(&rgba)
                .map_err(|e| DataError::Invalid(format!("png: {e}")))?;
        }
        Ok(PropertyImage {
            property: property.to_string(),
            png: png_bytes,
            legend: legend(values, &breaks),
            extent: self.extent,
            width: self.width,
            height: self.height,
        })
    }

    /// Per pixel, the sum and the number of the values whose swath-wide dot covers it.
    fn paint(
        &self,
        lon: &[f64],
        lat: &[f64],
        widths: &[f64],
        values: &[f64],
    ) -> (Vec<f64>, Vec<u32>) {
        let (w, h) = (self.width as usize, self.height as usize);
        // Points are first gathered per pixel and swath radius, then each occupied (pixel,
        // radius) is painted as one disc: a large harvest puts many points on every pixel, and
        // painting each point's disc was most of the drawing time.
        let mut layers: Vec<Option<(Vec<f64>, Vec<u32>)>> = vec![None; MAX_RADIUS_PX + 1];
        let mut sum = vec![0f64; w * h];
        let mut count = vec![0u32; w * h];
        for i in 0..values.len() {
            let v = values[i];
            if !v.is_finite() {
                continue;
            }
            let (x, y) = self.local.to_xy(lon[i], lat[i]);
            let px = (x / self.metres_per_px).round() as i64;
            let py = (-y / self.metres_per_px).round() as i64;
            let width = widths
                .get(i)
                .copied()
                .filter(|w| w.is_finite())
                .unwrap_or(0.0);
            let r = ((width / 2.0) / self.metres_per_px)
                .round()
                .clamp(0.0, MAX_RADIUS_PX as f64) as usize;
            if px < 0 || py < 0 || px >= w as i64 || py >= h as i64 {
                // Off the canvas (a point it was not made for): only part of its disc shows.
                paint_disc(&mut sum, &mut count, (w, h), (px, py), r, v, 1);
                continue;
            }
            let (layer_sum, layer_count) =
                layers[r].get_or_insert_with(|| (vec![0f64; w * h], vec![0u32; w * h]));
            let cell = py as usize * w + px as usize;
            layer_sum[cell] += v;
            layer_count[cell] += 1;
        }
        for (r, layer) in layers.iter().enumerate() {
            let Some((layer_sum, layer_count)) = layer else {
                continue;
            };
            for (cell, &n) in layer_count.iter().enumerate() {
                if n > 0 {
                    let (px, py) = ((cell % w) as i64, (cell / w) as i64);
                    paint_disc(
                        &mut sum,
                        &mut count,
                        (w, h),
                        (px, py),
                        r,
                        layer_sum[cell],
                        n,
                    );
                }
            }
        }
        (sum, count)
    }
}

/// Largest dot radius, pixels: wider swaths on a small map are drawn this wide.
const MAX_RADIUS_PX: usize = 8;

/// Adds `n` points whose values sum to `total` to every pixel of the disc of radius `r` around
/// (px, py) that lies on the `size` canvas.
fn paint_disc(
    sum: &mut [f64],
    count: &mut [u32],
    size: (usize, usize),
    (px, py): (i64, i64),
    r: usize,
    total: f64,
    n: u32,
) {
    let (w, h) = (size.0 as i64, size.1 as i64);
    let r = r as i64;
    for dy in -r..=r {
        let yy = py + dy;
        if yy < 0 || yy >= h {
            continue;
        }
        for dx in -r..=r {
            let xx = px + dx;
            if xx < 0 || xx >= w || dx * dx + dy * dy > r * r + r {
                continue;
            }
            let cell = (yy * w + xx) as usize;
            sum[cell] += total;
            count[cell] = count[cell].saturating_add(n);
        }
    }
}

/// Six class breaks at the 1/7 … 6/7 quantiles (of at most 100,000 evenly spaced values).
fn quantile_breaks(values: &[f64]) -> [f64; 6] {
    let step = (values.len() / 100_000).max(1);
    let mut sample: Vec<f64> = values
        .iter()
        .step_by(step)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let mut breaks = [f64::NAN; 6];
    if sample.is_empty() {
        return breaks;
    }
    sample.sort_by(f64::total_cmp);
    for (k, b) in breaks.iter_mut().enumerate() {
        let index = ((k + 1) * sample.len() / 7).min(sample.len() - 1);
        *b = sample[index];
    }
    breaks
}

fn legend(values: &[f64], breaks: &[f64; 6]) -> Vec<LegendRange> {
    let (min, max) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    let mut edges = vec![min];
    edges.extend_from_slice(breaks);
    edges.push(max);
    (0..7)
        .map(|k| LegendRange {
            color_code: format!("#{:02X}{:02X}{:02X}", RAMP[k][0], RAMP[k][1], RAMP[k][2]),
            min: edges[k],
            max: edges[k + 1],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathering_points_per_pixel_paints_what_each_points_own_dot_would() {
        // Overlapping passes of two swath widths, some points without a value, one point off
        // the canvas's extent.
        let n = 5_000;
        let lon: Vec<f64> = (0..n)
            .map(|i| -89.80 + (i % 97) as f64 * 0.00002)
            .chain([-89.81])
            .collect();
        let lat: Vec<f64> = (0..n)
            .map(|i| 40.47 + (i % 89) as f64 * 0.00002)
            .chain([40.47])
            .collect();
        let widths: Vec<f64> = (0..=n)
            .map(|i| if i % 3 == 0 { 12.0 } else { 4.5 })
            .collect();
        let values: Vec<f64> = (0..=n)
            .map(|i| {
                if i % 11 == 0 {
                    f64::NAN
                } else {
                    (i % 37) as f64
                }
            })
            .collect();
        let canvas = Canvas::covering(&lon[..n], &lat[..n], 96).unwrap();
        let (sum, count) = canvas.paint(&lon, &lat, &widths, &values);

        let (w, h) = (canvas.width as usize, canvas.height as usize);
        let (mut one_sum, mut one_count) = (vec![0f64; w * h], vec![0u32; w * h]);
        for i in 0..=n {
            if values[i].is_nan() {
                continue;
            }
            let (x, y) = canvas.local.to_xy(lon[i], lat[i]);
            let centre = (
                (x / canvas.metres_per_px).round() as i64,
                (-y / canvas.metres_per_px).round() as i64,
            );
            let r = ((widths[i] / 2.0) / canvas.metres_per_px).round() as usize;
            assert!(r <= MAX_RADIUS_PX);
            paint_disc(
                &mut one_sum,
                &mut one_count,
                (w, h),
                centre,
                r,
                values[i],
                1,
            );
        }
        assert_eq!(count, one_count);
        assert!(
            count.iter().filter(|&&c| c > 1).count() > 100,
            "dots overlap"
        );
        for (a, b) in sum.iter().zip(&one_sum) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} against {b}");
        }
    }

    #[test]
    fn renders_a_decodable_png_whose_classes_follow_the_values() {
        let lon: Vec<f64> = (0..400)
            .map(|i| -89.80 + (i % 20) as f64 * 0.0001)
            .collect();
        let lat: Vec<f64> = (0..400).map(|i| 40.47 + (i / 20) as f64 * 0.0001).collect();
        let values: Vec<f64> = (0..400).map(|i| (i % 20) as f64).collect();
        let widths = vec![10.0; 400];
        let canvas = Canvas::covering(&lon, &lat, 128).unwrap();
        let image = canvas
            .render("yield", &lon, &lat, &widths, &values)
            .unwrap();
        assert_eq!(image.legend.len(), 7);
        assert_eq!(image.legend[0].min, 0.0);
        assert_eq!(image.legend[6].max, 19.0);
        assert_eq!(image.legend[0].color_code, "#C80000");
        let decoder = png::Decoder::new(std::io::Cursor::new(&image.png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (image.width, image.height));
        // West (low values) is red, east (high values) green.
        let row = (info.height / 2) as usize * info.line_size;
        let west = &buf[row + 4..row + 8];
        let east_px = (info.width - 2) as usize;
        let east = &buf[row + east_px * 4..row + east_px * 4 + 4];
        assert_eq!(west[3], 255);
        assert!(west[0] > 150 && west[1] < 100, "{west:?}");
        assert!(east[1] > 100 && east[0] == 0, "{east:?}");
    }
}
