//! Keras `Conv2D`: a 2-D convolution with `same`/`valid` padding, its kernel drawn by
//! `kernel_initializer` (Keras' `glorot_uniform` unless chosen) and a zero bias. The kernel is stored Burn/PyTorch style `[filters, in_channels, kh, kw]`
//! (Keras stores `[kh, kw, in, filters]`; the weight importers transpose).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d as BurnConv2d, Conv2dConfig as BurnConv2dConfig};
use burn::nn::Initializer;
use burn::tensor::{Device, FloatDType, Tensor};

use super::im2col::ConvAlgorithm;
use super::initializer::KernelInitializer;
use super::precision::conv2d_in;
use super::Padding;

/// Configuration of a [`Conv2d`] layer.
#[derive(Config, Debug)]
pub struct Conv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Keras `filters`: output channels.
    pub filters: usize,
    /// Keras `kernel_size` (square).
    pub kernel_size: usize,
    /// Keras `strides` (default 1).
    #[config(default = 1)]
    pub strides: usize,
    /// Keras `padding` (default `valid`).
    #[config(default = "Padding::Valid")]
    pub padding: Padding,
    /// Keras `use_bias` (default true).
    #[config(default = true)]
    pub use_bias: bool,
    /// Keras `kernel_initializer` (default `glorot_uniform`).
    #[config(default = "KernelInitializer::GlorotUniform")]
    pub kernel_initializer: KernelInitializer,
}

/// A 2-D convolution with Keras semantics.
#[derive(Module, Debug)]
pub struct Conv2d {
    /// The Burn convolution (its `weight` and `bias` are the layer's parameters).
    pub conv: BurnConv2d,
}

impl Conv2dConfig {
    /// Creates the layer: the kernel drawn by `kernel_initializer`, a zero bias.
    pub fn init(&self, device: &Device) -> Conv2d {
        let k = self.kernel_size;
        let mut conv = BurnConv2dConfig::new([self.in_channels, self.filters], [k, k])
            .with_stride([self.strides, self.strides])
            .with_padding(self.padding.to_burn())
            .with_bias(self.use_bias)
            .with_initializer(self.kernel_initializer.burn())
            .init(device);
        if self.use_bias {
            conv.bias = Some(Initializer::Zeros.init([self.filters], device));
        }
        Conv2d { conv }
    }
}

impl Conv2d {
    /// Applies the convolution.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`
    /// - output: `[N, filters, H', W']`, `H' = ceil(H / s)` (`same`) or `(H - k) / s + 1` (`valid`)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }

    /// [`Conv2d::forward`] computing in `dtype` (mixed precision, see [`super::precision`];
    /// `None` is f32 as stored) by `algorithm` (Burn's convolution or im2col and one matrix
    /// product, [`super::im2col`]).
    ///
    /// # Shapes
    /// As [`Conv2d::forward`]; the output is in `dtype`.
    pub fn forward_in(
        &self,
        x: Tensor<4>,
        dtype: Option<FloatDType>,
        algorithm: ConvAlgorithm,
    ) -> Tensor<4> {
        match (dtype, algorithm) {
            (None, ConvAlgorithm::Burn) => self.forward(x),
            _ => conv2d_in(&self.conv, x, dtype, algorithm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shape_same_and_valid() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([2, 3, 9, 9], &device);
        let same = Conv2dConfig::new(3, 8, 3)
            .with_padding(Padding::Same)
            .with_strides(2)
            .init(&device);
        assert_eq!(same.forward(x.clone()).dims(), [2, 8, 5, 5]);
        let valid = Conv2dConfig::new(3, 4, 3).init(&device);
        assert_eq!(valid.forward(x).dims(), [2, 4, 7, 7]);
    }

    #[test]
    fn gemm_in_every_precision_matches_burns_f32_convolution() {
        let device = Device::flex();
        device.seed(4);
        let conv = Conv2dConfig::new(3, 8, 3)
            .with_padding(Padding::Same)
            .with_strides(2)
            .init(&device);
        let x = Tensor::<4>::random(
            [2, 3, 9, 9],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let want = conv.forward(x.clone());
        let scale = want.clone().abs().max().into_scalar::<f32>();
        for (dtype, tol) in [(None, 1e-6), (Some(FloatDType::F16), 2e-3)] {
            let got = conv.forward_in(x.clone(), dtype, ConvAlgorithm::Gemm);
            assert_eq!(got.dims(), want.dims());
            let err = (got.cast(FloatDType::F32) - want.clone())
                .abs()
                .max()
                .into_scalar::<f32>()
                / scale;
            assert!(err < tol, "{dtype:?}: {err}");
        }
    }

    #[test]
    fn bias_starts_at_zero_and_kernel_is_glorot_bounded() {
        let device = Device::flex();
        let conv = Conv2dConfig::new(4, 6, 3).init(&device);
        let b = conv
            .conv
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(b.iter().all(|v| *v == 0.0));
        let limit = (6.0f32 / ((4 * 9 + 6 * 9) as f32)).sqrt();
        let w = conv
            .conv
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(w.iter().all(|v| v.abs() <= limit));
        assert!(w.iter().any(|v| v.abs() > limit / 4.0));
    }
}
