//! Throughput of the zoo's models as `lcnn bench` and `cargo bench --bench train_step` measure
//! it: a training step (forward to logits, categorical cross-entropy, backward, one Keras-Adam
//! update) on a fixed random batch, and single-image prediction latency, on either engine and
//! any device. `bench/side_by_side.sh` runs the same shapes in PyTorch.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, FloatDType, Tensor, TensorData};

use crate::engine::{Engine, EngineError, EngineKind};
use crate::layers::im2col::ConvAlgorithm;
use crate::layers::precision::Precision;
use crate::models::{ModelConfig, ModelError, ModelName, ModelSpec, Network, Shape};
use crate::train::loss::categorical_cross_entropy;
use crate::train::{LossScale, OptimizerConfig};
use crate::weights::unscale_gradients;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The model.
    pub model: ModelName,
    /// Its input (height, width, channels).
    pub input: Shape,
    /// Images per step (1 for prediction latency).
    pub batch: usize,
    /// Timed steps (after `warmup` untimed ones).
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Which implementation (on a GPU device, Burn's whatever is asked: [`EngineKind::on`]).
    pub engine: EngineKind,
    /// Where the Burn path runs.
    pub device: Device,
    /// The float type of every tensor (Burn's path only; set on `device` before the run).
    pub dtype: FloatDType,
    /// Mixed precision (Burn's path only): the compute type of convolutions and dense layers
    /// over f32 weights; f16 steps include the loss scaling and its overflow check.
    pub precision: Precision,
    /// How Burn's path computes the convolutions.
    pub conv: ConvAlgorithm,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Images per second over the timed steps.
    pub images_per_s: f64,
    /// Median milliseconds per step.
    pub median_ms: f64,
    /// The native engine's time per layer over all steps: `(layer, forward s, backward s)`.
    pub layers: Vec<(String, f64, f64)>,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bad model or shape.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The engine cannot run it.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A bad setting.
    #[error("{0}")]
    Config(String),
}

fn image(input: Shape) -> Result<(usize, usize, usize), BenchError> {
    match input {
        Shape::Image { h, w, c } => Ok((h, w, c)),
        Shape::Flat(_) => Err(BenchError::Config("the input must be HxWxC".into())),
    }
}

fn check(cfg: &BenchConfig) -> Result<(), BenchError> {
    if cfg.batch == 0 || cfg.steps == 0 {
        return Err(BenchError::Config(
            "--batch and --steps must be at least 1".into(),
        ));
    }
    let native = cfg.engine.on(&cfg.device) == EngineKind::Native;
    if cfg.dtype != FloatDType::F32 && native {
        return Err(BenchError::Config(format!(
            "the native engine computes in f32; --dtype {:?} needs --engine burn or a GPU device",
            cfg.dtype
        )));
    }
    cfg.precision
        .check_run(native, &[&cfg.device])
        .map_err(BenchError::Config)?;
    cfg.conv.check_run(native).map_err(BenchError::Config)?;
    if cfg.precision != Precision::F32 && cfg.dtype != FloatDType::F32 {
        return Err(BenchError::Config(
            "--precision is mixed precision over f32 weights: it goes with --dtype f32".into(),
        ));
    }
    Ok(())
}

/// Refuses, on the CPU, a batch whose activations cannot fit in the memory available (Linux'
/// `MemAvailable`; nothing is checked where it cannot be read) rather than aborting on a failed
/// allocation. Training keeps about three values per activation (output, its gradient, the
/// scratch of the layer below) and four per parameter (weight, gradient, two Adam slots).
fn check_memory(cfg: &BenchConfig, spec: &ModelSpec, training: bool) -> Result<(), BenchError> {
    if cfg.device != Device::flex() {
        return Ok(());
    }
    let layers = spec.resolve()?;
    let per_image = spec.input.numel() as u128
        + layers
            .iter()
            .map(|l| l.output.numel() as u128)
            .sum::<u128>();
    let params: u128 = layers.iter().map(|l| l.params.total() as u128).sum();
    let (per_activation, per_param) = if training { (3, 4) } else { (1, 1) };
    let need = 4 * (per_image * cfg.batch as u128 * per_activation + params * per_param);
    match mem_available() {
        Some(available) if need > available => Err(BenchError::Config(format!(
            "--input {} --batch {}: {} needs about {:.1} GiB, more than the {:.1} GiB of memory \
             available; use a smaller --input or --batch",
            spec.input,
            cfg.batch,
            spec.name,
            need as f64 / (1u64 << 30) as f64,
            available as f64 / (1u64 << 30) as f64
        ))),
        _ => Ok(()),
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u128> {
    proc_kb("/proc/meminfo", "MemAvailable:").map(|kb| kb as u128 * 1024)
}

/// The `key: N kB` field of a Linux `/proc` file, in kB.
fn proc_kb(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn timed(warmup: usize, steps: usize, mut step: impl FnMut(usize)) -> (f64, f64) {
    for i in 0..warmup {
        step(i);
    }
    let mut times = Vec::with_capacity(steps);
    let start = Instant::now();
    for i in 0..steps {
        let t = Instant::now();
        step(warmup + i);
        times.push(t.elapsed().as_secs_f64());
    }
    let total = start.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    (total, times[times.len() / 2] * 1e3)
}

/// Times training steps.
pub fn train_step(cfg: &BenchConfig) -> Result<BenchResult, BenchError> {
    check(cfg)?;
    let (h, w, c) = image(cfg.input)?;
    let spec = ModelConfig::new(cfg.model, cfg.input, 10).spec()?;
    check_memory(cfg, &spec, true)?;
    let labels: Vec<u32> = (0..cfg.batch as u32).map(|i| i % 10).collect();
    let optimizer = OptimizerConfig::adam();
    let shape = [cfg.batch, c, h, w];
    let mut layers = Vec::new();
    let (total, median_ms) = match cfg.engine.on(&cfg.device) {
        EngineKind::Native => {
            let device = Device::flex().autodiff();
            device.seed(0);
            let mut engine = Engine::from_network(&Network::new(&spec, &device)?)?;
            let x = random_images(shape);
            let mut failed = None;
            let r = timed(cfg.warmup, cfg.steps, |i| {
                let lr = optimizer.step_lr(i as u64);
                if let Err(e) = engine.train_step(&x, shape, &labels, &optimizer, lr, 0.0, i as u64)
                {
                    failed = Some(e);
                }
            });
            if let Some(e) = failed {
                return Err(e.into());
            }
            layers = engine.layer_times();
            r
        }
        EngineKind::Burn => {
            let device = cfg.device.clone().autodiff();
            device.seed(0);
            let mut net = Some(
                Network::new(&spec, &device)?
                    .with_precision(cfg.precision)
                    .with_conv(cfg.conv),
            );
            let mut optim = optimizer.init();
            let x = Tensor::<4>::random(shape, Distribution::Uniform(0.0, 1.0), &device);
            // f16 scales the loss and unscales (and checks) the gradients, as training does.
            let scale = cfg
                .precision
                .scales_loss()
                .then_some(LossScale::default().scale);
            timed(cfg.warmup, cfg.steps, |i| {
                let model = net.take().expect("the network is put back after each step");
                let out = categorical_cross_entropy(model.forward_logits(x.clone()), &labels, 0.0);
                let _ = out.loss.clone().into_scalar::<f32>();
                let loss = match scale {
                    Some(s) => out.loss.mul_scalar(s),
                    None => out.loss,
                };
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                let grads = match scale {
                    Some(s) => unscale_gradients(&model, grads, s),
                    None => Some(grads),
                };
                net = Some(match grads {
                    Some(grads) => optim.step(optimizer.step_lr(i as u64), model, grads),
                    None => model,
                });
            })
        }
    };
    Ok(BenchResult {
        images_per_s: (cfg.batch * cfg.steps) as f64 / total,
        median_ms,
        layers,
    })
}

/// Times inference of `cfg.batch` images (1: single-image latency), class probabilities read
/// back on the host.
pub fn predict(cfg: &BenchConfig) -> Result<BenchResult, BenchError> {
    check(cfg)?;
    let (h, w, c) = image(cfg.input)?;
    let spec = ModelConfig::new(cfg.model, cfg.input, 10).spec()?;
    check_memory(cfg, &spec, false)?;
    let shape = [cfg.batch, c, h, w];
    let x = random_images(shape);
    let (total, median_ms) = match cfg.engine.on(&cfg.device) {
        EngineKind::Native => {
            cfg.device.seed(0);
            let mut engine = Engine::from_network(&Network::new(&spec, &cfg.device)?)?;
            let mut failed = None;
            let r = timed(cfg.warmup, cfg.steps, |_| {
                if let Err(e) = engine.probabilities(&x, shape) {
                    failed = Some(e);
                }
            });
            if let Some(e) = failed {
                return Err(e.into());
            }
            r
        }
        EngineKind::Burn => {
            cfg.device.seed(0);
            let net = Network::new(&spec, &cfg.device)?
                .valid()
                .with_precision(cfg.precision)
                .with_conv(cfg.conv);
            let xt = Tensor::<4>::from_data(TensorData::new(x, shape), &cfg.device);
            timed(cfg.warmup, cfg.steps, |_| {
                let _ = net.forward(xt.clone()).into_data();
            })
        }
    };
    Ok(BenchResult {
        images_per_s: (cfg.batch * cfg.steps) as f64 / total,
        median_ms,
        layers: Vec::new(),
    })
}

fn random_images(shape: [usize; 4]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| crate::engine::ops::uniform(0x5EED, i as u64))
        .collect()
}

/// The process's peak resident memory in MB (`VmHWM` of `/proc/self/status`; Linux only).
pub fn peak_rss_mb() -> Option<f64> {
    proc_kb("/proc/self/status", "VmHWM:").map(|kb| kb as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_larger_than_memory_is_refused_before_any_allocation() {
        let Some(available) = mem_available() else {
            return; // no /proc/meminfo: nothing is checked (see check_memory)
        };
        assert!(available > 0);
        let cfg = BenchConfig {
            model: ModelName::Lcnn,
            input: Shape::Image {
                h: 4000,
                w: 4000,
                c: 3,
            },
            batch: 4096,
            steps: 1,
            warmup: 0,
            engine: EngineKind::Native,
            device: Device::flex(),
            dtype: FloatDType::F32,
            precision: Precision::F32,
            conv: ConvAlgorithm::Burn,
        };
        for err in [train_step(&cfg), predict(&cfg)].map(|r| r.err().unwrap().to_string()) {
            assert!(
                err.starts_with("--input 4000x4000x3 --batch 4096: lcnn needs about")
                    && err.contains("GiB of memory available"),
                "{err}"
            );
        }
    }
}
