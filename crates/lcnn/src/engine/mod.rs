//! lcnn's CPU engine: forward and backward passes written for the zoo's layer kinds, so that a
//! training step on a few CPU cores spends its time in matrix-multiply kernels rather than in
//! a general tensor library's dispatch, copies and allocations.
//!
//! - Activations are channels-last (`[N, H, W, C]`): a convolution is one matrix multiply over
//!   gathered patches ([`conv`], on the [`gemm`](https://docs.rs/gemm) crate's AVX-512/AVX2
//!   kernels), a 1x1 convolution needs no gather, a wide 3x3 stride-1 convolution runs as
//!   Winograd F(4x4, 3x3) or F(2x2, 3x3) ([`winograd`], 4x or 2.25x fewer multiplies), and
//!   Max-Feature-Map
//!   ([Wu et al., arXiv:1511.02683](https://arxiv.org/abs/1511.02683)) compares two
//!   contiguous halves of each pixel. LCNN's blocks (convolution, MFM, max pooling) run as one
//!   pass where they can: MFM pools as it goes, and an im2col convolution hands each chunk of
//!   its output to them while it is still in the core's cache, so neither the convolution's
//!   output nor MFM's (the largest tensors of the step) is ever stored, forward or backward.
//! - Every buffer (activations, gradients, the partial sums of weight gradients, one buffer
//!   that every layer uses in turn) is allocated once per batch shape and reused across steps.
//! - Work is split over fixed chunks of the batch and reduced in a fixed order, so a step's
//!   result does not depend on the thread count, and a resumed run is bit-identical.
//!
//! The engine runs a [`ModelSpec`] with the same semantics and stable parameter names as the
//! Burn [`Network`] (Keras' BatchNormalization, TensorFlow's `same` padding, Flatten in
//! channels-first order, inverted dropout); `fit` uses it on the CPU by default and Burn's path
//! stays selectable as the reference (`--engine burn`). `tests/it/engine.rs` checks a few steps
//! of every zoo model against that path: losses, gradients and weights.

pub mod conv;
pub mod gemm;
pub mod loss;
pub mod ops;
pub mod optim;
pub mod winograd;

use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::layers::{Activation, Padding};
use crate::models::{LayerKind, ModelError, ModelSpec, Network, Shape};
use crate::train::OptimizerConfig;
use crate::weights::{export, import, NamedTensor, WeightsError};

use conv::{ConvGeom, Partials};
use ops::BnStats;
use rayon::prelude::*;

/// Which implementation trains and evaluates on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// lcnn's own CPU engine (this module): the default on the CPU.
    #[default]
    Native,
    /// Burn's tensor library with autodiff (any device; the reference path).
    Burn,
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "native" => Ok(EngineKind::Native),
            "burn" => Ok(EngineKind::Burn),
            _ => Err(format!("unknown engine `{s}`: expected native or burn")),
        }
    }
}

impl EngineKind {
    /// The engine that actually runs on `device`: the native engine is CPU-only, so GPU
    /// devices take Burn's path whatever was asked.
    pub fn on(self, device: &burn::tensor::Device) -> EngineKind {
        if *device == burn::tensor::Device::flex() {
            self
        } else {
            EngineKind::Burn
        }
    }

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::Burn => "burn",
        }
    }
}

/// What can go wrong building or feeding the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A layer the engine has no kernel for.
    #[error(
        "the native CPU engine cannot run layer `{layer}` of `{model}`: {what} (use --engine burn)"
    )]
    Unsupported {
        /// Model name.
        model: String,
        /// Layer name.
        layer: String,
        /// What is missing.
        what: String,
    },
    /// A bad model spec.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Weights that do not fit the model.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A batch whose shape is not the model's input.
    #[error(
        "batch of shape {got:?} does not fit the model input {want:?} (expected [N, C, H, W])"
    )]
    Batch {
        /// The batch's shape.
        got: Vec<usize>,
        /// The model's `[C, H, W]`.
        want: [usize; 3],
    },
}

/// How a parameter's values are stored here, relative to Burn's layout (the weight files').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Same order.
    Plain,
    /// Burn `[out, in, k, k]`, stored `[k, k, in, out]`.
    Hwio { out: usize, cin: usize, k: usize },
    /// Burn `[c, 1, k, k]`, stored `[k, k, c]`.
    Depthwise { c: usize, k: usize },
}

impl Layout {
    /// Position in the stored buffer of Burn's flat index `i`.
    fn stored_index(self, i: usize) -> usize {
        match self {
            Layout::Plain => i,
            Layout::Hwio { out, cin, k } => {
                let (o, r) = (i / (cin * k * k), i % (cin * k * k));
                let (ci, t) = (r / (k * k), r % (k * k));
                (t * cin + ci) * out + o
            }
            Layout::Depthwise { c, k } => {
                let (ch, t) = (i / (k * k), i % (k * k));
                t * c + ch
            }
        }
    }

    fn stored_from_burn(self, data: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; data.len()];
        for (i, v) in data.iter().enumerate() {
            out[self.stored_index(i)] = *v;
        }
        out
    }

    fn burn_from_stored(self, data: &[f32]) -> Vec<f32> {
        (0..data.len())
            .map(|i| data[self.stored_index(i)])
            .collect()
    }
}

/// One parameter (or BatchNorm moving statistic).
#[derive(Debug, Clone)]
struct Param {
    name: String,
    shape: Vec<usize>,
    layout: Layout,
    value: Vec<f32>,
    /// Updated by the optimizer (false for moving statistics and frozen layers).
    trainable: bool,
    /// A BatchNorm moving statistic (never trainable).
    statistic: bool,
    /// Optimizer slots, as [`optim::slot_names`].
    slots: Vec<Vec<f32>>,
}

/// One layer, with the indices of its parameters.
#[derive(Debug, Clone)]
enum Op {
    Conv {
        g: ConvGeom,
        w: usize,
        b: usize,
        relu: bool,
    },
    Separable {
        dg: ConvGeom,
        pg: ConvGeom,
        dw: usize,
        pw: usize,
        pb: usize,
        relu: bool,
    },
    Mfm {
        c: usize,
        /// The max pooling that follows it, which it runs in the same pass
        /// ([`ops::mfm_maxpool_forward`]) when both run.
        pool: Option<ConvGeom>,
    },
    MaxPool(ConvGeom),
    AvgPool(ConvGeom),
    BatchNorm {
        c: usize,
        epsilon: f32,
        /// Weight of the new batch statistic (Keras: 1 - momentum).
        update: f32,
        gamma: usize,
        beta: usize,
        mean: usize,
        var: usize,
    },
    Dropout {
        rate: f32,
    },
    Flatten {
        p: usize,
        c: usize,
    },
    Gap {
        p: usize,
        c: usize,
    },
    Dense {
        din: usize,
        dout: usize,
        w: usize,
        b: usize,
        relu: bool,
    },
    Relu,
    Identity,
}

/// Buffers reused from step to step.
#[derive(Debug, Default)]
struct Workspace {
    /// `acts[i]`: the input of layer `i`; `acts[L]`: the logits.
    acts: Vec<Vec<f32>>,
    /// Gradients with respect to `acts`.
    grads: Vec<Vec<f32>>,
    /// Separable convolutions' depthwise outputs and their gradients.
    mids: Vec<(Vec<f32>, Vec<f32>)>,
    /// Batch statistics of the last training forward pass, per layer.
    bn: Vec<BnStats>,
    /// Partial weight gradients (per chunk or group of images) and a transposed kernel: one
    /// buffer that every layer's backward pass reuses in turn, sized by the largest.
    parts: Partials,
    /// Parameter gradients.
    pgrads: Vec<Vec<f32>>,
    /// Seconds spent per layer, forward and backward, since the engine was built.
    times: Vec<[f64; 2]>,
    /// `inside[i]`: layer `i` ran inside an earlier layer in the last forward pass
    /// ([`Engine::span`]: MFM with its max pooling, and a convolution with both), its input
    /// left unwritten; the backward pass does the same ([`Workspace::span`]).
    inside: Vec<bool>,
    /// Winners of fused MFM + max pooling layers ([`ops::mfm_maxpool_forward`]), per layer.
    args: Vec<Vec<u8>>,
}

impl Workspace {
    /// How many of the layers after layer `i` ran inside it in the last forward pass.
    fn span(&self, i: usize) -> usize {
        self.inside[i + 1..]
            .iter()
            .take_while(|inside| **inside)
            .count()
    }
}

/// A model compiled for the CPU engine.
#[derive(Debug)]
pub struct Engine {
    spec: ModelSpec,
    ops: Vec<Op>,
    /// Values per sample after each layer (`sizes[0]`: the input).
    sizes: Vec<usize>,
    params: Vec<Param>,
    input: [usize; 3],
    outputs: usize,
    /// The final softmax or sigmoid, applied by [`Engine::probabilities`] (linear without one).
    head: Activation,
    /// Index of the first layer with trainable parameters: no input gradient is needed
    /// below it.
    first_trainable: usize,
    /// The first layer run: 0, or the first head layer when training on cached bottleneck
    /// features (the input is then that layer's input, [`Engine::bottleneck`]).
    start: usize,
    /// Keras `label_smoothing` of the loss.
    label_smoothing: f64,
    /// L2 factor on the trainable kernels (`kernel_regularizer`).
    l2: f64,
    /// Whether layers run inside the one before them where they can ([`Engine::span`]).
    fuse: bool,
    ws: Workspace,
}

impl Engine {
    /// Compiles `spec` (parameters zero until [`Engine::load`]).
    pub fn new(spec: &ModelSpec) -> Result<Self, EngineError> {
        let resolved = spec.resolve()?;
        let Shape::Image { h, w, c } = spec.input else {
            return Err(EngineError::Unsupported {
                model: spec.name.clone(),
                layer: "input".into(),
                what: "a flat input".into(),
            });
        };
        let last = resolved.len().saturating_sub(1);
        let mut params: Vec<Param> = Vec::new();
        let mut add =
            |name: &str, pname: &str, shape: Vec<usize>, layout: Layout, trainable: bool| {
                let n = shape.iter().product();
                let init = if pname == "running_var" || pname == "gamma" {
                    1.0
                } else {
                    0.0
                };
                params.push(Param {
                    name: format!("{name}.{pname}"),
                    shape,
                    layout,
                    value: vec![init; n],
                    trainable,
                    statistic: !trainable,
                    slots: Vec::new(),
                });
                params.len() - 1
            };
        let mut ops = Vec::with_capacity(resolved.len());
        let mut head = Activation::Linear;
        let mut sizes = vec![h * w * c];
        for (i, r) in resolved.iter().enumerate() {
            let name = r.spec.name.as_str();
            let unsupported = |what: &str| EngineError::Unsupported {
                model: spec.name.clone(),
                layer: name.to_string(),
                what: what.to_string(),
            };
            // The final softmax/sigmoid is applied outside (logits out), as `Network`.
            let mut act = |a: Activation| -> Result<bool, EngineError> {
                if i == last {
                    head = a;
                }
                match a {
                    Activation::Linear => Ok(false),
                    Activation::Relu => Ok(true),
                    Activation::Softmax | Activation::Sigmoid if i == last => Ok(false),
                    other => Err(unsupported(&format!(
                        "{} before the last layer",
                        other.name()
                    ))),
                }
            };
            let image = |s: Shape| match s {
                Shape::Image { h, w, c } => (h, w, c),
                Shape::Flat(n) => (1, 1, n),
            };
            let (ih, iw, ic) = image(r.input);
            let (oh, ow, _) = image(r.output);
            let geom = |k: usize, stride: usize, padding: Padding, cout: usize| ConvGeom {
                h: ih,
                w: iw,
                cin: ic,
                k,
                stride,
                pad_top: padding.pads(ih, k, stride).0,
                pad_left: padding.pads(iw, k, stride).0,
                oh,
                ow,
                cout,
            };
            let op = match &r.spec.kind {
                LayerKind::Conv2d {
                    filters,
                    kernel,
                    strides,
                    padding,
                    activation,
                } => {
                    let g = geom(*kernel, *strides, *padding, *filters);
                    let layout = Layout::Hwio {
                        out: *filters,
                        cin: ic,
                        k: *kernel,
                    };
                    let w = add(
                        name,
                        "weight",
                        vec![*filters, ic, *kernel, *kernel],
                        layout,
                        true,
                    );
                    let b = add(name, "bias", vec![*filters], Layout::Plain, true);
                    Op::Conv {
                        g,
                        w,
                        b,
                        relu: act(*activation)?,
                    }
                }
                LayerKind::SeparableConv2d {
                    filters,
                    kernel,
                    padding,
                    activation,
                } => {
                    let dg = ConvGeom {
                        cout: ic,
                        ..geom(*kernel, 1, *padding, ic)
                    };
                    let pg = ConvGeom {
                        h: oh,
                        w: ow,
                        cin: ic,
                        k: 1,
                        stride: 1,
                        pad_top: 0,
                        pad_left: 0,
                        oh,
                        ow,
                        cout: *filters,
                    };
                    let dw = add(
                        name,
                        "depthwise.weight",
                        vec![ic, 1, *kernel, *kernel],
                        Layout::Depthwise { c: ic, k: *kernel },
                        true,
                    );
                    let pw = add(
                        name,
                        "pointwise.weight",
                        vec![*filters, ic, 1, 1],
                        Layout::Hwio {
                            out: *filters,
                            cin: ic,
                            k: 1,
                        },
                        true,
                    );
                    let pb = add(name, "pointwise.bias", vec![*filters], Layout::Plain, true);
                    Op::Separable {
                        dg,
                        pg,
                        dw,
                        pw,
                        pb,
                        relu: act(*activation)?,
                    }
                }
                LayerKind::MaxFeatureMap => Op::Mfm { c: ic, pool: None },
                LayerKind::MaxPool2d {
                    pool,
                    strides,
                    padding,
                } => Op::MaxPool(geom(*pool, *strides, *padding, ic)),
                LayerKind::AvgPool2d {
                    pool,
                    strides,
                    padding,
                } => Op::AvgPool(geom(*pool, *strides, *padding, ic)),
                LayerKind::BatchNorm { epsilon, momentum } => Op::BatchNorm {
                    c: ic,
                    epsilon: *epsilon as f32,
                    update: (1.0 - *momentum) as f32,
                    gamma: add(name, "gamma", vec![ic], Layout::Plain, true),
                    beta: add(name, "beta", vec![ic], Layout::Plain, true),
                    mean: add(name, "running_mean", vec![ic], Layout::Plain, false),
                    var: add(name, "running_var", vec![ic], Layout::Plain, false),
                },
                LayerKind::Dropout { rate } => Op::Dropout { rate: *rate as f32 },
                LayerKind::Flatten => Op::Flatten { p: ih * iw, c: ic },
                LayerKind::GlobalAvgPool => Op::Gap { p: ih * iw, c: ic },
                LayerKind::Dense { units, activation } => {
                    let din = r.input.numel();
                    let w = add(name, "weight", vec![din, *units], Layout::Plain, true);
                    let b = add(name, "bias", vec![*units], Layout::Plain, true);
                    Op::Dense {
                        din,
                        dout: *units,
                        w,
                        b,
                        relu: act(*activation)?,
                    }
                }
                LayerKind::Activation { activation } => {
                    if act(*activation)? {
                        Op::Relu
                    } else {
                        Op::Identity
                    }
                }
            };
            ops.push(op);
            sizes.push(r.output.numel());
        }
        // MFM then max pooling (LCNN's blocks) run as one pass.
        for i in 1..ops.len() {
            if let (Op::Mfm { c, .. }, Op::MaxPool(g)) = (&ops[i - 1], &ops[i]) {
                if 2 * g.cin == *c && g.k * g.k <= ops::MFM_POOL_MAX_TAPS {
                    let g = *g;
                    if let Op::Mfm { pool, .. } = &mut ops[i - 1] {
                        *pool = Some(g);
                    }
                }
            }
        }
        let outputs = *sizes.last().unwrap_or(&0);
        let n_ops = ops.len();
        let mut engine = Engine {
            spec: spec.clone(),
            ops,
            sizes,
            params,
            input: [c, h, w],
            outputs,
            head: if matches!(head, Activation::Softmax | Activation::Sigmoid) {
                head
            } else {
                Activation::Linear
            },
            first_trainable: 0,
            start: 0,
            label_smoothing: 0.0,
            l2: 0.0,
            fuse: true,
            ws: Workspace::default(),
        };
        engine.ws.bn = vec![BnStats::default(); n_ops];
        engine.ws.mids = vec![Default::default(); n_ops];
        engine.ws.inside = vec![false; n_ops];
        engine.ws.args = vec![Vec::new(); n_ops];
        engine.ws.pgrads = engine
            .params
            .iter()
            .map(|p| vec![0.0; p.value.len()])
            .collect();
        engine.update_first_trainable();
        Ok(engine)
    }

    /// Compiles `network`'s spec and copies its weights, moving statistics and which layers
    /// are frozen (parameters that do not require gradients).
    pub fn from_network(network: &Network) -> Result<Self, EngineError> {
        let mut engine = Engine::new(&network.spec)?;
        engine.load(&export(network), Path::new("<network>"))?;
        for (i, layer) in network.layers.iter().enumerate() {
            if layer_is_frozen(layer) {
                engine.set_trainable(i, false);
            }
        }
        Ok(engine)
    }

    /// The spec it runs.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Outputs per sample (logits).
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Marks the parameters of layers `0..until` as not trainable (Keras `trainable = False`:
    /// their BatchNorm layers normalize with, and keep, their moving statistics).
    pub fn freeze_until(&mut self, until: usize) {
        for i in 0..until.min(self.ops.len()) {
            self.set_trainable(i, false);
        }
    }

    /// Makes layer `i`'s parameters trainable or not (moving statistics never are).
    pub fn set_trainable(&mut self, layer: usize, trainable: bool) {
        let prefix = format!("{}.", self.spec.layers[layer].name);
        for p in &mut self.params {
            if p.name.starts_with(&prefix) {
                p.trainable = trainable && !p.statistic;
            }
        }
        self.update_first_trainable();
    }

    fn update_first_trainable(&mut self) {
        let trainable = |i: usize| {
            let prefix = format!("{}.", self.spec.layers[i].name);
            self.params
                .iter()
                .any(|p| p.trainable && p.name.starts_with(&prefix))
        };
        self.first_trainable = (0..self.ops.len())
            .find(|i| trainable(*i))
            .unwrap_or(self.ops.len());
    }

    /// Sets parameters from named tensors in Burn's layouts (every parameter must be there).
    pub fn load(&mut self, tensors: &[NamedTensor], file: &Path) -> Result<(), EngineError> {
        for p in &mut self.params {
            let t =
                tensors
                    .iter()
                    .find(|t| t.name == p.name)
                    .ok_or_else(|| WeightsError::Missing {
                        file: file.to_path_buf(),
                        name: p.name.clone(),
                        expected: p.shape.clone(),
                    })?;
            if t.shape != p.shape {
                return Err(WeightsError::Shape {
                    file: file.to_path_buf(),
                    name: p.name.clone(),
                    found: t.shape.clone(),
                    expected: p.shape.clone(),
                }
                .into());
            }
            p.value = p.layout.stored_from_burn(&t.data);
        }
        Ok(())
    }

    /// The parameters and moving statistics as named tensors in Burn's layouts.
    pub fn export(&self) -> Vec<NamedTensor> {
        self.params
            .iter()
            .map(|p| NamedTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data: p.layout.burn_from_stored(&p.value),
            })
            .collect()
    }

    /// Writes the parameters into `network` (same spec), keeping its parameter ids.
    pub fn store(&self, network: Network) -> Result<Network, EngineError> {
        Ok(import(network, self.export(), true, Path::new("<engine>"))?)
    }

    /// The optimizer state as named tensors `{param}/{slot}` in Burn's layouts.
    pub fn optimizer_state(&self, config: &OptimizerConfig) -> Vec<NamedTensor> {
        let names = optim::slot_names(config);
        self.params
            .iter()
            .filter(|p| p.trainable)
            .flat_map(|p| {
                names.iter().zip(&p.slots).map(|(s, v)| NamedTensor {
                    name: format!("{}/{s}", p.name),
                    shape: p.shape.clone(),
                    data: p.layout.burn_from_stored(v),
                })
            })
            .collect()
    }

    /// Restores [`Engine::optimizer_state`]; parameters without saved slots start from zeros.
    pub fn load_optimizer_state(
        &mut self,
        config: &OptimizerConfig,
        tensors: &[NamedTensor],
        file: &Path,
    ) -> Result<(), EngineError> {
        let names = optim::slot_names(config);
        for p in self.params.iter_mut().filter(|p| p.trainable) {
            p.slots.clear();
            for s in names {
                let key = format!("{}/{s}", p.name);
                match tensors.iter().find(|t| t.name == key) {
                    Some(t) if t.shape == p.shape => {
                        p.slots.push(p.layout.stored_from_burn(&t.data))
                    }
                    Some(t) => {
                        return Err(WeightsError::Shape {
                            file: file.to_path_buf(),
                            name: key,
                            found: t.shape.clone(),
                            expected: p.shape.clone(),
                        }
                        .into())
                    }
                    None if p.slots.is_empty() => break,
                    None => {
                        return Err(WeightsError::Missing {
                            file: file.to_path_buf(),
                            name: key,
                            expected: p.shape.clone(),
                        }
                        .into())
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies an `[N, C, H, W]` batch into the input buffer (channels-last).
    fn set_input(&mut self, images: &[f32], shape: [usize; 4]) -> Result<usize, EngineError> {
        let [n, c, h, w] = shape;
        let start = self.start;
        if start > 0 {
            // Bottleneck features: `[N, F, 1, 1]`, channels-last as the engine made them.
            let f = self.sizes[start];
            if [c, h, w] != [f, 1, 1] || images.len() != n * f {
                return Err(EngineError::Batch {
                    got: shape.to_vec(),
                    want: [f, 1, 1],
                });
            }
            let ws = &mut self.ws;
            ws.acts.resize_with(self.ops.len() + 1, Vec::new);
            ws.grads.resize_with(self.ops.len() + 1, Vec::new);
            ws.acts[start].clear();
            ws.acts[start].extend_from_slice(images);
            return Ok(n);
        }
        if [c, h, w] != self.input || images.len() != n * c * h * w {
            return Err(EngineError::Batch {
                got: shape.to_vec(),
                want: self.input,
            });
        }
        let ws = &mut self.ws;
        ws.acts.resize_with(self.ops.len() + 1, Vec::new);
        ws.grads.resize_with(self.ops.len() + 1, Vec::new);
        // Each layer sizes its own output as it runs.
        let x = &mut ws.acts[0];
        x.resize(n * self.sizes[0], 0.0);
        if c == 1 {
            x.copy_from_slice(images);
        } else {
            let p = h * w;
            for (xi, ii) in x.chunks_exact_mut(p * c).zip(images.chunks_exact(p * c)) {
                ops::flatten_chw(ii, p, c, xi, true);
            }
        }
        Ok(n)
    }

    /// The forward pass; `train` uses batch statistics (updating the moving ones) and dropout
    /// with masks drawn from `seed`.
    fn forward(&mut self, n: usize, train: bool, seed: u64) {
        self.forward_range(n, train, seed, self.start..self.ops.len());
    }

    /// [`Engine::forward`] of the layers in `layers` only.
    fn forward_range(&mut self, n: usize, train: bool, seed: u64, layers: Range<usize>) {
        let Engine {
            ops,
            params,
            ws,
            sizes,
            fuse,
            ..
        } = self;
        ws.times.resize(ops.len(), [0.0; 2]);
        ws.inside[..layers.start].fill(false);
        let mut skip = 0;
        for (i, op) in ops.iter().enumerate().take(layers.end).skip(layers.start) {
            // A layer run inside an earlier one.
            ws.inside[i] = skip > 0;
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let started = std::time::Instant::now();
            let span = if *fuse {
                Self::span(ops, i, layers.end)
            } else {
                0
            };
            let out = i + 1 + span;
            ws.acts[out].resize(n * sizes[out], 0.0);
            let (lo, hi) = ws.acts.split_at_mut(i + 1);
            let x = &lo[i][..];
            let y = &mut hi[span][..];
            let value = |k: usize| &params[k].value[..];
            match op {
                Op::Conv { g, w, b, .. } if span == 2 => {
                    // MFM and its pooling on each chunk of the convolution's output, which is
                    // never stored whole.
                    let Op::Mfm { pool: Some(pg), .. } = &ops[i + 1] else {
                        unreachable!("a convolution spans only MFM and its pooling")
                    };
                    let arg = &mut ws.args[i];
                    arg.resize(y.len(), 0);
                    let pl = g.chunk_images(n) * pg.out_len();
                    conv::forward_chunked(
                        g,
                        x,
                        value(*w),
                        Some(value(*b)),
                        y.par_chunks_mut(pl).zip(arg.par_chunks_mut(pl)),
                        |(yc, ac), out| ops::mfm_maxpool_forward_serial(pg, out, yc, ac),
                    );
                }
                Op::Conv { g, w, b, relu } => {
                    conv::forward(g, x, value(*w), Some(value(*b)), y);
                    if *relu {
                        ops::relu(y);
                    }
                }
                Op::Separable {
                    dg,
                    pg,
                    dw,
                    pw,
                    pb,
                    relu,
                } => {
                    let mid = &mut ws.mids[i].0;
                    mid.resize(n * dg.out_len(), 0.0);
                    ops::depthwise_forward(dg, x, value(*dw), mid);
                    conv::forward(pg, mid, value(*pw), Some(value(*pb)), y);
                    if *relu {
                        ops::relu(y);
                    }
                }
                Op::Mfm { c, pool } => match pool {
                    Some(g) if span == 1 => {
                        ws.args[i].resize(y.len(), 0);
                        ops::mfm_maxpool_forward(g, x, y, &mut ws.args[i]);
                    }
                    _ => ops::mfm_forward(x, *c, y),
                },
                Op::MaxPool(g) => ops::maxpool_forward(g, x, y),
                Op::AvgPool(g) => ops::avgpool_forward(g, x, y),
                Op::BatchNorm {
                    c,
                    epsilon,
                    update,
                    gamma,
                    beta,
                    mean,
                    var,
                } => {
                    // A frozen BatchNorm normalizes with its moving statistics and leaves them
                    // alone (Keras' `trainable = False`, Burn's `freeze`).
                    if train && params[*gamma].trainable {
                        let stats =
                            ops::bn_train_forward(x, *c, value(*gamma), value(*beta), *epsilon, y);
                        for (k, batch) in [(*mean, &stats.mean), (*var, &stats.var)] {
                            for (r, s) in params[k].value.iter_mut().zip(batch) {
                                *r = *r * (1.0 - update) + s * update;
                            }
                        }
                        ws.bn[i] = stats;
                    } else {
                        let inv: Vec<f32> = value(*var)
                            .iter()
                            .map(|v| 1.0 / (v + epsilon).sqrt())
                            .collect();
                        ops::bn_apply(x, *c, value(*mean), &inv, value(*gamma), value(*beta), y);
                    }
                }
                Op::Dropout { rate } => {
                    let rate = if train { *rate } else { 0.0 };
                    ops::dropout(x, rate, layer_seed(seed, i), y);
                }
                Op::Flatten { p, c } => ops::flatten_chw(x, *p, *c, y, false),
                Op::Gap { p, c } => ops::gap_forward(x, *p, *c, y),
                Op::Dense {
                    din,
                    dout,
                    w,
                    b,
                    relu,
                } => {
                    for row in y.chunks_exact_mut(*dout) {
                        row.copy_from_slice(value(*b));
                    }
                    gemm::sgemm(
                        n,
                        *dout,
                        *din,
                        gemm::Mat::new(x, *din),
                        gemm::Mat::new(value(*w), *dout),
                        y,
                        *dout,
                        true,
                        threads(),
                    );
                    if *relu {
                        ops::relu(y);
                    }
                }
                Op::Relu => {
                    y.copy_from_slice(x);
                    ops::relu(y);
                }
                Op::Identity => y.copy_from_slice(x),
            }
            skip = span;
            ws.times[i][0] += started.elapsed().as_secs_f64();
        }
    }

    /// How many layers after layer `i` it runs in the same pass when the pass ends before
    /// layer `end`: MFM followed by max pooling pools as it goes (1), and a convolution (im2col,
    /// linear) followed by both hands each chunk of its output to them while it is still in
    /// the core's cache (2); the fused layers' outputs are then never written. 0 otherwise.
    fn span(ops: &[Op], i: usize, end: usize) -> usize {
        let pooled_mfm = |j: usize| matches!(ops.get(j), Some(Op::Mfm { pool: Some(_), .. }));
        match &ops[i] {
            Op::Conv { g, relu: false, .. }
                if i + 2 < end && pooled_mfm(i + 1) && !winograd::eligible(g) =>
            {
                2
            }
            Op::Mfm { .. } if i + 1 < end && pooled_mfm(i) => 1,
            _ => 0,
        }
    }

    /// The backward pass from `grads[L]` (d loss / d logits) into the parameter gradients.
    fn backward(&mut self, n: usize, seed: u64) {
        let Engine {
            ops,
            params,
            ws,
            sizes,
            first_trainable,
            ..
        } = self;
        for (i, s) in sizes.iter().enumerate() {
            // (Not the inputs of layers run inside another.)
            if ws.inside.get(i) != Some(&true) {
                ws.grads[i].resize(n * s, 0.0);
            }
        }
        for (i, op) in ops.iter().enumerate().rev() {
            if i < *first_trainable {
                break;
            }
            // Its gradient was taken by the layer that ran it.
            if ws.inside[i] {
                continue;
            }
            let need_dx = i > *first_trainable;
            let started = std::time::Instant::now();
            let x = &ws.acts[i][..];
            let y = &ws.acts[i + 1][..];
            let span = ws.span(i);
            let (lo, hi) = ws.grads.split_at_mut(i + 1);
            let (dx, dy) = (&mut lo[i][..], &mut hi[span][..]);
            let dx = need_dx.then_some(dx);
            let value = |k: usize| &params[k].value[..];
            match op {
                Op::Conv { g, w, b, .. } if span == 2 => {
                    let Op::Mfm { pool: Some(pg), .. } = &ops[i + 1] else {
                        unreachable!("a convolution spans only MFM and its pooling")
                    };
                    let (arg, dy, pl) = (&ws.args[i][..], &*dy, pg.out_len());
                    let make = |images: Range<usize>, out: &mut [f32]| {
                        let r = images.start * pl..images.end * pl;
                        ops::mfm_maxpool_backward_serial(pg, &arg[r.clone()], &dy[r], out);
                    };
                    let (dw, db) = pair_mut(&mut ws.pgrads, *w, *b);
                    let dy = conv::OutputGrad::Chunks(&make);
                    conv::backward_from(g, x, value(*w), dy, dw, Some(db), dx, &mut ws.parts);
                }
                Op::Conv { g, w, b, relu } => {
                    if *relu {
                        ops::relu_backward(y, dy);
                    }
                    let (dw, db) = pair_mut(&mut ws.pgrads, *w, *b);
                    conv::backward(g, x, value(*w), dy, dw, Some(db), dx, &mut ws.parts);
                }
                Op::Separable {
                    dg,
                    pg,
                    dw,
                    pw,
                    pb,
                    relu,
                } => {
                    if *relu {
                        ops::relu_backward(y, dy);
                    }
                    let (mid, dmid) = &mut ws.mids[i];
                    dmid.resize(mid.len(), 0.0);
                    let (dpw, dpb) = pair_mut(&mut ws.pgrads, *pw, *pb);
                    conv::backward(
                        pg,
                        mid,
                        value(*pw),
                        dy,
                        dpw,
                        Some(dpb),
                        Some(dmid),
                        &mut ws.parts,
                    );
                    ops::depthwise_backward(dg, x, value(*dw), dmid, &mut ws.pgrads[*dw], dx);
                }
                Op::Mfm { c, pool } => match (dx, pool) {
                    (Some(dx), Some(g)) if span == 1 => {
                        ops::mfm_maxpool_backward(g, &ws.args[i], dy, dx)
                    }
                    (Some(dx), _) => ops::mfm_backward(x, *c, dy, dx),
                    (None, _) => {}
                },
                Op::MaxPool(g) => {
                    if let Some(dx) = dx {
                        ops::maxpool_backward(g, x, y, dy, dx);
                    }
                }
                Op::AvgPool(g) => {
                    if let Some(dx) = dx {
                        ops::avgpool_backward(g, dy, dx);
                    }
                }
                Op::BatchNorm {
                    c,
                    epsilon,
                    gamma,
                    beta,
                    var,
                    ..
                } => {
                    if params[*gamma].trainable {
                        let (dg, db) = pair_mut(&mut ws.pgrads, *gamma, *beta);
                        ops::bn_backward(x, *c, &ws.bn[i], value(*gamma), dy, dg, db, dx);
                    } else if let Some(dx) = dx {
                        let scale: Vec<f32> = value(*var)
                            .iter()
                            .zip(value(*gamma))
                            .map(|(v, g)| g / (v + epsilon).sqrt())
                            .collect();
                        let zero = vec![0.0; *c];
                        ops::bn_apply(dy, *c, &zero, &scale, &vec![1.0; *c], &zero, dx);
                    }
                }
                Op::Dropout { rate } => {
                    if let Some(dx) = dx {
                        ops::dropout(dy, *rate, layer_seed(seed, i), dx);
                    }
                }
                Op::Flatten { p, c } => {
                    if let Some(dx) = dx {
                        ops::flatten_chw(dy, *p, *c, dx, true);
                    }
                }
                Op::Gap { p, c } => {
                    if let Some(dx) = dx {
                        ops::gap_backward(dy, *p, *c, dx);
                    }
                }
                Op::Dense {
                    din,
                    dout,
                    w,
                    b,
                    relu,
                } => {
                    if *relu {
                        ops::relu_backward(y, dy);
                    }
                    let (dw, db) = pair_mut(&mut ws.pgrads, *w, *b);
                    gemm::sgemm(
                        *din,
                        *dout,
                        n,
                        gemm::Mat::t(x, *din),
                        gemm::Mat::new(dy, *dout),
                        dw,
                        *dout,
                        false,
                        threads(),
                    );
                    db.fill(0.0);
                    for row in dy.chunks_exact(*dout) {
                        for (s, v) in db.iter_mut().zip(row) {
                            *s += v;
                        }
                    }
                    if let Some(dx) = dx {
                        // dx = dy w^T, computed as its transpose w dy^T (`[din, n]`) and then
                        // transposed: with the kernel as the left operand the multiply reads it
                        // row by row, 6x faster for VGG16's `fc1` at batch 8 (5 -> 31 GFLOP/s,
                        // `cargo bench --bench gemm_probe`), and the same bits
                        // (`gemm::tests::a_product_and_its_transpose_agree_to_the_bit`).
                        let dxt = &mut ws.parts.0;
                        dxt.resize(*din * n, 0.0);
                        gemm::sgemm(
                            *din,
                            n,
                            *dout,
                            gemm::Mat::new(value(*w), *dout),
                            gemm::Mat::t(dy, *dout),
                            dxt,
                            n,
                            false,
                            threads(),
                        );
                        for (k, row) in dxt.chunks_exact(n).enumerate() {
                            for (j, v) in row.iter().enumerate() {
                                dx[j * *din + k] = *v;
                            }
                        }
                    }
                }
                Op::Relu => {
                    if let Some(dx) = dx {
                        ops::relu_backward(y, dy);
                        dx.copy_from_slice(dy);
                    }
                }
                Op::Identity => {
                    if let Some(dx) = dx {
                        dx.copy_from_slice(dy);
                    }
                }
            }
            ws.times[i][1] += started.elapsed().as_secs_f64();
        }
    }

    /// Whether layers run inside the one before them where they can (the default): MFM with the
    /// max pooling after it, and a convolution with both ([`Engine::span`]). The results are
    /// the same either way (tested); off, every layer's output is stored.
    pub fn set_fusion(&mut self, on: bool) {
        self.fuse = on;
    }

    /// Seconds spent in each layer since the engine was built: `(name, forward, backward)`.
    /// Layers that ran inside an earlier one ([`Engine::span`]) are reported with it, as
    /// `conv1+mfm1+pool1`.
    pub fn layer_times(&self) -> Vec<(String, f64, f64)> {
        let mut rows: Vec<(String, f64, f64)> = Vec::new();
        for (i, (l, t)) in self.spec.layers.iter().zip(&self.ws.times).enumerate() {
            match rows.last_mut() {
                Some(row) if self.ws.inside.get(i) == Some(&true) => {
                    row.0 = format!("{}+{}", row.0, l.name);
                    row.1 += t[0];
                    row.2 += t[1];
                }
                _ => rows.push((l.name.clone(), t[0], t[1])),
            }
        }
        rows
    }

    /// Sets the loss's `label_smoothing` and the L2 factor on trainable kernels
    /// ([`crate::train::loss::Regularization`]; both 0 when never called).
    pub fn set_loss(&mut self, label_smoothing: f64, l2: f64) {
        self.label_smoothing = label_smoothing;
        self.l2 = l2;
    }

    /// Whether the layers before `k` compute the same thing in training as in inference, with
    /// nothing to learn: no trainable parameter and no active dropout. Then their output can be
    /// computed once per image and cached (the seed's `save_bottleneck_features`).
    pub fn frozen_below(&self, k: usize) -> bool {
        k <= self.first_trainable
            && k < self.ops.len()
            && self.ops[..k]
                .iter()
                .all(|op| !matches!(op, Op::Dropout { rate } if *rate > 0.0))
    }

    /// The output of the layers before `k` (inference), `[N, F]` channels-last: the bottleneck
    /// features that [`Engine::bottleneck`] then trains on.
    pub fn features(
        &mut self,
        images: &[f32],
        shape: [usize; 4],
        k: usize,
    ) -> Result<&[f32], EngineError> {
        let start = std::mem::replace(&mut self.start, 0);
        let n = self.set_input(images, shape);
        self.start = start;
        let n = n?;
        self.forward_range(n, false, 0, 0..k);
        Ok(&self.ws.acts[k])
    }

    /// From now on, batches are the cached input of layer `k` ([`Engine::features`], as
    /// `[N, F, 1, 1]`) and only layers `k..` run: training, evaluation and prediction then
    /// compute what they compute on images when [`Engine::frozen_below`]`(k)` (which is
    /// checked). `k = 0` goes back to images.
    pub fn bottleneck(&mut self, k: usize) -> Result<(), EngineError> {
        if k > 0 && !self.frozen_below(k) {
            return Err(EngineError::Unsupported {
                model: self.spec.name.clone(),
                layer: self.spec.layers[k.min(self.ops.len() - 1)].name.clone(),
                what: "bottleneck features need every layer below it frozen and no dropout".into(),
            });
        }
        self.start = k;
        Ok(())
    }

    /// Values per sample that layer `k` takes (the bottleneck feature size at `k`).
    pub fn input_size(&self, k: usize) -> usize {
        self.sizes[k]
    }

    /// Whether parameter `p` carries the L2 penalty: a trainable kernel (conv, depthwise,
    /// pointwise or dense weight), as Keras' `kernel_regularizer` on trainable layers.
    fn penalized(p: &Param) -> bool {
        p.trainable && p.name.ends_with("weight")
    }

    /// The L2 term `l2 * sum(w^2)` over the penalized kernels (0 without `l2`), which the
    /// reported loss includes, as Keras' does.
    pub fn l2_penalty(&self) -> f64 {
        if self.l2 == 0.0 {
            return 0.0;
        }
        self.params
            .iter()
            .filter(|p| Self::penalized(p))
            .map(|p| {
                p.value
                    .iter()
                    .map(|v| (*v as f64) * (*v as f64))
                    .sum::<f64>()
            })
            .sum::<f64>()
            * self.l2
    }

    /// Forward, loss and backward on one batch, without updating anything but the BatchNorm
    /// moving statistics: returns the mean loss (with the L2 penalty) and the number of
    /// correct predictions. The gradients are then in [`Engine::gradients`].
    pub fn forward_backward(
        &mut self,
        images: &[f32],
        shape: [usize; 4],
        labels: &[u32],
        seed: u64,
    ) -> Result<(f64, usize), EngineError> {
        let n = self.set_input(images, shape)?;
        self.forward(n, true, seed);
        let l = self.ops.len();
        let mut dlogits = std::mem::take(&mut self.ws.grads[l]);
        dlogits.resize(n * self.outputs, 0.0);
        let (loss, correct) = loss::loss_and_grad(
            &self.ws.acts[l],
            self.outputs,
            labels,
            self.label_smoothing,
            Some(&mut dlogits),
        );
        self.ws.grads[l] = dlogits;
        if loss.is_finite() {
            self.backward(n, seed);
        }
        if self.l2 == 0.0 {
            return Ok((loss, correct));
        }
        // The L2 term and its gradient `2 l2 w`, in one pass over the penalized kernels.
        let two_l2 = (2.0 * self.l2) as f32;
        let mut squares = 0.0f64;
        for (p, g) in self.params.iter().zip(self.ws.pgrads.iter_mut()) {
            if Self::penalized(p) {
                for (g, w) in g.iter_mut().zip(&p.value) {
                    *g += two_l2 * w;
                    squares += (*w as f64) * (*w as f64);
                }
            }
        }
        Ok((loss + self.l2 * squares, correct))
    }

    /// One training step: [`Engine::forward_backward`], then (when the loss is finite) one
    /// optimizer update of every trainable parameter at rate `lr`
    /// ([`OptimizerConfig::step_lr`]), after Keras' decoupled weight decay
    /// `w *= 1 - decay` (`decay = weight_decay * scheduled lr`; 0 for none).
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &mut self,
        images: &[f32],
        shape: [usize; 4],
        labels: &[u32],
        optimizer: &OptimizerConfig,
        lr: f64,
        decay: f64,
        seed: u64,
    ) -> Result<(f64, usize), EngineError> {
        let (loss, correct) = self.forward_backward(images, shape, labels, seed)?;
        if loss.is_finite() {
            let nslots = optim::slot_names(optimizer).len();
            for (p, g) in self.params.iter_mut().zip(&self.ws.pgrads) {
                if p.trainable {
                    p.slots.resize_with(nslots, Vec::new);
                    optim::step(optimizer, lr, decay, &mut p.value, g, &mut p.slots);
                }
            }
        }
        Ok((loss, correct))
    }

    /// The gradients of the last [`Engine::forward_backward`], named, in Burn's layouts
    /// (trainable parameters only).
    pub fn gradients(&self) -> Vec<NamedTensor> {
        self.params
            .iter()
            .zip(&self.ws.pgrads)
            .filter(|(p, _)| p.trainable)
            .map(|(p, g)| NamedTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data: p.layout.burn_from_stored(g),
            })
            .collect()
    }

    /// Inference (moving statistics, no dropout): the logits, `[N, outputs]`.
    pub fn logits(&mut self, images: &[f32], shape: [usize; 4]) -> Result<&[f32], EngineError> {
        let n = self.set_input(images, shape)?;
        self.forward(n, false, 0);
        Ok(&self.ws.acts[self.ops.len()])
    }

    /// Re-estimates the moving statistics of every trainable BatchNorm from training-mode
    /// forward passes over `batches` (`[N, C, H, W]` each; no gradient, no weight update):
    /// each becomes the sample-weighted average of its batch statistics, as PyTorch's
    /// `torch.optim.swa_utils.update_bn`. Keras' moving averages (momentum 0.99, from mean 0 and
    /// variance 1) trail the weights on short runs; these are the final weights' own.
    /// Returns the number of samples seen (0 leaves the statistics as they were).
    pub fn recalibrate_batch_norm<B: AsRef<[f32]>>(
        &mut self,
        batches: impl IntoIterator<Item = (B, [usize; 4])>,
        seed: u64,
    ) -> Result<usize, EngineError> {
        let saved: Vec<Option<f32>> = self
            .ops
            .iter()
            .map(|op| match op {
                Op::BatchNorm { update, .. } => Some(*update),
                _ => None,
            })
            .collect();
        let mut seen = 0usize;
        let mut result = Ok(());
        for (step, (images, shape)) in batches.into_iter().enumerate() {
            seen += shape[0];
            // The running average: batch k of n_k samples weighs n_k / (samples so far).
            let weight = shape[0] as f32 / seen.max(1) as f32;
            for op in &mut self.ops {
                if let Op::BatchNorm { update, .. } = op {
                    *update = weight;
                }
            }
            match self.set_input(images.as_ref(), shape) {
                Ok(n) => self.forward(n, true, layer_seed(seed, step)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        for (op, s) in self.ops.iter_mut().zip(saved) {
            if let (Op::BatchNorm { update, .. }, Some(s)) = (op, s) {
                *update = s;
            }
        }
        result.map(|_| seen)
    }

    /// The logits of the last forward pass, `[N, outputs]`.
    pub fn last_logits(&self) -> &[f32] {
        self.ws.acts.get(self.ops.len()).map_or(&[], |v| &v[..])
    }

    /// Inference with the model's final activation: class probabilities, `[N, outputs]`.
    pub fn probabilities(
        &mut self,
        images: &[f32],
        shape: [usize; 4],
    ) -> Result<Vec<f32>, EngineError> {
        let (k, head) = (self.outputs, self.head);
        let mut out = self.logits(images, shape)?.to_vec();
        for row in out.chunks_exact_mut(k.max(1)) {
            match head {
                Activation::Softmax => {
                    let max = row.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b));
                    let mut sum = 0.0;
                    for v in row.iter_mut() {
                        *v = (*v - max).exp();
                        sum += *v;
                    }
                    for v in row.iter_mut() {
                        *v /= sum;
                    }
                }
                Activation::Sigmoid => {
                    for v in row.iter_mut() {
                        *v = 1.0 / (1.0 + (-*v).exp());
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Inference data loss (with `label_smoothing`; the L2 term, a constant of the weights, is
    /// [`Engine::l2_penalty`]) and correct count of one batch.
    pub fn evaluate_batch(
        &mut self,
        images: &[f32],
        shape: [usize; 4],
        labels: &[u32],
    ) -> Result<(f64, usize), EngineError> {
        let (k, ls) = (self.outputs, self.label_smoothing);
        let logits = self.logits(images, shape)?;
        Ok(loss::loss_and_grad(logits, k, labels, ls, None))
    }
}

/// Whether `layer`'s parameters are frozen (do not require gradients); `false` for layers
/// without any.
pub(crate) fn layer_is_frozen(layer: &crate::models::Layer) -> bool {
    use crate::models::Layer;
    let weight_requires_grad = match layer {
        Layer::Conv2d(b) => b.conv.conv.weight.val().is_require_grad(),
        Layer::SeparableConv2d(b) => b.conv.pointwise.weight.val().is_require_grad(),
        Layer::Dense(b) => b.dense.linear.weight.val().is_require_grad(),
        Layer::BatchNorm(bn) => bn.bn.gamma.val().is_require_grad(),
        _ => return false,
    };
    !weight_requires_grad
}

/// Mutable references to two different entries.
fn pair_mut(v: &mut [Vec<f32>], a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
    assert!(a < b, "parameters are added in order");
    let (lo, hi) = v.split_at_mut(b);
    (&mut lo[a], &mut hi[0])
}

fn layer_seed(seed: u64, layer: usize) -> u64 {
    seed ^ (layer as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// Threads the engine's work is spread over (rayon's pool: `RAYON_NUM_THREADS`, else all cores).
pub fn threads() -> usize {
    rayon::current_num_threads()
}
