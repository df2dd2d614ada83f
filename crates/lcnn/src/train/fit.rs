//! `fit`: Keras' training loop, readable top to bottom. One epoch: shuffled, augmented batches
//! from background workers; forward to logits, loss, backward, one optimizer update per batch;
//! then validation, callbacks (early stopping, best checkpoint, CSV history, plot) and an atomic
//! resume point. A run killed at any moment resumes from its last finished epoch and ends with
//! the same weights as an uninterrupted run.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::tensor::{Bytes, Device, Tensor, TensorData};

use crate::callbacks::{
    keys, plot_history, CsvLogger, EarlyStopping, Logs, ModelCheckpoint, Progress,
    ReduceLrOnPlateau,
};
use crate::data::{
    load, Augmenter, BatchLoader, ClassMode, DatasetSpec, LoadOptions, LoaderConfig,
};
use crate::engine::{Engine, EngineKind};
use crate::models::{ModelConfig, Network, Shape};
use crate::weights::{export, import, safetensors, NamedTensor};

use super::evaluate::{evaluate, evaluate_native, EvalResult};
use super::loss::loss_for;
use super::run::{save_config, weights_metadata, LoopState, Preprocess, RunFiles};
use super::{TrainConfig, TrainError};

/// How to run `fit`.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` after its last finished epoch.
    pub resume: bool,
    /// No progress output at all.
    pub quiet: bool,
    /// Data never downloaded.
    pub offline: bool,
    /// The device (an autodiff device is derived from it).
    pub device: Device,
}

/// What `fit` did.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// One entry per finished epoch.
    pub history: Vec<Logs>,
    /// Loss and accuracy on the test split, when the dataset has one.
    pub test: Option<EvalResult>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Epochs finished in total (including before a resume).
    pub epochs_done: usize,
}

const ES_PREFIX: &str = "early_stopping_best/";
/// The native engine's optimizer slots in `last.safetensors`: `optimizer/{param}/{slot}`.
const OPT_PREFIX: &str = "optimizer/";

/// Trains as `config` says and writes the run folder `opts.out`.
pub fn fit(config: &TrainConfig, opts: &FitOptions) -> Result<FitReport, TrainError> {
    config.optimizer.validate().map_err(TrainError::Config)?;
    if config.batch_size == 0 || config.epochs == 0 {
        return Err(TrainError::Config(
            "--epochs and --batch-size must be at least 1".into(),
        ));
    }
    if !(0.0..1.0).contains(&config.validation_split) {
        return Err(TrainError::Config(format!(
            "--validation-split {} is out of range: expected 0 <= split < 1",
            config.validation_split
        )));
    }
    // Callbacks first: a bad setting fails before any data is read.
    let mut early = config
        .early_stopping
        .clone()
        .map(EarlyStopping::new)
        .transpose()?;
    let mut checkpoint = ModelCheckpoint::new(config.checkpoint.clone())?;
    let mut reduce_lr = config
        .reduce_lr
        .clone()
        .map(ReduceLrOnPlateau::new)
        .transpose()?;

    let files = RunFiles::new(&opts.out);
    std::fs::create_dir_all(&files.dir).map_err(|e| TrainError::Run {
        file: files.dir.clone(),
        reason: format!("cannot create the run folder: {e}"),
    })?;

    // Data: Keras' validation split takes the last fraction, before any shuffling.
    let spec: DatasetSpec = config.dataset.parse()?;
    let load_opts = LoadOptions {
        data_dir: config.data_dir.clone(),
        target_size: config.target_size,
        interpolation: config.interpolation.parse()?,
        color_mode: config.color_mode.parse()?,
        offline: opts.offline,
    };
    let splits = load(&spec, &load_opts)?;
    let class_mode: ClassMode = config.class_mode.parse()?;
    class_mode.check(&splits)?;
    let class_names = splits.classes().to_vec();
    let classes = if class_mode == ClassMode::Binary {
        1
    } else {
        class_names.len()
    };
    let (train, val) = if config.validation_split > 0.0 {
        let (t, v) = splits
            .train
            .split_by(splits.validation_rule, config.validation_split)?;
        (t, Some(v))
    } else {
        (splits.train, None)
    };
    let (h, w, c) = train.shape();
    let augmenter = Arc::new(Augmenter::fitted(config.augment.clone(), &train)?);
    let preprocess = Preprocess {
        rescale: config.augment.rescale,
        mean: augmenter.mean.clone(),
        std: augmenter.std.clone(),
        classes: class_names,
        input: Shape::Image { h, w, c },
    };
    let eval_aug = Arc::new(preprocess.augmenter());
    let train = Arc::new(train);
    let val = val.map(Arc::new);

    // Model: seeded Keras initialization, stable parameter names.
    let device = opts.device.clone();
    let ad = device.clone().autodiff();
    device.seed(config.seed);
    ad.seed(config.seed);
    let model_config = ModelConfig::new(config.model, Shape::Image { h, w, c }, classes);
    let spec = model_config.spec()?;
    let mut model = Network::new(&spec, &ad)?;
    if let Some(path) = &config.init_weights {
        let (tensors, _) = safetensors::load(path)?;
        model = import(model, tensors, false, path)?;
    }
    if let Some(name) = &config.freeze_until {
        let until = spec.index_of(name)?;
        model.layers = model
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| if i < until { l.freeze() } else { l })
            .collect();
    }
    let metadata = weights_metadata(&model_config, &preprocess);
    let mut optim = config.optimizer.init();
    let mut state = LoopState {
        epochs_done: 0,
        iterations: 0,
        early_stopping: early.as_ref().map(|e| e.state()),
        checkpoint: checkpoint.state(),
        stopped: false,
        reduce_lr: reduce_lr.as_ref().map(|r| r.state()),
        learning_rate: None,
    };
    let mut es_best: Option<Vec<NamedTensor>> = None;
    let mut native_slots: Vec<NamedTensor> = Vec::new();

    if opts.resume && files.last().exists() {
        let ckpt = safetensors::load_checkpoint(&files.last())?;
        let bad = |reason: String| TrainError::Run {
            file: files.last(),
            reason,
        };
        state = serde_json::from_str(
            ckpt.metadata
                .get("state")
                .ok_or_else(|| bad("no loop state".into()))?,
        )
        .map_err(|e| bad(format!("loop state: {e}")))?;
        let (slots, tensors): (Vec<NamedTensor>, Vec<NamedTensor>) = ckpt
            .tensors
            .into_iter()
            .partition(|t| t.name.starts_with(OPT_PREFIX));
        let (weights, es): (Vec<NamedTensor>, Vec<NamedTensor>) = tensors
            .into_iter()
            .partition(|t| !t.name.starts_with(ES_PREFIX));
        model = import(model, weights, true, &files.last())?;
        native_slots = slots
            .into_iter()
            .map(|mut t| {
                t.name = t.name[OPT_PREFIX.len()..].to_string();
                t
            })
            .collect();
        if !es.is_empty() {
            es_best = Some(
                es.into_iter()
                    .map(|mut t| {
                        t.name = t.name[ES_PREFIX.len()..].to_string();
                        t
                    })
                    .collect(),
            );
        }
        if let Some(blob) = ckpt.blobs.get("optimizer") {
            let record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(blob.clone()))
                .map_err(|e| bad(format!("optimizer state: {e}")))?;
            optim = optim.load_record(record);
        }
        if let (Some(cfg), Some(s)) = (&config.early_stopping, &state.early_stopping) {
            early = Some(EarlyStopping::from_state(cfg.clone(), s.clone())?);
        }
        checkpoint =
            ModelCheckpoint::from_state(config.checkpoint.clone(), state.checkpoint.clone())?;
        if let (Some(cfg), Some(s)) = (&config.reduce_lr, &state.reduce_lr) {
            reduce_lr = Some(ReduceLrOnPlateau::from_state(cfg.clone(), s.clone())?);
        }
    }
    // The native engine trains on the CPU (GPU devices always take Burn's path); it starts
    // from the network's weights and, on resume, its own optimizer slots.
    let mut engine = if config.engine == EngineKind::Native && device == Device::flex() {
        let mut e = Engine::from_network(&model)?;
        e.load_optimizer_state(&config.optimizer, &native_slots, &files.last())?;
        Some(e)
    } else {
        None
    };
    // A run killed before its first epoch ended has no resume point: it starts over.
    save_config(&files, config)?;
    let mut csv = if state.epochs_done > 0 {
        CsvLogger::resume(files.history_csv(), state.epochs_done)?
    } else {
        CsvLogger::create(files.history_csv())?
    };

    let mut progress = Progress::new(config.epochs, opts.quiet);
    let mut history = csv.history();
    for epoch in state.epochs_done..config.epochs {
        if state.stopped {
            break;
        }
        // Dropout draws from the device RNG: reseed per epoch so a resumed run matches.
        ad.seed(config.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let loader = BatchLoader::new(
            train.clone(),
            augmenter.clone(),
            LoaderConfig::training(config.batch_size, config.seed, epoch),
        )?;
        let steps = loader.num_batches();
        progress.start_epoch(epoch, steps);
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        // The optimizer's hyper-parameters for this epoch: ReduceLROnPlateau may have lowered
        // the base rate (kept in the loop state, so a resumed run has it too).
        let hyper = config.optimizer.at_rate(state.learning_rate);
        let lr_at_start = hyper.decayed_lr(state.iterations);
        for (step, batch) in loader.enumerate() {
            let lr = hyper.step_lr(state.iterations);
            let (loss, right) = match engine.as_mut() {
                // Dropout masks from the seed, epoch and step: a resumed run draws the same.
                Some(e) => {
                    let seed =
                        config.seed ^ (state.iterations + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    e.train_step(&batch.images, batch.shape, &batch.labels, &hyper, lr, seed)?
                }
                None => {
                    let x = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), &ad);
                    let out = loss_for(classes, model.forward_logits(x), &batch.labels);
                    let loss = out.loss.clone().into_scalar::<f32>() as f64;
                    if loss.is_finite() {
                        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
                        model = optim.step(lr, model, grads);
                    }
                    (loss, out.correct)
                }
            };
            if !loss.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    epoch: epoch + 1,
                    step: step + 1,
                    value: loss,
                    best: files.best(),
                });
            }
            state.iterations += 1;
            loss_sum += loss * batch.len as f64;
            correct += right;
            seen += batch.len;
            let mut running = Logs::new();
            running.insert(keys::LOSS.into(), loss_sum / seen as f64);
            running.insert(keys::ACCURACY.into(), correct as f64 / seen as f64);
            progress.update(
                step + 1,
                &running,
                seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
            );
        }

        let mut logs = Logs::new();
        logs.insert(keys::LOSS.into(), loss_sum / seen.max(1) as f64);
        logs.insert(keys::ACCURACY.into(), correct as f64 / seen.max(1) as f64);
        // The callbacks and the run folder read the network: bring the engine's weights over.
        if let Some(e) = &engine {
            model = e.store(model)?;
        }
        if let Some(val) = &val {
            let r = match engine.as_mut() {
                Some(e) => evaluate_native(e, val.clone(), eval_aug.clone(), config.batch_size)?,
                None => evaluate(
                    &model.valid(),
                    val.clone(),
                    eval_aug.clone(),
                    config.batch_size,
                    classes,
                    &device,
                )?,
            };
            logs.insert(keys::VAL_LOSS.into(), r.loss);
            logs.insert(keys::VAL_ACCURACY.into(), r.accuracy);
        }
        logs.insert(keys::LR.into(), lr_at_start);
        logs.insert(keys::SECONDS.into(), started.elapsed().as_secs_f64());
        progress.finish_epoch(&logs);

        // Callbacks, in Keras' order: checkpoint, early stopping, learning-rate reduction (for
        // the next epoch; the CSV row keeps the rate this epoch ran at), then the CSV row.
        if checkpoint.on_epoch_end(epoch, &logs)? {
            safetensors::save(&files.best(), &export(&model), metadata.clone())?;
        }
        if let Some(es) = early.as_mut() {
            let action = es.on_epoch_end(epoch, &logs)?;
            if action.snapshot_weights {
                es_best = Some(export(&model));
            }
            if action.stop {
                state.stopped = true;
                if action.restore_best_weights {
                    if let Some(best) = &es_best {
                        model = import(model, best.clone(), true, &files.last())?;
                        if let Some(e) = engine.as_mut() {
                            e.load(best, &files.last())?;
                        }
                    }
                }
                progress.println(&format!("Epoch {}: early stopping", epoch + 1));
            }
            state.early_stopping = Some(es.state());
        }
        if let Some(r) = reduce_lr.as_mut() {
            if let Some(lr) = r.on_epoch_end(&logs, hyper.learning_rate())? {
                state.learning_rate = Some(lr);
                progress.println(&format!(
                    "Epoch {}: ReduceLROnPlateau reducing learning rate to {lr:e}",
                    epoch + 1
                ));
            }
            state.reduce_lr = Some(r.state());
        }
        csv.on_epoch_end(epoch, &logs)?;
        history = csv.history();
        plot_history(&history, &files.history_png())?;
        state.epochs_done = epoch + 1;
        state.checkpoint = checkpoint.state();
        let slots = engine
            .as_ref()
            .map(|e| e.optimizer_state(&config.optimizer));
        save_resume_point(
            &files,
            &model,
            &optim,
            slots,
            &state,
            es_best.as_deref(),
            &metadata,
        )?;
    }

    safetensors::save(&files.model(), &export(&model), metadata)?;
    let test = match splits.test {
        Some(test) if engine.is_some() => {
            let mut e = Engine::from_network(&model.valid())?;
            Some(evaluate_native(
                &mut e,
                Arc::new(test),
                eval_aug,
                config.batch_size,
            )?)
        }
        Some(test) => Some(evaluate(
            &model.valid(),
            Arc::new(test),
            eval_aug,
            config.batch_size,
            classes,
            &device,
        )?),
        None => None,
    };
    Ok(FitReport {
        history,
        test,
        stopped_early: state.stopped,
        epochs_done: state.epochs_done,
    })
}

/// Writes `last.safetensors`: weights, the early-stopping snapshot, optimizer state (the native
/// engine's slots as tensors, or Burn's optimizer record) and loop state, in one atomic file.
fn save_resume_point(
    files: &RunFiles,
    model: &Network,
    optim: &ModuleOptimizer,
    native_slots: Option<Vec<NamedTensor>>,
    state: &LoopState,
    es_best: Option<&[NamedTensor]>,
    metadata: &HashMap<String, String>,
) -> Result<(), TrainError> {
    let mut tensors = export(model);
    if let Some(best) = es_best {
        tensors.extend(best.iter().map(|t| NamedTensor {
            name: format!("{ES_PREFIX}{}", t.name),
            ..t.clone()
        }));
    }
    let mut blobs = BTreeMap::new();
    match native_slots {
        Some(slots) => tensors.extend(slots.into_iter().map(|t| NamedTensor {
            name: format!("{OPT_PREFIX}{}", t.name),
            ..t
        })),
        None => {
            let optimizer = optim
                .to_record()
                .into_bytes()
                .map_err(|e| TrainError::Run {
                    file: files.last(),
                    reason: format!("optimizer state: {e}"),
                })?;
            blobs.insert("optimizer".to_string(), optimizer.to_vec());
        }
    }
    let mut metadata = metadata.clone();
    metadata.insert(
        "state".into(),
        serde_json::to_string(state).map_err(|e| TrainError::Config(e.to_string()))?,
    );
    safetensors::save_checkpoint(&files.last(), &tensors, &blobs, metadata)?;
    Ok(())
}
