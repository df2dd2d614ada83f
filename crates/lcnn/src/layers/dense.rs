//! Keras `Dense`: `y = x W + b` with a kernel `[in, units]` (the same layout as Keras'
//! kernel) drawn by `kernel_initializer` (`glorot_uniform` unless chosen), and a zero bias.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, FloatDType, Tensor};

use super::initializer::KernelInitializer;
use super::precision::linear_in;

/// Configuration of a [`Dense`] layer.
#[derive(Config, Debug)]
pub struct DenseConfig {
    /// Input features.
    pub in_features: usize,
    /// Keras `units`: output features.
    pub units: usize,
    /// Keras `use_bias` (default true).
    #[config(default = true)]
    pub use_bias: bool,
    /// Keras `kernel_initializer` (default `glorot_uniform`).
    #[config(default = "KernelInitializer::GlorotUniform")]
    pub kernel_initializer: KernelInitializer,
}

/// A fully connected layer.
#[derive(Module, Debug)]
pub struct Dense {
    /// The Burn linear layer; `weight` is `[in, units]`.
    pub linear: Linear,
}

impl DenseConfig {
    /// Creates the layer: the kernel drawn by `kernel_initializer`, a zero bias.
    pub fn init(&self, device: &Device) -> Dense {
        let mut linear = LinearConfig::new(self.in_features, self.units)
            .with_bias(self.use_bias)
            .with_initializer(self.kernel_initializer.burn())
            .init(device);
        if self.use_bias {
            linear.bias = Some(Initializer::Zeros.init([self.units], device));
        }
        Dense { linear }
    }
}

impl Dense {
    /// # Shapes
    /// - input: `[N, in_features]`
    /// - output: `[N, units]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear.forward(x)
    }

    /// [`Dense::forward`] computing in `dtype` (mixed precision, see [`super::precision`]);
    /// `None` is f32 as stored.
    ///
    /// # Shapes
    /// As [`Dense::forward`]; the output is in `dtype`.
    pub fn forward_in(&self, x: Tensor<2>, dtype: Option<FloatDType>) -> Tensor<2> {
        match dtype {
            Some(dtype) => linear_in(&self.linear, x, dtype),
            None => self.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_params() {
        let device = Device::flex();
        let d = DenseConfig::new(32, 160).init(&device);
        assert_eq!(d.num_params(), 32 * 160 + 160);
        assert_eq!(d.forward(Tensor::zeros([5, 32], &device)).dims(), [5, 160]);
    }
}
