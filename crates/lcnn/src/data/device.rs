//! A dataset kept on the training device: its images are uploaded once, and each batch is
//! selected, shifted, flipped, zoomed and standardized there, so a GPU does not wait on the
//! host between steps (Keras' `ImageDataGenerator` transforms without rotation, the separable
//! ones).
//!
//! The host's batch loader only draws each image's transform ([`super::Batch::transforms`],
//! from the seed, the epoch and the image), which the host turns into per-column and per-row source tables
//! (`N * (H + W)` numbers); the device gathers along the width, then along the height, with
//! [`super::Augmenter::apply_chw`]'s bilinear weights and arithmetic, so a batch is the host's
//! batch.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::augment::{Augmenter, TransformParams};
use super::dataset::Dataset;

/// Images of one dataset on a device, raw 0-255 values as f32, `[N, C, H, W]`.
#[derive(Debug, Clone)]
pub struct DeviceDataset {
    images: Tensor<4>,
    shape: (usize, usize, usize),
}

impl DeviceDataset {
    /// The bytes `dataset` takes on a device (f32 values).
    pub fn bytes(dataset: &Dataset) -> usize {
        dataset.images.len() * 4
    }

    /// Whether batches with `augmenter`'s transforms can be made on a device: anything but a
    /// rotation (which mixes rows and columns).
    pub fn supports(augmenter: &Augmenter) -> bool {
        augmenter.config.rotation_range == 0.0
    }

    /// Uploads `dataset`'s images to `device`.
    pub fn upload(dataset: &Dataset, device: &Device) -> Self {
        let (h, w, c) = dataset.shape();
        let n = dataset.len();
        let values: Vec<f32> = dataset.images.iter().map(|&v| v as f32).collect();
        let images = Tensor::<4>::from_data(TensorData::new(values, [n, h, w, c]), device)
            .permute([0, 3, 1, 2]);
        DeviceDataset {
            images,
            shape: (h, w, c),
        }
    }

    /// The batch of images `indices`, each transformed by its `params` (no rotation) and
    /// standardized by `augmenter`, on the device.
    ///
    /// # Shapes
    /// - output: `[indices.len(), C, H, W]`
    pub fn batch(
        &self,
        indices: &[usize],
        params: &[TransformParams],
        augmenter: &Augmenter,
    ) -> Tensor<4> {
        assert_eq!(indices.len(), params.len(), "one transform per image");
        let device = self.images.device();
        let (h, w, c) = self.shape;
        let n = indices.len();
        let rows = Tensor::<1, Int>::from_data(
            TensorData::new(indices.iter().map(|&i| i as i64).collect(), [n]),
            &device,
        );
        let mut x = self.images.clone().select(0, rows);
        if params.iter().any(|p| *p != TransformParams::identity()) {
            let mut cols = Taps::with_capacity(n * w);
            let mut lines = Taps::with_capacity(n * h);
            for p in params {
                let (xs, ys) = p
                    .separable_sources(h, w)
                    .expect("a rotation cannot be applied on the device");
                cols.extend(&xs, w);
                lines.extend(&ys, h);
            }
            // Along the width: [N, 1, 1, W] taps for every channel and row; then the height.
            x = cols.interpolate(x, [n, 1, 1, w], [n, c, h, w], 3, &device);
            x = lines.interpolate(x, [n, 1, h, 1], [n, c, h, w], 2, &device);
        }
        let (mul, sub, div) = augmenter.standardize_terms(c);
        let per_channel =
            |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, c, 1, 1]), &device);
        (x.mul_scalar(mul) - per_channel(sub)) / per_channel(div)
    }
}

/// Linear interpolation taps along one axis: for each output position, the two source indices
/// and the weight of the second, as `apply_chw` computes them from a clamped source point.
struct Taps {
    lo: Vec<i64>,
    hi: Vec<i64>,
    frac: Vec<f32>,
}

impl Taps {
    fn with_capacity(n: usize) -> Self {
        Taps {
            lo: Vec::with_capacity(n),
            hi: Vec::with_capacity(n),
            frac: Vec::with_capacity(n),
        }
    }

    /// Adds one image's source points along an axis of `len` pixels.
    fn extend(&mut self, points: &[f32], len: usize) {
        for &p in points {
            let lo = p as usize;
            self.lo.push(lo as i64);
            self.hi.push((lo + 1).min(len - 1) as i64);
            self.frac.push(p - lo as f32);
        }
    }

    /// `x` sampled along `dim`: `x[lo] * (1 - frac) + x[hi] * frac`, the taps shaped `taps`
    /// and broadcast to `full`.
    fn interpolate(
        self,
        x: Tensor<4>,
        taps: [usize; 4],
        full: [usize; 4],
        dim: usize,
        device: &Device,
    ) -> Tensor<4> {
        let index = |v: Vec<i64>| {
            Tensor::<4, Int>::from_data(TensorData::new(v, taps), device).expand(full)
        };
        let frac = Tensor::<4>::from_data(TensorData::new(self.frac, taps), device);
        let keep = frac.clone().neg().add_scalar(1.0);
        x.clone().gather(dim, index(self.lo)) * keep + x.gather(dim, index(self.hi)) * frac
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::AugmentConfig;
    use crate::data::loader::{make_batch, LoaderConfig};

    fn dataset(n: usize, (h, w, c): (usize, usize, usize)) -> Dataset {
        let images = (0..n * h * w * c)
            .map(|i| ((i * 37 + i / 7) % 256) as u8)
            .collect();
        Dataset::new(images, vec![0; n], (h, w, c), vec!["a".into()]).unwrap()
    }

    /// The device's batch against the host's, for the loader's draws of epoch 3.
    fn same_as_host(config: AugmentConfig, shape: (usize, usize, usize)) {
        let ds = dataset(6, shape);
        let mut aug = Augmenter::new(config).unwrap();
        if aug.config.featurewise_center || aug.config.featurewise_std_normalization {
            aug.fit(&ds).unwrap();
        }
        let device = Device::flex();
        let on_device = DeviceDataset::upload(&ds, &device);
        let cfg = LoaderConfig::training(4, 11, 3);
        let order = [5usize, 0, 3, 3];
        let host = make_batch(&ds, &aug, &order, 0, &cfg);
        let got = on_device
            .batch(&host.indices, &host.transforms, &aug)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(got, host.images, "{:?}", aug.config);
    }

    #[test]
    fn device_batches_are_the_host_batches_bit_for_bit() {
        let shift_flip = AugmentConfig {
            width_shift_range: 0.2,
            height_shift_range: 0.1,
            horizontal_flip: true,
            vertical_flip: true,
            rescale: 1.0 / 255.0,
            ..Default::default()
        };
        same_as_host(shift_flip.clone(), (5, 7, 3));
        // Shifts in pixels, a zoom, and featurewise standardization.
        same_as_host(
            AugmentConfig {
                width_shift_range: 2.0,
                zoom_range: 0.2,
                featurewise_center: true,
                featurewise_std_normalization: true,
                ..shift_flip
            },
            (6, 4, 1),
        );
        // No transform at all: select and rescale.
        same_as_host(
            AugmentConfig {
                rescale: 1.0 / 255.0,
                ..Default::default()
            },
            (3, 3, 2),
        );
    }

    #[test]
    fn only_rotation_stays_on_the_host() {
        let rotate = AugmentConfig {
            rotation_range: 10.0,
            ..Default::default()
        };
        assert!(!DeviceDataset::supports(&Augmenter::new(rotate).unwrap()));
        let shift = AugmentConfig {
            width_shift_range: 0.1,
            zoom_range: 0.1,
            ..Default::default()
        };
        assert!(DeviceDataset::supports(&Augmenter::new(shift).unwrap()));
    }
}
