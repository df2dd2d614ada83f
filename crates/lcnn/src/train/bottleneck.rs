//! Bottleneck features, the first technique of seed 003 (Chollet's "Building powerful image
//! classification models using very little data", `save_bottleneck_features`): when every
//! layer below the classifier is frozen, without dropout, and the images are not augmented,
//! the base computes the same features for an image at every epoch. `fit` then runs the base
//! once over the training and validation images and trains the classifier on the cached
//! features, which gives the same updates for a fraction of the time.

use std::sync::Arc;

use crate::data::{Augmenter, BatchLoader, Dataset, LoaderConfig};
use crate::engine::Engine;

use super::evaluate::Tally;
use super::{EvalResult, TrainError};

/// The cached input of layer `layer` for every training and validation image.
pub struct BottleneckCache {
    /// The first layer that runs on the cache.
    pub layer: usize,
    /// Values per image (`F`).
    pub size: usize,
    train: Vec<f32>,
    val: Option<(Vec<f32>, Vec<u32>)>,
}

/// Runs the engine's layers below `layer` once over `dataset` (in inference, without
/// augmentation): `[N, F]`, row `i` for image `i`.
fn features_of(
    engine: &mut Engine,
    dataset: &Arc<Dataset>,
    augmenter: &Arc<Augmenter>,
    layer: usize,
    batch_size: usize,
) -> Result<Vec<f32>, TrainError> {
    let size = engine.input_size(layer);
    let mut out = vec![0.0f32; dataset.len() * size];
    let mut cfg = LoaderConfig::new(batch_size);
    cfg.augment = false;
    for batch in BatchLoader::new(dataset.clone(), augmenter.clone(), cfg)? {
        let feats = engine.features(&batch.images, batch.shape, layer)?;
        for (row, &i) in feats.chunks_exact(size).zip(&batch.indices) {
            out[i * size..(i + 1) * size].copy_from_slice(row);
        }
    }
    Ok(out)
}

impl BottleneckCache {
    /// Computes the cache and switches `engine` to it ([`Engine::bottleneck`]).
    pub fn build(
        engine: &mut Engine,
        layer: usize,
        train: &Arc<Dataset>,
        val: Option<&Arc<Dataset>>,
        eval_aug: &Arc<Augmenter>,
        batch_size: usize,
    ) -> Result<Self, TrainError> {
        let size = engine.input_size(layer);
        let train_feats = features_of(engine, train, eval_aug, layer, batch_size)?;
        let val = match val {
            Some(v) => Some((
                features_of(engine, v, eval_aug, layer, batch_size)?,
                v.labels.clone(),
            )),
            None => None,
        };
        engine.bottleneck(layer)?;
        Ok(BottleneckCache {
            layer,
            size,
            train: train_feats,
            val,
        })
    }

    /// The features of training images `indices`, as a batch `[N, F, 1, 1]`.
    pub fn batch(&self, indices: &[usize]) -> (Vec<f32>, [usize; 4]) {
        let f = self.size;
        let mut x = Vec::with_capacity(indices.len() * f);
        for &i in indices {
            x.extend_from_slice(&self.train[i * f..(i + 1) * f]);
        }
        (x, [indices.len(), f, 1, 1])
    }

    /// Validation loss (with the L2 term) and accuracy on the cached validation features.
    pub fn evaluate_val(
        &self,
        engine: &mut Engine,
        batch_size: usize,
        eer: Option<usize>,
    ) -> Result<Option<EvalResult>, TrainError> {
        let Some((feats, labels)) = &self.val else {
            return Ok(None);
        };
        let f = self.size;
        let mut tally = Tally::new(eer);
        for (x, y) in feats
            .chunks(batch_size.max(1) * f)
            .zip(labels.chunks(batch_size.max(1)))
        {
            let (loss, right) = engine.evaluate_batch(x, [y.len(), f, 1, 1], y)?;
            tally.add(loss, right, y, engine.last_logits());
        }
        let mut r = tally.finish();
        r.loss += engine.l2_penalty();
        Ok(Some(r))
    }
}
