//! Keras `BatchNormalization` ([Ioffe & Szegedy 2015, arXiv:1502.03167](https://arxiv.org/abs/1502.03167))
//! over the channel axis, with Keras' defaults: momentum 0.99 (moving = moving * 0.99 +
//! batch * 0.01) and epsilon 1e-3. Keras counts gamma and beta as trainable and the moving mean
//! and variance as non-trainable parameters.
//!
//! In training mode (an autodiff device and an unfrozen layer) it normalizes with the batch
//! statistics and updates the moving ones; otherwise (inference, or frozen for fine-tuning) it
//! uses the moving statistics and updates nothing.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, FloatDType};

use super::precision::cast;
use super::Features;

/// Configuration of a [`BatchNormalization`] layer.
#[derive(Config, Debug)]
pub struct BatchNormalizationConfig {
    /// Channels (axis 1).
    pub num_features: usize,
    /// Keras `momentum` of the moving statistics (default 0.99).
    #[config(default = 0.99)]
    pub momentum: f64,
    /// Keras `epsilon` (default 1e-3).
    #[config(default = 1e-3)]
    pub epsilon: f64,
}

/// Batch normalization with Keras semantics.
#[derive(Module, Debug)]
pub struct BatchNormalization {
    /// Burn's batch norm: `gamma`, `beta`, `running_mean`, `running_var`.
    pub bn: BatchNorm,
}

impl BatchNormalizationConfig {
    /// Creates the layer: gamma 1, beta 0, moving mean 0, moving variance 1.
    pub fn init(&self, device: &Device) -> BatchNormalization {
        // Burn's momentum weighs the new batch statistic; Keras' weighs the old moving value.
        let bn = BatchNormConfig::new(self.num_features)
            .with_momentum(1.0 - self.momentum)
            .with_epsilon(self.epsilon)
            .init(device);
        BatchNormalization { bn }
    }
}

impl BatchNormalization {
    /// # Shapes
    /// - input and output: `[N, C, H, W]` or `[N, C]`
    pub fn forward(&self, x: Features) -> Features {
        x.map(|t| self.bn.forward(t), |t| self.bn.forward(t))
    }

    /// [`BatchNormalization::forward`] inside a network computing in `dtype` (mixed
    /// precision): the input is cast to f32, normalized with f32 statistics (the moving ones
    /// too), and cast back to `dtype`, as Keras' `mixed_float16` policy does.
    ///
    /// # Shapes
    /// As [`BatchNormalization::forward`]; the output is in `dtype`.
    pub fn forward_in(&self, x: Features, dtype: Option<FloatDType>) -> Features {
        match dtype {
            Some(dtype) => {
                let f32 = FloatDType::F32;
                self.forward(x.map(|t| cast(t, f32), |t| cast(t, f32)))
                    .map(|t| cast(t, dtype), |t| cast(t, dtype))
            }
            None => self.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Tensor, TensorData};

    #[test]
    fn inference_uses_moving_statistics_with_keras_epsilon() {
        let device = Device::flex();
        let bn = BatchNormalizationConfig::new(2).init(&device);
        let x = Tensor::<2>::from_data(TensorData::from([[1.0f32, -2.0]]), &device);
        let y = bn
            .forward(Features::Flat(x))
            .flat()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let s = 1.0 / (1.0f32 + 1e-3).sqrt();
        assert!((y[0] - s).abs() < 1e-6 && (y[1] + 2.0 * s).abs() < 1e-6);
    }

    #[test]
    fn training_updates_moving_mean_with_keras_momentum() {
        let device = Device::flex().autodiff();
        let bn = BatchNormalizationConfig::new(1).init(&device);
        let x = Tensor::<2>::from_data(TensorData::from([[1.0f32], [3.0]]), &device);
        let _ = bn.forward(Features::Flat(x));
        let mean = bn
            .bn
            .running_mean
            .value_sync()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // moving = 0 * 0.99 + 2 * 0.01
        assert!((mean[0] - 0.02).abs() < 1e-6, "{mean:?}");
    }
}
