//! The GPU code path without a GPU: one epoch of `--device wgpu` training through Mesa's
//! lavapipe (a Vulkan driver on the CPU) against the same epoch on the CPU, from the same
//! initial weights (the wgpu run makes its shifted, flipped batches on the device, the CPU run
//! on the host); then one step in mixed precision (f16, bf16) where the driver has the type,
//! and one with `--conv gemm` (im2col and a matmul on the device, Burn's gradients).
//!
//! Needs the `wgpu` feature and a Vulkan driver (`apt-get install mesa-vulkan-drivers`), so the
//! tests are ignored by default (CI builds them and runs the first):
//! `GALLIVM_PERF=nopt cargo test -p lcnn --profile gpu-test --features wgpu --test it gpu -- --ignored`
//! (`GALLIVM_PERF=nopt`: lavapipe compiles shaders without LLVM's optimization passes). On a
//! fresh machine CubeCL's autotune compiles and times every candidate kernel on the CPU: about
//! 4 minutes for the first test (which CI runs), 52 s once its caches are warm; 13.5 minutes
//! (808 s) for the gemm test, whose forward and Burn's gradient kernels are both tuned.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use lcnn::layers::im2col::ConvAlgorithm;
use lcnn::layers::precision::Precision;
use lcnn::models::{ModelConfig, ModelName, Network, Shape};
use lcnn::train::{fit, FitOptions, FitReport, OptimizerConfig, TrainConfig};
use lcnn::weights::{export, safetensors};

use super::train::{
    close_steps, half_precision, one_allconv_step, same_steps, synthetic_folder, TRAINING,
};

#[test]
#[ignore = "needs a Vulkan driver (lavapipe: apt-get install mesa-vulkan-drivers) and minutes"]
fn one_epoch_on_wgpu_matches_the_cpu_path() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = crate::scratch("wgpu");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 24);
    // LCNN (convolutions, MFM, pooling, BatchNorm) without dropout, whose masks each device
    // draws from its own generator; the initial weights come from one file.
    let input = Shape::Image { h: 16, w: 16, c: 1 };
    let spec = ModelConfig {
        dropout: Some(0.0),
        ..ModelConfig::new(ModelName::Lcnn, input, 2)
    }
    .spec()
    .unwrap();
    let init = dir.join("init.safetensors");
    let network = Network::new(&spec, &Device::flex()).unwrap();
    safetensors::save(&init, &export(&network), HashMap::new()).unwrap();
    let config = TrainConfig {
        dataset: format!("images:{}", dir.join("data").display()),
        color_mode: "grayscale".into(),
        epochs: 1,
        // One SGD step (36 training images): the step's gradient, not rounding amplified by
        // several steps (Adam turns a near-zero gradient's rounding into a whole step).
        batch_size: 36,
        optimizer: OptimizerConfig::sgd(),
        validation_split: 0.25,
        early_stopping: None,
        dropout: Some(0.0),
        init_weights: Some(init.clone()),
        engine: lcnn::engine::EngineKind::Burn,
        seed: 7,
        // Shifted and flipped: on wgpu the batches are made on the device (the default
        // there), on the CPU by the host's loader.
        augment: lcnn::data::AugmentConfig {
            width_shift_range: 0.1,
            height_shift_range: 0.1,
            horizontal_flip: true,
            rescale: 1.0 / 255.0,
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let wgpu = lcnn::device::parse_device("wgpu").unwrap();
    let cpu = run(dir, "cpu", Device::flex(), &config);
    let gpu = run(dir, "wgpu", wgpu, &config);
    let (a, b) = (&cpu.history[0], &gpu.history[0]);
    for key in ["loss", "val_loss"] {
        assert!(
            (a[key] - b[key]).abs() <= 1e-4 * a[key].abs().max(1.0),
            "{key}: cpu {} wgpu {}",
            a[key],
            b[key]
        );
    }
    // The step each tensor took (kernels, biases, BatchNorm's scales, offsets and moving
    // statistics) on wgpu against the CPU's, relative to its size.
    close_steps(
        &init,
        &dir.join("cpu/model.safetensors"),
        &dir.join("wgpu/model.safetensors"),
        STEP_TOLERANCE,
        "wgpu's step against the CPU's",
    );
}

/// How far one tensor's step on wgpu may be from the CPU's: the norm of the difference over the
/// norm of the CPU's step. Measured on lavapipe: at most 8.6e-5 in 12 runs of 14 (rounding: the
/// two devices sum in different orders, and CubeCL's autotune picks different kernels, so
/// different orders, from run to run). Now and then a near tie in Max-Feature-Map or max
/// pooling, broken one way by one rounding and the other way by the other, routes one
/// element's gradient elsewhere, moving the step of the layers before it (one run: `conv2a`
/// 3.8e-3, `conv1` 2.2e-3; another: `bn_fc1.beta` 2.7e-4). When this test compared weights to
/// 1e-4 of their largest value, two fresh runs in fifteen failed that way (`bn2.beta` off by
/// 6.3e-6, its largest value 2.5e-3). A wrong kernel is off by the whole step.
const STEP_TOLERANCE: f32 = 2e-2;

#[test]
#[ignore = "needs a Vulkan driver (lavapipe: apt-get install mesa-vulkan-drivers) and minutes"]
fn a_mixed_precision_step_on_wgpu_matches_the_cpu_f32_step() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = crate::scratch("wgpu-precision");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 24);
    // One All-CNN-C step with f16 (then bf16) convolutions over f32 weights, against the CPU's
    // f32 step, to half precision's rounding (the tolerances of the CPU's own mixed precision
    // test).
    let wgpu = lcnn::device::parse_device("wgpu").unwrap();
    let (init, one_step) = one_allconv_step(dir);
    run(dir, "allconv-cpu", Device::flex(), &one_step);
    for (precision, tol) in [(Precision::F16, 5e-2), (Precision::Bf16, 1.2e-1)] {
        if let Err(e) = precision.check_device(&wgpu) {
            // A driver without the type: the run is refused with a message naming both.
            assert!(e.contains(&format!("--precision {precision}")), "{e}");
            eprintln!("skipped: {e}");
            continue;
        }
        let name = format!("allconv-wgpu-{precision}");
        run(
            dir,
            &name,
            wgpu.clone(),
            &half_precision(&one_step, precision),
        );
        same_steps(
            &init,
            &dir.join("allconv-cpu/model.safetensors"),
            &dir.join(&name).join("model.safetensors"),
            tol,
        );
    }
}

#[test]
#[ignore = "needs a Vulkan driver (lavapipe: apt-get install mesa-vulkan-drivers) and minutes"]
fn a_gemm_convolution_step_on_wgpu_matches_the_cpu_step() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = crate::scratch("wgpu-gemm");
    let dir = tmp.path();
    synthetic_folder(&dir.join("data"), 24);
    // One All-CNN-C step with `--conv gemm` (forward: im2col and Burn's tiled matmul on the
    // device; backward: Burn's convolution gradient kernels) against the CPU's step with
    // Burn's convolutions (measured over two runs: each tensor's step within 4.2e-4 and 1.4e-3;
    // the autotuned kernels' rounding, and ReLU's near ties, move the step that much).
    let wgpu = lcnn::device::parse_device("wgpu").unwrap();
    let (init, one_step) = one_allconv_step(dir);
    run(dir, "allconv-cpu", Device::flex(), &one_step);
    let gemm = TrainConfig {
        conv: ConvAlgorithm::Gemm,
        ..one_step
    };
    run(dir, "allconv-wgpu-gemm", wgpu, &gemm);
    close_steps(
        &init,
        &dir.join("allconv-cpu/model.safetensors"),
        &dir.join("allconv-wgpu-gemm/model.safetensors"),
        STEP_TOLERANCE,
        "wgpu's gemm step against the CPU's",
    );
}

/// One quiet, offline `fit` into `dir/name` on `device`.
fn run(dir: &Path, name: &str, device: Device, config: &TrainConfig) -> FitReport {
    let opts = FitOptions {
        out: dir.join(name),
        resume: false,
        quiet: true,
        offline: true,
        device,
        devices: Vec::new(),
        data_on_device: None,
        overwrite: false,
    };
    fit(config, &opts).unwrap()
}
