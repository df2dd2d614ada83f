//! Batching for the training loop: one epoch of batches, prepared ahead on worker threads so
//! that augmentation never starves the training step.
//!
//! The order of an epoch depends only on `(seed, epoch)`, and each image's random transform
//! only on `(seed, epoch, image index)`: a resumed run sees identical batches, whatever the
//! number of workers. As Keras, the last partial batch is included.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::augment::{Augmenter, TransformParams};
use super::dataset::Dataset;
use super::error::DataError;
use super::rng::{mix, permutation, SplitMix64};

/// One batch, ready for a Burn tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `len * channels * height * width` values, NCHW (Burn's layout), after transform,
    /// rescale and featurewise normalization; empty when the loader makes no images
    /// ([`LoaderConfig::images`]).
    pub images: Vec<f32>,
    /// Class index of each image.
    pub labels: Vec<u32>,
    /// Number of images.
    pub len: usize,
    /// `[len, channels, height, width]`.
    pub shape: [usize; 4],
    /// Dataset index of each image.
    pub indices: Vec<usize>,
    /// Each image's transform (identity without augmentation): what `images` applied, or
    /// what a consumer that makes the images elsewhere applies ([`crate::data::device`]).
    pub transforms: Vec<TransformParams>,
}

/// How an epoch is cut into batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Shuffle the samples (from `seed` and `epoch`); otherwise dataset order.
    pub shuffle: bool,
    pub seed: u64,
    pub epoch: usize,
    /// Apply the augmenter's random transforms (training). Rescale and featurewise
    /// normalization are applied either way.
    pub augment: bool,
    /// Threads preparing batches (at least 1).
    pub workers: usize,
    /// Batches each worker prepares ahead of the consumer (at least 1).
    pub prefetch: usize,
    /// Make the images (default). Without, a batch has only its order, indices and labels:
    /// for a consumer that reads cached features of the images instead (bottleneck features).
    pub images: bool,
}

impl LoaderConfig {
    /// Dataset order, no augmentation, 2 workers, 2 batches ahead each.
    pub fn new(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            seed: 0,
            epoch: 0,
            augment: false,
            workers: 2,
            prefetch: 2,
            images: true,
        }
    }

    /// Training settings: shuffled from `(seed, epoch)` and augmented.
    pub fn training(batch_size: usize, seed: u64, epoch: usize) -> Self {
        LoaderConfig {
            shuffle: true,
            seed,
            epoch,
            augment: true,
            ..LoaderConfig::new(batch_size)
        }
    }
}

/// The sample order of an epoch: a permutation from `(seed, epoch)`, or `0..n`.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: usize) -> Vec<usize> {
    if shuffle {
        permutation(n, mix(&[seed, epoch as u64, 0x5348_5546]))
    } else {
        (0..n).collect()
    }
}

/// An iterator over the batches of one epoch, prepared by background workers.
pub struct BatchLoader {
    receivers: Vec<Receiver<Batch>>,
    handles: Vec<Option<JoinHandle<()>>>,
    next: usize,
    num_batches: usize,
}

impl BatchLoader {
    /// Starts the workers for one epoch over `dataset`.
    pub fn new(
        dataset: Arc<Dataset>,
        augmenter: Arc<Augmenter>,
        config: LoaderConfig,
    ) -> Result<Self, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::invalid("batch size", 0, "at least 1"));
        }
        dataset.validate()?;
        augmenter.check_ready(dataset.channels)?;
        let n = dataset.len();
        let num_batches = n.div_ceil(config.batch_size);
        let order = Arc::new(epoch_order(n, config.shuffle, config.seed, config.epoch));
        let workers = config.workers.max(1).min(num_batches.max(1));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for k in 0..workers {
            let (tx, rx) = sync_channel(config.prefetch.max(1));
            let (ds, aug, order, cfg) = (
                dataset.clone(),
                augmenter.clone(),
                order.clone(),
                config.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("lcnn-batch-{k}"))
                .spawn(move || {
                    for b in (k..num_batches).step_by(workers) {
                        let batch = make_batch(&ds, &aug, &order, b, &cfg);
                        if tx.send(batch).is_err() {
                            return; // the loader was dropped
                        }
                    }
                })
                .map_err(|e| DataError::io("<batch worker thread>", e))?;
            receivers.push(rx);
            handles.push(Some(handle));
        }
        Ok(BatchLoader {
            receivers,
            handles,
            next: 0,
            num_batches,
        })
    }

    /// Batches in the epoch: `ceil(len / batch_size)`.
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }
}

/// The generator of image `i`'s random transform in the epoch `cfg` describes (`None`
/// without augmentation): it depends only on the seed, the epoch and the image.
fn image_rng(cfg: &LoaderConfig, i: usize) -> Option<SplitMix64> {
    cfg.augment
        .then(|| SplitMix64::new(mix(&[cfg.seed, cfg.epoch as u64, i as u64])))
}

/// Builds batch `b` of the epoch described by `order`.
pub fn make_batch(
    ds: &Dataset,
    aug: &Augmenter,
    order: &[usize],
    b: usize,
    cfg: &LoaderConfig,
) -> Batch {
    let start = b * cfg.batch_size;
    let end = (start + cfg.batch_size).min(order.len());
    let indices = order[start..end].to_vec();
    let shape = ds.shape();
    let size = if cfg.images { ds.image_size() } else { 0 };
    let mut images = vec![0f32; indices.len() * size];
    let transforms: Vec<TransformParams> = indices
        .iter()
        .map(|&i| aug.params_for(shape, image_rng(cfg, i).as_mut()))
        .collect();
    for ((out, &i), params) in images
        .chunks_exact_mut(size.max(1))
        .zip(&indices)
        .zip(&transforms)
    {
        aug.apply_chw(ds.image(i), shape, params, out);
    }
    Batch {
        labels: indices.iter().map(|&i| ds.labels[i]).collect(),
        len: indices.len(),
        shape: [indices.len(), ds.channels, ds.height, ds.width],
        images,
        indices,
        transforms,
    }
}

impl Iterator for BatchLoader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.num_batches {
            return None;
        }
        let k = self.next % self.receivers.len();
        match self.receivers[k].recv() {
            Ok(batch) => {
                self.next += 1;
                Some(batch)
            }
            Err(_) => {
                // The worker ended without sending: it panicked. Surface the panic.
                self.next = self.num_batches;
                if let Some(Err(panic)) = self.handles[k].take().map(|h| h.join()) {
                    std::panic::resume_unwind(panic);
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.num_batches - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for BatchLoader {}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // Closing the channels makes the workers' next send fail, so they stop.
        self.receivers.clear();
        for h in self.handles.iter_mut().filter_map(Option::take) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::AugmentConfig;

    fn toy(n: usize) -> Arc<Dataset> {
        Arc::new(Dataset {
            images: (0..n * 12).map(|i| (i % 256) as u8).collect(),
            labels: (0..n).map(|i| (i % 3) as u32).collect(),
            height: 2,
            width: 2,
            channels: 3,
            classes: vec!["a".into(), "b".into(), "c".into()],
        })
    }

    #[test]
    fn covers_every_sample_once_with_a_partial_last_batch() {
        let ds = toy(10);
        let mut cfg = LoaderConfig::training(4, 7, 0);
        cfg.augment = false;
        let loader =
            BatchLoader::new(ds.clone(), Arc::new(Augmenter::rescale_only(0.0)), cfg).unwrap();
        assert_eq!(loader.num_batches(), 3);
        let batches: Vec<Batch> = loader.collect();
        assert_eq!(
            batches.iter().map(|b| b.len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_ne!(seen, (0..10).collect::<Vec<_>>(), "shuffled");
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let b = &batches[0];
        assert_eq!(b.shape, [4, 3, 2, 2]);
        let i = b.indices[1];
        assert_eq!(b.labels[1], ds.labels[i]);
        // NCHW: channel 1 of image 1, pixel 0 is HWC byte 1 of that image.
        assert_eq!(b.images[12 + 4], ds.image(i)[1] as f32);
    }

    #[test]
    fn same_seed_and_epoch_give_identical_batches_whatever_the_workers() {
        let ds = toy(37);
        let aug = Arc::new(
            Augmenter::new(AugmentConfig {
                width_shift_range: 0.3,
                rotation_range: 10.0,
                horizontal_flip: true,
                rescale: 1.0 / 255.0,
                ..Default::default()
            })
            .unwrap(),
        );
        let run = |workers, epoch| {
            let cfg = LoaderConfig {
                workers,
                ..LoaderConfig::training(5, 11, epoch)
            };
            BatchLoader::new(ds.clone(), aug.clone(), cfg)
                .unwrap()
                .collect::<Vec<_>>()
        };
        let a = run(1, 3);
        assert_eq!(a, run(3, 3));
        assert_ne!(a, run(2, 4));
    }

    #[test]
    fn unordered_evaluation_and_early_drop() {
        let ds = toy(9);
        let cfg = LoaderConfig::new(4);
        let mut loader = BatchLoader::new(ds, Arc::new(Augmenter::rescale_only(0.5)), cfg).unwrap();
        let first = loader.next().unwrap();
        assert_eq!(first.indices, vec![0, 1, 2, 3]);
        assert_eq!(first.images[1], 3.0 * 0.5, "channel 0 of pixel 1 is byte 3");
        drop(loader); // must not hang
    }

    #[test]
    fn rejects_zero_batch_and_unfitted_normalization() {
        let ds = toy(3);
        assert!(BatchLoader::new(
            ds.clone(),
            Arc::new(Augmenter::rescale_only(1.0)),
            LoaderConfig::new(0)
        )
        .is_err());
        let aug = Augmenter::new(AugmentConfig {
            featurewise_center: true,
            ..Default::default()
        })
        .unwrap();
        assert!(BatchLoader::new(ds, Arc::new(aug), LoaderConfig::new(2)).is_err());
    }
}
