//! The Burn network built from a [`ModelSpec`]: one [`Layer`] per spec entry, in order, so that
//! layer `i` of the network is layer `i` of the spec (names, freezing and weight import go by
//! that index).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, FloatDType, Tensor};

use crate::layers::{
    Activation, AveragePooling2d, BatchNormalization, BatchNormalizationConfig, Conv2d,
    Conv2dConfig, Dense, DenseConfig, Features, GlobalAveragePooling2d, KernelInitializer,
    MaxFeatureMap, MaxPooling2d, MaxPooling2dConfig, SeparableConv2d, SeparableConv2dConfig,
};

use crate::layers::im2col::ConvAlgorithm;
use crate::layers::precision::{cast, Precision};

use super::spec::{LayerKind, ModelSpec, Shape};
use super::ModelError;

/// A convolution followed by its activation.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// The convolution.
    pub conv: Conv2d,
    /// Its activation.
    #[module(skip)]
    pub activation: Activation,
}

/// A separable convolution followed by its activation.
#[derive(Module, Debug)]
pub struct SeparableBlock {
    /// The separable convolution.
    pub conv: SeparableConv2d,
    /// Its activation.
    #[module(skip)]
    pub activation: Activation,
}

/// A dense layer followed by its activation.
#[derive(Module, Debug)]
pub struct DenseBlock {
    /// The dense layer.
    pub dense: Dense,
    /// Its activation.
    #[module(skip)]
    pub activation: Activation,
}

/// A standalone activation layer.
#[derive(Module, Debug)]
pub struct ActivationLayer {
    /// The activation.
    #[module(skip)]
    pub activation: Activation,
}

/// A flatten layer (C, H, W order).
#[derive(Module, Debug, Default)]
pub struct Flatten;

/// One layer of a [`Network`].
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Layer {
    /// Conv2D + activation.
    Conv2d(ConvBlock),
    /// SeparableConv2D + activation.
    SeparableConv2d(SeparableBlock),
    /// Max-Feature-Map.
    MaxFeatureMap(MaxFeatureMap),
    /// Max pooling.
    MaxPool2d(MaxPooling2d),
    /// Average pooling.
    AvgPool2d(AveragePooling2d),
    /// Batch normalization.
    BatchNorm(BatchNormalization),
    /// Dropout.
    Dropout(Dropout),
    /// Flatten.
    Flatten(Flatten),
    /// Global average pooling.
    GlobalAvgPool(GlobalAveragePooling2d),
    /// Dense + activation.
    Dense(DenseBlock),
    /// Activation.
    Activation(ActivationLayer),
}

impl Layer {
    /// Applies the layer.
    ///
    /// `compute` is the float type the convolutions and dense layers compute in (mixed
    /// precision, [`crate::layers::precision`]); `None` computes in f32 throughout. `conv` is
    /// how the convolutions are computed ([`ConvAlgorithm`]).
    ///
    /// # Shapes
    /// As the layer's spec: image layers take and give `[N, C, H, W]`, dense layers `[N, D]`.
    pub fn forward(
        &self,
        x: Features,
        compute: Option<FloatDType>,
        conv: ConvAlgorithm,
    ) -> Features {
        match self {
            Layer::Conv2d(b) => {
                b.activation
                    .forward(Features::Image(b.conv.forward_in(x.image(), compute, conv)))
            }
            Layer::SeparableConv2d(b) => b
                .activation
                .forward(Features::Image(b.conv.forward_in(x.image(), compute))),
            Layer::MaxFeatureMap(m) => m.forward(x),
            Layer::MaxPool2d(p) => Features::Image(p.forward(x.image())),
            Layer::AvgPool2d(p) => Features::Image(p.forward(x.image())),
            Layer::BatchNorm(bn) => bn.forward_in(x, compute),
            Layer::Dropout(d) => x.map(|t| d.forward(t), |t| d.forward(t)),
            Layer::Flatten(_) => Features::Flat(x.flatten()),
            Layer::GlobalAvgPool(g) => Features::Flat(g.forward(x.image())),
            Layer::Dense(b) => b
                .activation
                .forward(Features::Flat(b.dense.forward_in(x.flatten(), compute))),
            Layer::Activation(a) => a.activation.forward(x),
        }
    }
}

/// A sequential network: the model zoo's common form.
#[derive(Module, Debug)]
pub struct Network {
    /// The layers, index-aligned with `spec.layers`.
    pub layers: Vec<Layer>,
    /// The spec it was built from.
    #[module(skip)]
    pub spec: ModelSpec,
    /// The model's final activation (softmax or sigmoid), which [`Network::forward_logits`]
    /// leaves out so the loss can be computed stably from logits.
    #[module(skip)]
    pub output_activation: Activation,
    /// The float type convolutions and dense layers compute in, when not f32 (mixed
    /// precision: the parameters stay f32; see [`Network::with_precision`]).
    #[module(skip)]
    pub compute: Option<FloatDType>,
    /// How the convolutions are computed (`--conv`; see [`Network::with_conv`]).
    #[module(skip)]
    pub conv: ConvAlgorithm,
}

impl Network {
    /// Builds the network with Keras' default initializers; checks the spec first.
    pub fn new(spec: &ModelSpec, device: &Device) -> Result<Self, ModelError> {
        Self::with_initializer(spec, device, KernelInitializer::default())
    }

    /// [`Network::new`] with every convolution and dense kernel drawn by `kernel_initializer`
    /// (Keras' `kernel_initializer=` on each layer; biases start at zero).
    pub fn with_initializer(
        spec: &ModelSpec,
        device: &Device,
        kernel_initializer: KernelInitializer,
    ) -> Result<Self, ModelError> {
        let resolved = spec.resolve()?;
        let last = resolved.len().saturating_sub(1);
        let mut output_activation = Activation::Linear;
        let mut layers = Vec::with_capacity(resolved.len());
        for (i, r) in resolved.iter().enumerate() {
            let in_c = match r.input {
                Shape::Image { c, .. } => c,
                Shape::Flat(n) => n,
            };
            // The final softmax/sigmoid is applied outside the graph (see `forward_logits`).
            let head = |a: Activation| {
                if i == last && matches!(a, Activation::Softmax | Activation::Sigmoid) {
                    (Activation::Linear, a)
                } else {
                    (a, Activation::Linear)
                }
            };
            let layer = match &r.spec.kind {
                LayerKind::Conv2d {
                    filters,
                    kernel,
                    strides,
                    padding,
                    activation,
                } => {
                    let (activation, out) = head(*activation);
                    output_activation = out;
                    Layer::Conv2d(ConvBlock {
                        conv: Conv2dConfig::new(in_c, *filters, *kernel)
                            .with_strides(*strides)
                            .with_padding(*padding)
                            .with_kernel_initializer(kernel_initializer)
                            .init(device),
                        activation,
                    })
                }
                LayerKind::SeparableConv2d {
                    filters,
                    kernel,
                    padding,
                    activation,
                } => {
                    let (activation, out) = head(*activation);
                    output_activation = out;
                    Layer::SeparableConv2d(SeparableBlock {
                        conv: SeparableConv2dConfig::new(in_c, *filters, *kernel)
                            .with_padding(*padding)
                            .with_kernel_initializer(kernel_initializer)
                            .init(device),
                        activation,
                    })
                }
                LayerKind::MaxFeatureMap => Layer::MaxFeatureMap(MaxFeatureMap),
                LayerKind::MaxPool2d {
                    pool,
                    strides,
                    padding,
                } => Layer::MaxPool2d(
                    MaxPooling2dConfig::new(*pool)
                        .with_strides(Some(*strides))
                        .with_padding(*padding)
                        .init(),
                ),
                LayerKind::AvgPool2d {
                    pool,
                    strides,
                    padding,
                } => Layer::AvgPool2d(
                    MaxPooling2dConfig::new(*pool)
                        .with_strides(Some(*strides))
                        .with_padding(*padding)
                        .init()
                        .average(),
                ),
                LayerKind::BatchNorm { epsilon, momentum } => Layer::BatchNorm(
                    BatchNormalizationConfig::new(in_c)
                        .with_epsilon(*epsilon)
                        .with_momentum(*momentum)
                        .init(device),
                ),
                LayerKind::Dropout { rate } => Layer::Dropout(DropoutConfig::new(*rate).init()),
                LayerKind::Flatten => Layer::Flatten(Flatten),
                LayerKind::GlobalAvgPool => Layer::GlobalAvgPool(GlobalAveragePooling2d),
                LayerKind::Dense { units, activation } => {
                    let (activation, out) = head(*activation);
                    output_activation = out;
                    let in_features = r.input.numel();
                    Layer::Dense(DenseBlock {
                        dense: DenseConfig::new(in_features, *units)
                            .with_kernel_initializer(kernel_initializer)
                            .init(device),
                        activation,
                    })
                }
                LayerKind::Activation { activation } => {
                    let (activation, out) = head(*activation);
                    output_activation = out;
                    Layer::Activation(ActivationLayer { activation })
                }
            };
            if i != last {
                output_activation = Activation::Linear;
            }
            layers.push(layer);
        }
        let names: Vec<String> = spec.layers.iter().map(|l| l.name.clone()).collect();
        crate::weights::named::assign_stable_ids(&mut layers, &names);
        Ok(Network {
            layers,
            spec: spec.clone(),
            output_activation,
            compute: None,
            conv: ConvAlgorithm::default(),
        })
    }

    /// The forward pass up to, not including, the final softmax or sigmoid.
    ///
    /// # Shapes
    /// - input: `[N, C, H, W]` (the spec's input, channels first)
    /// - output: `[N, classes]` logits (or the last feature map, flattened, for a model without
    ///   its top)
    pub fn forward_logits(&self, x: Tensor<4>) -> Tensor<2> {
        let logits = self
            .layers
            .iter()
            .fold(Features::Image(x), |x, layer| {
                layer.forward(x, self.compute, self.conv)
            })
            .flatten();
        match self.compute {
            // The loss and the softmax in f32, as Keras' policies keep the last layer's output.
            Some(_) => cast(logits, FloatDType::F32),
            None => logits,
        }
    }

    /// The network computing its convolutions and dense layers in `precision`'s float type
    /// (mixed precision); the parameters are untouched and stay f32.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.compute = precision.compute();
        self
    }

    /// The network computing its convolutions by `conv` (Burn's convolution or im2col and one
    /// matrix product); the parameters are untouched.
    pub fn with_conv(mut self, conv: ConvAlgorithm) -> Self {
        self.conv = conv;
        self
    }

    /// Re-estimates the moving statistics of every trainable BatchNorm from training-mode
    /// forward passes over `batches` (on an autodiff device; the graphs are dropped, no weight
    /// changes): each becomes the sample-weighted average of its batch statistics, as PyTorch's
    /// `swa_utils.update_bn` and lcnn's engine (`Engine::recalibrate_batch_norm`).
    ///
    /// # Shapes
    /// - each batch: `[N, C, H, W]`
    pub fn recalibrate_batch_norm(mut self, batches: impl IntoIterator<Item = Tensor<4>>) -> Self {
        let saved: Vec<Option<f64>> = self.layers.iter().map(batch_norm_momentum).collect();
        let mut seen = 0usize;
        for x in batches {
            let n = x.dims()[0];
            seen += n;
            // Burn's momentum weighs the new batch: n_k / (samples so far) is the running mean.
            for layer in &mut self.layers {
                if let Layer::BatchNorm(b) = layer {
                    b.bn.momentum = n as f64 / seen.max(1) as f64;
                }
            }
            let _ = self.forward_logits(x);
        }
        for (layer, m) in self.layers.iter_mut().zip(saved) {
            if let (Layer::BatchNorm(b), Some(m)) = (layer, m) {
                b.bn.momentum = m;
            }
        }
        self
    }

    /// The forward pass with the final activation: class probabilities.
    ///
    /// # Shapes
    /// - input: `[N, C, H, W]`
    /// - output: `[N, classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.output_activation
            .forward(Features::Flat(self.forward_logits(x)))
            .flat()
    }
}

/// A BatchNorm layer's Burn momentum (the weight of the new batch statistic).
fn batch_norm_momentum(layer: &Layer) -> Option<f64> {
    match layer {
        Layer::BatchNorm(b) => Some(b.bn.momentum),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::initializer::tests::{mean_square, values};
    use crate::models::{ModelConfig, ModelName};
    use burn::module::Module;
    use burn::tensor::{DType, Distribution};

    /// `--kernel-initializer` reaches every kernel: All-CNN-C's 3x3 96 -> 96 `conv2` (fans 864
    /// and 864) has variance `2 / 864` with He, twice Glorot's `2 / 1728`, and its 1x1
    /// `conv8` (fans 192 and 192) likewise; biases stay zero.
    #[test]
    fn the_kernel_initializer_reaches_every_kernel() {
        let spec = ModelConfig::new(ModelName::AllConv, Shape::Image { h: 32, w: 32, c: 3 }, 10)
            .spec()
            .unwrap();
        let variance = |net: &Network, name: &str| -> f64 {
            let i = spec.index_of(name).unwrap();
            let Layer::Conv2d(block) = &net.layers[i] else {
                panic!("{name} is not a Conv2D")
            };
            let bias = values(block.conv.conv.bias.as_ref().unwrap().val());
            assert!(bias.iter().all(|&b| b == 0.0), "{name}.bias");
            mean_square(&values(block.conv.conv.weight.val()))
        };
        let device = Device::flex();
        let glorot = Network::new(&spec, &device).unwrap();
        let he = Network::with_initializer(&spec, &device, KernelInitializer::HeUniform).unwrap();
        for (name, fan) in [("conv2", 864.0), ("conv8", 192.0)] {
            let (g, h) = (variance(&glorot, name), variance(&he, name));
            assert!((g * fan - 1.0).abs() < 0.1, "{name}: glorot {g}");
            assert!((h * fan / 2.0 - 1.0).abs() < 0.1, "{name}: he {h}");
        }
    }

    #[test]
    fn lcnn_in_mixed_precision_gives_f32_logits_close_to_f32_and_keeps_f32_statistics() {
        let device = Device::flex().autodiff();
        device.seed(9);
        let input = Shape::Image { h: 28, w: 28, c: 1 };
        let spec = ModelConfig::new(ModelName::Lcnn, input, 10).spec().unwrap();
        let net = Network::new(&spec, &device).unwrap().valid();
        let x = Tensor::<4>::random(
            [4, 1, 28, 28],
            Distribution::Uniform(0.0, 1.0),
            &Device::flex(),
        );
        let want = net
            .forward_logits(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (precision, tol) in [(Precision::F16, 1e-2), (Precision::Bf16, 5e-2)] {
            let half = net.clone().with_precision(precision);
            // The compute type survives the module operations training uses.
            assert_eq!(
                half.clone().fork(&Device::flex()).compute,
                precision.compute()
            );
            let logits = half.forward_logits(x.clone());
            assert_eq!(logits.dtype(), DType::F32);
            let got = logits.into_data().try_to_vec::<f32>().unwrap();
            let err = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= tol * scale, "{precision}: {err} of {scale}");
        }
        // Training mode: BatchNorm's moving statistics stay f32 after a half-precision pass.
        let train = Network::new(&spec, &device)
            .unwrap()
            .with_precision(Precision::F16);
        assert_eq!(train.clone().valid().compute, Some(FloatDType::F16));
        let gemm = train.clone().with_conv(ConvAlgorithm::Gemm);
        assert_eq!(gemm.valid().fork(&Device::flex()).conv, ConvAlgorithm::Gemm);
        let _ = train.forward_logits(x.clone());
        for layer in &train.layers {
            if let Layer::BatchNorm(b) = layer {
                assert_eq!(b.bn.running_mean.value().dtype(), DType::F32);
            }
        }
    }
}
