//! Keras `SeparableConv2D`: a depthwise `k x k` convolution (one filter per input channel,
//! depth multiplier 1, no bias) followed by a pointwise `1 x 1` convolution with bias
//! ([Chollet, "Xception", arXiv:1610.02357](https://arxiv.org/abs/1610.02357)).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d as BurnConv2d, Conv2dConfig as BurnConv2dConfig};
use burn::nn::Initializer;
use burn::tensor::{Device, FloatDType, Tensor};

use super::im2col::ConvAlgorithm;
use super::initializer::KernelInitializer;
use super::precision::conv2d_in;
use super::Padding;

/// Configuration of a [`SeparableConv2d`] layer.
#[derive(Config, Debug)]
pub struct SeparableConv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Keras `filters`: output channels of the pointwise convolution.
    pub filters: usize,
    /// Keras `kernel_size` of the depthwise convolution (square).
    pub kernel_size: usize,
    /// Keras `strides` of the depthwise convolution (default 1).
    #[config(default = 1)]
    pub strides: usize,
    /// Keras `padding` (default `valid`).
    #[config(default = "Padding::Valid")]
    pub padding: Padding,
    /// Keras `depthwise_initializer` and `pointwise_initializer` (default `glorot_uniform`).
    #[config(default = "KernelInitializer::GlorotUniform")]
    pub kernel_initializer: KernelInitializer,
}

/// Depthwise then pointwise convolution. Parameters: `in * k * k` (depthwise) plus
/// `in * filters + filters` (pointwise).
#[derive(Module, Debug)]
pub struct SeparableConv2d {
    /// Depthwise kernel `[in, 1, k, k]`, no bias.
    pub depthwise: BurnConv2d,
    /// Pointwise kernel `[filters, in, 1, 1]` with bias.
    pub pointwise: BurnConv2d,
}

impl SeparableConv2dConfig {
    /// Creates the layer: both kernels drawn by `kernel_initializer`, a zero bias.
    pub fn init(&self, device: &Device) -> SeparableConv2d {
        let (c, k) = (self.in_channels, self.kernel_size);
        let mut depthwise = BurnConv2dConfig::new([c, c], [k, k])
            .with_groups(c)
            .with_stride([self.strides, self.strides])
            .with_padding(self.padding.to_burn())
            .with_bias(false)
            .init(device);
        // Keras computes the depthwise kernel's fans from its shape `[k, k, in, 1]`:
        // `k * k * in` and `k * k` (Burn's grouped convolution would give `k * k` and `k * k`,
        // a Glorot kernel 4x as wide on 32 channels).
        depthwise.weight = self.kernel_initializer.burn().init_with(
            [c, 1, k, k],
            Some(k * k * c),
            Some(k * k),
            device,
        );
        let mut pointwise = BurnConv2dConfig::new([c, self.filters], [1, 1])
            .with_initializer(self.kernel_initializer.burn())
            .init(device);
        pointwise.bias = Some(Initializer::Zeros.init([self.filters], device));
        SeparableConv2d {
            depthwise,
            pointwise,
        }
    }
}

impl SeparableConv2d {
    /// Applies the depthwise then the pointwise convolution.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`
    /// - output: `[N, filters, H', W']` (as a `Conv2D` with the same kernel, strides, padding)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pointwise.forward(self.depthwise.forward(x))
    }

    /// [`SeparableConv2d::forward`] computing in `dtype` (mixed precision, see
    /// [`super::precision`]); `None` is f32 as stored. Always by Burn's convolutions (`--conv
    /// gemm` leaves it alone): the depthwise half is grouped, and Burn already runs a 1x1
    /// pointwise convolution as one matmul.
    ///
    /// # Shapes
    /// As [`SeparableConv2d::forward`]; the output is in `dtype`.
    pub fn forward_in(&self, x: Tensor<4>, dtype: Option<FloatDType>) -> Tensor<4> {
        let burn = ConvAlgorithm::Burn;
        match dtype {
            Some(_) => {
                let depthwise = conv2d_in(&self.depthwise, x, dtype, burn);
                conv2d_in(&self.pointwise, depthwise, dtype, burn)
            }
            None => self.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::initializer::tests::{mean_square, values};
    use burn::module::Param;
    use burn::tensor::TensorData;

    #[test]
    fn param_count_matches_keras() {
        let device = Device::flex();
        let layer = SeparableConv2dConfig::new(32, 64, 3).init(&device);
        // Keras: 32*3*3 + 32*64 + 64 = 2400.
        assert_eq!(layer.num_params(), 2400);
    }

    /// Both kernels have Keras' Glorot variance `2 / (fan_in + fan_out)`: the depthwise
    /// kernel `[3, 3, 256, 1]` fans `2,304` and `9`, the pointwise `[1, 1, 256, 64]` `256` and
    /// `64`. Unseeded: 2,304 and 16,384 uniform draws give sample variances within 1.9% and
    /// 0.7% (one standard deviation), the bounds are five.
    #[test]
    fn kernels_are_drawn_with_keras_fans() {
        let layer = SeparableConv2dConfig::new(256, 64, 3).init(&Device::flex());
        let depthwise = mean_square(&values(layer.depthwise.weight.val()));
        let pointwise = mean_square(&values(layer.pointwise.weight.val()));
        assert!((depthwise * 2313.0 / 2.0 - 1.0).abs() < 0.1, "{depthwise}");
        assert!((pointwise * 320.0 / 2.0 - 1.0).abs() < 0.04, "{pointwise}");
    }

    #[test]
    fn depthwise_is_per_channel_then_pointwise_mixes() {
        let device = Device::flex();
        let mut layer = SeparableConv2dConfig::new(2, 1, 1).init(&device);
        // Depthwise 1x1: scale channel 0 by 2, channel 1 by 3; pointwise: sum + bias 0.5.
        layer.depthwise.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![2.0f32, 3.0], [2, 1, 1, 1]),
            &device,
        ));
        layer.pointwise.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32, 1.0], [1, 2, 1, 1]),
            &device,
        ));
        layer.pointwise.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.5f32], [1]),
            &device,
        )));
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 10.0], [1, 2, 1, 1]), &device);
        let y = layer.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![2.0 + 30.0 + 0.5]);
    }
}
