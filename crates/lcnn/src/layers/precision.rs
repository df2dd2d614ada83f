//! Mixed precision for the layers that multiply: Keras' `mixed_float16` / `mixed_bfloat16`
//! policies ([Micikevicius et al., "Mixed Precision Training", arXiv:1710.03740](https://arxiv.org/abs/1710.03740)).
//!
//! The parameters stay f32 (the master weights the optimizer updates). A convolution or a dense
//! layer computing in f16 or bf16 casts its input, kernel and bias to that type, so the
//! matrix work runs in half precision; the cast is part of the autodiff graph, whose backward
//! casts the gradient back to f32 for the parameter. BatchNorm normalizes and keeps its
//! statistics in f32 (see [`super::BatchNormalization::forward_in`]), and the network's logits
//! come back as f32 for the loss, as Keras' policies do.

use burn::nn::conv::Conv2d as BurnConv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::module::{conv2d, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, Tensor};

use serde::{Deserialize, Serialize};

use super::im2col::{conv2d_gemm, ConvAlgorithm};
use super::Padding;

/// `--precision`: the float type the convolutions and dense layers compute in. The weights, the
/// BatchNorm statistics and the loss are f32 whatever it is (Keras' mixed precision policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout (Keras' `float32` policy; the default).
    #[default]
    F32,
    /// f16 compute, f32 weights, dynamic loss scaling (Keras' `mixed_float16`).
    F16,
    /// bf16 compute, f32 weights, no loss scaling needed (Keras' `mixed_bfloat16`).
    Bf16,
}

impl Precision {
    /// The float type layers compute in, `None` for f32.
    pub fn compute(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::F16 => Some(FloatDType::F16),
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }

    /// Keras' name of the policy.
    pub fn keras_policy(self) -> &'static str {
        match self {
            Precision::F32 => "float32",
            Precision::F16 => "mixed_float16",
            Precision::Bf16 => "mixed_bfloat16",
        }
    }

    /// Whether training needs loss scaling (f16's range: small gradients underflow).
    pub fn scales_loss(self) -> bool {
        self == Precision::F16
    }

    /// Whether a run can compute in this precision: not on lcnn's native CPU engine (`native`,
    /// f32 only), and only on devices that have the type; an error that says which.
    pub fn check_run(self, native: bool, devices: &[&burn::tensor::Device]) -> Result<(), String> {
        if self == Precision::F32 {
            return Ok(());
        }
        if native {
            return Err(format!(
                "--precision {self}: lcnn's native CPU engine computes in f32; mixed precision \
                 runs on Burn's path (a GPU device, or --engine burn on the CPU, where half \
                 precision is emulated and slower than f32)"
            ));
        }
        devices.iter().try_for_each(|d| self.check_device(d))
    }

    /// An error naming the device and the type when `device` cannot compute in it.
    pub fn check_device(self, device: &burn::tensor::Device) -> Result<(), String> {
        match self.compute() {
            Some(dtype) if !device.supports_dtype(dtype) => Err(format!(
                "--precision {self}: {device:?} has no {dtype:?} arithmetic; use {}",
                if self == Precision::F16 {
                    "bf16 or f32"
                } else {
                    "f16 or f32"
                }
            )),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    /// `f32`, `f16`, `bf16`, or Keras' policy names (`float32`, `mixed_float16`,
    /// `mixed_bfloat16`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "mixed_float16" => Ok(Precision::F16),
            "bf16" | "mixed_bfloat16" => Ok(Precision::Bf16),
            other => Err(format!(
                "unknown precision `{other}`: expected f32, f16 or bf16 (or Keras' float32, \
                 mixed_float16, mixed_bfloat16)"
            )),
        }
    }
}

/// `t` as `dtype`; `t` itself when it already is (no cast node in the graph).
pub fn cast<const D: usize>(t: Tensor<D>, dtype: FloatDType) -> Tensor<D> {
    if t.dtype() == DType::from(dtype) {
        t
    } else {
        t.cast(dtype)
    }
}

/// Burn's `Conv2d::forward` with the input, kernel and bias cast to `dtype` first (`None`: as
/// stored, f32), convolving by `algorithm` (Burn's `conv2d` or [`conv2d_gemm`]); the output is
/// in `dtype`.
///
/// # Shapes
/// - input: `[N, C_in, H, W]`
/// - output: `[N, C_out, H', W']` (as `Conv2d::forward`)
pub fn conv2d_in(
    conv: &BurnConv2d,
    x: Tensor<4>,
    dtype: Option<FloatDType>,
    algorithm: ConvAlgorithm,
) -> Tensor<4> {
    let options = conv_options(conv, &x);
    let (w, b) = (conv.weight.val(), conv.bias.as_ref().map(|b| b.val()));
    let (x, w, b) = match dtype {
        Some(d) => (cast(x, d), cast(w, d), b.map(|b| cast(b, d))),
        None => (x, w, b),
    };
    match algorithm {
        ConvAlgorithm::Burn => conv2d(x, w, b, options),
        ConvAlgorithm::Gemm => conv2d_gemm(x, w, b, options),
    }
}

/// The options Burn's `Conv2d` module convolves `x` with (its `same` padding resolved for
/// `x`'s height and width, TensorFlow's asymmetric split).
fn conv_options(conv: &BurnConv2d, x: &Tensor<4>) -> ConvOptions<2> {
    let [_, _, h, w] = x.dims();
    let (k, s) = (conv.kernel_size, conv.stride);
    let pads = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [
            Padding::Same.pads(h, k[0], s[0]),
            Padding::Same.pads(w, k[1], s[1]),
        ],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
    };
    ConvOptions::new_with_padding(s, pads, conv.dilation, conv.groups)
}

/// Burn's `Linear::forward` with the input, weight and bias cast to `dtype` first; the output
/// is in `dtype`.
///
/// # Shapes
/// - input: `[N, in]`
/// - output: `[N, out]`
pub fn linear_in(layer: &Linear, x: Tensor<2>, dtype: FloatDType) -> Tensor<2> {
    linear(
        cast(x, dtype),
        cast(layer.weight.val(), dtype),
        layer.bias.as_ref().map(|b| cast(b.val(), dtype)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Conv2dConfig, DenseConfig};
    use burn::tensor::{Device, Distribution};

    fn max_rel(a: Tensor<4>, b: Tensor<4>) -> f32 {
        let a = a
            .cast(FloatDType::F32)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b = b.into_data().try_to_vec::<f32>().unwrap();
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    #[test]
    fn half_convolution_matches_f32_to_half_precision_and_keeps_f32_gradients() {
        let device = Device::flex().autodiff();
        device.seed(3);
        // TensorFlow's asymmetric `same` padding with a stride: the padding path is Burn's.
        let conv = Conv2dConfig::new(3, 8, 3)
            .with_padding(Padding::Same)
            .with_strides(2)
            .init(&device);
        let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
        // The device generator is shared with tests in other threads, so the draws vary from
        // run to run: over 2,000 draws f16's error was at most 3.3e-3 (f16 rounds at 4.9e-4).
        for (dtype, tol) in [(FloatDType::F16, 4e-3), (FloatDType::BF16, 1.5e-2)] {
            let full = conv.forward(x.clone());
            let half = conv2d_in(&conv.conv, x.clone(), Some(dtype), ConvAlgorithm::Burn);
            assert_eq!(half.dtype(), DType::from(dtype));
            assert_eq!(half.dims(), full.dims());
            let err = max_rel(half.clone(), full.clone());
            assert!(err < tol, "{dtype:?}: {err}");
            // The gradient reaches the f32 kernel as f32 and agrees with the f32 one.
            let g_half = conv
                .conv
                .weight
                .grad(&half.cast(FloatDType::F32).sum().backward())
                .unwrap();
            let g_full = conv.conv.weight.grad(&full.sum().backward()).unwrap();
            assert_eq!(g_half.dtype(), DType::F32);
            let err = max_rel(g_half, g_full);
            assert!(err < tol, "{dtype:?} kernel gradient: {err}");
        }
    }

    #[test]
    fn precision_parses_our_names_and_keras_policies() {
        for (s, p) in [
            ("f32", Precision::F32),
            ("mixed_float16", Precision::F16),
            ("BF16", Precision::Bf16),
        ] {
            assert_eq!(s.parse::<Precision>().unwrap(), p);
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        let err = "f8".parse::<Precision>().unwrap_err();
        assert!(err.contains("`f8`") && err.contains("f16"), "{err}");
        assert!(Precision::F16.scales_loss() && !Precision::Bf16.scales_loss());
        assert_eq!(Precision::F32.compute(), None);
    }

    #[test]
    fn half_dense_matches_f32() {
        let device = Device::flex();
        device.seed(5);
        let dense = DenseConfig::new(16, 4).init(&device);
        let x = Tensor::<2>::random([3, 16], Distribution::Uniform(-1.0, 1.0), &device);
        let full = dense.forward(x.clone()).reshape([1, 1, 3, 4]);
        let half = linear_in(&dense.linear, x, FloatDType::F16).reshape([1, 1, 3, 4]);
        assert!(max_rel(half, full) < 2e-3);
    }
}
