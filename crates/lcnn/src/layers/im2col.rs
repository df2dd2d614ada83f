//! A 2-D convolution as im2col and one matrix product, written in Burn's tensor operations
//! ([Chellapilla et al., "High Performance Convolutional Neural Networks for Document
//! Processing"](https://inria.hal.science/inria-00112631)).
//!
//! The input's `kh * kw` shifted (and strided) windows are stacked along the channels into the
//! column matrix `[N*H'*W', kh*kw*C]`, which multiplies the kernel `[kh*kw*C, F]` in one GEMM.
//! The work is laid out channels-last (`[N, H, W, C]`), as Burn's own convolution lays it out,
//! so the columns are a plain matrix and the product needs no batching; the output is handed
//! back as `[N, F, H', W']` through a permutation (a view of `[N, H', W', F]`), which the next
//! convolution's own permutation undoes.
//!
//! Why: on wgpu, Burn 0.22 runs an f32 3x3 forward convolution through its direct kernel (the
//! implicit-GEMM kernels need cooperative matrices, which f32 and WGSL do not have), while its
//! matmul is tiled. Only the forward is replaced: the product runs on detached inputs and
//! [`super::conv_grads`] attaches Burn's own convolution gradients (on wgpu its autotuned
//! col2im / im2col and matmul kernels), so the backward pass is exactly the one Burn's
//! convolution has, not the adjoint of the column matrix's slices (an input-sized tensor
//! written and added back per tap). `--conv gemm` selects it ([`ConvAlgorithm`]); results
//! equal Burn's convolution to rounding (tests below).

use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Slice, Tensor};
use serde::{Deserialize, Serialize};

use super::conv_grads::with_conv2d_grads;

/// `--conv`: how the convolutions (groups of one, no dilation) are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvAlgorithm {
    /// Burn's convolution (its autotuned kernels on a GPU; the default).
    #[default]
    Burn,
    /// im2col and one matrix product forward, Burn's convolution gradients backward
    /// ([`conv2d_gemm`]).
    Gemm,
}

impl ConvAlgorithm {
    /// Whether a run can use it: Burn's path only (lcnn's native CPU engine has its own
    /// convolutions); an error that says so.
    pub fn check_run(self, native: bool) -> Result<(), String> {
        match (self, native) {
            (ConvAlgorithm::Gemm, true) => Err(
                "--conv gemm chooses how Burn's path convolves (a GPU device, or --engine burn \
                 on the CPU); lcnn's native CPU engine has its own convolutions"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for ConvAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConvAlgorithm::Burn => "burn",
            ConvAlgorithm::Gemm => "gemm",
        })
    }
}

impl std::str::FromStr for ConvAlgorithm {
    type Err = String;

    /// `burn` or `gemm`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "burn" => Ok(ConvAlgorithm::Burn),
            "gemm" | "im2col" => Ok(ConvAlgorithm::Gemm),
            other => Err(format!(
                "unknown convolution algorithm `{other}`: expected burn (Burn's kernels) or \
                 gemm (im2col and one matrix product)"
            )),
        }
    }
}

/// `conv2d(x, weight, bias, options)` computed as im2col and one matrix product, differentiated
/// by Burn's convolution gradients; falls back to Burn's `conv2d` for grouped or dilated
/// convolutions.
///
/// # Shapes
/// - x: `[N, C, H, W]`
/// - weight: `[F, C, kh, kw]`, bias: `[F]`
/// - output: `[N, F, H', W']`, `H' = (H + pad_top + pad_bottom - kh) / stride + 1`
pub fn conv2d_gemm(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if options.groups != 1 || options.dilation != [1, 1] {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    // The product runs on detached copies; Burn's convolution gradients are attached after.
    let y = columns_times_kernel(x.clone().detach(), weight.clone().detach(), &options);
    let y = with_conv2d_grads(y, x, weight, options);
    match bias {
        Some(b) => {
            let f = b.dims()[0];
            y + b.reshape([1, f, 1, 1])
        }
        None => y,
    }
}

/// The forward product of [`conv2d_gemm`], without a bias.
fn columns_times_kernel(x: Tensor<4>, weight: Tensor<4>, options: &ConvOptions<2>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let [f, _, kh, kw] = weight.dims();
    let [sh, sw] = options.stride;
    let [(top, bottom), (left, right)] = options.padding;
    let ho = (h + top + bottom - kh) / sh + 1;
    let wo = (w + left + right - kw) / sw + 1;
    // Channels-last, the layout Burn's own convolution computes in and hands on (its output is
    // an `[N, F, H', W']` view of `[N, H', W', F]` memory): the view is free when `x` came from
    // a convolution, and Burn's gradient kernels then read the layout they expect.
    let x = x.permute([0, 2, 3, 1]);
    let x = if top + bottom + left + right > 0 {
        x.pad(
            [(top, bottom), (left, right), (0, 0)],
            PadMode::Constant(0.0),
        )
    } else {
        x
    };
    // One window per tap, in the kernel's (row, column) order, each `[N, H', W', C]`.
    let window = |start: usize, len: usize, step: usize| {
        let end = start + (len - 1) * step + 1;
        Slice::new(start as isize, Some(end as isize), step as isize)
    };
    // A 1x1 kernel at stride 1 has one window, the (padded) input itself.
    let columns = if (kh, kw, sh, sw) == (1, 1, 1, 1) {
        x
    } else {
        let taps = (0..kh)
            .flat_map(|i| (0..kw).map(move |j| (i, j)))
            .map(|(i, j)| {
                x.clone().slice([
                    Slice::full(),
                    window(i, ho, sh),
                    window(j, wo, sw),
                    Slice::full(),
                ])
            })
            .collect();
        Tensor::cat(taps, 3)
    };
    let columns = columns.reshape([n * ho * wo, kh * kw * c]);
    let kernel = weight.permute([2, 3, 1, 0]).reshape([kh * kw * c, f]);
    let y = columns.matmul(kernel);
    y.reshape([n, ho, wo, f]).permute([0, 3, 1, 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::{Device, Distribution};

    /// The largest difference between `a` and `b`, relative to `b`'s largest magnitude.
    fn max_rel<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let scale = b.clone().abs().max().into_scalar::<f32>();
        (a - b).abs().max().into_scalar::<f32>() / scale
    }

    #[test]
    fn algorithm_parses_and_is_refused_by_the_native_engine() {
        assert_eq!(
            "gemm".parse::<ConvAlgorithm>().unwrap(),
            ConvAlgorithm::Gemm
        );
        assert_eq!(
            " Burn".parse::<ConvAlgorithm>().unwrap(),
            ConvAlgorithm::Burn
        );
        let err = "winograd".parse::<ConvAlgorithm>().unwrap_err();
        assert!(err.contains("`winograd`") && err.contains("gemm"), "{err}");
        assert!(ConvAlgorithm::Gemm.check_run(true).is_err());
        assert!(ConvAlgorithm::Gemm.check_run(false).is_ok());
        assert!(ConvAlgorithm::Burn.check_run(true).is_ok());
    }

    /// Forward and gradients (input, kernel, bias) against Burn's convolution for the zoo's
    /// shapes: 3x3 same, 3x3 stride-2 same (TensorFlow's asymmetric padding), 3x3 valid,
    /// 5x5 same, 1x1, 1x1 padded, 1x1 stride 2.
    #[test]
    fn matches_burns_convolution_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(11);
        // (kernel, stride, padding before, padding after) on both axes.
        let cases = [
            (3, 1, 1, 1),
            (3, 2, 0, 1),
            (3, 1, 0, 0),
            (5, 1, 2, 2),
            (1, 1, 0, 0),
            (1, 1, 1, 0),
            (1, 2, 0, 0),
        ];
        for (k, s, before, after) in cases {
            let padding = [(before, after); 2];
            let options = ConvOptions::new_with_padding([s, s], padding, [1, 1], 1);
            let x = Tensor::<4>::random([3, 5, 9, 8], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<4>::random([7, 5, k, k], Distribution::Normal(0.0, 0.3), &device);
            let b = Tensor::<1>::random([7], Distribution::Normal(0.0, 1.0), &device);
            let reference = conv2d(x.clone(), w.clone(), None, options.clone());
            // A loss whose gradient differs per output element.
            let probe = Tensor::<4>::random(reference.dims(), Distribution::Default, &device);
            let run = |gemm: bool| {
                let (x, w, b) = (
                    x.clone().require_grad(),
                    w.clone().require_grad(),
                    b.clone().require_grad(),
                );
                let (xs, ws, bs) = (x.clone(), w.clone(), Some(b.clone()));
                let y = match gemm {
                    true => conv2d_gemm(xs, ws, bs, options.clone()),
                    false => conv2d(xs, ws, bs, options.clone()),
                };
                let grads = (y.clone() * probe.clone()).sum().backward();
                let (gx, gw, gb) = (
                    x.grad(&grads).unwrap(),
                    w.grad(&grads).unwrap(),
                    b.grad(&grads).unwrap(),
                );
                (y, gx, gw, gb)
            };
            let (y0, gx0, gw0, gb0) = run(false);
            let (y1, gx1, gw1, gb1) = run(true);
            assert_eq!(y1.dims(), y0.dims(), "k {k} s {s}");
            let errs = [
                max_rel(y1, y0),
                max_rel(gx1, gx0),
                max_rel(gw1, gw0),
                max_rel(gb1, gb0),
            ];
            assert!(errs.iter().all(|e| *e < 1e-5), "k {k} s {s}: {errs:?}");
        }
    }
}
