//! Training-step throughput of the zoo's models on the Flex CPU backend: forward to logits,
//! categorical cross-entropy, backward and one Keras-Adam update, on a random batch.
//!
//! `cargo bench --bench train_step [-- MODEL HxWxC BATCH STEPS]`, default
//! `lcnn 28x28x1 256 10` (the MNIST recipe). Threads: `RAYON_NUM_THREADS` (default: all cores).

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use lcnn::models::{parse_input_shape, ModelConfig, ModelName, Network, Shape};
use lcnn::train::loss::categorical_cross_entropy;
use lcnn::train::OptimizerConfig;

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
    let Shape::Image { h, w, c } = input else {
        unreachable!()
    };

    let device = Device::flex().autodiff();
    device.seed(0);
    let spec = ModelConfig::new(model, input, 10).spec().unwrap();
    let mut net = Network::new(&spec, &device).unwrap();
    let config = OptimizerConfig::adam();
    let mut optim = config.init();
    let x = Tensor::<4>::random([batch, c, h, w], Distribution::Uniform(0.0, 1.0), &device);
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();

    let mut step = |net: Network, it: u64| {
        let out = categorical_cross_entropy(net.forward_logits(x.clone()), &labels);
        let _ = out.loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(out.loss.backward(), &net);
        optim.step(config.step_lr(it), net, grads)
    };
    for it in 0..3 {
        net = step(net, it);
    }
    let start = Instant::now();
    for it in 0..steps as u64 {
        net = step(net, 3 + it);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "train_step {model} {h}x{w}x{c} batch {batch}: {:.1} ms/step, {:.0} images/s (flex, {} threads)",
        1e3 * secs / steps as f64,
        (batch * steps) as f64 / secs,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    let valid = net.valid();
    let xv = Tensor::<4>::random(
        [batch, c, h, w],
        Distribution::Uniform(0.0, 1.0),
        &Device::flex(),
    );
    let _ = valid.forward(xv.clone()).into_data();
    let start = Instant::now();
    for _ in 0..steps {
        let _ = valid.forward(xv.clone()).into_data();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "inference {model} batch {batch}: {:.0} images/s",
        (batch * steps) as f64 / secs
    );
}
