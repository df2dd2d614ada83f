//! `fit`: Keras' training loop in named phases, as Keras' `fit` and Burn's Learner:
//!
//! 1. **set-up** ([`Session::set_up`]): callbacks checked before any data is read, the data and
//!    its validation split, the seeded model (initial weights, frozen layers), the trainer (the
//!    native CPU engine or Burn's autodiff path) and, on resume, everything the resume point
//!    holds;
//! 2. **epoch** ([`Session::train_epoch`], [`Session::validate`], [`Session::end_epoch`]):
//!    shuffled, augmented batches from background workers, one optimizer update per batch; then
//!    validation, callbacks (checkpoint, early stopping, ReduceLROnPlateau, CSV history, plot)
//!    and an atomic resume point;
//! 3. **finish** ([`Session::finish`]): the final weights and the test split.
//!
//! A run killed at any moment resumes from its last finished epoch and ends with the same
//! weights as an uninterrupted run.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::tensor::{Bytes, Device, Tensor, TensorData};

use crate::callbacks::{
    keys, plot_history, plot_roc, CsvLogger, EarlyStopping, Logs, ModelCheckpoint, Progress,
    ReduceLrOnPlateau, ROC_PNG,
};
use crate::data::device::DeviceDataset;
use crate::data::{
    load, Augmenter, BatchLoader, ClassMode, Dataset, DatasetSpec, LoadOptions, LoaderConfig,
};
use crate::engine::{layer_is_frozen, Engine, EngineKind};
use crate::models::{Layer, LayerKind, ModelConfig, Network, Shape};
use crate::weights::{
    export, import, import_present, safetensors, scale_trainable, unscale_gradients, NamedTensor,
};

use super::bottleneck::BottleneckCache;
use super::evaluate::{evaluate, evaluate_native, EvalResult, LossTerms};
use super::parallel::{forward_backward, Replicas, StepLoss};
use super::run::{save_config, weights_metadata, LoadedRun, LoopState, Preprocess, RunFiles};
use super::LossScale;
use super::{OptimizerConfig, TrainConfig, TrainError};

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
    /// Data parallelism (`--devices`): two or more devices, the first of them `device`, each
    /// taking a part of every batch ([`super::parallel`]; Burn's path). Empty: `device` alone.
    pub devices: Vec<Device>,
    /// Keep the training images on the device and make each batch there
    /// ([`crate::data::device`]; Burn's path on one device): `Some(true)` always (an error
    /// when the augmentation has a rotation), `Some(false)` never, `None` on a GPU when the
    /// images take at most [`DEVICE_DATA_LIMIT`] bytes and the augmentation allows it.
    pub data_on_device: Option<bool>,
    /// A fresh run (not `resume`) replaces a run already in `out`: that run's files are
    /// removed once the new run has passed its checks, just before it writes its own. Without
    /// it, a fresh run refuses a folder that holds a run's files ([`RunFiles::written`]).
    pub overwrite: bool,
}

/// The most bytes of training images kept on a GPU when not asked ([`FitOptions`]).
pub const DEVICE_DATA_LIMIT: usize = 2 << 30;

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
    /// Whether the classifier trained on cached bottleneck features ([`super::bottleneck`]).
    pub bottleneck: bool,
    /// The epoch (1-based) whose weights the run ended with, when `restore_best_weights`
    /// restored them; `None`: the last epoch's.
    pub restored_epoch: Option<usize>,
    /// The largest share of a trained BatchNorm layer's moving statistics that is still their
    /// initial value (mean 0, variance 1) after the run's steps: `momentum ^ steps`, as Keras'
    /// moving averages have it. Large after a short run, where evaluation (which uses them)
    /// can trail training far behind; `None` without trained BatchNorm layers, or with
    /// `--recalibrate-bn` (which recomputes them).
    pub batch_norm_initial_share: Option<f64>,
}

const ES_PREFIX: &str = "early_stopping_best/";
/// The native engine's optimizer slots in `last.safetensors`: `optimizer/{param}/{slot}`.
const OPT_PREFIX: &str = "optimizer/";

/// Trains as `config` says and writes the run folder `opts.out`.
pub fn fit(config: &TrainConfig, opts: &FitOptions) -> Result<FitReport, TrainError> {
    let (mut session, mut model) = Session::set_up(config, opts)?;
    if session.device != Device::flex() && session.state.epochs_done < config.epochs {
        // Measured on an H200: 73-93 s before the first epoch ends on a fresh machine, 8 s
        // once CubeCL's cache holds the kernels' tuning (bench/gpu_first_epoch.sh).
        session.progress.println(
            "GPU: the first steps compile and tune kernels (a minute or two on a fresh \
             machine; CubeCL caches the results for later runs)",
        );
    }
    if let Trainer::Burn(_, Some(replicas)) = &session.trainer {
        let devices = replicas.devices();
        session.progress.println(&format!(
            "data parallel: each batch of {} cut over {} devices {devices:?}, gradients summed \
             on the first",
            config.batch_size,
            devices.len()
        ));
    }
    for epoch in session.state.epochs_done..config.epochs {
        if session.state.stopped {
            break;
        }
        let (mut trained, mut logs) = session.train_epoch(model, epoch)?;
        if config.recalibrate_bn {
            trained = session.recalibrate_bn(trained, epoch)?;
        }
        model = session.validate(trained, &mut logs)?;
        model = session.end_epoch(model, epoch, logs)?;
    }
    session.finish(model)
}

/// Whether the training images go to the device ([`FitOptions::data_on_device`]), which needs
/// Burn's path on one device (`one_burn_device`), or why they cannot go when asked.
fn place_data(
    opts: &FitOptions,
    one_burn_device: bool,
    device: &Device,
    data: &FitData,
) -> Result<bool, String> {
    let supported = DeviceDataset::supports(&data.augmenter);
    match opts.data_on_device {
        Some(false) => Ok(false),
        Some(true) if !one_burn_device => Err(
            "--data-on-device: batches are made on the device on Burn's path with one device \
             (a GPU, or --engine burn on the CPU)"
                .into(),
        ),
        Some(true) if !supported => Err(
            "--data-on-device: a rotation (--rotation-range) is applied on the host only".into(),
        ),
        Some(true) => Ok(true),
        None => Ok(one_burn_device
            && *device != Device::flex()
            && supported
            && DeviceDataset::bytes(&data.train) <= DEVICE_DATA_LIMIT),
    }
}

/// What takes the optimizer steps.
enum Trainer {
    /// lcnn's CPU engine, which holds the weights while an epoch runs and its own optimizer
    /// slots.
    Native(Box<Engine>),
    /// Burn's autodiff on any device, with its module optimizer; with replicas, each step's
    /// batch is cut across several devices.
    Burn(ModuleOptimizer, Option<Replicas>),
}

/// The data of a run: the training and validation parts, the test split, their preprocessing.
struct FitData {
    train: Arc<Dataset>,
    val: Option<Arc<Dataset>>,
    test: Option<Dataset>,
    augmenter: Arc<Augmenter>,
    eval_aug: Arc<Augmenter>,
    preprocess: Preprocess,
    classes: usize,
    /// The class whose equal error rate is logged (two-class audio), if any.
    eer: Option<usize>,
}

/// The callbacks, in the order Keras calls them.
struct Callbacks {
    checkpoint: ModelCheckpoint,
    early: Option<EarlyStopping>,
    reduce_lr: Option<ReduceLrOnPlateau>,
}

/// A run in progress: everything but the network, which the phases take and give back (Burn's
/// optimizer step consumes it).
struct Session<'a> {
    config: &'a TrainConfig,
    files: RunFiles,
    device: Device,
    ad: Device,
    data: FitData,
    trainer: Trainer,
    callbacks: Callbacks,
    state: LoopState,
    es_best: Option<Vec<NamedTensor>>,
    metadata: HashMap<String, String>,
    csv: CsvLogger,
    progress: Progress,
    history: Vec<Logs>,
    /// This epoch's start, rate and optimizer hyper-parameters.
    started: Instant,
    lr_at_start: f64,
    hyper: OptimizerConfig,
    /// The first layer training updates (the L2 penalty covers kernels from there on).
    first_trained: usize,
    /// The base's features, computed once, when the native engine trains only a classifier.
    bottleneck: Option<BottleneckCache>,
    /// The training images on the device, when batches are made there.
    device_data: Option<DeviceDataset>,
}

/// `--weights`: a safetensors file with every parameter (lcnn's, or phase one's), or a Keras
/// `.h5` file read by layer name (feature `hdf5`), as Keras' `load_weights(by_name=True)`.
fn load_init_weights(
    model: Network,
    spec: &crate::models::ModelSpec,
    path: &std::path::Path,
) -> Result<Network, TrainError> {
    let is_h5 = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("h5") || e.eq_ignore_ascii_case("hdf5"));
    if is_h5 {
        #[cfg(feature = "hdf5")]
        {
            let tensors = crate::weights::keras::read_weights_by_name(path, spec)?;
            return Ok(import_present(model, tensors, path)?);
        }
        #[cfg(not(feature = "hdf5"))]
        {
            let _ = spec;
            return Err(TrainError::Config(format!(
                "--weights {}: Keras .h5 files need lcnn built with the `hdf5` feature",
                path.display()
            )));
        }
    }
    let is_torch = path.extension().is_some_and(|e| {
        ["pt", "pth", "bin"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    });
    if is_torch {
        // A PyTorch state_dict by layer name: the layers it has (a base under a new head).
        let torch = crate::weights::pytorch::read_state_dict(path)?;
        let like: Vec<NamedTensor> = export(&model)
            .into_iter()
            .filter(|t| torch.contains_key(&crate::weights::pytorch::torch_name(&t.name)))
            .collect();
        if like.is_empty() {
            return Err(TrainError::Config(format!(
                "--weights {}: no tensor of this PyTorch state_dict has a name of the model's \
                 layers (`{}` ...)",
                path.display(),
                torch.keys().next().map(String::as_str).unwrap_or("")
            )));
        }
        let tensors = crate::weights::pytorch::from_state_dict(torch, &like, false, path)?;
        return Ok(import_present(model, tensors, path)?);
    }
    let (tensors, _) = safetensors::load(path)?;
    Ok(import(model, tensors, false, path)?)
}

/// The network a run trains, and what seeds it.
struct BuiltModel {
    config: ModelConfig,
    /// Layers that belong to the base (all of them without a head).
    base_len: usize,
    /// The base run's weights, by name, and the file they came from.
    base_weights: Option<(PathBuf, Vec<NamedTensor>)>,
}

/// The model: a zoo model (with or without its top), or a run's network cut at
/// `--base-until`; then, with `--head`, the head's layers and a new classifier.
fn build_model(
    config: &TrainConfig,
    input: Shape,
    classes: usize,
) -> Result<BuiltModel, TrainError> {
    use crate::models::head::{parse_head, with_head};
    let head = config.head.as_deref().map(parse_head).transpose()?;
    let (mut zoo, base_layers, base_weights) = match &config.base {
        Some(dir) => {
            if config.dropout.is_some() {
                return Err(TrainError::Config(
                    "--dropout sets a zoo model's Dropout layers; on --base RUN give the \
                     head's rate instead (--head ...,dropout:R)"
                        .into(),
                ));
            }
            let base = LoadedRun::load(dir, &Device::flex())?;
            if base.model.input != input {
                return Err(TrainError::Config(format!(
                    "--base {}: the base takes {}, the data is {} (set --target-size / --color-mode)",
                    dir.display(),
                    base.model.input.keras(),
                    input.keras()
                )));
            }
            if (base.preprocess.rescale - config.augment.rescale).abs()
                > 1e-6 * base.preprocess.rescale.abs()
            {
                return Err(TrainError::Config(format!(
                    "--base {}: the base was trained on pixels x {}, this run would feed pixels x {}; \
                     give --rescale {}",
                    dir.display(),
                    base.preprocess.rescale,
                    config.augment.rescale,
                    base.preprocess.rescale
                )));
            }
            let spec = base.model.spec()?;
            let until = match &config.base_until {
                Some(name) => spec.index_of(name)?,
                None => spec.layers.len(),
            };
            let file = RunFiles::new(dir).model();
            let tensors = export(&base.network);
            let layers = spec.layers[..until].to_vec();
            (base.model, layers, Some((file, tensors)))
        }
        None => {
            if config.base_until.is_some() {
                return Err(TrainError::Config("--base-until needs --base RUN".into()));
            }
            let zoo = ModelConfig {
                include_top: config.include_top,
                dropout: config.dropout,
                ..ModelConfig::new(config.model, input, classes)
            };
            let layers = zoo.spec()?.layers;
            (zoo, layers, None)
        }
    };
    let base_len = base_layers.len();
    let layers = match head {
        Some(head) => {
            if config.base.is_none() && config.include_top {
                return Err(TrainError::Config(
                    "--head replaces the classifier: it needs --no-top or --base RUN".into(),
                ));
            }
            with_head(base_layers, &head, classes)
        }
        None if config.base.is_some() || !config.include_top => {
            return Err(TrainError::Config(
                "a base without its top needs a new classifier: give --head (e.g. \
                 --head flatten,dense:256:relu,dropout:0.5)"
                    .into(),
            ))
        }
        None => {
            return Ok(BuiltModel {
                config: zoo,
                base_len,
                base_weights,
            })
        }
    };
    zoo.layers = Some(layers);
    zoo.classes = classes;
    zoo.include_top = true;
    Ok(BuiltModel {
        config: zoo,
        base_len,
        base_weights,
    })
}

fn check(config: &TrainConfig) -> Result<(), TrainError> {
    config.optimizer.validate().map_err(TrainError::Config)?;
    config.validate_recipe()?;
    if config.batch_size == 0 || config.epochs == 0 {
        return Err(TrainError::Config(
            "--epochs and --batch-size must be at least 1".into(),
        ));
    }
    if config.loss_scale.is_some() && !config.precision.scales_loss() {
        return Err(TrainError::Config(format!(
            "--loss-scale is f16's loss scaling: it needs --precision f16, not {}",
            config.precision
        )));
    }
    if !(0.0..1.0).contains(&config.validation_split) {
        return Err(TrainError::Config(format!(
            "--validation-split {} is out of range: expected 0 <= split < 1",
            config.validation_split
        )));
    }
    Ok(())
}

impl Callbacks {
    /// Checks every setting (before any data is read).
    fn new(config: &TrainConfig) -> Result<Self, TrainError> {
        Ok(Callbacks {
            checkpoint: ModelCheckpoint::new(config.checkpoint.clone())?,
            early: config
                .early_stopping
                .clone()
                .map(EarlyStopping::new)
                .transpose()?,
            reduce_lr: config
                .reduce_lr
                .clone()
                .map(ReduceLrOnPlateau::new)
                .transpose()?,
        })
    }

    /// The callbacks as a resumed run left them.
    fn resume(&mut self, config: &TrainConfig, state: &LoopState) -> Result<(), TrainError> {
        if let (Some(cfg), Some(s)) = (&config.early_stopping, &state.early_stopping) {
            self.early = Some(EarlyStopping::from_state(cfg.clone(), s.clone())?);
        }
        self.checkpoint =
            ModelCheckpoint::from_state(config.checkpoint.clone(), state.checkpoint.clone())?;
        if let (Some(cfg), Some(s)) = (&config.reduce_lr, &state.reduce_lr) {
            self.reduce_lr = Some(ReduceLrOnPlateau::from_state(cfg.clone(), s.clone())?);
        }
        Ok(())
    }
}

impl FitData {
    /// Loads the dataset; Keras' validation split takes the last fraction, before any
    /// shuffling.
    fn load(config: &TrainConfig, opts: &FitOptions) -> Result<Self, TrainError> {
        let spec: DatasetSpec = config.dataset.parse()?;
        let load_opts = LoadOptions {
            data_dir: config.data_dir.clone(),
            target_size: config.target_size,
            interpolation: config.interpolation.parse()?,
            color_mode: config.color_mode.parse()?,
            offline: opts.offline,
            audio: config.audio.clone(),
        };
        let splits = load(&spec, &load_opts)?;
        let class_mode: ClassMode = config.class_mode.parse()?;
        class_mode.check(&splits)?;
        let class_names = splits.classes().to_vec();
        let eer = config.eer_class(&class_names);
        let classes = if class_mode == ClassMode::Binary {
            1
        } else {
            class_names.len()
        };
        let (train, val) = if let Some(val) = splits.val {
            (splits.train, Some(val))
        } else if config.validation_split > 0.0 {
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
        Ok(FitData {
            train: Arc::new(train),
            val: val.map(Arc::new),
            test: splits.test,
            augmenter,
            eval_aug: Arc::new(preprocess.augmenter()),
            preprocess,
            classes,
            eer,
        })
    }
}

impl<'a> Session<'a> {
    /// Phase 1: everything before the first epoch (or the next one, on resume).
    fn set_up(config: &'a TrainConfig, opts: &FitOptions) -> Result<(Self, Network), TrainError> {
        check(config)?;
        let mut callbacks = Callbacks::new(config)?;
        let files = RunFiles::new(&opts.out);
        // A trained run is never written over by mistake (its weights would be lost).
        let earlier: Vec<PathBuf> = match opts.resume {
            true => Vec::new(),
            false => files.written().into_iter().filter(|f| f.exists()).collect(),
        };
        if !earlier.is_empty() && !opts.overwrite {
            let names: Vec<String> = earlier
                .iter()
                .filter_map(|f| f.file_name())
                .map(|f| f.to_string_lossy().into_owned())
                .collect();
            return Err(TrainError::Run {
                file: files.dir.clone(),
                reason: format!(
                    "already holds a run ({}); train into another --out, continue this one \
                     with --resume {}, or replace it with --overwrite",
                    names.join(", "),
                    files.dir.display()
                ),
            });
        }
        std::fs::create_dir_all(&files.dir).map_err(|e| TrainError::Run {
            file: files.dir.clone(),
            reason: format!("cannot create the run folder: {e}"),
        })?;
        let data = FitData::load(config, opts)?;
        // Without validation data a `val_` monitor would fail only after the first epoch.
        if data.val.is_none() {
            let monitors = [
                (
                    "--checkpoint-monitor",
                    config
                        .checkpoint
                        .save_best_only
                        .then_some(&config.checkpoint.monitor),
                ),
                (
                    "--monitor",
                    config.early_stopping.as_ref().map(|e| &e.monitor),
                ),
                ("--monitor", config.reduce_lr.as_ref().map(|r| &r.monitor)),
            ];
            if let Some((flag, monitor)) = monitors
                .into_iter()
                .find_map(|(f, m)| m.filter(|m| m.starts_with("val_")).map(|m| (f, m)))
            {
                return Err(TrainError::Config(format!(
                    "{flag} {monitor}: this run has no validation data (--validation-split 0 and \
                     no validation folder), so there is no `{monitor}`; monitor `{}` instead, or \
                     give a validation split",
                    &monitor["val_".len()..]
                )));
            }
        }

        // Model: seeded Keras initialization, stable parameter names.
        let device = opts.device.clone();
        let ad = device.clone().autodiff();
        device.seed(config.seed);
        ad.seed(config.seed);
        let built = build_model(config, data.preprocess.input, data.classes)?;
        let model_config = built.config;
        let spec = model_config.spec()?;
        let mut model = Network::with_initializer(&spec, &ad, config.kernel_initializer)?;
        if let Some((path, tensors)) = built.base_weights {
            model = import_present(model, tensors, &path)?;
        }
        if let Some(path) = &config.init_weights {
            model = load_init_weights(model, &spec, path)?;
        }
        let freeze = match (&config.freeze_until, config.freeze_base) {
            (Some(name), _) => Some(spec.index_of(name)?),
            (None, true) => Some(built.base_len),
            (None, false) => None,
        };
        if let Some(until) = freeze {
            model.layers = model
                .layers
                .into_iter()
                .enumerate()
                .map(|(i, l)| if i < until { l.freeze() } else { l })
                .collect();
        }
        if config.freeze_bn {
            model.layers = model
                .layers
                .into_iter()
                .map(|l| match l {
                    Layer::BatchNorm(_) => l.freeze(),
                    l => l,
                })
                .collect();
        }
        let metadata = weights_metadata(&model_config, &data.preprocess);
        let mut state = LoopState {
            epochs_done: 0,
            iterations: 0,
            early_stopping: callbacks.early.as_ref().map(|e| e.state()),
            checkpoint: callbacks.checkpoint.state(),
            stopped: false,
            reduce_lr: callbacks.reduce_lr.as_ref().map(|r| r.state()),
            learning_rate: None,
            loss_scale: None,
        };
        let mut es_best = None;
        let mut slots = Vec::new();
        let mut record = None;
        // A finished run (its final model written) without its resume point would train
        // again from epoch 1 over that model: refuse rather than lose it. (A run killed before
        // its first resume point, even one with a best checkpoint, starts again as before.)
        if opts.resume && !files.last().exists() && files.model().exists() {
            return Err(TrainError::Run {
                file: files.last(),
                reason: format!(
                    "missing, but {} exists: resuming without the resume point would train \
                     again from epoch 1 over it; restore the file, or train into a new --out",
                    files.model().display()
                ),
            });
        }
        if opts.resume && files.last().exists() {
            let resumed = read_resume_point(&files, model)?;
            model = resumed.model;
            state = resumed.state;
            es_best = resumed.es_best;
            slots = resumed.slots;
            record = resumed.record;
            callbacks.resume(config, &state)?;
        }
        // f16's loss scale: the resume point's, else the starting one.
        if config.precision.scales_loss() && state.loss_scale.is_none() {
            let start = LossScale::starting_at(config.loss_scale).map_err(TrainError::Config)?;
            state.loss_scale = Some(start);
        }
        // The native engine trains on the CPU (GPU devices always take Burn's path); it starts
        // from the network's weights and, on resume, its own optimizer slots.
        let mut bottleneck = None;
        let replicas = match opts.devices.len() {
            0 | 1 => None,
            _ if opts.devices[0] != device => {
                return Err(TrainError::Config(format!(
                    "--devices: the first device ({:?}) must be the run's device ({device:?})",
                    opts.devices[0]
                )))
            }
            _ => Some(Replicas::new(&opts.devices)?),
        };
        let native = replicas.is_none() && config.engine.on(&device) == EngineKind::Native;
        let devices: Vec<&Device> = std::iter::once(&device).chain(&opts.devices).collect();
        config
            .precision
            .check_run(native, &devices)
            .map_err(TrainError::Config)?;
        config.conv.check_run(native).map_err(TrainError::Config)?;
        model = model
            .with_precision(config.precision)
            .with_conv(config.conv);
        let trainer = if native {
            let mut engine = Engine::from_network(&model)?;
            let reg = config.regularization;
            engine.set_loss(reg.label_smoothing, reg.l2);
            engine.load_optimizer_state(&config.optimizer, &slots, &files.last())?;
            let layer = freeze.unwrap_or(0);
            if config.bottleneck_cache
                && layer > 0
                && !data.augmenter.config.has_random_transform()
                && engine.frozen_below(layer)
            {
                let started = Instant::now();
                let cache = BottleneckCache::build(
                    &mut engine,
                    layer,
                    &data.train,
                    data.val.as_ref(),
                    &data.eval_aug,
                    config.batch_size,
                )?;
                if !opts.quiet {
                    println!(
                        "bottleneck features: the frozen layers below `{}` ran once over the \
                         training and validation images ({:.1} s, {} values each); the layers \
                         from there on train on them",
                        spec.layers[layer].name,
                        started.elapsed().as_secs_f64(),
                        cache.size
                    );
                }
                bottleneck = Some(cache);
            }
            Trainer::Native(Box::new(engine))
        } else {
            let mut optim = config.optimizer.init();
            if let Some(record) = record {
                optim = optim.load_record(record);
            }
            Trainer::Burn(optim, replicas)
        };
        let one_burn_device = matches!(trainer, Trainer::Burn(_, None));
        let on_device =
            place_data(opts, one_burn_device, &device, &data).map_err(TrainError::Config)?;
        let device_data = on_device.then(|| {
            let on = DeviceDataset::upload(&data.train, &ad);
            if !opts.quiet {
                println!(
                    "data on the device: {} training images ({:.0} MB); batches are selected, \
                     augmented and standardized there",
                    data.train.len(),
                    DeviceDataset::bytes(&data.train) as f64 / 1e6
                );
            }
            on
        });
        // --overwrite: the earlier run goes only now that this one has passed its checks.
        for file in &earlier {
            std::fs::remove_file(file).map_err(|e| TrainError::Run {
                file: file.clone(),
                reason: format!("cannot remove the earlier run's file (--overwrite): {e}"),
            })?;
        }
        // A run killed before its first epoch ended has no resume point: it starts over.
        save_config(&files, config)?;
        let csv = if state.epochs_done > 0 {
            CsvLogger::resume(files.history_csv(), state.epochs_done)?
        } else {
            CsvLogger::create(files.history_csv())?
        };
        let history = csv.history();
        let session = Session {
            config,
            files,
            device,
            ad,
            data,
            trainer,
            callbacks,
            state,
            es_best,
            metadata,
            csv,
            progress: Progress::new(config.epochs, opts.quiet),
            history,
            started: Instant::now(),
            lr_at_start: 0.0,
            hyper: config.optimizer.clone(),
            first_trained: freeze.unwrap_or(0),
            bottleneck,
            device_data,
        };
        Ok((session, model))
    }

    /// Phase 2a: one pass over the shuffled, augmented training part; the training loss and
    /// accuracy.
    fn train_epoch(
        &mut self,
        mut model: Network,
        epoch: usize,
    ) -> Result<(Network, Logs), TrainError> {
        let config = self.config;
        // Burn's dropout draws from the device RNG: reseed per epoch so a resumed run matches.
        let epoch_seed = config.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.ad.seed(epoch_seed);
        if let Trainer::Burn(_, Some(replicas)) = &self.trainer {
            replicas.seed(epoch_seed);
        }
        let loader = BatchLoader::new(
            self.data.train.clone(),
            self.data.augmenter.clone(),
            LoaderConfig {
                // On cached bottleneck features, or with the images on the device, the host
                // makes no images.
                images: self.bottleneck.is_none() && self.device_data.is_none(),
                ..LoaderConfig::training(config.batch_size, config.seed, epoch)
            },
        )?;
        self.progress.start_epoch(epoch, loader.num_batches());
        self.started = Instant::now();
        // The optimizer's hyper-parameters for this epoch: ReduceLROnPlateau may have lowered
        // the base rate (kept in the loop state, so a resumed run has it too).
        self.hyper = config.optimizer.at_rate(self.state.learning_rate);
        let run_steps = (loader.num_batches() * config.epochs) as u64;
        let hyper = &self.hyper;
        let scheduled = |iterations: u64| match &config.lr_schedule {
            Some(s) => s.lr(hyper.learning_rate(), iterations, run_steps),
            None => hyper.decayed_lr(iterations),
        };
        self.lr_at_start = scheduled(self.state.iterations);
        let reg = config.regularization;
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (step, batch) in loader.enumerate() {
            let rate = scheduled(self.state.iterations);
            let lr = self.hyper.step_lr_at(rate, self.state.iterations);
            let decay = reg.weight_decay * rate;
            let (loss, right) = match &mut self.trainer {
                Trainer::Native(engine) => {
                    // Dropout masks from the seed and the step: a resumed run draws the same.
                    let seed = config.seed
                        ^ (self.state.iterations + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let cached = self.bottleneck.as_ref().map(|b| b.batch(&batch.indices));
                    let (x, shape) = match &cached {
                        Some((x, shape)) => (&x[..], *shape),
                        None => (&batch.images[..], batch.shape),
                    };
                    engine.train_step(x, shape, &batch.labels, &self.hyper, lr, decay, seed)?
                }
                Trainer::Burn(optim, replicas) => {
                    let loss = StepLoss {
                        classes: self.data.classes,
                        terms: LossTerms::of(&reg, self.first_trained),
                        scale: self.state.loss_scale.map_or(1.0, |s| s.scale),
                    };
                    let out = match replicas {
                        Some(r) => r.forward_backward(
                            &model,
                            batch.images,
                            batch.shape,
                            &batch.labels,
                            &loss,
                        )?,
                        None => {
                            let x = match &self.device_data {
                                // The loader's transforms of these images, applied there.
                                Some(on) => on.batch(
                                    &batch.indices,
                                    &batch.transforms,
                                    &self.data.augmenter,
                                ),
                                None => Tensor::<4>::from_data(
                                    TensorData::new(batch.images, batch.shape),
                                    &self.ad,
                                ),
                            };
                            forward_backward(&model, x, &batch.labels, &loss, 1.0)
                        }
                    };
                    // f16: back to the true gradients; an overflow skips the update and lowers
                    // the scale, as Keras' LossScaleOptimizer.
                    let grads = match (out.grads, &mut self.state.loss_scale) {
                        (Some(grads), Some(scale)) => {
                            let grads = unscale_gradients(&model, grads, scale.scale);
                            scale.update(grads.is_some());
                            grads
                        }
                        (grads, _) => grads,
                    };
                    if let Some(grads) = grads {
                        if decay != 0.0 {
                            model = scale_trainable(model, 1.0 - decay);
                        }
                        model = optim.step(lr, model, grads);
                    }
                    (out.loss, out.correct)
                }
            };
            if !loss.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    epoch: epoch + 1,
                    step: step + 1,
                    value: loss,
                    kept: self.kept_checkpoints(),
                });
            }
            self.state.iterations += 1;
            loss_sum += loss * batch.len as f64;
            correct += right;
            seen += batch.len;
            let mut running = Logs::new();
            running.insert(keys::LOSS.into(), loss_sum / seen as f64);
            running.insert(keys::ACCURACY.into(), correct as f64 / seen as f64);
            let rate = seen as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            self.progress.update(step + 1, &running, rate);
        }
        let mut logs = Logs::new();
        logs.insert(keys::LOSS.into(), loss_sum / seen.max(1) as f64);
        logs.insert(keys::ACCURACY.into(), correct as f64 / seen.max(1) as f64);
        // The callbacks and the run folder read the network: bring the engine's weights over.
        match &self.trainer {
            Trainer::Native(engine) => model = engine.store(model)?,
            // Burn's BatchNorm keeps the last step's moving statistics per thread (one per
            // device with replicas) until they are read through `valid()`, which averages them
            // into the stored value: do it now, so the run folder and the resume point hold
            // this epoch's statistics with or without a validation pass.
            Trainer::Burn(..) => drop(model.valid()),
        }
        Ok((model, logs))
    }

    /// Phase 2a': `--recalibrate-bn`: the trainable BatchNorm layers' moving statistics from
    /// one unaugmented pass over the training part with this epoch's final weights.
    fn recalibrate_bn(&mut self, model: Network, epoch: usize) -> Result<Network, TrainError> {
        let config = self.config;
        let loader = BatchLoader::new(
            self.data.train.clone(),
            self.data.eval_aug.clone(),
            LoaderConfig {
                images: self.bottleneck.is_none(),
                ..LoaderConfig::training(config.batch_size, config.seed ^ 0x4250_4e53, epoch)
            },
        )?;
        let seed = config.seed ^ (epoch as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
        match &mut self.trainer {
            Trainer::Native(engine) => {
                let cache = self.bottleneck.as_ref();
                let batches = loader.map(|b| match cache {
                    Some(c) => c.batch(&b.indices),
                    None => (b.images, b.shape),
                });
                engine.recalibrate_batch_norm(batches, seed)?;
                Ok(engine.store(model)?)
            }
            Trainer::Burn(..) => {
                let ad = &self.ad;
                Ok(model.recalibrate_batch_norm(
                    loader.map(|b| Tensor::<4>::from_data(TensorData::new(b.images, b.shape), ad)),
                ))
            }
        }
    }

    /// Phase 2b: loss and accuracy on the validation part (Keras' `val_` logs).
    fn validate(&mut self, model: Network, logs: &mut Logs) -> Result<Network, TrainError> {
        let Some(val) = &self.data.val else {
            return Ok(model);
        };
        let (aug, batch) = (self.data.eval_aug.clone(), self.config.batch_size);
        let r = match &mut self.trainer {
            Trainer::Native(engine) => {
                // The cache holds the validation part whenever there is one.
                let cached = match &self.bottleneck {
                    Some(cache) => cache.evaluate_val(engine, batch, self.data.eer)?,
                    None => None,
                };
                match cached {
                    Some(r) => r,
                    None => evaluate_native(engine, val.clone(), aug, batch, self.data.eer)?,
                }
            }
            Trainer::Burn(..) => {
                let valid = model.valid();
                let terms = LossTerms::of(&self.config.regularization, self.first_trained);
                evaluate(
                    &valid,
                    val.clone(),
                    aug,
                    batch,
                    self.data.classes,
                    terms,
                    self.data.eer,
                    &self.device,
                )?
            }
        };
        logs.insert(keys::VAL_LOSS.into(), r.loss);
        logs.insert(keys::VAL_ACCURACY.into(), r.accuracy);
        if let Some(eer) = r.eer {
            logs.insert(keys::VAL_EER.into(), eer);
        }
        Ok(model)
    }

    /// Phase 2c: the callbacks, in Keras' order (checkpoint, early stopping, learning-rate
    /// reduction for the next epoch; the CSV row keeps the rate this epoch ran at), then the
    /// CSV row, the plot and the resume point.
    fn end_epoch(
        &mut self,
        model: Network,
        epoch: usize,
        mut logs: Logs,
    ) -> Result<Network, TrainError> {
        logs.insert(keys::LR.into(), self.lr_at_start);
        logs.insert(keys::SECONDS.into(), self.started.elapsed().as_secs_f64());
        self.progress.finish_epoch(&logs);
        let (files, cb, state) = (&self.files, &mut self.callbacks, &mut self.state);
        if cb.checkpoint.on_epoch_end(epoch, &logs)? {
            safetensors::save(&files.best(), &export(&model), self.metadata.clone())?;
        }
        if let Some(es) = cb.early.as_mut() {
            let action = es.on_epoch_end(epoch, &logs)?;
            if action.snapshot_weights {
                self.es_best = Some(export(&model));
            }
            if action.stop {
                state.stopped = true;
                self.progress
                    .println(&format!("Epoch {}: early stopping", epoch + 1));
            }
            state.early_stopping = Some(es.state());
        }
        if let Some(r) = cb.reduce_lr.as_mut() {
            if let Some(lr) = r.on_epoch_end(&logs, self.hyper.learning_rate())? {
                state.learning_rate = Some(lr);
                self.progress.println(&format!(
                    "Epoch {}: ReduceLROnPlateau reducing learning rate to {lr:e}",
                    epoch + 1
                ));
            }
            state.reduce_lr = Some(r.state());
        }
        self.csv.on_epoch_end(epoch, &logs)?;
        self.history = self.csv.history();
        plot_history(&self.history, &files.history_png())?;
        state.epochs_done = epoch + 1;
        state.checkpoint = cb.checkpoint.state();
        self.save_resume_point(&model)?;
        Ok(model)
    }

    /// The checkpoints the run folder holds, in words, for an error that ends the run.
    fn kept_checkpoints(&self) -> String {
        let (best, last) = (self.files.best(), self.files.last());
        match (best.exists(), last.exists()) {
            (_, false) => "no epoch finished, so there is no checkpoint to keep".into(),
            (true, true) => format!(
                "kept: the best checkpoint ({}) and the resume point after epoch {} ({})",
                best.display(),
                self.state.epochs_done,
                last.display()
            ),
            (false, true) => format!(
                "kept: the resume point after epoch {} ({})",
                self.state.epochs_done,
                last.display()
            ),
        }
    }

    /// Writes `last.safetensors`: weights, the early-stopping snapshot, optimizer state (the
    /// native engine's slots as tensors, or Burn's optimizer record) and loop state, in one
    /// atomic file.
    fn save_resume_point(&self, model: &Network) -> Result<(), TrainError> {
        let files = &self.files;
        let mut tensors = export(model);
        if let Some(best) = &self.es_best {
            tensors.extend(best.iter().map(|t| NamedTensor {
                name: format!("{ES_PREFIX}{}", t.name),
                ..t.clone()
            }));
        }
        let mut blobs = BTreeMap::new();
        match &self.trainer {
            Trainer::Native(engine) => tensors.extend(
                engine
                    .optimizer_state(&self.config.optimizer)
                    .into_iter()
                    .map(|t| NamedTensor {
                        name: format!("{OPT_PREFIX}{}", t.name),
                        ..t
                    }),
            ),
            Trainer::Burn(optim, _) => {
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
        let mut metadata = self.metadata.clone();
        metadata.insert(
            "state".into(),
            serde_json::to_string(&self.state).map_err(|e| TrainError::Config(e.to_string()))?,
        );
        safetensors::save_checkpoint(&files.last(), &tensors, &blobs, metadata)?;
        Ok(())
    }

    /// Phase 3: `model.safetensors` as `fit` leaves the weights, and the test split.
    fn finish(mut self, mut model: Network) -> Result<FitReport, TrainError> {
        // Keras 3's EarlyStopping.on_train_end: the best epoch's weights, when kept.
        let mut restored_epoch = None;
        if let Some(es) = self.callbacks.early.as_ref().filter(|es| es.on_train_end()) {
            let best = self.es_best.as_ref().ok_or_else(|| TrainError::Run {
                file: self.files.last(),
                reason: "holds no best weights for --restore-best-weights".into(),
            })?;
            model = import(model, best.clone(), true, &self.files.last())?;
            if let Trainer::Native(engine) = &mut self.trainer {
                engine.load(best, &self.files.last())?;
            }
            restored_epoch = Some(es.state().best_epoch + 1);
            self.progress.println(&format!(
                "Restoring model weights from the end of the best epoch: {}.",
                es.state().best_epoch + 1
            ));
        }
        safetensors::save(&self.files.model(), &export(&model), self.metadata)?;
        let (aug, batch) = (self.data.eval_aug, self.config.batch_size);
        // The native engine holds the final weights already (handed over at each epoch end,
        // reloaded when early stopping restores the best ones).
        let eer = self.data.eer;
        let test = match (self.data.test.map(Arc::new), self.trainer) {
            (Some(test), Trainer::Native(mut engine)) => {
                engine.bottleneck(0)?;
                Some(evaluate_native(&mut engine, test, aug, batch, eer)?)
            }
            (Some(test), Trainer::Burn(..)) => Some(evaluate(
                &model.valid(),
                test,
                aug,
                batch,
                self.data.classes,
                LossTerms::of(&self.config.regularization, self.first_trained),
                eer,
                &self.device,
            )?),
            (None, _) => None,
        };
        // Two-class audio: the test split's ROC and DET curves.
        if let Some(t) = test.as_ref().filter(|t| t.eer.is_some()) {
            plot_roc(&t.scores, "test", &self.files.dir.join(ROC_PNG))?;
        }
        let batch_norm_initial_share = if self.config.recalibrate_bn {
            None
        } else {
            let steps = self.state.iterations as f64;
            model
                .spec
                .layers
                .iter()
                .zip(&model.layers)
                .filter_map(|(spec, layer)| match spec.kind {
                    LayerKind::BatchNorm { momentum, .. } if !layer_is_frozen(layer) => {
                        Some(momentum.powf(steps))
                    }
                    _ => None,
                })
                .reduce(f64::max)
        };
        Ok(FitReport {
            history: self.history,
            test,
            stopped_early: self.state.stopped,
            epochs_done: self.state.epochs_done,
            bottleneck: self.bottleneck.is_some(),
            restored_epoch,
            batch_norm_initial_share,
        })
    }
}

/// What `last.safetensors` holds.
struct ResumePoint {
    model: Network,
    state: LoopState,
    es_best: Option<Vec<NamedTensor>>,
    /// The native engine's optimizer slots (named `{param}/{slot}`).
    slots: Vec<NamedTensor>,
    /// Burn's optimizer record.
    record: Option<OptimizerRecord>,
}

/// Reads the resume point into `model` (weights, moving statistics).
fn read_resume_point(files: &RunFiles, model: Network) -> Result<ResumePoint, TrainError> {
    let ckpt = safetensors::load_checkpoint(&files.last())?;
    let bad = |reason: String| TrainError::Run {
        file: files.last(),
        reason,
    };
    let state: LoopState = serde_json::from_str(
        ckpt.metadata
            .get("state")
            .ok_or_else(|| bad("no loop state".into()))?,
    )
    .map_err(|e| bad(format!("loop state: {e}")))?;
    if let Some(lr) = state
        .learning_rate
        .filter(|lr| !(lr.is_finite() && *lr > 0.0))
    {
        return Err(bad(format!(
            "loop state: learning_rate {lr}; expected a positive finite rate"
        )));
    }
    let strip = |prefix: &str, tensors: Vec<NamedTensor>| -> Vec<NamedTensor> {
        tensors
            .into_iter()
            .map(|mut t| {
                t.name = t.name[prefix.len()..].to_string();
                t
            })
            .collect()
    };
    let (slots, tensors): (Vec<NamedTensor>, Vec<NamedTensor>) = ckpt
        .tensors
        .into_iter()
        .partition(|t| t.name.starts_with(OPT_PREFIX));
    let (es, weights): (Vec<NamedTensor>, Vec<NamedTensor>) = tensors
        .into_iter()
        .partition(|t| t.name.starts_with(ES_PREFIX));
    let model = import(model, weights, true, &files.last())?;
    let record = match ckpt.blobs.get("optimizer") {
        Some(blob) => Some(
            OptimizerRecord::from_bytes(Bytes::from_bytes_vec(blob.clone()))
                .map_err(|e| bad(format!("optimizer state: {e}")))?,
        ),
        None => None,
    };
    Ok(ResumePoint {
        model,
        state,
        es_best: (!es.is_empty()).then(|| strip(ES_PREFIX, es)),
        slots: strip(OPT_PREFIX, slots),
        record,
    })
}
