//! Training end to end on a tiny synthetic image folder: it learns, a resumed run ends with the
//! same weights as an uninterrupted one, a diverging run stops cleanly, frozen layers do not
//! move.

use crate::scratch;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lcnn::callbacks::{EarlyStoppingConfig, ModelCheckpointConfig, ReduceLrOnPlateauConfig};
use lcnn::layers::im2col::ConvAlgorithm;
use lcnn::layers::precision::Precision;
use lcnn::train::{
    fit, FitOptions, LoadedRun, LrSchedule, OptimizerConfig, Regularization, RunWeights,
    TrainConfig, TrainError,
};
use lcnn::weights::{export, safetensors};

/// The synthetic two-class folder (16x16 grayscale).
pub fn synthetic_folder(dir: &Path, per_class: usize) {
    lcnn::data::synthetic::write_halves_folder(dir, per_class, 16).unwrap();
}

fn config(data: &Path, epochs: usize) -> TrainConfig {
    TrainConfig {
        dataset: format!("images:{}", data.display()),
        color_mode: "grayscale".into(),
        epochs,
        batch_size: 16,
        optimizer: OptimizerConfig::adam(),
        validation_split: 0.25,
        early_stopping: None,
        checkpoint: ModelCheckpointConfig {
            save_best_only: true,
            ..Default::default()
        },
        seed: 7,
        ..TrainConfig::default()
    }
}

/// Burn's random numbers (initialization, dropout) come from one generator per backend,
/// seeded by `fit`: runs in parallel threads of one process would draw from each other's
/// stream, so the tests that train take turns.
pub static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn opts(out: &Path, resume: bool) -> FitOptions {
    FitOptions {
        out: out.to_path_buf(),
        resume,
        quiet: true,
        offline: true,
        device: Device::flex(),
        devices: Vec::new(),
        data_on_device: None,
        overwrite: false,
    }
}

/// `opts` with data parallelism over `n` CPU devices.
fn parallel_opts(out: &Path, resume: bool, n: usize) -> FitOptions {
    FitOptions {
        devices: vec![Device::flex(); n],
        ..opts(out, resume)
    }
}

#[test]
fn allconv_learns_a_synthetic_folder_and_writes_the_run_folder() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("learn");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 48);
    let out = dir.join("run");
    // All-CNN-C has no BatchNorm, whose moving statistics (Keras momentum 0.99) need a few
    // hundred steps to settle, more than this tiny set gives.
    let mut cfg = config(&dir.join("data"), 6);
    cfg.model = lcnn::models::ModelName::AllConv;
    cfg.batch_size = 8;
    let report = fit(&cfg, &opts(&out, false)).unwrap();
    assert_eq!(report.history.len(), 6);
    let test = report.test.unwrap();
    assert!(test.accuracy >= 0.9, "test accuracy {}", test.accuracy);
    let first = report.history[0]["loss"];
    let last = report.history[5]["loss"];
    assert!(last < first, "loss did not fall: {first} -> {last}");
    for f in [
        "config.json",
        "history.csv",
        "history.png",
        "best.safetensors",
        "last.safetensors",
        "model.safetensors",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert!(
        csv.starts_with("epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 7);

    // `eval`/`predict --weights`: each choice loads its own file of the run folder.
    for (which, file) in [
        (RunWeights::Final, "model.safetensors"),
        (RunWeights::Best, "best.safetensors"),
        (RunWeights::Last, "last.safetensors"),
    ] {
        let run = LoadedRun::load_weights(&out, which, &Device::flex()).unwrap();
        let (stored, _) = safetensors::load(&out.join(file)).unwrap();
        let loaded = export(&run.network);
        for t in &loaded {
            let s = stored.iter().find(|s| s.name == t.name).unwrap();
            assert_eq!(s.data, t.data, "{which:?}: `{}` is not {file}'s", t.name);
        }
    }
    std::fs::remove_file(out.join("best.safetensors")).unwrap();
    let err = LoadedRun::load_weights(&out, RunWeights::Best, &Device::flex())
        .err()
        .expect("loading a missing best.safetensors must fail");
    assert!(err.to_string().contains("best.safetensors"), "{err}");
}

/// Asserts two weight files hold identical tensors, naming the first that differs.
pub fn same_weights(a: &Path, b: &Path, what: &str) {
    close_weights(a, b, 0.0, what);
}

/// The weight files `a` and `b` hold the same tensors, element by element within `tol`.
fn close_weights(a: &Path, b: &Path, tol: f32, what: &str) {
    compare_weights(a, b, what, |_| tol);
}

/// The weight files `a` and `b` hold the same tensors, each within `rel` times its largest
/// magnitude in `a`.
pub fn close_relative(a: &Path, b: &Path, rel: f32, what: &str) {
    compare_weights(a, b, what, |x| {
        rel * x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    });
}

/// Asserts that `a` and `b` hold tensors of the same names whose largest element-wise
/// difference is within `tolerance(a's tensor)`.
fn compare_weights(a: &Path, b: &Path, what: &str, tolerance: impl Fn(&[f32]) -> f32) {
    let (a, _) = safetensors::load(a).unwrap();
    let (b, _) = safetensors::load(b).unwrap();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let diff = x
            .data
            .iter()
            .zip(&y.data)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        let tol = tolerance(&x.data);
        assert!(
            x.name == y.name && diff <= tol,
            "{what}: `{}` differs by up to {diff} (tolerance {tol})",
            x.name
        );
    }
}

/// Trains `cfg` into `dir/full` in one go, and into `dir/split` for `first_epochs` epochs
/// then resumed to the end.
fn full_and_resumed(cfg: &TrainConfig, dir: &Path, first_epochs: usize) {
    fit(cfg, &opts(&dir.join("full"), false)).unwrap();
    let mut first = cfg.clone();
    first.epochs = first_epochs;
    fit(&first, &opts(&dir.join("split"), false)).unwrap();
    fit(cfg, &opts(&dir.join("split"), true)).unwrap();
}

#[test]
fn resumed_run_ends_with_the_same_weights() {
    resumed_run_matches(lcnn::engine::EngineKind::Native);
}

#[test]
fn resumed_run_ends_with_the_same_weights_on_burns_path() {
    resumed_run_matches(lcnn::engine::EngineKind::Burn);
}

fn resumed_run_matches(engine: lcnn::engine::EngineKind) {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch(&format!("resume-{}", engine.name()));
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 24);
    let mut cfg = config(&dir.join("data"), 3);
    cfg.engine = engine;
    cfg.early_stopping = Some(EarlyStoppingConfig {
        patience: 5,
        restore_best_weights: true,
        ..Default::default()
    });
    // Dropout and augmentation draw random numbers too.
    cfg.augment.width_shift_range = 0.1;
    cfg.augment.horizontal_flip = true;
    full_and_resumed(&cfg, dir, 1);

    let again = fit(&cfg, &opts(&dir.join("again"), false)).unwrap();
    // The restored epoch it reports is the one of lowest val_loss (the first such).
    let val_loss: Vec<f64> = again.history.iter().map(|l| l["val_loss"]).collect();
    let lowest = (0..val_loss.len())
        .min_by(|a, b| val_loss[*a].total_cmp(&val_loss[*b]))
        .unwrap();
    assert_eq!(again.restored_epoch, Some(lowest + 1), "{val_loss:?}");
    same_weights(
        &dir.join("full/model.safetensors"),
        &dir.join("again/model.safetensors"),
        "a second identical run",
    );
    same_weights(
        &dir.join("full/model.safetensors"),
        &dir.join("split/model.safetensors"),
        "the resumed run",
    );
    // Patience never ran out, yet (Keras 3's restore_best_weights) both runs end with their
    // best epoch's weights: the checkpoint's, which watches the same val_loss.
    for run in ["full", "split"] {
        same_weights(
            &dir.join(run).join("best.safetensors"),
            &dir.join(run).join("model.safetensors"),
            &format!("{run}: the restored best epoch"),
        );
    }
    let ha = std::fs::read_to_string(dir.join("full/history.csv")).unwrap();
    let hb = std::fs::read_to_string(dir.join("split/history.csv")).unwrap();
    let strip = |s: &str| {
        s.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(&ha),
        strip(&hb),
        "histories differ (seconds column aside)"
    );
}

#[test]
fn data_parallel_over_two_cpu_devices_takes_the_one_device_steps_and_resumes_exactly() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("parallel");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 24);
    // All-CNN-C has no BatchNorm; without dropout its two-device step is the one-device
    // step with the same global batch (one step of 36 = 18 + 18 images per epoch): from the
    // same weights and optimizer state (epoch 1 from the start, epoch 2 resumed from one
    // device's epoch 1), the two agree to rounding.
    let mut cfg = config(&dir.join("data"), 1);
    cfg.model = lcnn::models::ModelName::AllConv;
    cfg.engine = lcnn::engine::EngineKind::Burn;
    cfg.batch_size = 36;
    cfg.dropout = Some(0.0);
    cfg.optimizer = OptimizerConfig::Sgd {
        learning_rate: 0.05,
        momentum: 0.9,
        nesterov: true,
        decay: 0.0,
    };
    let one = fit(&cfg, &opts(&dir.join("one"), false)).unwrap();
    let two = fit(&cfg, &parallel_opts(&dir.join("two"), false, 2)).unwrap();
    let same_step = |a: &str, b: &str| {
        close_relative(
            &dir.join(a).join("model.safetensors"),
            &dir.join(b).join("model.safetensors"),
            1e-5,
            "two CPU devices against one",
        )
    };
    same_step("one", "two");
    let (a, b) = (&one.history[0], &two.history[0]);
    assert!((a["loss"] - b["loss"]).abs() < 1e-6, "{a:?} against {b:?}");
    assert_eq!(a["accuracy"], b["accuracy"]);
    let copy = |to: &str| {
        std::fs::create_dir_all(dir.join(to)).unwrap();
        for f in [
            "config.json",
            "history.csv",
            "last.safetensors",
            "best.safetensors",
        ] {
            std::fs::copy(dir.join("one").join(f), dir.join(to).join(f)).unwrap();
        }
    };
    copy("one-then-one");
    copy("one-then-two");
    cfg.epochs = 2;
    fit(&cfg, &opts(&dir.join("one-then-one"), true)).unwrap();
    fit(&cfg, &parallel_opts(&dir.join("one-then-two"), true, 2)).unwrap();
    same_step("one-then-one", "one-then-two");

    // LCNN (BatchNorm, dropout 0.75) over two devices: a resumed run ends where an
    // uninterrupted one does, and moving statistics are averaged, not left at their start.
    let mut lcnn = config(&dir.join("data"), 2);
    lcnn.augment.width_shift_range = 0.1;
    let on_two = |out: &str, resume: bool, c: &TrainConfig| {
        fit(c, &parallel_opts(&dir.join(out), resume, 2)).unwrap()
    };
    on_two("full", false, &lcnn);
    let mut first = lcnn.clone();
    first.epochs = 1;
    on_two("split", false, &first);
    on_two("split", true, &lcnn);
    same_weights(
        &dir.join("full/model.safetensors"),
        &dir.join("split/model.safetensors"),
        "the resumed two-device run",
    );
    let (weights, _) = safetensors::load(&dir.join("full/model.safetensors")).unwrap();
    let mean = weights
        .iter()
        .find(|t| t.name == "bn_fc1.running_mean")
        .unwrap();
    assert!(mean.data.iter().any(|&m| m != 0.0) && mean.data.iter().all(|m| m.is_finite()));
}

/// The updates `b - init` and `c - init` of every kernel (`*.weight`) agree: the norm of
/// their difference is within `rel` of the norm of `b`'s. A skipped step is 1 off, a wrongly
/// scaled one more. (Biases are left out: the last one's gradient, a sum over the batch of
/// softmax residuals that nearly cancel, carries more rounding than signal in half precision.)
pub fn same_steps(init: &Path, b: &Path, c: &Path, rel: f32) {
    for (name, off) in step_gaps(init, b, c, |n| n.ends_with(".weight")) {
        assert!(off <= rel, "`{name}`: update off by {off} of its size");
    }
}

/// Every tensor's update `c - init` is within `rel` of `b - init` (see [`step_gaps`]); prints
/// each tensor's gap, so a passing run shows its margin.
pub fn close_steps(init: &Path, b: &Path, c: &Path, rel: f32, what: &str) {
    let gaps = step_gaps(init, b, c, |_| true);
    eprintln!("{what}, each tensor's step off by (of its size): {gaps:?}");
    for (name, off) in gaps {
        assert!(off <= rel, "{what}: `{name}` off by {off} of its step");
    }
}

/// For each tensor of `init` that `keep` names: how far the update `c - init` is from the
/// update `b - init`, as the norm of their difference over the norm of `b`'s (a tensor that
/// did not move in `b` fails the test).
fn step_gaps(init: &Path, b: &Path, c: &Path, keep: impl Fn(&str) -> bool) -> Vec<(String, f32)> {
    let load = |p: &Path| -> std::collections::HashMap<String, Vec<f32>> {
        let (tensors, _) = safetensors::load(p).unwrap();
        tensors.into_iter().map(|t| (t.name, t.data)).collect()
    };
    let (init, b, c) = (load(init), load(b), load(c));
    let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|x| x * x).sum::<f32>().sqrt();
    let mut gaps: Vec<(String, f32)> = init
        .iter()
        .filter(|(n, _)| keep(n))
        .map(|(name, w0)| {
            let step = |w: &[f32]| -> Vec<f32> { w.iter().zip(w0).map(|(x, y)| x - y).collect() };
            let (db, dc) = (step(&b[name]), step(&c[name]));
            let size = norm(&mut db.iter().copied());
            assert!(size > 0.0, "`{name}` did not move in the reference step");
            let off = norm(&mut db.iter().zip(&dc).map(|(x, y)| x - y)) / size;
            (name.clone(), off)
        })
        .collect();
    gaps.sort_by(|x, y| x.0.cmp(&y.0));
    gaps
}

/// `config` in `precision`, f16 with a loss scale of 256 (Keras' 2^15 overflows f16 on the
/// first steps, which are skipped while the scale comes down: over the few steps of a test
/// that would leave f16 steps behind).
pub fn half_precision(config: &TrainConfig, precision: Precision) -> TrainConfig {
    TrainConfig {
        precision,
        loss_scale: precision.scales_loss().then_some(256.0),
        ..config.clone()
    }
}

/// One SGD step of All-CNN-C (36 of the synthetic folder's images in `dir/data`, dropout 0,
/// Burn's path) from the initial weights file it writes, for comparing steps across
/// precisions and devices ([`half_precision`] sets one). (LCNN's gradient at its initial weights moves by 10-20% when those
/// weights are merely rounded to f16 and the step taken in f32, as Max-Feature-Map's near ties
/// route it elsewhere; All-CNN-C's moves by about 5%, so it shows the step, not the ties.)
pub fn one_allconv_step(dir: &Path) -> (PathBuf, TrainConfig) {
    let init = dir.join("init-allconv.safetensors");
    let spec = lcnn::models::ModelConfig {
        dropout: Some(0.0),
        ..lcnn::models::ModelConfig::new(
            lcnn::models::ModelName::AllConv,
            lcnn::models::Shape::Image { h: 16, w: 16, c: 1 },
            2,
        )
    }
    .spec()
    .unwrap();
    // Weights of the test's own (not the device generator's, which other tests' runs draw
    // from too): with Burn's draws the biases' step missed the 2e-4 bound on about 1% of runs.
    let network = crate::engine::fixed_network(&spec, &Device::flex(), 7);
    safetensors::save(&init, &export(&network), Default::default()).unwrap();
    let config = TrainConfig {
        model: lcnn::models::ModelName::AllConv,
        batch_size: 36,
        optimizer: OptimizerConfig::sgd(),
        dropout: Some(0.0),
        init_weights: Some(init.clone()),
        engine: lcnn::engine::EngineKind::Burn,
        ..config(&dir.join("data"), 1)
    };
    (init, config)
}

#[test]
fn gemm_convolutions_take_burns_step_and_are_refused_by_the_native_engine() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("conv-gemm");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 24);
    // One All-CNN-C step (3x3 same, 3x3 stride 2, 3x3 valid, 1x1) with `--conv gemm` against
    // Burn's convolutions: the same step to f32 rounding (measured: the kernels' steps equal,
    // as the backward is Burn's own and the forward rounds alike here; the biases', summed by
    // a broadcast add's gradient instead, within 4.6e-6 on these weights, and past the bound on
    // about 1% of Burn's random draws, which is why the weights are fixed; a wrong tap, stride
    // or a gradient lost or counted twice is off by the whole step).
    let (init, one_step) = one_allconv_step(dir);
    fit(&one_step, &opts(&dir.join("burn"), false)).unwrap();
    let gemm = TrainConfig {
        conv: ConvAlgorithm::Gemm,
        ..one_step.clone()
    };
    fit(&gemm, &opts(&dir.join("gemm"), false)).unwrap();
    close_steps(
        &init,
        &dir.join("burn/model.safetensors"),
        &dir.join("gemm/model.safetensors"),
        2e-4,
        "the gemm step against Burn's",
    );
    let native = TrainConfig {
        engine: lcnn::engine::EngineKind::Native,
        ..gemm
    };
    let err = fit(&native, &opts(&dir.join("native"), false)).unwrap_err();
    assert!(err.to_string().contains("--conv gemm"), "{err}");
}

#[test]
fn mixed_precision_trains_on_burns_path_and_resumes_exactly() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("precision");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 24);
    // One step in f16 and bf16 against the f32 step (measured here: kernels within 1.6e-2
    // and 4.8e-2).
    let (init, one_step) = one_allconv_step(dir);
    fit(&one_step, &opts(&dir.join("step-f32"), false)).unwrap();
    for (precision, tol) in [(Precision::F16, 5e-2), (Precision::Bf16, 1.2e-1)] {
        let run = dir.join(format!("step-{precision}"));
        fit(&half_precision(&one_step, precision), &opts(&run, false)).unwrap();
        let f32_run = dir.join("step-f32/model.safetensors");
        same_steps(&init, &f32_run, &run.join("model.safetensors"), tol);
    }
    // LCNN (BatchNorm, MFM) on Burn's path. On a dozen images a batch BatchNorm amplifies
    // rounding, so half precision's trajectory parts from f32's after a step or two (the
    // step itself is checked against f32 in `train::parallel`'s tests): here each precision
    // must learn, as f32 does.
    let mut cfg = config(&dir.join("data"), 3);
    cfg.engine = lcnn::engine::EngineKind::Burn;
    cfg.dropout = Some(0.0);
    // Plain SGD: unlike Adam's, its step grows with a gradient left scaled.
    cfg.optimizer = OptimizerConfig::Sgd {
        learning_rate: 0.01,
        momentum: 0.0,
        nesterov: false,
        decay: 0.0,
    };
    for precision in [Precision::F32, Precision::F16, Precision::Bf16] {
        let run = dir.join(precision.to_string());
        let report = fit(&half_precision(&cfg, precision), &opts(&run, false)).unwrap();
        let (first, last) = (&report.history[0], &report.history[2]);
        assert!(
            last["loss"] < 0.7 * first["loss"],
            "{precision}: {first:?} then {last:?}"
        );
        // The master weights stay f32, written as such.
        let (weights, _) = safetensors::load(&run.join("model.safetensors")).unwrap();
        assert!(weights.iter().all(|t| t.data.iter().all(|v| v.is_finite())));
    }
    // f16 with its loss scale: two epochs, then a resumed third, ends where three epochs do.
    let cfg = half_precision(&cfg, Precision::F16);
    full_and_resumed(&cfg, &dir.join("resume"), 2);
    same_weights(
        &dir.join("resume/full/model.safetensors"),
        &dir.join("resume/split/model.safetensors"),
        "the resumed f16 run",
    );
    let saved = std::fs::read_to_string(dir.join("resume/split/config.json")).unwrap();
    assert!(saved.contains("\"precision\": \"f16\""), "{saved}");
    // lcnn's native engine computes in f32: asking it for f16 is an error that says so; so is
    // a loss scale without f16.
    let native = TrainConfig {
        engine: lcnn::engine::EngineKind::Native,
        ..cfg.clone()
    };
    let err = fit(&native, &opts(&dir.join("native"), false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--precision f16") && err.contains("--engine burn"),
        "{err}"
    );
    let bf16 = TrainConfig {
        precision: Precision::Bf16,
        ..cfg.clone()
    };
    let err = fit(&bf16, &opts(&dir.join("bf16-scaled"), false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--loss-scale") && err.contains("bf16"),
        "{err}"
    );
}

#[test]
fn batches_made_on_the_device_train_exactly_as_the_hosts() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("device-data");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 24);
    // LCNN on Burn's path with every transform the device makes: the same draws, the same
    // arithmetic, so the same weights to the bit.
    let mut cfg = config(&dir.join("data"), 2);
    cfg.engine = lcnn::engine::EngineKind::Burn;
    cfg.augment.width_shift_range = 0.2;
    cfg.augment.height_shift_range = 0.1;
    cfg.augment.zoom_range = 0.1;
    cfg.augment.horizontal_flip = true;
    let on_device = |out: &str, cfg: &TrainConfig| {
        let opts = FitOptions {
            data_on_device: Some(true),
            overwrite: false,
            ..opts(&dir.join(out), false)
        };
        fit(cfg, &opts)
    };
    let host = fit(&cfg, &opts(&dir.join("host"), false)).unwrap();
    let device = on_device("device", &cfg).unwrap();
    for (a, b) in host.history.iter().zip(&device.history) {
        for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
            assert_eq!(a[key], b[key], "{key}");
        }
    }
    same_weights(
        &dir.join("host/model.safetensors"),
        &dir.join("device/model.safetensors"),
        "batches made on the device",
    );
    // A rotation is made on the host only, and the native engine has no device: both refused.
    let mut rotate = cfg.clone();
    rotate.augment.rotation_range = 10.0;
    let err = on_device("rotate", &rotate).unwrap_err().to_string();
    assert!(err.contains("--rotation-range"), "{err}");
    cfg.engine = lcnn::engine::EngineKind::Native;
    let err = on_device("native", &cfg).unwrap_err().to_string();
    assert!(err.contains("--engine burn"), "{err}");
}

/// The `lr` column of a run folder's history.csv.
fn lr_column(run: &Path) -> Vec<f64> {
    lcnn::callbacks::read_history(&run.join("history.csv"))
        .unwrap()
        .iter()
        .map(|row| row.logs["lr"])
        .collect()
}

/// A Keras schedule with warm-up, label smoothing, AdamW's decay and L2 on both engines: the
/// `lr` column is the schedule's rate at each epoch's first update, and a resumed run ends
/// bit-exact.
#[test]
fn a_schedule_and_regularizers_log_the_scheduled_rate_and_resume_bit_exact() {
    for engine in [
        lcnn::engine::EngineKind::Native,
        lcnn::engine::EngineKind::Burn,
    ] {
        let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = scratch(&format!("schedule-{}", engine.name()));
        let dir = tmp.path();
        // 12 images per class, validation 0.25: 18 to train on, batch 4: 5 steps per epoch.
        synthetic_folder(&dir.join("data"), 12);
        let mut cfg = config(&dir.join("data"), 4);
        cfg.engine = engine;
        cfg.batch_size = 4;
        // Explicit steps: the split run's first part has fewer epochs, so a whole-run default
        // would be another schedule there.
        let schedule = LrSchedule::Cosine {
            decay_steps: Some(17),
            alpha: 0.1,
            warmup_target: Some(2e-3),
            warmup_steps: 3,
        };
        cfg.lr_schedule = Some(schedule.clone());
        cfg.regularization = Regularization {
            label_smoothing: 0.1,
            weight_decay: 0.004,
            l2: 1e-4,
        };
        full_and_resumed(&cfg, dir, 2);
        let want: Vec<f64> = (0..4).map(|e| schedule.lr(1e-3, e * 5, 0)).collect();
        assert_eq!(lr_column(&dir.join("full")), want, "{}", engine.name());
        assert_eq!(lr_column(&dir.join("split")), want, "{}", engine.name());
        same_weights(
            &dir.join("full/model.safetensors"),
            &dir.join("split/model.safetensors"),
            &format!("a resumed run with a schedule ({})", engine.name()),
        );
    }
}

#[test]
fn reduce_lr_on_plateau_lowers_the_rate_and_a_resumed_run_keeps_it() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("reduce-lr");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 16);
    // Monitoring the logged rate itself makes the plateaus certain: it never falls by itself,
    // so every second epoch halves it.
    let mut cfg = config(&dir.join("data"), 4);
    cfg.reduce_lr = Some(ReduceLrOnPlateauConfig {
        monitor: "lr".into(),
        factor: 0.5,
        patience: 1,
        min_delta: 0.0,
        ..Default::default()
    });
    // Interrupted after the first reduction: the resumed run goes on at the reduced rate.
    full_and_resumed(&cfg, dir, 2);
    assert_eq!(lr_column(&dir.join("full")), [1e-3, 1e-3, 5e-4, 5e-4]);
    assert_eq!(lr_column(&dir.join("split")), [1e-3, 1e-3, 5e-4, 5e-4]);
    same_weights(
        &dir.join("full/model.safetensors"),
        &dir.join("split/model.safetensors"),
        "the resumed run with ReduceLROnPlateau",
    );
}

#[test]
fn diverging_loss_stops_with_a_clear_error_and_keeps_checkpoints() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("nan");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 16);
    let mut cfg = config(&dir.join("data"), 3);
    let sgd = |learning_rate| OptimizerConfig::Sgd {
        learning_rate,
        momentum: 0.0,
        nesterov: false,
        decay: 0.0,
    };
    cfg.optimizer = sgd(1e30);
    let err = fit(&cfg, &opts(&dir.join("run"), false)).unwrap_err();
    assert!(matches!(err, TrainError::NonFiniteLoss { .. }), "{err}");
    // The message names the checkpoints there are, and only those.
    let msg = err.to_string();
    let run = dir.join("run");
    assert!(msg.contains("loss is") && msg.contains("--lr"), "{msg}");
    for file in ["best.safetensors", "last.safetensors"] {
        assert_eq!(msg.contains(file), run.join(file).exists(), "{file}: {msg}");
    }
    // Diverging after a finished epoch: that epoch's resume point is kept and named.
    cfg.optimizer = sgd(0.01);
    cfg.epochs = 1;
    fit(&cfg, &opts(&dir.join("later"), false)).unwrap();
    cfg.epochs = 2;
    cfg.optimizer = sgd(1e30);
    let err = fit(&cfg, &opts(&dir.join("later"), true)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("epoch 2") && msg.contains("resume point after epoch 1"),
        "{msg}"
    );
    assert!(dir.join("later/last.safetensors").exists());
}

#[test]
fn frozen_layers_get_no_updates_including_batchnorm_statistics() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("freeze");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 16);
    let mut cfg = config(&dir.join("data"), 1);
    // Initial weights: those of an untrained run, so the frozen part can be compared.
    let mut init = cfg.clone();
    init.optimizer = OptimizerConfig::Sgd {
        learning_rate: 1e-12,
        momentum: 0.0,
        nesterov: false,
        decay: 0.0,
    };
    fit(&init, &opts(&dir.join("init"), false)).unwrap();
    cfg.init_weights = Some(dir.join("init/model.safetensors"));
    cfg.freeze_until = Some("conv3".into());
    fit(&cfg, &opts(&dir.join("run"), false)).unwrap();
    let (before, _) = safetensors::load(&dir.join("init/model.safetensors")).unwrap();
    let (after, _) = safetensors::load(&dir.join("run/model.safetensors")).unwrap();
    let frozen = [
        "conv1.", "conv2a.", "bn2a.", "conv2.", "bn2.", "conv3a.", "bn3a.",
    ];
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.name, a.name);
        if frozen.iter().any(|p| b.name.starts_with(p)) {
            assert_eq!(b.data, a.data, "{} moved although frozen", b.name);
        } else if b.name.ends_with(".weight") {
            assert_ne!(b.data, a.data, "{} did not train", b.name);
        }
    }
}

#[test]
fn a_head_on_a_frozen_base_trains_only_the_head_and_keeps_no_optimizer_state_for_the_base() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("head");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 16);
    // The base: an LCNN run (BatchNorm throughout), cut before its `flatten`.
    let base_cfg = config(&dir.join("data"), 1);
    fit(&base_cfg, &opts(&dir.join("base"), false)).unwrap();
    let mut cfg = config(&dir.join("data"), 2);
    cfg.base = Some(dir.join("base"));
    cfg.base_until = Some("flatten".into());
    cfg.head = Some("flatten,dense:16:relu,dropout:0.5".into());
    cfg.freeze_base = true;
    fit(&cfg, &opts(&dir.join("run"), false)).unwrap();

    let (before, _) = safetensors::load(&dir.join("base/model.safetensors")).unwrap();
    let (after, _) = safetensors::load(&dir.join("run/model.safetensors")).unwrap();
    let spec = LoadedRun::load(&dir.join("base"), &Device::flex())
        .unwrap()
        .model
        .spec()
        .unwrap();
    let cut = spec.index_of("flatten").unwrap();
    let base_layers: Vec<&str> = spec.layers[..cut].iter().map(|l| l.name.as_str()).collect();
    let in_base = |name: &str| base_layers.contains(&name.split('.').next().unwrap());
    let mut checked = 0;
    for b in before.iter().filter(|b| in_base(&b.name)) {
        let a = after.iter().find(|a| a.name == b.name).unwrap();
        assert_eq!(b.data, a.data, "{} moved although frozen", b.name);
        checked += 1;
    }
    assert!(checked > 10, "{checked} base tensors checked");
    // The classifier on top of the cut base: new layers with stable names, trained.
    let names: Vec<&str> = after.iter().map(|t| t.name.as_str()).collect();
    for n in [
        "head2_dense.weight",
        "predictions.weight",
        "predictions.bias",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("fc1.")), "{names:?}");
    // The resume point holds optimizer slots for the head only.
    let (last, _) = safetensors::load(&dir.join("run/last.safetensors")).unwrap();
    let slots: Vec<&str> = last
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| n.starts_with("optimizer/"))
        .collect();
    assert!(!slots.is_empty());
    for s in &slots {
        assert!(
            s.starts_with("optimizer/head") || s.starts_with("optimizer/predictions"),
            "optimizer state for a frozen layer: {s}"
        );
    }
    // The run loads for eval / predict with its head.
    let run = LoadedRun::load(&dir.join("run"), &Device::flex()).unwrap();
    assert_eq!(run.network.spec.layers.last().unwrap().name, "predictions");

    // A zoo model with its top cannot take a head; a base without one needs a head.
    let mut bad = config(&dir.join("data"), 1);
    bad.head = Some("flatten".into());
    let e = fit(&bad, &opts(&dir.join("bad"), false))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--no-top or --base"), "{e}");
    bad.head = None;
    bad.base = Some(dir.join("base"));
    let e = fit(&bad, &opts(&dir.join("bad"), false))
        .unwrap_err()
        .to_string();
    assert!(e.contains("give --head"), "{e}");
}

/// Seed 003's bottleneck features: a head on a frozen base trained on the base's outputs
/// computed once follows the same trajectory as one that runs the base at every step (same
/// losses, accuracies and weights, up to float rounding), and a resumed run rebuilds the cache.
#[test]
fn bottleneck_features_train_the_head_as_running_the_base_every_step() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("bottleneck");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 16);
    fit(
        &config(&dir.join("data"), 1),
        &opts(&dir.join("base"), false),
    )
    .unwrap();
    let mut cfg = config(&dir.join("data"), 3);
    cfg.base = Some(dir.join("base"));
    cfg.base_until = Some("flatten".into());
    cfg.head = Some("flatten,dense:16:relu,dropout:0.5".into());
    cfg.freeze_base = true;
    let cached = fit(&cfg, &opts(&dir.join("cached"), false)).unwrap();
    cfg.bottleneck_cache = false;
    let direct = fit(&cfg, &opts(&dir.join("direct"), false)).unwrap();
    assert!(cached.bottleneck && !direct.bottleneck);
    assert_eq!(cached.history.len(), 3);
    for (a, b) in cached.history.iter().zip(&direct.history) {
        for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
            assert!(
                (a[key] - b[key]).abs() <= 1e-5,
                "{key}: cached {} vs direct {}",
                a[key],
                b[key]
            );
        }
    }
    let (ta, tb) = (cached.test.unwrap(), direct.test.unwrap());
    assert!((ta.loss - tb.loss).abs() <= 1e-5, "{ta:?} {tb:?}");
    close_weights(
        &dir.join("cached/model.safetensors"),
        &dir.join("direct/model.safetensors"),
        1e-4,
        "cached against direct",
    );
    // Resumed after two epochs, with the cache rebuilt: the same end.
    cfg.bottleneck_cache = true;
    cfg.epochs = 2;
    fit(&cfg, &opts(&dir.join("resumed"), false)).unwrap();
    cfg.epochs = 3;
    fit(&cfg, &opts(&dir.join("resumed"), true)).unwrap();
    same_weights(
        &dir.join("cached/model.safetensors"),
        &dir.join("resumed/model.safetensors"),
        "resumed with the cache",
    );
}

/// Two epochs of one step each on `engine`: the synthetic folder's 36 training images in a
/// batch of 36 (a whole-part batch when recalibrating), in a scratch folder.
fn one_step_epochs(
    tag: &str,
    engine: lcnn::engine::EngineKind,
) -> (tempfile::TempDir, TrainConfig) {
    let tmp = scratch(&format!("{tag}-{}", engine.name()));
    synthetic_folder(&tmp.path().join("data"), 24);
    let mut cfg = config(&tmp.path().join("data"), 2);
    cfg.engine = engine;
    cfg.batch_size = 36;
    (tmp, cfg)
}

/// `recalibrate_bn` through `fit`, on each engine: the BatchNorm statistics the run saves are
/// the final weights' own over the training part, as recomputed here independently (one batch
/// holding the whole part, so that batch composition plays no part; every BatchNorm of LCNN
/// comes before its dropout), not Keras' moving averages.
#[test]
fn recalibrated_batch_norm_statistics_are_the_final_weights_own_on_both_engines() {
    use lcnn::data::loader::{make_batch, LoaderConfig};
    use lcnn::data::{load, DatasetSpec, LoadOptions};
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    for engine in [
        lcnn::engine::EngineKind::Native,
        lcnn::engine::EngineKind::Burn,
    ] {
        let (tmp, mut cfg) = one_step_epochs("recal", engine);
        let dir = tmp.path();
        cfg.recalibrate_bn = true;
        let out = dir.join("run");
        fit(&cfg, &opts(&out, false)).unwrap();

        let run = LoadedRun::load(&out, &Device::flex()).unwrap();
        let spec: DatasetSpec = cfg.dataset.parse().unwrap();
        let load_opts = LoadOptions {
            color_mode: "grayscale".parse().unwrap(),
            offline: true,
            ..LoadOptions::new(dir)
        };
        let splits = load(&spec, &load_opts).unwrap();
        let (train, _) = splits
            .train
            .split_by(splits.validation_rule, cfg.validation_split)
            .unwrap();
        assert_eq!(train.len(), 36);
        let order: Vec<usize> = (0..train.len()).collect();
        let batch = make_batch(
            &train,
            &run.preprocess.augmenter(),
            &order,
            0,
            &LoaderConfig::new(36),
        );
        let saved = export(&run.network);
        // A fresh engine with the saved weights, every layer trainable (an inference-mode
        // network would count as frozen, and frozen BatchNorm layers are left alone).
        let mut engine = lcnn::engine::Engine::new(&run.network.spec).unwrap();
        engine.load(&saved, &out).unwrap();
        engine
            .recalibrate_batch_norm([(&batch.images[..], batch.shape)], 0)
            .unwrap();
        let mut compared = 0;
        for (want, got) in engine.export().iter().zip(&saved) {
            if !want.name.contains("running") {
                continue;
            }
            compared += 1;
            let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            for (a, b) in want.data.iter().zip(&got.data) {
                assert!(
                    (a - b).abs() <= 1e-4 * scale,
                    "{}: {} saved {b}, recomputed {a}",
                    cfg.engine.name(),
                    want.name
                );
            }
        }
        assert_eq!(
            compared, 14,
            "LCNN's seven BatchNorm layers, mean and variance"
        );
    }
}

/// After a short run `fit` reports how much of the trained BatchNorm layers' moving statistics
/// is still their initial value, `momentum ^ steps` (the CLI prints it with the way out): two
/// one-step epochs leave 0.99^2 of LCNN's. Nothing to report with `--recalibrate-bn` (they are
/// recomputed) or with every BatchNorm frozen (they never move), on either engine.
#[test]
fn a_short_run_reports_the_share_of_batch_norm_statistics_still_initial() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    for engine in [
        lcnn::engine::EngineKind::Native,
        lcnn::engine::EngineKind::Burn,
    ] {
        let (tmp, cfg) = one_step_epochs("bn-share", engine);
        let dir = tmp.path();
        let report = fit(&cfg, &opts(&dir.join("plain"), false)).unwrap();
        let share = report
            .batch_norm_initial_share
            .expect("LCNN has BatchNorm layers");
        assert!(
            (share - 0.99f64.powi(2)).abs() < 1e-12,
            "{engine:?}: {share}"
        );
        for (name, recalibrate, freeze) in [("recal", true, false), ("frozen", false, true)] {
            let mut cfg = cfg.clone();
            cfg.recalibrate_bn = recalibrate;
            cfg.freeze_bn = freeze;
            let report = fit(&cfg, &opts(&dir.join(name), false)).unwrap();
            assert_eq!(report.batch_norm_initial_share, None, "{engine:?}, {name}");
        }
    }
}
