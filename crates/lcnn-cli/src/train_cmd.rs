//! `lcnn train`, `lcnn eval` and `lcnn predict`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use lcnn::callbacks::{EarlyStoppingConfig, Mode, ModelCheckpointConfig, ReduceLrOnPlateauConfig};
use lcnn::data::{load, resolve_data_dir, AugmentConfig, DatasetSpec, LoadOptions};
use lcnn::device::{parse_device, Device};
use lcnn::layers::im2col::ConvAlgorithm;
use lcnn::layers::precision::Precision;
use lcnn::layers::KernelInitializer;
use lcnn::models::ModelName;
use lcnn::train::{
    evaluate, fit, predict_files, FitOptions, LoadedRun, LossTerms, LrSchedule, OptimizerConfig,
    Regularization, RunWeights, TrainConfig,
};

// `lcnn train --help` groups its options under these headings (in the order of each one's
// first field below).
const MODEL: &str = "Model, transfer learning and fine-tuning";
const DATA: &str = "Data";
const AUDIO: &str = "Audio features (--dataset audio:DIR)";
const OPTIMIZER: &str = "Optimizer";
const SCHEDULE: &str = "Learning-rate schedule (keras.optimizers.schedules)";
const REGULARIZATION: &str = "Regularization";
const CALLBACKS: &str = "Callbacks (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint)";
const AUGMENTATION: &str = "Augmentation (Keras ImageDataGenerator)";
const RUN: &str = "Run, device and precision";

/// Arguments of `lcnn train`. Without flags: the seeds' MNIST recipe (LCNN, Adam 1e-3,
/// batch 256, 10 epochs, validation split 0.2, early stopping on val_loss, patience 3).
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model: lcnn, lightcnn9, allconv, separable, vgg16.
    #[arg(long, help_heading = MODEL, default_value = "lcnn")]
    model: String,
    /// Dataset: mnist, cifar10, images:DIR (DIR/train/<class>/..., optional DIR/test/), or
    /// audio:DIR (the same layout with WAV / FLAC files, or --protocol files; see below).
    #[arg(long, help_heading = DATA, default_value = "mnist")]
    dataset: String,
    #[command(flatten, next_help_heading = AUDIO)]
    audio: crate::audio_args::AudioArgs,
    /// Folder holding mnist/ and cifar10/ (default: $LCNN_DATA, then ~/.cache/lcnn/datasets).
    #[arg(long, help_heading = DATA)]
    data_dir: Option<PathBuf>,
    /// Resize images to HxW (image folders).
    #[arg(long, help_heading = DATA)]
    target_size: Option<String>,
    /// rgb or grayscale.
    #[arg(long, help_heading = DATA, default_value = "rgb")]
    color_mode: String,
    /// Resize filter: nearest (Keras' default) or bilinear.
    #[arg(long, help_heading = DATA, default_value = "nearest")]
    interpolation: String,
    /// categorical (softmax) or binary (one sigmoid unit, two classes).
    #[arg(long, help_heading = DATA, default_value = "categorical")]
    class_mode: String,
    /// Epochs.
    #[arg(long, help_heading = OPTIMIZER)]
    epochs: Option<usize>,
    /// Batch size.
    #[arg(long, help_heading = OPTIMIZER, default_value_t = 256)]
    batch_size: usize,
    /// adam, adamw, sgd or rmsprop (Keras defaults; adamw = adam with --weight-decay 0.004).
    #[arg(long, help_heading = OPTIMIZER, default_value = "adam")]
    optimizer: String,
    /// Learning rate (default: Keras' for the optimizer: adam 1e-3, sgd 0.01, rmsprop 1e-3).
    #[arg(long, help_heading = OPTIMIZER)]
    lr: Option<f64>,
    /// Momentum (sgd, rmsprop).
    #[arg(long, help_heading = OPTIMIZER, default_value_t = 0.0)]
    momentum: f64,
    /// Nesterov momentum (sgd).
    #[arg(long, help_heading = OPTIMIZER)]
    nesterov: bool,
    /// Keras time-based decay: lr / (1 + decay * iterations).
    #[arg(long, help_heading = OPTIMIZER, default_value_t = 0.0)]
    decay: f64,
    /// Learning-rate schedule (keras.optimizers.schedules; the optimizer's --lr is its initial
    /// rate, one-cycle's peak): cosine, piecewise, exponential, inverse-time or one-cycle.
    #[arg(long, help_heading = SCHEDULE)]
    lr_schedule: Option<String>,
    /// Schedule steps (cosine after the warm-up, exponential, inverse-time; one-cycle's
    /// total_steps). Default: the whole run.
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    decay_steps: Option<u64>,
    /// cosine: the floor, as a fraction of the rate it decays from.
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    alpha: Option<f64>,
    /// cosine: rate reached by a linear warm-up from --lr (Keras warmup_target).
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    warmup_target: Option<f64>,
    /// cosine: warm-up steps.
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    warmup_steps: Option<u64>,
    /// exponential, inverse-time: decay_rate.
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    decay_rate: Option<f64>,
    /// exponential, inverse-time: decay in whole steps of --decay-steps.
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    staircase: bool,
    /// piecewise: step boundaries, comma-separated (e.g. 2000,4000).
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    boundaries: Option<String>,
    /// piecewise: one rate more than boundaries, comma-separated (e.g. 1e-3,5e-4,1e-4).
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    values: Option<String>,
    /// one-cycle: fraction of the steps spent rising.
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    pct_start: Option<f64>,
    /// one-cycle: initial rate = --lr / div_factor.
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    div_factor: Option<f64>,
    /// one-cycle: final rate = initial / final_div_factor.
    #[arg(long, help_heading = SCHEDULE, requires = "lr_schedule")]
    final_div_factor: Option<f64>,
    /// Keras label_smoothing of the cross-entropy (e.g. 0.1).
    #[arg(long, help_heading = REGULARIZATION, default_value_t = 0.0)]
    label_smoothing: f64,
    /// Keras 3 optimizer weight_decay, decoupled: w *= 1 - weight_decay * lr before each update
    /// (default 0; 0.004 with --optimizer adamw).
    #[arg(long, help_heading = REGULARIZATION)]
    weight_decay: Option<f64>,
    /// L2 kernel regularization on every conv and dense kernel (Keras kernel_regularizer=L2).
    #[arg(long, help_heading = REGULARIZATION, default_value_t = 0.0)]
    l2: f64,
    /// Keras validation_split: the last fraction of the training set (MNIST, CIFAR-10), or the
    /// first fraction of each class folder (images:DIR, as flow_from_directory).
    #[arg(long, help_heading = DATA, default_value_t = 0.2)]
    validation_split: f64,
    /// Metric early stopping (and --reduce-lr-patience) watches.
    #[arg(long, help_heading = CALLBACKS, default_value = "val_loss")]
    monitor: String,
    /// Epochs without improvement before stopping.
    #[arg(long, help_heading = CALLBACKS, default_value_t = 3)]
    patience: usize,
    /// Smallest change that counts as an improvement.
    #[arg(long, help_heading = CALLBACKS, default_value_t = 0.0)]
    min_delta: f64,
    /// End with the weights of the best epoch by --monitor, whether early stopping ended the
    /// run or not (Keras 3's restore_best_weights; --patience at least --epochs never stops).
    #[arg(long, help_heading = CALLBACKS, conflicts_with = "no_early_stopping")]
    restore_best_weights: bool,
    /// Train all epochs, without early stopping.
    #[arg(long, help_heading = CALLBACKS)]
    no_early_stopping: bool,
    /// Multiply the learning rate by --reduce-lr-factor when --monitor has not improved (by
    /// 1e-4) for this many epochs (Keras ReduceLROnPlateau; off by default).
    #[arg(long, help_heading = CALLBACKS)]
    reduce_lr_patience: Option<usize>,
    /// ReduceLROnPlateau: the factor of each reduction, between 0 and 1.
    #[arg(long, help_heading = CALLBACKS, default_value_t = 0.1, requires = "reduce_lr_patience")]
    reduce_lr_factor: f64,
    /// ReduceLROnPlateau: epochs after a reduction before it counts again.
    #[arg(long, help_heading = CALLBACKS, default_value_t = 0, requires = "reduce_lr_patience")]
    reduce_lr_cooldown: usize,
    /// ReduceLROnPlateau: the lowest learning rate it sets.
    #[arg(long, help_heading = CALLBACKS, default_value_t = 0.0, requires = "reduce_lr_patience")]
    min_lr: f64,
    /// Metric of the best checkpoint (best.safetensors).
    #[arg(long, help_heading = CALLBACKS, default_value = "val_loss")]
    checkpoint_monitor: String,
    /// Multiplier on 0-255 pixels (1 for models trained on raw pixels).
    #[arg(long, help_heading = DATA, default_value_t = 1.0 / 255.0)]
    rescale: f32,
    /// Augmentation: rotation range in degrees.
    #[arg(long, help_heading = AUGMENTATION, default_value_t = 0.0)]
    rotation_range: f32,
    /// Augmentation: width shift (fraction of the width).
    #[arg(long, help_heading = AUGMENTATION, default_value_t = 0.0)]
    width_shift_range: f32,
    /// Augmentation: height shift (fraction of the height).
    #[arg(long, help_heading = AUGMENTATION, default_value_t = 0.0)]
    height_shift_range: f32,
    /// Augmentation: zoom range.
    #[arg(long, help_heading = AUGMENTATION, default_value_t = 0.0)]
    zoom_range: f32,
    /// Augmentation: random horizontal flips.
    #[arg(long, help_heading = AUGMENTATION)]
    horizontal_flip: bool,
    /// Augmentation: random vertical flips.
    #[arg(long, help_heading = AUGMENTATION)]
    vertical_flip: bool,
    /// Subtract the training set's per-channel mean.
    #[arg(long, help_heading = AUGMENTATION)]
    featurewise_center: bool,
    /// Divide by the training set's per-channel std.
    #[arg(long, help_heading = AUGMENTATION)]
    featurewise_std_normalization: bool,
    /// Initial weights (safetensors, by layer name).
    #[arg(long, help_heading = MODEL)]
    weights: Option<PathBuf>,
    /// Freeze every layer before this one (e.g. block5_conv1).
    #[arg(long, help_heading = MODEL)]
    freeze_until: Option<String>,
    /// Every Dropout layer's rate instead of the zoo model's own (LCNN's is the seeds' 0.75).
    #[arg(long, help_heading = MODEL)]
    dropout: Option<f64>,
    /// How fresh conv and dense kernels are drawn (Keras' kernel_initializer): glorot_uniform (Keras' default), glorot_normal, he_uniform or he_normal (for deep ReLU nets without BatchNorm, such as allconv).
    #[arg(long, help_heading = MODEL, default_value = "glorot_uniform")]
    kernel_initializer: String,
    /// Leave out the zoo model's classifier (Keras include_top=False); needs --head.
    #[arg(long, help_heading = MODEL)]
    no_top: bool,
    /// New classifier layers on the base, before the output layer `predictions`
    /// (e.g. flatten,dense:256:relu,dropout:0.5; items: flatten, gap, dense:N[:act], dropout:R, bn).
    #[arg(long, help_heading = MODEL)]
    head: Option<String>,
    /// Use a run folder's network (trained or `lcnn import`ed) as the base, with its weights.
    #[arg(long, help_heading = MODEL)]
    base: Option<PathBuf>,
    /// Cut the base just before this layer (e.g. flatten).
    #[arg(long, help_heading = MODEL, requires = "base")]
    base_until: Option<String>,
    /// Freeze every base layer (phase one of fine-tuning).
    #[arg(long, help_heading = MODEL)]
    freeze_base: bool,
    /// Keep every BatchNormalization layer frozen (Keras' advice when fine-tuning a base).
    #[arg(long, help_heading = MODEL)]
    freeze_bn: bool,
    /// Before each validation, recompute the BatchNorm moving statistics from the training
    /// data with the epoch's weights (PyTorch's update_bn; for short runs, where Keras' moving
    /// averages still trail the weights).
    #[arg(long, help_heading = MODEL)]
    recalibrate_bn: bool,
    /// Run the frozen base at every step instead of once (by default, when every layer below
    /// the trained ones is frozen, without dropout, and nothing is augmented, the base's
    /// outputs are computed once and the head trains on them: seed 003's bottleneck features).
    #[arg(long, help_heading = MODEL)]
    no_bottleneck_cache: bool,
    /// Seed of weights, shuffling, augmentation and dropout.
    #[arg(long, help_heading = RUN, default_value_t = 42)]
    seed: u64,
    /// Run folder (default: runs/<model>-<dataset>-<time>).
    #[arg(long, help_heading = RUN)]
    out: Option<PathBuf>,
    /// Continue the run in this folder after its last finished epoch (its config.json is used;
    /// --epochs may raise the epoch count).
    #[arg(long, help_heading = RUN, conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Replace the run already in --out (without it, train refuses a folder holding a run).
    #[arg(long, help_heading = RUN, conflicts_with = "resume")]
    overwrite: bool,
    /// Never download datasets.
    #[arg(long, help_heading = DATA)]
    offline: bool,
    /// No progress output.
    #[arg(long, help_heading = RUN)]
    quiet: bool,
    /// cpu (default), cuda[:N] or wgpu[:N] (builds with the cuda / wgpu feature).
    #[arg(long, help_heading = RUN, default_value = "cpu", conflicts_with = "devices")]
    device: String,
    /// Several devices, one model (Keras' make_parallel): e.g. wgpu:0,wgpu:1 or cpu,cpu. Each
    /// step cuts the batch across them and averages the gradients on the first one (Burn's
    /// path); --batch-size stays the global batch.
    #[arg(long, help_heading = RUN, value_delimiter = ',', num_args = 1..)]
    devices: Vec<String>,
    /// On the CPU: native (lcnn's own kernels, the default) or burn (Burn's tensors, the
    /// reference path). GPU devices always use burn.
    #[arg(long, help_heading = RUN, default_value = "native")]
    engine: String,
    /// What convolutions and dense layers compute in: f32 (default), or f16 / bf16 over f32
    /// weights, BatchNorm and loss (Keras' mixed_float16 / mixed_bfloat16; f16 scales the
    /// loss dynamically). Burn's path: a GPU device, or --engine burn on the CPU.
    #[arg(long, help_heading = RUN, default_value = "f32")]
    precision: Precision,
    /// f16's initial loss scale (Keras' initial_scale, default 32768): halved on each
    /// overflow (that step is skipped), doubled after 2000 finite steps.
    #[arg(long, help_heading = RUN, requires = "precision")]
    loss_scale: Option<f64>,
    /// How Burn's path convolves: burn (its kernels, the default) or gemm (forward as im2col
    /// and one matrix product, backward Burn's gradient kernels; Burn's f32 forward
    /// convolution on wgpu is a direct kernel, its matmul tiled).
    #[arg(long, help_heading = RUN, default_value = "burn")]
    conv: ConvAlgorithm,
    /// Keep the training images on the device and make each batch there (select, shift, flip,
    /// zoom, standardize): auto (on a GPU when they fit in 2 GiB and nothing rotates), on, off.
    #[arg(long, help_heading = RUN, default_value = "auto", value_parser = ["auto", "on", "off"])]
    data_on_device: String,
}

fn optimizer(args: &TrainArgs) -> Result<OptimizerConfig> {
    let mut o = match args.optimizer.to_ascii_lowercase().as_str() {
        "adam" | "adamw" => OptimizerConfig::adam(),
        "sgd" => OptimizerConfig::sgd(),
        "rmsprop" => OptimizerConfig::rmsprop(),
        other => bail!("unknown optimizer `{other}`: expected adam, adamw, sgd or rmsprop"),
    };
    match &mut o {
        OptimizerConfig::Adam {
            learning_rate,
            decay,
            ..
        } => {
            *learning_rate = args.lr.unwrap_or(*learning_rate);
            *decay = args.decay;
            if args.momentum != 0.0 || args.nesterov {
                bail!("--momentum and --nesterov apply to sgd and rmsprop, not adam");
            }
        }
        OptimizerConfig::Sgd {
            learning_rate,
            momentum,
            nesterov,
            decay,
        } => {
            *learning_rate = args.lr.unwrap_or(*learning_rate);
            *momentum = args.momentum;
            *nesterov = args.nesterov;
            *decay = args.decay;
        }
        OptimizerConfig::Rmsprop {
            learning_rate,
            momentum,
            decay,
            ..
        } => {
            *learning_rate = args.lr.unwrap_or(*learning_rate);
            *momentum = args.momentum;
            *decay = args.decay;
        }
    }
    o.validate().map_err(anyhow::Error::msg)?;
    Ok(o)
}

/// The Keras 3 weight decay: --weight-decay, else AdamW's 0.004 with --optimizer adamw.
fn regularization(args: &TrainArgs) -> Regularization {
    let adamw = args.optimizer.eq_ignore_ascii_case("adamw");
    Regularization {
        label_smoothing: args.label_smoothing,
        weight_decay: args.weight_decay.unwrap_or(if adamw { 0.004 } else { 0.0 }),
        l2: args.l2,
    }
}

fn numbers<T: std::str::FromStr>(flag: &str, list: &str) -> Result<Vec<T>> {
    list.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag} {list}: `{v}` is not a number"))
        })
        .collect()
}

/// --lr-schedule and its arguments; an argument of another schedule is an error.
fn schedule(args: &TrainArgs) -> Result<Option<LrSchedule>> {
    let Some(name) = &args.lr_schedule else {
        return Ok(None);
    };
    let given = [
        ("--decay-steps", args.decay_steps.is_some()),
        ("--alpha", args.alpha.is_some()),
        ("--warmup-target", args.warmup_target.is_some()),
        ("--warmup-steps", args.warmup_steps.is_some()),
        ("--decay-rate", args.decay_rate.is_some()),
        ("--staircase", args.staircase),
        ("--boundaries", args.boundaries.is_some()),
        ("--values", args.values.is_some()),
        ("--pct-start", args.pct_start.is_some()),
        ("--div-factor", args.div_factor.is_some()),
        ("--final-div-factor", args.final_div_factor.is_some()),
    ];
    let only = |allowed: &[&str]| -> Result<()> {
        match given.iter().find(|(f, set)| *set && !allowed.contains(f)) {
            Some((f, _)) => bail!("{f} does not apply to --lr-schedule {name}"),
            None => Ok(()),
        }
    };
    let s = match name.to_ascii_lowercase().replace('_', "-").as_str() {
        "cosine" => {
            only(&[
                "--decay-steps",
                "--alpha",
                "--warmup-target",
                "--warmup-steps",
            ])?;
            if args.warmup_steps.is_some() != args.warmup_target.is_some() {
                bail!("--warmup-steps and --warmup-target go together (Keras CosineDecay)");
            }
            LrSchedule::Cosine {
                decay_steps: args.decay_steps,
                alpha: args.alpha.unwrap_or(0.0),
                warmup_target: args.warmup_target,
                warmup_steps: args.warmup_steps.unwrap_or(0),
            }
        }
        "piecewise" => {
            only(&["--boundaries", "--values"])?;
            let (Some(b), Some(v)) = (&args.boundaries, &args.values) else {
                bail!("--lr-schedule piecewise needs --boundaries and --values");
            };
            LrSchedule::Piecewise {
                boundaries: numbers("--boundaries", b)?,
                values: numbers("--values", v)?,
            }
        }
        kind @ ("exponential" | "inverse-time") => {
            only(&["--decay-steps", "--decay-rate", "--staircase"])?;
            let Some(decay_rate) = args.decay_rate else {
                bail!("--lr-schedule {kind} needs --decay-rate");
            };
            let (decay_steps, staircase) = (args.decay_steps, args.staircase);
            if kind == "exponential" {
                LrSchedule::Exponential {
                    decay_steps,
                    decay_rate,
                    staircase,
                }
            } else {
                LrSchedule::InverseTime {
                    decay_steps,
                    decay_rate,
                    staircase,
                }
            }
        }
        "one-cycle" | "onecycle" => {
            only(&[
                "--decay-steps",
                "--pct-start",
                "--div-factor",
                "--final-div-factor",
            ])?;
            LrSchedule::OneCycle {
                total_steps: args.decay_steps,
                pct_start: args.pct_start.unwrap_or(0.3),
                div_factor: args.div_factor.unwrap_or(25.0),
                final_div_factor: args.final_div_factor.unwrap_or(1e4),
            }
        }
        other => bail!(
            "unknown --lr-schedule `{other}`: expected {}",
            LrSchedule::NAMES
        ),
    };
    s.validate().map_err(anyhow::Error::msg)?;
    Ok(Some(s))
}

fn config(args: &TrainArgs) -> Result<TrainConfig> {
    let model: ModelName = args.model.parse()?;
    let target_size = args
        .target_size
        .as_deref()
        .map(lcnn::data::parse_target_size)
        .transpose()?;
    Ok(TrainConfig {
        model,
        dataset: args.dataset.clone(),
        data_dir: resolve_data_dir(args.data_dir.as_deref()),
        target_size,
        color_mode: args.color_mode.clone(),
        interpolation: args.interpolation.clone(),
        class_mode: args.class_mode.clone(),
        epochs: args.epochs.unwrap_or(10),
        batch_size: args.batch_size,
        optimizer: optimizer(args)?,
        validation_split: args.validation_split,
        early_stopping: (!args.no_early_stopping).then(|| EarlyStoppingConfig {
            monitor: args.monitor.clone(),
            min_delta: args.min_delta,
            patience: args.patience,
            mode: Mode::Auto,
            baseline: None,
            restore_best_weights: args.restore_best_weights,
        }),
        checkpoint: ModelCheckpointConfig {
            monitor: args.checkpoint_monitor.clone(),
            save_best_only: true,
            mode: Mode::Auto,
        },
        reduce_lr: args
            .reduce_lr_patience
            .map(|patience| ReduceLrOnPlateauConfig {
                monitor: args.monitor.clone(),
                factor: args.reduce_lr_factor,
                patience,
                cooldown: args.reduce_lr_cooldown,
                min_lr: args.min_lr,
                ..Default::default()
            }),
        augment: AugmentConfig {
            rescale: args.rescale,
            rotation_range: args.rotation_range,
            width_shift_range: args.width_shift_range,
            height_shift_range: args.height_shift_range,
            zoom_range: args.zoom_range,
            horizontal_flip: args.horizontal_flip,
            vertical_flip: args.vertical_flip,
            featurewise_center: args.featurewise_center,
            featurewise_std_normalization: args.featurewise_std_normalization,
        },
        seed: args.seed,
        freeze_until: args.freeze_until.clone(),
        init_weights: args.weights.clone(),
        include_top: !args.no_top,
        dropout: args.dropout,
        kernel_initializer: args
            .kernel_initializer
            .parse::<KernelInitializer>()
            .map_err(anyhow::Error::msg)?,
        head: args.head.clone(),
        base: args.base.clone(),
        base_until: args.base_until.clone(),
        freeze_base: args.freeze_base,
        freeze_bn: args.freeze_bn,
        recalibrate_bn: args.recalibrate_bn,
        bottleneck_cache: !args.no_bottleneck_cache,
        engine: args.engine.parse().map_err(anyhow::Error::msg)?,
        precision: args.precision,
        conv: args.conv,
        loss_scale: args.loss_scale,
        lr_schedule: schedule(args)?,
        regularization: regularization(args),
        audio: args.audio.options(),
    })
}

/// `--resume` continues a run with its own `config.json`: a flag that would change it
/// (anything but `--epochs` and how to run: device, output, downloads) is an error naming it,
/// rather than silently ignored. `given`: the flags on the command line (clap's ids).
fn refuse_ignored_flags(given: &[String], dir: &std::path::Path) -> Result<()> {
    const ALLOWED: [&str; 7] = [
        "resume",
        "epochs",
        "quiet",
        "offline",
        "device",
        "devices",
        "data_on_device",
    ];
    let ignored: Vec<String> = given
        .iter()
        .filter(|id| !ALLOWED.contains(&id.as_str()))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !ignored.is_empty() {
        bail!(
            "--resume {}: the run continues with its own config.json, so {} would be ignored; \
             only --epochs may change on resume (train into a new --out for other settings)",
            dir.display(),
            ignored.join(", ")
        );
    }
    Ok(())
}

/// Runs `lcnn train`.
pub fn run_train(args: TrainArgs, given: &[String]) -> Result<()> {
    let devices = args
        .devices
        .iter()
        .map(|d| parse_device(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let device = match devices.first() {
        Some(first) => first.clone(),
        None => parse_device(&args.device).map_err(anyhow::Error::msg)?,
    };
    let (config, out, resume) = match &args.resume {
        Some(dir) => {
            refuse_ignored_flags(given, dir)?;
            let mut config = lcnn::train::run::load_config(&lcnn::train::RunFiles::new(dir))?;
            if let Some(e) = args.epochs {
                config.epochs = e;
            }
            (config, dir.clone(), true)
        }
        None => {
            let config = config(&args)?.with_absolute_paths();
            let out = args.out.clone().unwrap_or_else(|| {
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let name = config
                    .dataset
                    .split([':', '/'])
                    .next_back()
                    .unwrap_or("data")
                    .to_string();
                PathBuf::from(format!("runs/{}-{}-{t}", config.model, name))
            });
            (config, out, false)
        }
    };
    let opts = FitOptions {
        out: out.clone(),
        resume,
        quiet: args.quiet,
        offline: args.offline,
        device,
        devices,
        data_on_device: match args.data_on_device.as_str() {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        },
        overwrite: args.overwrite,
    };
    let report = fit(&config, &opts)?;
    if let Some(epoch) = report.restored_epoch {
        println!("restored_epoch: {epoch}");
    }
    if let Some(test) = report.test {
        println!("test_loss: {:.4}", test.loss);
        println!("test_accuracy: {:.4}", test.accuracy);
        if let Some(eer) = test.eer {
            println!(
                "test_eer: {eer:.4} (ROC and DET curves: {})",
                out.join("roc.png").display()
            );
        }
    }
    // Keras' moving averages after a short run still hold much of their initial value, and
    // evaluation uses them: say so, with the way out, rather than leave a low test accuracy
    // unexplained (one MNIST epoch of the seeds' recipe: 11% test accuracy, 98% recalibrated).
    if let Some(share) = report.batch_norm_initial_share.filter(|s| *s >= 0.01) {
        eprintln!(
            "note: {:.0}% of BatchNorm's moving statistics is still their initial value (mean 0, \
             variance 1) after this run's steps, as in Keras, so evaluation can trail training; \
             --recalibrate-bn recomputes them from the training data",
            100.0 * share
        );
    }
    eprintln!("run folder: {}", out.display());
    Ok(())
}

/// Arguments of `lcnn eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Dataset to evaluate on (default: the run's), its test split (or train if none).
    #[arg(long)]
    dataset: Option<String>,
    /// Folder holding mnist/ and cifar10/ (default: the run's).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Never download datasets.
    #[arg(long)]
    offline: bool,
}

/// The trained run that `eval` and `predict` load.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run folder made by `lcnn train`.
    #[arg(long)]
    run: PathBuf,
    /// Which weights: `final` (model.safetensors, as fit left the model), `best` or `last`.
    #[arg(long, default_value = "final")]
    weights: RunWeights,
    /// cpu (default), cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
    /// What convolutions and dense layers compute in: f32 (default), f16 or bf16 (the
    /// weights stay f32).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// How convolutions are computed: burn (Burn's kernels) or gemm (im2col and one matrix
    /// product).
    #[arg(long, default_value = "burn")]
    conv: ConvAlgorithm,
}

impl RunArgs {
    /// The device and the run's chosen weights on it, computing in `--precision`.
    fn load(&self) -> Result<(LoadedRun, Device)> {
        let device = parse_device(&self.device).map_err(anyhow::Error::msg)?;
        self.precision
            .check_device(&device)
            .map_err(anyhow::Error::msg)?;
        let mut run = LoadedRun::load_weights(&self.run, self.weights, &device)?;
        run.network = run
            .network
            .with_precision(self.precision)
            .with_conv(self.conv);
        Ok((run, device))
    }
}

/// Runs `lcnn eval`.
pub fn run_eval(args: EvalArgs) -> Result<()> {
    let (run, device) = args.run.load()?;
    let dataset = args
        .dataset
        .clone()
        .unwrap_or_else(|| run.config.dataset.clone());
    if dataset.is_empty() {
        bail!(
            "{}: this run was imported, not trained here, so it has no dataset: give --dataset",
            args.run.run.display()
        );
    }
    let spec: DatasetSpec = dataset.parse()?;
    // An image folder is read as the model takes it (as Keras' flow_from_directory with the
    // model's target_size and color_mode): an imported run has no settings of its own.
    let (mut target_size, mut color_mode) =
        (run.config.target_size, run.config.color_mode.parse()?);
    if let (DatasetSpec::Images(_), lcnn::models::Shape::Image { h, w, c }) =
        (&spec, &run.preprocess.input)
    {
        target_size = target_size.or(Some((*h, *w)));
        color_mode = lcnn::data::ColorMode::for_channels(*c);
    }
    let opts = LoadOptions {
        data_dir: args
            .data_dir
            .clone()
            .unwrap_or_else(|| run.config.data_dir.clone()),
        target_size,
        interpolation: run.config.interpolation.parse()?,
        color_mode,
        offline: args.offline,
        audio: run.config.audio.clone(),
    };
    let splits = load(&spec, &opts)?;
    let eer_class = run.config.eer_class(splits.classes());
    let (name, ds) = match splits.test {
        Some(t) => ("test", t),
        None => ("train", splits.train),
    };
    let (h, w, c) = ds.shape();
    if (lcnn::models::Shape::Image { h, w, c }) != run.preprocess.input {
        bail!(
            "dataset images are {h}x{w}x{c}, the model expects {}",
            run.preprocess.input
        );
    }
    // Class names other than the model's would score the wrong classes without a word (a
    // wrong class count is `evaluate`'s error).
    let trained = &run.preprocess.classes;
    if !run.config.dataset.is_empty() && !trained.is_empty() && ds.classes != *trained {
        bail!(
            "dataset `{dataset}` has the classes [{}]; the model in {} was trained on [{}]: \
             evaluate it on data with the same class folders",
            ds.classes.join(", "),
            args.run.run.display(),
            trained.join(", ")
        );
    }
    let result = evaluate(
        &run.network,
        std::sync::Arc::new(ds),
        run.augmenter(),
        args.batch_size,
        run.model.classes,
        LossTerms::of(
            &run.config.regularization,
            run.config.first_trained_layer(&run.network.spec)?,
        ),
        eer_class,
        &device,
    )
    .with_context(|| format!("evaluating on the {name} split of {dataset}"))?;
    println!("test_loss: {:.4}", result.loss);
    println!("test_accuracy: {:.4}", result.accuracy);
    if let Some(eer) = result.eer {
        println!("eer: {eer:.4}");
    }
    Ok(())
}

/// Arguments of `lcnn predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Classes to show per image.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Image files (jpg, png, bmp), or WAV / FLAC files for a run trained on audio.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

/// Runs `lcnn predict`.
pub fn run_predict(args: PredictArgs) -> Result<()> {
    let (run, device) = args.run.load()?;
    // A two-class audio run: the score of the positive class (bona fide), as ASVspoof asks.
    let positive = run
        .config
        .eer_class(&run.preprocess.classes)
        .map(|i| run.preprocess.classes[i].clone());
    let k = match positive {
        Some(_) => run.preprocess.classes.len(),
        None => args.top,
    };
    for p in predict_files(&run, &args.images, k, &device)? {
        if let Some(class) = &positive {
            let score = p.top.iter().find(|t| t.0 == *class).map_or(0.0, |t| t.1);
            let decision = &p.top[0].0;
            println!(
                "{}: {class} score {score:.4} ({decision})",
                p.file.display()
            );
            continue;
        }
        let top: Vec<String> = p
            .top
            .iter()
            .map(|(c, prob)| format!("{c} {prob:.4}"))
            .collect();
        println!("{}: {}", p.file.display(), top.join(", "));
    }
    Ok(())
}
