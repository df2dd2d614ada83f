//! Several devices, one model: seed 002's `make_parallel` (Keras' multi-GPU data parallelism,
//! [Goyal et al., "Accurate, Large Minibatch SGD"](https://arxiv.org/abs/1706.02677) for the
//! scaling rules), on Burn's path.
//!
//! Each step cuts the global batch into one part per device (as even as possible, in order),
//! runs forward and backward of a replica of the model on each device, brings the gradients to
//! the first device, sums them and applies one optimizer update there. Each part's loss is
//! weighted by its share of the global batch, so the summed gradient is the gradient of the
//! global batch's mean loss: a model without BatchNorm takes the same step as on one device
//! with the same batch. BatchNorm normalizes each part with that part's own statistics, as
//! Keras' replicas do, and its moving statistics are averaged over the devices (Burn's
//! `RunningState` keeps one value per worker thread and averages them when read).
//!
//! Every device has a worker thread that lives as long as the run. Replicas on distinct
//! devices run at once; replicas that share a device (`cpu,cpu`) take turns, so the dropout
//! masks they draw from the device's one generator come in a fixed order and a resumed run
//! stays exact. Gradients travel through Burn's `to_device`: through the host between wgpu or
//! CPU devices. Burn's NCCL all-reduce (its DDP strategy) needs the `cuda` feature, which these
//! machines cannot build; the README says how this scales to several machines.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};

use crate::models::Network;
use crate::weights::l2_penalty;

use super::evaluate::LossTerms;
use super::loss::loss_for;
use super::TrainError;

/// What one forward and backward pass gives.
pub struct StepOutput {
    /// The weighted loss (with the L2 term), as a number.
    pub loss: f64,
    /// Correct predictions.
    pub correct: usize,
    /// The parameters' gradients, `None` when the loss is not finite.
    pub grads: Option<GradientsParams>,
}

/// The loss the step minimizes: the output's cross-entropy and the L2 penalty.
#[derive(Debug, Clone, Copy)]
pub struct StepLoss {
    /// Output units (1 = sigmoid).
    pub classes: usize,
    /// Label smoothing and L2.
    pub terms: LossTerms,
    /// The factor the backward pass scales the loss by (f16's loss scaling; 1 otherwise): the
    /// gradients come out multiplied by it, the reported loss does not.
    pub scale: f64,
}

/// Forward, loss and backward of `model` on `x`, the loss scaled by `weight` (a part's share
/// of the global batch; 1 on one device) and, for the backward pass only, by `loss.scale`.
///
/// # Shapes
/// - `x`: `[N, C, H, W]` on the model's autodiff device; `labels`: `N` class indices
pub fn forward_backward(
    model: &Network,
    x: Tensor<4>,
    labels: &[u32],
    loss: &StepLoss,
    weight: f64,
) -> StepOutput {
    let terms = &loss.terms;
    let logits = model.forward_logits(x);
    let out = loss_for(loss.classes, logits, labels, terms.label_smoothing);
    let total = match l2_penalty(model, terms.first_trained, terms.l2) {
        Some(penalty) => out.loss + penalty,
        None => out.loss,
    };
    let total = if weight == 1.0 {
        total
    } else {
        total.mul_scalar(weight)
    };
    let value = total.clone().into_scalar::<f32>() as f64;
    let total = if loss.scale == 1.0 {
        total
    } else {
        total.mul_scalar(loss.scale)
    };
    let grads = value
        .is_finite()
        .then(|| GradientsParams::from_grads(total.backward(), model));
    StepOutput {
        loss: value,
        correct: out.correct,
        grads,
    }
}

/// One replica's share of a step.
struct Job {
    model: Network,
    images: Vec<f32>,
    shape: [usize; 4],
    labels: Vec<u32>,
    loss: StepLoss,
    weight: f64,
}

type Reply = Result<StepOutput, String>;

struct Worker {
    device: Device,
    jobs: Option<Sender<Job>>,
    replies: Receiver<Reply>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(device: Device) -> Self {
        let (jobs, inbox) = channel::<Job>();
        let (outbox, replies) = channel::<Reply>();
        let ad = device.clone().autodiff();
        let thread = std::thread::Builder::new()
            .name(format!("lcnn-replica-{device:?}"))
            .spawn(move || {
                for job in inbox {
                    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let model = job.model.fork(&ad);
                        let x = Tensor::<4>::from_data(TensorData::new(job.images, job.shape), &ad);
                        forward_backward(&model, x, &job.labels, &job.loss, job.weight)
                    }))
                    .map_err(|panic| {
                        panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "the replica's step panicked".into())
                    });
                    if outbox.send(reply).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning a replica thread");
        Worker {
            device,
            jobs: Some(jobs),
            replies,
            thread: Some(thread),
        }
    }

    fn send(&self, job: Job) -> Result<(), TrainError> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| self.failed("its worker thread has stopped".into()))
    }

    fn receive(&self) -> Result<StepOutput, TrainError> {
        self.replies
            .recv()
            .map_err(|_| self.failed("its worker thread has stopped".into()))?
            .map_err(|e| self.failed(e))
    }

    fn failed(&self, reason: String) -> TrainError {
        TrainError::Device {
            device: format!("{:?}", self.device),
            reason,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The replicas of a data-parallel run, one worker per device.
pub struct Replicas {
    workers: Vec<Worker>,
    /// The first device's autodiff device: where the gradients are summed and the optimizer
    /// steps.
    main: Device,
    /// Whether every device is a different one (then the replicas run at once).
    distinct: bool,
}

impl Replicas {
    /// Workers for `devices` (at least two; the first is where the model and the optimizer
    /// live).
    pub fn new(devices: &[Device]) -> Result<Self, TrainError> {
        if devices.len() < 2 {
            return Err(TrainError::Config(
                "--devices: data parallelism needs at least two devices".into(),
            ));
        }
        let distinct = devices
            .iter()
            .enumerate()
            .all(|(i, d)| !devices[..i].contains(d));
        Ok(Replicas {
            workers: devices.iter().cloned().map(Worker::start).collect(),
            main: devices[0].clone().autodiff(),
            distinct,
        })
    }

    /// The devices, in order.
    pub fn devices(&self) -> Vec<Device> {
        self.workers.iter().map(|w| w.device.clone()).collect()
    }

    /// Seeds every device's generator (dropout) from `seed` and the device's place.
    pub fn seed(&self, seed: u64) {
        for (i, w) in self.workers.iter().enumerate() {
            w.device
                .clone()
                .autodiff()
                .seed(seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        }
    }

    /// One step's forward and backward over the devices: `images` (`shape`, NCHW) cut into
    /// one part per device, the gradients summed on the first device.
    pub fn forward_backward(
        &self,
        model: &Network,
        images: Vec<f32>,
        shape: [usize; 4],
        labels: &[u32],
        loss: &StepLoss,
    ) -> Result<StepOutput, TrainError> {
        let n = shape[0];
        let per_image = images.len() / n.max(1);
        let parts = self.workers.len().min(n);
        let mut jobs = Vec::with_capacity(parts);
        let mut start = 0;
        for i in 0..parts {
            let len = n / parts + usize::from(i < n % parts);
            jobs.push(Job {
                model: model.clone(),
                images: images[start * per_image..(start + len) * per_image].to_vec(),
                shape: [len, shape[1], shape[2], shape[3]],
                labels: labels[start..start + len].to_vec(),
                loss: *loss,
                weight: len as f64 / n as f64,
            });
            start += len;
        }
        let mut outputs = Vec::with_capacity(parts);
        if self.distinct {
            for (worker, job) in self.workers.iter().zip(jobs) {
                worker.send(job)?;
            }
            for worker in &self.workers[..parts] {
                outputs.push(worker.receive()?);
            }
        } else {
            for (worker, job) in self.workers.iter().zip(jobs) {
                worker.send(job)?;
                outputs.push(worker.receive()?);
            }
        }
        let mut sum = StepOutput {
            loss: 0.0,
            correct: 0,
            grads: None,
        };
        let mut accumulator = GradientsAccumulator::<Network>::new();
        let mut finite = true;
        for out in outputs {
            sum.loss += out.loss;
            sum.correct += out.correct;
            match out.grads {
                Some(g) => accumulator.accumulate(model, g.to_device(&self.main, model)),
                None => finite = false,
            }
        }
        if finite {
            sum.grads = Some(accumulator.grads());
        }
        Ok(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Activation, Padding};
    use crate::models::spec::build::{bn, conv, dense, flatten};
    use crate::models::{ModelSpec, Shape};
    use crate::weights::export;

    fn spec(with_bn: bool) -> ModelSpec {
        let mut layers = vec![conv("conv1", 4, 3, Padding::Same, Activation::Relu)];
        if with_bn {
            layers.push(bn("bn1"));
        }
        layers.push(flatten("flatten"));
        layers.push(dense("fc", 3, Activation::Softmax));
        ModelSpec {
            name: "tiny".into(),
            input: Shape::Image { h: 5, w: 5, c: 2 },
            layers,
        }
    }

    fn batch(n: usize) -> (Vec<f32>, [usize; 4], Vec<u32>) {
        let shape = [n, 2, 5, 5];
        // The second half is brighter: its statistics differ from the first half's.
        let images = (0..n * 50)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.4 + f32::from(i >= n * 25))
            .collect();
        let labels = (0..n as u32).map(|i| (i * 5 + 1) % 3).collect();
        (images, shape, labels)
    }

    const LOSS: StepLoss = StepLoss {
        classes: 3,
        terms: LossTerms {
            label_smoothing: 0.1,
            l2: 1e-3,
            first_trained: 0,
        },
        scale: 1.0,
    };

    /// The initial weights of `spec`: Glorot-uniform kernels drawn from `seed` by the engine's
    /// counter-based generator ([`crate::engine::ops::uniform`], dropout's), zero biases and
    /// BatchNorm's start values. Not the device generator: tests in other threads draw from it
    /// too, so one seed gave other weights on some runs, and a tolerance measured on one draw
    /// failed on another.
    fn initial(spec: &ModelSpec, seed: u64) -> Vec<crate::weights::NamedTensor> {
        let mut tensors = export(&Network::new(spec, &Device::flex()).unwrap());
        for (p, t) in tensors.iter_mut().enumerate() {
            // Conv kernels are [out, in, kh, kw], dense ones [in, out].
            let (fan_in, fan_out) = match t.shape[..] {
                [o, i, kh, kw] if t.name.ends_with(".weight") => (i * kh * kw, o * kh * kw),
                [i, o] if t.name.ends_with(".weight") => (i, o),
                _ => continue,
            };
            let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
            let key = seed * 1000 + p as u64;
            for (i, x) in t.data.iter_mut().enumerate() {
                *x = (crate::engine::ops::uniform(key, i as u64) * 2.0 - 1.0) * limit;
            }
        }
        tensors
    }

    /// A fresh network of `spec` holding `weights`.
    fn network(spec: &ModelSpec, weights: &[crate::weights::NamedTensor]) -> Network {
        let ad = Device::flex().autodiff();
        let model = Network::new(spec, &ad).unwrap();
        crate::weights::import(model, weights.to_vec(), true, std::path::Path::new("test")).unwrap()
    }

    /// Two steps of `optimizer` on `devices`, from `init`.
    fn two_steps(
        devices: &[Device],
        optimizer: &crate::train::OptimizerConfig,
        n: usize,
        init: &[crate::weights::NamedTensor],
    ) -> Vec<crate::weights::NamedTensor> {
        let ad = Device::flex().autodiff();
        let mut model = network(&spec(false), init);
        let replicas = (devices.len() > 1).then(|| Replicas::new(devices).unwrap());
        let mut optim = optimizer.init();
        for step in 0..2 {
            let (images, shape, labels) = batch(n + step);
            let out = match &replicas {
                Some(r) => r
                    .forward_backward(&model, images, shape, &labels, &LOSS)
                    .unwrap(),
                None => {
                    let x = Tensor::<4>::from_data(TensorData::new(images, shape), &ad);
                    forward_backward(&model, x, &labels, &LOSS, 1.0)
                }
            };
            model = optim.step(1e-2, model, out.grads.unwrap());
        }
        export(&model.valid())
    }

    #[test]
    fn two_devices_take_the_one_device_step_without_batch_norm() {
        use crate::train::OptimizerConfig;
        // SGD with momentum sees a wrongly scaled gradient; Adam sees wrongly weighted parts.
        let sgd = OptimizerConfig::Sgd {
            learning_rate: 0.05,
            momentum: 0.9,
            nesterov: true,
            decay: 0.0,
        };
        for optimizer in [OptimizerConfig::adam(), sgd] {
            let cpu = Device::flex();
            let init = initial(&spec(false), 3);
            let one = two_steps(std::slice::from_ref(&cpu), &optimizer, 7, &init);
            let two = two_steps(&[cpu.clone(), cpu.clone()], &optimizer, 7, &init);
            let three = two_steps(&[cpu.clone(), cpu.clone(), cpu], &optimizer, 7, &init);
            same_within(&one, &two);
            same_within(&one, &three);
        }
    }

    /// `b` holds `a`'s tensors within 1e-5 of each tensor's largest magnitude (Adam divides
    /// tiny gradients by their own root mean square, so near-zero entries carry rounding).
    fn same_within(a: &[crate::weights::NamedTensor], b: &[crate::weights::NamedTensor]) {
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            assert_eq!(a.name, b.name);
            let scale = a.data.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            for (x, y) in a.data.iter().zip(&b.data) {
                assert!(
                    (x - y).abs() <= 1e-5 * scale,
                    "`{}`: {x} against {y} (largest {scale})",
                    a.name
                );
            }
        }
    }

    #[test]
    fn batch_norm_normalizes_each_part_and_averages_the_moving_statistics() {
        // One step of the two-device run on a batch of 8 equals the mean of one-device steps
        // on its halves for the moving statistics (each half's own batch statistics).
        let ad = Device::flex().autodiff();
        let init = initial(&spec(true), 5);
        let stats = |devices: &[Device], lo: usize, hi: usize| {
            let model = network(&spec(true), &init);
            let (images, shape, labels) = batch(8);
            let per = images.len() / 8;
            let images = images[lo * per..hi * per].to_vec();
            let shape = [hi - lo, shape[1], shape[2], shape[3]];
            let labels = &labels[lo..hi];
            if devices.len() > 1 {
                let r = Replicas::new(devices).unwrap();
                r.forward_backward(&model, images, shape, labels, &LOSS)
                    .unwrap();
            } else {
                let x = Tensor::<4>::from_data(TensorData::new(images, shape), &ad);
                forward_backward(&model, x, labels, &LOSS, 1.0);
            }
            export(&model.valid())
                .into_iter()
                .filter(|t| t.name.contains("running"))
                .collect::<Vec<_>>()
        };
        let two = stats(&[Device::flex(), Device::flex()], 0, 8);
        let (a, b) = (
            stats(&[Device::flex()], 0, 4),
            stats(&[Device::flex()], 4, 8),
        );
        let whole = stats(&[Device::flex()], 0, 8);
        assert_eq!(two.len(), 2, "moving mean and variance");
        let mut differs = false;
        for ((t, (x, y)), w) in two.iter().zip(a.iter().zip(&b)).zip(&whole) {
            for i in 0..t.data.len() {
                let want = (x.data[i] + y.data[i]) / 2.0;
                assert!(
                    (t.data[i] - want).abs() <= 1e-6,
                    "`{}`[{i}]: {} against {want}",
                    t.name,
                    t.data[i]
                );
                differs |= (t.data[i] - w.data[i]).abs() > 1e-6;
            }
        }
        assert!(
            differs,
            "per-part statistics must differ from the whole batch's"
        );
    }

    #[test]
    fn fewer_images_than_devices_and_one_device_are_handled() {
        assert!(Replicas::new(&[Device::flex()]).is_err());
        let adam = crate::train::OptimizerConfig::adam();
        let init = initial(&spec(false), 3);
        let one = two_steps(&[Device::flex()], &adam, 1, &init);
        let flex3 = [Device::flex(), Device::flex(), Device::flex()];
        let three = two_steps(&flex3, &adam, 1, &init);
        same_within(&one, &three);
    }

    /// Every gradient of `model`'s parameters in `grads`, in layer order, as f32.
    fn grad_values(model: &Network, grads: &GradientsParams) -> Vec<Vec<f32>> {
        use crate::models::Layer;
        fn v<const D: usize>(g: Option<Tensor<D>>) -> Vec<f32> {
            let g = g.expect("every trainable parameter has a gradient");
            assert_eq!(
                g.dtype(),
                burn::tensor::DType::F32,
                "master gradients are f32"
            );
            g.into_data().try_to_vec::<f32>().unwrap()
        }
        let mut out = Vec::new();
        for layer in &model.layers {
            match layer {
                Layer::Conv2d(b) => {
                    out.push(v(grads.get::<4>(b.conv.conv.weight.id)));
                    out.push(v(grads.get::<1>(b.conv.conv.bias.as_ref().unwrap().id)));
                }
                Layer::Dense(b) => {
                    out.push(v(grads.get::<2>(b.dense.linear.weight.id)));
                    out.push(v(grads.get::<1>(b.dense.linear.bias.as_ref().unwrap().id)));
                }
                Layer::BatchNorm(b) => {
                    out.push(v(grads.get::<1>(b.bn.gamma.id)));
                    out.push(v(grads.get::<1>(b.bn.beta.id)));
                }
                _ => {}
            }
        }
        out
    }

    #[test]
    fn mixed_precision_gradients_unscaled_match_f32_and_an_f16_overflow_is_caught() {
        use crate::layers::precision::Precision;
        use crate::weights::unscale_gradients;
        let ad = Device::flex().autodiff();
        // A smooth network (sigmoid, not ReLU): with ReLU, pre-activations within half
        // precision's rounding of zero switch units on or off, and the gradients of a network
        // this small jump with them (a bias's by 3x on some draws; in f32 alone when the bias
        // moves by 0.003), so no tolerance on rounding would hold.
        let mut smooth = spec(true);
        smooth.layers[0] = conv("conv1", 4, 3, Padding::Same, Activation::Sigmoid);
        let model = network(&smooth, &initial(&smooth, 11));
        let (images, shape, labels) = batch(6);
        let x = || Tensor::<4>::from_data(TensorData::new(images.clone(), shape), &ad);
        let step = |model: &Network, scale: f64| {
            let loss = StepLoss { scale, ..LOSS };
            forward_backward(model, x(), &labels, &loss, 1.0)
        };
        let reference = step(&model, 1.0);
        let want = grad_values(&model, reference.grads.as_ref().unwrap());
        // Errors are measured against the network's largest gradient, not each tensor's: the
        // convolution's bias gradient nearly cancels under BatchNorm, so its own scale is
        // rounding-sized. Over 60 draws of the weights the error was at most 6.1e-3 (f16) and
        // 4.5e-2 (bf16); this draw's, 2.5e-3 and 2.1e-2. A gradient left scaled is 1024x off.
        let largest = want.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
        for (precision, tol) in [(Precision::F16, 1e-2), (Precision::Bf16, 8e-2)] {
            let half = model.clone().with_precision(precision);
            let out = step(&half, 1024.0);
            // The reported loss is the true one, not the scaled one.
            assert!(
                (out.loss - reference.loss).abs() < tol * reference.loss,
                "{precision}: loss {} against {}",
                out.loss,
                reference.loss
            );
            let grads = unscale_gradients(&half, out.grads.unwrap(), 1024.0)
                .expect("1024 does not overflow");
            for (i, (g, w)) in grad_values(&half, &grads).iter().zip(&want).enumerate() {
                let err = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / largest;
                assert!(
                    err <= tol as f32,
                    "{precision}, tensor {i}: {err} of {largest}"
                );
            }
        }
        // 2^30 times the loss's gradient overflows f16 (largest 65504) in the backward pass,
        // which unscaling catches; in f32 the same scale is harmless.
        let half = model.clone().with_precision(Precision::F16);
        let out = step(&half, 2f64.powi(30));
        assert!(unscale_gradients(&half, out.grads.unwrap(), 2f64.powi(30)).is_none());
        let out = step(&model, 2f64.powi(30));
        let grads = unscale_gradients(&model, out.grads.unwrap(), 2f64.powi(30)).unwrap();
        for (g, w) in grad_values(&model, &grads).iter().zip(&want) {
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} against {b}");
            }
        }
    }
}
