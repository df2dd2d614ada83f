//! `evaluate` (loss and accuracy over a dataset, Keras' `model.evaluate`) and `predict` (class
//! probabilities for image files).

use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::folder::decode_file;
use crate::data::imageops::resize;
use crate::data::{Augmenter, Batch, BatchLoader, ColorMode, Dataset, Interpolation, LoaderConfig};
use crate::engine::Engine;
use crate::layers::im2col::ConvAlgorithm;
use crate::models::{Network, Shape};

use super::loss::{loss_for, Regularization};
use super::run::LoadedRun;
use super::TrainError;

/// Mean loss and accuracy over a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// Mean loss per sample.
    pub loss: f64,
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Samples seen.
    pub samples: usize,
    /// Equal error rate, when asked for ([`Tally::new`]'s positive class) and both classes
    /// are present.
    pub eer: Option<f64>,
    /// The positive class's score of each sample (a logit difference), with whether the sample
    /// is of that class: the ROC curve's input. Empty unless the EER was asked for.
    pub scores: Vec<(f64, bool)>,
}

/// Sums of per-batch losses and correct counts, and (for the EER) per-sample scores.
pub struct Tally {
    loss_sum: f64,
    correct: usize,
    samples: usize,
    positive: Option<usize>,
    scores: Vec<(f64, bool)>,
}

/// The score of class `pos` from a row of logits: `l[pos] - max(other l)` (softmax), or the
/// logit (class 1) / its negation (class 0) of a single sigmoid unit. Higher is more likely.
pub fn class_score(row: &[f32], pos: usize) -> f64 {
    if row.len() == 1 {
        return if pos == 1 {
            row[0] as f64
        } else {
            -row[0] as f64
        };
    }
    let other = row
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != pos)
        .fold(f32::NEG_INFINITY, |m, (_, v)| m.max(*v));
    row[pos] as f64 - other as f64
}

impl Tally {
    /// A tally; with `positive`, the EER of that class's scores is computed too.
    pub fn new(positive: Option<usize>) -> Self {
        Tally {
            loss_sum: 0.0,
            correct: 0,
            samples: 0,
            positive,
            scores: Vec::new(),
        }
    }

    /// Adds a batch: its mean loss, correct count, labels and logits `[N, outputs]`.
    pub fn add(&mut self, loss: f64, correct: usize, labels: &[u32], logits: &[f32]) {
        let n = labels.len();
        self.loss_sum += loss * n as f64;
        self.correct += correct;
        self.samples += n;
        if let (Some(pos), Some(k)) = (self.positive, logits.len().checked_div(n)) {
            for (row, y) in logits.chunks_exact(k.max(1)).zip(labels) {
                self.scores
                    .push((class_score(row, pos), *y as usize == pos));
            }
        }
    }

    /// The means, and the EER.
    pub fn finish(self) -> EvalResult {
        let n = self.samples.max(1) as f64;
        let (scores, positive): (Vec<f64>, Vec<bool>) = self.scores.iter().copied().unzip();
        EvalResult {
            loss: self.loss_sum / n,
            accuracy: self.correct as f64 / n,
            samples: self.samples,
            eer: crate::audio::eer(&scores, &positive).map(|e| e.0),
            scores: self.scores,
        }
    }
}

/// What Keras' compiled loss holds besides the cross-entropy, for [`evaluate`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossTerms {
    /// Keras `label_smoothing`.
    pub label_smoothing: f64,
    /// L2 factor on the kernels of layers `first_trained..`.
    pub l2: f64,
    /// The first layer the run trains ([`crate::train::TrainConfig::first_trained_layer`]).
    pub first_trained: usize,
}

impl LossTerms {
    /// The terms of a run's configuration.
    pub fn of(reg: &Regularization, first_trained: usize) -> Self {
        LossTerms {
            label_smoothing: reg.label_smoothing,
            l2: reg.l2,
            first_trained,
        }
    }
}

/// The native engine for `network` when it can run it: on the CPU, in f32 (a network in mixed
/// precision, or asked to convolve by `--conv gemm`, stays on Burn's path), with layers the
/// engine has.
fn native_engine(network: &Network, device: &Device) -> Option<Engine> {
    let burn_only = network.compute.is_some() || network.conv != ConvAlgorithm::Burn;
    (*device == Device::flex() && !burn_only)
        .then(|| Engine::from_network(network).ok())
        .flatten()
}

/// Evaluates an inference-mode network (`network.valid()`) on `dataset`, preprocessing with
/// `augmenter` (no random transform). `classes` is the model's output count (1 = sigmoid). On
/// the CPU it runs on the native engine ([`crate::engine`]) when that can run the model (in f32:
/// a network in mixed precision, or with `--conv gemm`, runs on Burn's path). The
/// loss is Keras' compiled loss: with the run's `label_smoothing` and L2 penalty (`terms`). With
/// `eer`, the equal error rate of that class's scores is measured too (two-class audio).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    network: &Network,
    dataset: Arc<Dataset>,
    augmenter: Arc<Augmenter>,
    batch_size: usize,
    classes: usize,
    terms: LossTerms,
    eer: Option<usize>,
    device: &Device,
) -> Result<EvalResult, TrainError> {
    // A label the model has no output for would index past its logits (one sigmoid output
    // takes two classes).
    let fits = dataset.num_classes() == classes.max(2);
    if !fits {
        return Err(TrainError::Config(format!(
            "the dataset has {} classes [{}], the model {} outputs: it needs data with the \
             classes it was trained on",
            dataset.num_classes(),
            dataset.classes.join(", "),
            classes
        )));
    }
    let penalty = crate::weights::l2_penalty(network, terms.first_trained, terms.l2)
        .map_or(0.0, |p| p.into_scalar::<f32>() as f64);
    let ls = terms.label_smoothing;
    let engine = native_engine(network, device);
    let mut r = if let Some(mut engine) = engine {
        engine.set_loss(ls, 0.0);
        evaluate_native(&mut engine, dataset, augmenter, batch_size, eer)?
    } else {
        evaluate_batches(dataset, augmenter, batch_size, eer, |batch, tally| {
            let x = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), device);
            let logits = network.forward_logits(x);
            let values = if eer.is_some() {
                logits
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let out = loss_for(classes, logits, &batch.labels, ls);
            let loss = out.loss.into_scalar::<f32>() as f64;
            tally.add(loss, out.correct, &batch.labels, &values);
            Ok(())
        })?
    };
    r.loss += penalty;
    Ok(r)
}

/// [`evaluate`] on the native engine (its current weights, in inference mode).
pub fn evaluate_native(
    engine: &mut Engine,
    dataset: Arc<Dataset>,
    augmenter: Arc<Augmenter>,
    batch_size: usize,
    eer: Option<usize>,
) -> Result<EvalResult, TrainError> {
    let penalty = engine.l2_penalty();
    let mut r = evaluate_batches(dataset, augmenter, batch_size, eer, |batch, tally| {
        let (loss, correct) = engine.evaluate_batch(&batch.images, batch.shape, &batch.labels)?;
        tally.add(loss, correct, &batch.labels, engine.last_logits());
        Ok(())
    })?;
    r.loss += penalty;
    Ok(r)
}

/// Mean loss and accuracy (and the EER) from the batches `run` adds to a [`Tally`].
fn evaluate_batches(
    dataset: Arc<Dataset>,
    augmenter: Arc<Augmenter>,
    batch_size: usize,
    eer: Option<usize>,
    mut run: impl FnMut(Batch, &mut Tally) -> Result<(), TrainError>,
) -> Result<EvalResult, TrainError> {
    let mut loader_cfg = LoaderConfig::new(batch_size);
    loader_cfg.augment = false;
    let loader = BatchLoader::new(dataset, augmenter, loader_cfg)?;
    let mut tally = Tally::new(eer);
    for batch in loader {
        run(batch, &mut tally)?;
    }
    Ok(tally.finish())
}

/// The top classes of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The image file.
    pub file: PathBuf,
    /// `(class name, probability)`, most probable first.
    pub top: Vec<(String, f32)>,
}

/// Decodes, resizes (nearest, as Keras' default) and preprocesses image files (or, for a run
/// trained on audio, computes the run's features of WAV / FLAC files), and returns the `k` most
/// probable classes of each.
pub fn predict_files(
    run: &LoadedRun,
    files: &[PathBuf],
    k: usize,
    device: &Device,
) -> Result<Vec<Prediction>, TrainError> {
    let Shape::Image { h, w, c } = run.preprocess.input else {
        return Err(TrainError::Config(
            "the model's input is not an image".into(),
        ));
    };
    let color = ColorMode::for_channels(c);
    let interpolation: Interpolation = run
        .config
        .interpolation
        .parse()
        .unwrap_or(Interpolation::Nearest);
    let aug = run.preprocess.augmenter();
    let mut engine = native_engine(&run.network, device);
    let mut out = Vec::with_capacity(files.len());
    let audio = &run.config.audio.features;
    for file in files {
        let name = file.to_string_lossy();
        let is_audio = crate::audio::has_audio_extension(&name);
        if run.config.is_audio() && !is_audio {
            return Err(TrainError::Config(format!(
                "{name}: this run was trained on audio; expected a WAV or FLAC file (.wav, .flac)"
            )));
        }
        let pixels = if is_audio {
            // An utterance: the run's features, as in training.
            if audio.shape() != (h, w, c) {
                return Err(TrainError::Config(format!(
                    "{name}: this run's model takes {h}x{w}x{c} images, not audio features"
                )));
            }
            crate::audio::dataset::file_features(file, audio)?
        } else {
            let (pixels, ih, iw) = decode_file(file, color)?;
            if (ih, iw) == (h, w) {
                pixels
            } else {
                resize(&pixels, (ih, iw, c), (h, w), interpolation)
            }
        };
        let x = preprocess_chw(&aug, &pixels, h, w, c);
        let probs = match engine.as_mut() {
            Some(engine) => engine.probabilities(&x, [1, c, h, w])?,
            None => run
                .network
                .forward(Tensor::<4>::from_data(
                    TensorData::new(x, [1, c, h, w]),
                    device,
                ))
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_default(),
        };
        let probs = if probs.len() == 1 {
            // One sigmoid unit: P(class 1) and P(class 0).
            vec![1.0 - probs[0], probs[0]]
        } else {
            probs
        };
        let mut ranked: Vec<(String, f32)> = probs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    run.preprocess
                        .classes
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| i.to_string()),
                    *p,
                )
            })
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(k.max(1));
        out.push(Prediction {
            file: file.clone(),
            top: ranked,
        });
    }
    Ok(out)
}

/// HWC u8 pixels to a CHW f32 image with rescale and featurewise normalization.
fn preprocess_chw(aug: &Augmenter, hwc: &[u8], h: usize, w: usize, c: usize) -> Vec<f32> {
    let mut x: Vec<f32> = hwc.iter().map(|v| *v as f32).collect();
    aug.standardize(&mut x, c);
    let mut chw = vec![0.0f32; c * h * w];
    for (i, px) in x.chunks_exact(c).enumerate() {
        for (ch, v) in px.iter().enumerate() {
            chw[ch * h * w + i] = *v;
        }
    }
    chw
}
