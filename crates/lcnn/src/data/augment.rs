//! Augmentation and normalization as Keras' `ImageDataGenerator`.
//!
//! Per image, in Keras' order: a random affine transform (rotation, shift, zoom about the image
//! centre; bilinear sampling, Keras' `interpolation_order=1`, with `fill_mode="nearest"`: points
//! outside take the nearest edge pixel), then random flips, then `standardize`: multiply by
//! `rescale`, subtract the featurewise mean, divide by `std + 1e-6`. `fit` computes the
//! per-channel mean and std of the rescaled training images, as Keras' `fit`.
//!
//! The geometry was checked against Keras 3's `apply_affine_transform` (scipy `order=1`,
//! `mode="nearest"`) to 1e-4. It follows the documented meaning of the options:
//! `width_shift_range` moves the image horizontally and `height_shift_range` vertically, about
//! the true centre `((H-1)/2, (W-1)/2)`. (Keras since 2.6 swaps the axes of its matrix, so its
//! height range actually shifts columns; with the usual equal ranges on square images both
//! give the same distribution of transforms.)

use super::dataset::Dataset;
use super::error::DataError;
use super::rng::SplitMix64;

/// Keras' epsilon in `x /= (std + 1e-6)`.
pub const STD_EPSILON: f32 = 1e-6;

/// The `ImageDataGenerator` options lcnn supports, with Keras' meaning (saved in a run's
/// `config.json`; a missing field takes its default, which is Keras' default).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Degrees; a rotation uniform in `[-r, r]`.
    pub rotation_range: f32,
    /// Below 1: fraction of the width; from 1: pixels. A shift uniform in `[-r, r]`.
    pub width_shift_range: f32,
    /// Below 1: fraction of the height; from 1: pixels.
    pub height_shift_range: f32,
    /// Zoom factors for rows and columns, each uniform in `[1 - z, 1 + z]` (above 1 zooms out).
    pub zoom_range: f32,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
    /// Mirror top-bottom with probability 1/2.
    pub vertical_flip: bool,
    /// Multiplier applied after the transform; 0 means none (Keras `rescale=None`).
    pub rescale: f32,
    /// Subtract the per-channel mean of the training set.
    pub featurewise_center: bool,
    /// Divide by the per-channel std of the training set (implies `featurewise_center`, as Keras).
    pub featurewise_std_normalization: bool,
}

impl AugmentConfig {
    /// Checks the ranges (finite, non-negative, zoom below 1).
    pub fn validate(&self) -> Result<(), DataError> {
        let check = |what: &'static str, v: f32, max: f32| {
            if v.is_finite() && v >= 0.0 && v < max {
                Ok(())
            } else {
                Err(DataError::invalid(
                    what,
                    v,
                    format!("a finite value in [0, {max})"),
                ))
            }
        };
        check("rotation range", self.rotation_range, 360.0)?;
        check("width shift range", self.width_shift_range, f32::MAX)?;
        check("height shift range", self.height_shift_range, f32::MAX)?;
        check("zoom range", self.zoom_range, 1.0)?;
        if !self.rescale.is_finite() {
            return Err(DataError::invalid(
                "rescale",
                self.rescale,
                "a finite number",
            ));
        }
        Ok(())
    }

    /// True when some random transform is configured.
    pub fn has_random_transform(&self) -> bool {
        self.rotation_range != 0.0
            || self.width_shift_range != 0.0
            || self.height_shift_range != 0.0
            || self.zoom_range != 0.0
            || self.horizontal_flip
            || self.vertical_flip
    }

    /// The effective multiplier (1 when `rescale` is 0, i.e. Keras' `None`).
    pub fn scale(&self) -> f32 {
        if self.rescale == 0.0 {
            1.0
        } else {
            self.rescale
        }
    }
}

/// The random parameters drawn for one image (Keras' `get_random_transform`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TransformParams {
    /// Rotation in degrees.
    pub theta: f64,
    /// Vertical shift in pixels (Keras `tx`).
    pub shift_rows: f64,
    /// Horizontal shift in pixels (Keras `ty`).
    pub shift_cols: f64,
    /// Zoom of rows (1 = none).
    pub zoom_rows: f64,
    /// Zoom of columns (1 = none).
    pub zoom_cols: f64,
    pub flip_horizontal: bool,
    pub flip_vertical: bool,
}

impl TransformParams {
    /// No change.
    pub fn identity() -> Self {
        TransformParams {
            zoom_rows: 1.0,
            zoom_cols: 1.0,
            ..Default::default()
        }
    }

    /// The affine map from an output pixel (row, col), after any flip, to the input point it
    /// samples, `x = ax*col + bx*row + ex`, `y = ay*col + by*row + ey`, as
    /// `[ax, bx, ex, ay, by, ey]` (Keras' `apply_affine_transform` about the image center).
    pub fn source_map(&self, h: usize, w: usize) -> [f64; 6] {
        // x = cos*ux - sin*uy + cx, y = sin*ux + cos*uy + cy,
        // ux = zoom_cols*(col - cx) + shift_cols, uy = zoom_rows*(row - cy) + shift_rows.
        let (sin, cos) = self.theta.to_radians().sin_cos();
        let cx = (w as f64 - 1.0) / 2.0;
        let cy = (h as f64 - 1.0) / 2.0;
        let (zc, zr) = (self.zoom_cols, self.zoom_rows);
        let ox = self.shift_cols - zc * cx;
        let oy = self.shift_rows - zr * cy;
        [
            cos * zc,
            -sin * zr,
            cos * ox - sin * oy + cx,
            sin * zc,
            cos * zr,
            sin * ox + cos * oy + cy,
        ]
    }

    /// Without rotation the map is separable: the input column each output column samples
    /// (after the horizontal flip, clamped to the image as Keras' `nearest` fill), and the
    /// input row of each output row, exactly as [`Augmenter::apply_chw`] computes them
    /// (`None` with a rotation).
    pub fn separable_sources(&self, h: usize, w: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        if self.theta != 0.0 {
            return None;
        }
        let [ax, bx, ex, ay, by, ey] = self.source_map(h, w);
        let (maxx, maxy) = ((w - 1) as f32, (h - 1) as f32);
        // With sin = 0, bx*row and ay*col are zeros (of either sign), which add nothing.
        let xs = (0..w)
            .map(|col| {
                let sc = if self.flip_horizontal {
                    w - 1 - col
                } else {
                    col
                } as f64;
                ((ax * sc + bx * 0.0 + ex) as f32).clamp(0.0, maxx)
            })
            .collect();
        let ys = (0..h)
            .map(|row| {
                let sr = if self.flip_vertical { h - 1 - row } else { row } as f64;
                ((ay * 0.0 + by * sr + ey) as f32).clamp(0.0, maxy)
            })
            .collect();
        Some((xs, ys))
    }

    fn is_affine_identity(&self) -> bool {
        self.theta == 0.0
            && self.shift_rows == 0.0
            && self.shift_cols == 0.0
            && self.zoom_rows == 1.0
            && self.zoom_cols == 1.0
    }
}

/// A configured (and, for featurewise options, fitted) `ImageDataGenerator`.
#[derive(Clone, Debug, PartialEq)]
pub struct Augmenter {
    pub config: AugmentConfig,
    /// Per-channel mean of the rescaled training images (when `featurewise_center`).
    pub mean: Option<Vec<f32>>,
    /// Per-channel std of the rescaled training images (when `featurewise_std_normalization`).
    pub std: Option<Vec<f32>>,
}

impl Augmenter {
    /// Checks `config`. As Keras, `featurewise_std_normalization` turns on `featurewise_center`.
    /// Featurewise options need [`Augmenter::fit`] before use.
    pub fn new(mut config: AugmentConfig) -> Result<Self, DataError> {
        config.validate()?;
        if config.featurewise_std_normalization {
            config.featurewise_center = true;
        }
        Ok(Augmenter {
            config,
            mean: None,
            std: None,
        })
    }

    /// [`Augmenter::new`] then [`Augmenter::fit`] on the training set.
    pub fn fitted(config: AugmentConfig, train: &Dataset) -> Result<Self, DataError> {
        let mut a = Augmenter::new(config)?;
        a.fit(train)?;
        Ok(a)
    }

    /// Only `rescale` (no transform, no normalization): what evaluation of a model trained
    /// without featurewise options needs.
    pub fn rescale_only(rescale: f32) -> Self {
        Augmenter {
            config: AugmentConfig {
                rescale,
                ..Default::default()
            },
            mean: None,
            std: None,
        }
    }

    /// Keras `fit`: per-channel mean and std (population) of the rescaled images. Does nothing
    /// unless a featurewise option is set.
    pub fn fit(&mut self, train: &Dataset) -> Result<(), DataError> {
        if !(self.config.featurewise_center || self.config.featurewise_std_normalization) {
            return Ok(());
        }
        train.validate()?;
        if train.is_empty() {
            return Err(DataError::invalid(
                "training set",
                "0 images",
                "images to fit the featurewise statistics on",
            ));
        }
        let c = train.channels;
        let mut sum = vec![0u64; c];
        let mut sum_sq = vec![0u64; c];
        for px in train.images.chunks_exact(c) {
            for ((s, q), &v) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(px) {
                *s += v as u64;
                *q += (v as u64) * (v as u64);
            }
        }
        let count = (train.images.len() / c) as f64;
        let scale = self.config.scale() as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for (s, q) in sum.iter().zip(&sum_sq) {
            let m = *s as f64 / count;
            let var = (*q as f64 / count - m * m).max(0.0);
            mean.push((m * scale) as f32);
            std.push((var.sqrt() * scale.abs()) as f32);
        }
        if self.config.featurewise_center {
            self.mean = Some(mean);
        }
        if self.config.featurewise_std_normalization {
            self.std = Some(std);
        }
        Ok(())
    }

    /// Checks that the featurewise statistics exist and have `channels` entries.
    pub fn check_ready(&self, channels: usize) -> Result<(), DataError> {
        let check = |on: bool, stats: &Option<Vec<f32>>, what: &'static str| {
            if !on {
                return Ok(());
            }
            match stats {
                Some(v) if v.len() == channels => Ok(()),
                Some(v) => Err(DataError::invalid(
                    what,
                    format!("{} channels", v.len()),
                    format!("{channels} channels, as the images"),
                )),
                None => Err(DataError::invalid(
                    what,
                    "not fitted",
                    "statistics from Augmenter::fit on the training set",
                )),
            }
        };
        check(
            self.config.featurewise_center,
            &self.mean,
            "featurewise mean",
        )?;
        check(
            self.config.featurewise_std_normalization,
            &self.std,
            "featurewise std",
        )
    }

    /// Draws the random parameters for an image of `height` x `width`.
    pub fn random_params(
        &self,
        height: usize,
        width: usize,
        rng: &mut SplitMix64,
    ) -> TransformParams {
        let c = &self.config;
        let mut p = TransformParams::identity();
        if c.rotation_range != 0.0 {
            let r = c.rotation_range as f64;
            p.theta = rng.uniform(-r, r);
        }
        let shift = |range: f32, size: usize, rng: &mut SplitMix64| {
            let r = range as f64;
            let v = rng.uniform(-r, r);
            if range < 1.0 {
                v * size as f64
            } else {
                v
            }
        };
        if c.height_shift_range != 0.0 {
            p.shift_rows = shift(c.height_shift_range, height, rng);
        }
        if c.width_shift_range != 0.0 {
            p.shift_cols = shift(c.width_shift_range, width, rng);
        }
        if c.zoom_range != 0.0 {
            let z = c.zoom_range as f64;
            p.zoom_cols = rng.uniform(1.0 - z, 1.0 + z);
            p.zoom_rows = rng.uniform(1.0 - z, 1.0 + z);
        }
        p.flip_horizontal = rng.coin() && c.horizontal_flip;
        p.flip_vertical = rng.coin() && c.vertical_flip;
        p
    }

    /// Transforms one HWC u8 image with `params` and standardizes it into `out`, CHW f32
    /// (`channels * height * width` values), the layout of a Burn batch.
    pub fn apply_chw(
        &self,
        img: &[u8],
        (h, w, c): (usize, usize, usize),
        params: &TransformParams,
        out: &mut [f32],
    ) {
        debug_assert_eq!(img.len(), h * w * c);
        debug_assert_eq!(out.len(), h * w * c);
        let plane = h * w;
        let (mul, sub, div) = self.standardize_terms(c);
        let store = |out: &mut [f32], ch: usize, o: usize, v: f32| {
            out[ch * plane + o] = ((v * mul) - sub[ch]) / div[ch];
        };
        if params.is_affine_identity() {
            for r in 0..h {
                let sr = if params.flip_vertical { h - 1 - r } else { r };
                for col in 0..w {
                    let sc = if params.flip_horizontal {
                        w - 1 - col
                    } else {
                        col
                    };
                    let src = &img[(sr * w + sc) * c..(sr * w + sc + 1) * c];
                    for (ch, &v) in src.iter().enumerate() {
                        store(out, ch, r * w + col, v as f32);
                    }
                }
            }
            return;
        }
        let [ax, bx, ex, ay, by, ey] = params.source_map(h, w);
        let (maxx, maxy) = ((w - 1) as f32, (h - 1) as f32);
        for r in 0..h {
            let sr = if params.flip_vertical { h - 1 - r } else { r } as f64;
            for col in 0..w {
                let sc = if params.flip_horizontal {
                    w - 1 - col
                } else {
                    col
                } as f64;
                let x = ((ax * sc + bx * sr + ex) as f32).clamp(0.0, maxx);
                let y = ((ay * sc + by * sr + ey) as f32).clamp(0.0, maxy);
                let (x0, y0) = (x as usize, y as usize);
                let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                let (fx, fy) = (x - x0 as f32, y - y0 as f32);
                let (p00, p01) = ((y0 * w + x0) * c, (y0 * w + x1) * c);
                let (p10, p11) = ((y1 * w + x0) * c, (y1 * w + x1) * c);
                for ch in 0..c {
                    let top = img[p00 + ch] as f32 * (1.0 - fx) + img[p01 + ch] as f32 * fx;
                    let bottom = img[p10 + ch] as f32 * (1.0 - fx) + img[p11 + ch] as f32 * fx;
                    store(out, ch, r * w + col, top * (1.0 - fy) + bottom * fy);
                }
            }
        }
    }

    /// The whole per-image pipeline into CHW f32: a random transform drawn from `rng` when
    /// given (training), else none (evaluation), then standardization.
    pub fn process_chw(
        &self,
        img: &[u8],
        shape: (usize, usize, usize),
        rng: Option<&mut SplitMix64>,
        out: &mut [f32],
    ) {
        let params = self.params_for(shape, rng);
        self.apply_chw(img, shape, &params, out);
    }

    /// The transform of one image: drawn from `rng` when given (training) and the config
    /// has a random transform, else none.
    pub fn params_for(
        &self,
        (h, w, _): (usize, usize, usize),
        rng: Option<&mut SplitMix64>,
    ) -> TransformParams {
        match rng {
            Some(rng) if self.config.has_random_transform() => self.random_params(h, w, rng),
            _ => TransformParams::identity(),
        }
    }

    /// Keras `standardize` on an HWC f32 image in place (`channels` last).
    pub fn standardize(&self, x: &mut [f32], channels: usize) {
        let (mul, sub, div) = self.standardize_terms(channels);
        for px in x.chunks_exact_mut(channels) {
            for (ch, v) in px.iter_mut().enumerate() {
                *v = (*v * mul - sub[ch]) / div[ch];
            }
        }
    }

    /// `(rescale, mean per channel, std + eps per channel)` with neutral values where off.
    /// `standardize`'s terms for `c` channels: each value becomes `(v * mul - sub[ch]) /
    /// div[ch]`.
    pub fn standardize_terms(&self, c: usize) -> (f32, Vec<f32>, Vec<f32>) {
        let mul = self.config.scale();
        let sub = match (&self.mean, self.config.featurewise_center) {
            (Some(m), true) if m.len() == c => m.clone(),
            _ => vec![0.0; c],
        };
        let div = match (&self.std, self.config.featurewise_std_normalization) {
            (Some(s), true) if s.len() == c => s.iter().map(|v| v + STD_EPSILON).collect(),
            _ => vec![1.0; c],
        };
        (mul, sub, div)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(h: usize, w: usize, c: usize) -> Vec<u8> {
        (0..h * w * c).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn chw_of(img: &[u8], (h, w, c): (usize, usize, usize)) -> Vec<f32> {
        let mut out = vec![0.0; h * w * c];
        for i in 0..h * w {
            for ch in 0..c {
                out[ch * h * w + i] = img[i * c + ch] as f32;
            }
        }
        out
    }

    #[test]
    fn identity_is_a_layout_change() {
        let a = Augmenter::new(AugmentConfig::default()).unwrap();
        let shape = (3, 4, 2);
        let img = image(3, 4, 2);
        let mut out = vec![0.0; 24];
        a.apply_chw(&img, shape, &TransformParams::identity(), &mut out);
        assert_eq!(out, chw_of(&img, shape));
    }

    #[test]
    fn integer_shift_moves_pixels_and_fills_with_the_edge() {
        let a = Augmenter::new(AugmentConfig::default()).unwrap();
        let (h, w) = (4, 5);
        let img: Vec<u8> = (0..20).collect();
        let mut out = vec![0.0; 20];
        let p = TransformParams {
            shift_cols: 2.0,
            ..TransformParams::identity()
        };
        a.apply_chw(&img, (h, w, 1), &p, &mut out);
        // Input column = output column + 2, clamped to the last column.
        assert_eq!(&out[0..5], &[2.0, 3.0, 4.0, 4.0, 4.0]);
        let p = TransformParams {
            shift_rows: -1.0,
            ..TransformParams::identity()
        };
        a.apply_chw(&img, (h, w, 1), &p, &mut out);
        assert_eq!(&out[0..5], &[0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(&out[5..10], &[0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(&out[15..20], &[10.0, 11.0, 12.0, 13.0, 14.0]);
    }

    #[test]
    fn half_pixel_shift_is_bilinear() {
        let a = Augmenter::new(AugmentConfig::default()).unwrap();
        let img = vec![0u8, 100, 200];
        let mut out = vec![0.0; 3];
        let p = TransformParams {
            shift_cols: 0.5,
            ..TransformParams::identity()
        };
        a.apply_chw(&img, (1, 3, 1), &p, &mut out);
        assert_eq!(out, vec![50.0, 150.0, 200.0]);
    }

    #[test]
    fn flips_and_rotation_by_180_agree() {
        let a = Augmenter::new(AugmentConfig::default()).unwrap();
        let shape = (5, 5, 3);
        let img = image(5, 5, 3);
        let mut flipped = vec![0.0; 75];
        let both = TransformParams {
            flip_horizontal: true,
            flip_vertical: true,
            ..TransformParams::identity()
        };
        a.apply_chw(&img, shape, &both, &mut flipped);
        let mut rotated = vec![0.0; 75];
        let rot = TransformParams {
            theta: 180.0,
            ..TransformParams::identity()
        };
        a.apply_chw(&img, shape, &rot, &mut rotated);
        for (x, y) in flipped.iter().zip(&rotated) {
            assert!((x - y).abs() < 1e-3, "{x} {y}");
        }
        let mut h = vec![0.0; 75];
        let hf = TransformParams {
            flip_horizontal: true,
            ..TransformParams::identity()
        };
        a.apply_chw(&img, shape, &hf, &mut h);
        // Row 0, col 0 of channel 0 is the input's row 0, col 4.
        assert_eq!(h[0], img[4 * 3] as f32);
    }

    #[test]
    fn fit_and_standardize_like_keras() {
        let ds = Dataset {
            images: vec![0, 10, 100, 30, 200, 50],
            labels: vec![0, 0, 0],
            height: 1,
            width: 1,
            channels: 2,
            classes: vec!["a".into()],
        };
        let cfg = AugmentConfig {
            rescale: 0.5,
            featurewise_std_normalization: true,
            ..Default::default()
        };
        let a = Augmenter::fitted(cfg, &ds).unwrap();
        assert!(
            a.config.featurewise_center,
            "std normalization implies centering"
        );
        let mean = a.mean.clone().unwrap();
        let std = a.std.clone().unwrap();
        assert!((mean[0] - 50.0).abs() < 1e-4 && (mean[1] - 15.0).abs() < 1e-4);
        // population std of [0, 50, 100] = 40.8248
        assert!((std[0] - 40.824_83).abs() < 1e-3, "{std:?}");
        let mut x = vec![200.0f32, 50.0];
        a.standardize(&mut x, 2);
        assert!((x[0] - (100.0 - 50.0) / (40.824_83 + 1e-6)).abs() < 1e-4);
        let mut out = vec![0.0; 2];
        a.process_chw(&[200, 50], (1, 1, 2), None, &mut out);
        assert!((out[0] - x[0]).abs() < 1e-6 && (out[1] - x[1]).abs() < 1e-6);
    }

    #[test]
    fn random_params_respect_ranges_and_seed() {
        let a = Augmenter::new(AugmentConfig {
            rotation_range: 20.0,
            width_shift_range: 0.1,
            height_shift_range: 3.0,
            zoom_range: 0.2,
            horizontal_flip: true,
            ..Default::default()
        })
        .unwrap();
        let mut flips = 0;
        for s in 0..500 {
            let p = a.random_params(32, 40, &mut SplitMix64::new(s));
            assert_eq!(p, a.random_params(32, 40, &mut SplitMix64::new(s)));
            assert!(p.theta.abs() <= 20.0);
            assert!(p.shift_cols.abs() <= 4.0, "0.1 of width 40");
            assert!(p.shift_rows.abs() <= 3.0, "3 pixels");
            assert!((0.8..=1.2).contains(&p.zoom_rows) && (0.8..=1.2).contains(&p.zoom_cols));
            assert!(!p.flip_vertical);
            flips += p.flip_horizontal as i32;
        }
        assert!((150..350).contains(&flips), "{flips}");
    }

    #[test]
    fn invalid_configs_and_unfitted_stats_are_errors() {
        for cfg in [
            AugmentConfig {
                zoom_range: 1.0,
                ..Default::default()
            },
            AugmentConfig {
                rotation_range: -1.0,
                ..Default::default()
            },
            AugmentConfig {
                width_shift_range: f32::NAN,
                ..Default::default()
            },
        ] {
            assert!(Augmenter::new(cfg).is_err());
        }
        let a = Augmenter::new(AugmentConfig {
            featurewise_center: true,
            ..Default::default()
        })
        .unwrap();
        assert!(a.check_ready(3).is_err());
        assert!(Augmenter::rescale_only(1.0 / 255.0).check_ready(3).is_ok());
    }
}
