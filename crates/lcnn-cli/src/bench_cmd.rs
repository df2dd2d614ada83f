//! `lcnn bench`: training-step throughput and prediction latency of a zoo model, on either
//! engine and any device, in the `key: value` lines `bench/side_by_side.sh` reads.

use anyhow::Result;
use clap::{Args, Subcommand};
use lcnn::bench::{peak_rss_mb, predict, train_step, BenchConfig};
use lcnn::device::{parse_device, parse_float_dtype, set_float_dtype};
use lcnn::engine::EngineKind;
use lcnn::layers::im2col::ConvAlgorithm;
use lcnn::layers::precision::Precision;
use lcnn::models::{parse_input_shape, ModelName};

/// Arguments of `lcnn bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
    /// Training steps on a random batch: prints `images/s`, `ms/step` and `peak_rss_mb`.
    TrainStep(Common),
    /// Prediction of one batch (default: one image): prints `ms`, `images/s` and `peak_rss_mb`.
    Predict(Common),
}

#[derive(Args, Debug)]
struct Common {
    /// Model: lcnn, lightcnn9, allconv, separable, vgg16.
    #[arg(long, default_value = "lcnn")]
    model: String,
    /// Input shape HxWxC (default: the model's own).
    #[arg(long)]
    input: Option<String>,
    /// Images per step (train-step default 256, predict default 1).
    #[arg(long)]
    batch: Option<usize>,
    /// Timed steps (default: 10 train steps, 100 predictions).
    #[arg(long)]
    steps: Option<usize>,
    /// Untimed steps first (default: 3 train steps, 10 predictions).
    #[arg(long)]
    warmup: Option<usize>,
    /// Engine on the CPU: native (lcnn's kernels) or burn (Burn's tensors, the reference).
    #[arg(long, default_value = "native")]
    engine: String,
    /// Device: cpu, cuda[:N], wgpu[:N] (GPU devices run the burn engine).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Float type of every tensor on the device: f32, f16 or bf16 (Burn's path: a GPU device
    /// or --engine burn). Pure half precision, a bound on what mixed precision can reach.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Mixed precision: f16 or bf16 compute for convolutions and dense layers over f32
    /// weights, BatchNorm and loss (f16 with loss scaling), as `lcnn train --precision`.
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// How Burn's path convolves: burn (its kernels) or gemm (forward as im2col and one matrix
    /// product, backward Burn's gradient kernels).
    #[arg(long, default_value = "burn")]
    conv: ConvAlgorithm,
    /// Also print the native engine's time per layer (forward and backward, ms per step).
    #[arg(long)]
    layers: bool,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: BenchArgs) -> Result<()> {
    let (train, c) = match args.what {
        BenchWhat::TrainStep(c) => (true, c),
        BenchWhat::Predict(c) => (false, c),
    };
    let model: ModelName = c.model.parse()?;
    let input = match &c.input {
        Some(s) => parse_input_shape(s)?,
        None => model.default_input(),
    };
    let mut device = parse_device(&c.device).map_err(anyhow::Error::msg)?;
    let dtype = parse_float_dtype(&c.dtype).map_err(anyhow::Error::msg)?;
    let engine: EngineKind = c.engine.parse().map_err(anyhow::Error::msg)?;
    let engine = engine.on(&device);
    let cfg = BenchConfig {
        model,
        input,
        batch: c.batch.unwrap_or(if train { 256 } else { 1 }),
        steps: c.steps.unwrap_or(if train { 10 } else { 100 }),
        warmup: c.warmup.unwrap_or(if train { 3 } else { 10 }),
        engine,
        device: device.clone(),
        dtype,
        precision: c.precision,
        conv: c.conv,
    };
    if engine == EngineKind::Burn {
        set_float_dtype(&mut device, dtype).map_err(anyhow::Error::msg)?;
    }
    let threads = lcnn::engine::threads();
    println!(
        "{} {} {} batch {} on {} ({} engine, {:?}, precision {}, conv {}, {threads} threads)",
        if train { "train-step" } else { "predict" },
        model,
        c.input.as_deref().unwrap_or("default"),
        cfg.batch,
        c.device,
        cfg.engine.name(),
        cfg.dtype,
        cfg.precision,
        cfg.conv
    );
    let r = if train {
        train_step(&cfg)?
    } else {
        predict(&cfg)?
    };
    if train {
        println!("images/s: {:.1}", r.images_per_s);
        println!("ms/step: {:.2}", r.median_ms);
    } else {
        println!("ms: {:.3}", r.median_ms);
        println!("images/s: {:.1}", r.images_per_s);
    }
    if c.layers {
        let steps = (cfg.steps + cfg.warmup) as f64;
        println!("{:<16} {:>10} {:>10}", "layer", "fwd ms", "bwd ms");
        for (name, f, b) in &r.layers {
            println!(
                "{name:<16} {:>10.2} {:>10.2}",
                1e3 * f / steps,
                1e3 * b / steps
            );
        }
    }
    if let Some(mb) = peak_rss_mb() {
        println!("peak_rss_mb: {mb:.1}");
    }
    Ok(())
}
