//! Training-step throughput and inference of a zoo model on both CPU engines (the native engine
//! and Burn's Flex path), as `lcnn bench train-step` measures it: forward to logits,
//! categorical cross-entropy, backward and one Keras-Adam update, on a random batch.
//!
//! `cargo bench --bench train_step [-- MODEL HxWxC BATCH STEPS]`, default
//! `lcnn 28x28x1 256 10` (the MNIST recipe). Threads: `RAYON_NUM_THREADS` (default: all cores).
//! The side-by-side table against PyTorch: `bench/side_by_side.sh`.

use burn::tensor::Device;
use lcnn::bench::{predict, train_step, BenchConfig};
use lcnn::engine::EngineKind;
use lcnn::models::{parse_input_shape, ModelName};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let model: ModelName = args
        .first()
        .map(|s| s.as_str())
        .unwrap_or("lcnn")
        .parse()
        .unwrap();
    let input = parse_input_shape(args.get(1).map(|s| s.as_str()).unwrap_or("28x28x1")).unwrap();
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(256);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    for engine in [EngineKind::Native, EngineKind::Burn] {
        let cfg = BenchConfig {
            model,
            input,
            batch,
            steps,
            warmup: 3,
            engine,
            device: Device::flex(),
            dtype: burn::tensor::FloatDType::F32,
            precision: Default::default(),
            conv: Default::default(),
        };
        let t = train_step(&cfg).unwrap();
        let p = predict(&cfg).unwrap();
        println!(
            "{model} {} batch {batch} ({} engine): train step {:.1} ms, {:.0} images/s; inference {:.0} images/s",
            args.get(1).map(|s| s.as_str()).unwrap_or("28x28x1"),
            engine.name(),
            t.median_ms,
            t.images_per_s,
            p.images_per_s
        );
    }
}
