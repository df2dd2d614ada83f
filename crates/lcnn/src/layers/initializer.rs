//! Keras' kernel initializers (`kernel_initializer=`): how the kernels of `Conv2D`,
//! `SeparableConv2D` and `Dense` are drawn before training. Biases start at zero.
//!
//! `glorot_uniform` is Keras' default ([Glorot & Bengio, 2010](https://proceedings.mlr.press/v9/glorot10a.html)):
//! it keeps activations' variance through linear layers, but through ReLUs it halves at each
//! one, so deep ReLU nets without BatchNorm (All-CNN-C) start with vanishing outputs and
//! gradients and can sit at chance for epochs. The `he_*` initializers double the variance
//! for ReLUs ([He et al., 2015](https://arxiv.org/abs/1502.01852)).

use std::fmt;
use std::str::FromStr;

use burn::nn::Initializer;
use serde::{Deserialize, Serialize};

/// A kernel initializer, by its Keras name. With `fan_in` and `fan_out` a kernel's inputs and
/// outputs per unit (a `k x k` convolution: `k * k * in` and `k * k * filters`):
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelInitializer {
    /// `U(-l, l)`, `l = sqrt(6 / (fan_in + fan_out))` (Keras' default).
    #[default]
    GlorotUniform,
    /// A normal of standard deviation `sqrt(2 / (fan_in + fan_out))`.
    GlorotNormal,
    /// `U(-l, l)`, `l = sqrt(6 / fan_in)`.
    HeUniform,
    /// A normal of standard deviation `sqrt(2 / fan_in)`.
    HeNormal,
}

impl KernelInitializer {
    /// All of them, for help texts.
    pub const ALL: [KernelInitializer; 4] = [
        KernelInitializer::GlorotUniform,
        KernelInitializer::GlorotNormal,
        KernelInitializer::HeUniform,
        KernelInitializer::HeNormal,
    ];

    /// The Keras name.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelInitializer::GlorotUniform => "glorot_uniform",
            KernelInitializer::GlorotNormal => "glorot_normal",
            KernelInitializer::HeUniform => "he_uniform",
            KernelInitializer::HeNormal => "he_normal",
        }
    }

    /// Burn's initializer that draws the same distribution (Burn passes a kernel's fans as
    /// Keras computes them). The normals have Keras' variance but are not truncated (Keras
    /// draws them from a normal cut at two standard deviations, rescaled to that variance).
    pub fn burn(self) -> Initializer {
        let relu_gain = std::f64::consts::SQRT_2;
        match self {
            KernelInitializer::GlorotUniform => Initializer::XavierUniform { gain: 1.0 },
            KernelInitializer::GlorotNormal => Initializer::XavierNormal { gain: 1.0 },
            KernelInitializer::HeUniform => Initializer::KaimingUniform {
                gain: relu_gain,
                fan_out_only: false,
            },
            KernelInitializer::HeNormal => Initializer::KaimingNormal {
                gain: relu_gain,
                fan_out_only: false,
            },
        }
    }
}

impl fmt::Display for KernelInitializer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KernelInitializer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::util::find_by_name(&Self::ALL, Self::as_str, s).ok_or_else(|| {
            format!(
                "unknown kernel initializer `{s}`: expected one of {}",
                crate::util::names(&Self::ALL, Self::as_str)
            )
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layers::{Conv2dConfig, DenseConfig};
    use burn::tensor::Device;

    /// A tensor's values.
    pub(crate) fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// The mean square of a kernel's values: its variance about a zero mean.
    pub(crate) fn mean_square(values: &[f32]) -> f64 {
        values.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / values.len() as f64
    }

    /// Mean and variance of a kernel's values.
    fn moments(values: &[f32]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var)
    }

    #[test]
    fn names_parse_as_keras_spells_them() {
        for init in KernelInitializer::ALL {
            assert_eq!(init.as_str().parse::<KernelInitializer>(), Ok(init));
        }
        let err = "kaiming".parse::<KernelInitializer>().unwrap_err();
        assert!(
            err.contains("kaiming") && err.contains("he_normal"),
            "{err}"
        );
    }

    /// Each initializer's variance is Keras': `2 / (fan_in + fan_out)` for Glorot, `2 / fan_in`
    /// for He, with a conv kernel's fans `k * k * in` and `k * k * filters`, and a dense
    /// kernel's `in` and `units` (a uniform on `[-l, l]` has variance `l^2 / 3`).
    #[test]
    fn kernels_have_keras_variance_and_zero_bias() {
        // Unseeded: the bounds hold on any draw (the sample variance of 18,432 values is
        // within 1-1.5% of the true one, one standard deviation).
        let device = Device::flex();
        // 3x3, 64 -> 32: fan_in 576, fan_out 288; 18,432 values.
        let (fan_in, fan_out) = (576.0, 288.0);
        for init in KernelInitializer::ALL {
            let conv = Conv2dConfig::new(64, 32, 3)
                .with_kernel_initializer(init)
                .init(&device);
            let w = values(conv.conv.weight.val());
            let (mean, var) = moments(&w);
            let want = match init {
                KernelInitializer::GlorotUniform | KernelInitializer::GlorotNormal => {
                    2.0 / (fan_in + fan_out)
                }
                KernelInitializer::HeUniform | KernelInitializer::HeNormal => 2.0 / fan_in,
            };
            assert!((var / want - 1.0).abs() < 0.05, "{init}: {var} vs {want}");
            assert!(
                mean.abs() < 3.0 * (want / w.len() as f64).sqrt(),
                "{init}: {mean}"
            );
            assert!(values(conv.conv.bias.unwrap().val())
                .iter()
                .all(|&b| b == 0.0));
        }
        let dense = DenseConfig::new(300, 100)
            .with_kernel_initializer(KernelInitializer::HeNormal)
            .init(&device);
        let w = values(dense.linear.weight.val());
        let (_, var) = moments(&w);
        assert!((var / (2.0 / 300.0) - 1.0).abs() < 0.05, "{var}");
    }
}
