//! Keras padding modes for convolutions and pools.
//!
//! `same` is TensorFlow's: the output is `ceil(in / stride)` and the total padding
//! `max((out - 1) * stride + kernel - in, 0)` is split with the smaller half first (top/left),
//! which is asymmetric for stride 2 and even inputs. Burn's `PaddingConfig2d::Same` computes the
//! same split, which the tests below pin down.

use burn::nn::PaddingConfig2d;
use serde::{Deserialize, Serialize};

/// Keras `padding` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// No padding: the window must fit in the input.
    #[default]
    Valid,
    /// Pad so that the output size is `ceil(input / stride)`.
    Same,
}

impl Padding {
    /// The Burn padding configuration for this mode.
    pub fn to_burn(self) -> PaddingConfig2d {
        match self {
            Padding::Valid => PaddingConfig2d::Valid,
            Padding::Same => PaddingConfig2d::Same,
        }
    }

    /// The output length along one axis, or `None` when a `valid` window does not fit.
    pub fn output_len(self, input: usize, kernel: usize, stride: usize) -> Option<usize> {
        match self {
            Padding::Same => Some(input.div_ceil(stride)),
            Padding::Valid => input.checked_sub(kernel).map(|d| d / stride + 1),
        }
    }

    /// TensorFlow's `(before, after)` padding along one axis.
    pub fn pads(self, input: usize, kernel: usize, stride: usize) -> (usize, usize) {
        match self {
            Padding::Valid => (0, 0),
            Padding::Same => {
                let out = input.div_ceil(stride);
                let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(input);
                (total / 2, total - total / 2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_stride_two_is_asymmetric_like_tensorflow() {
        // 32 -> 16 with a 3x3 kernel: total pad 1, all of it after (TF), none before.
        assert_eq!(Padding::Same.pads(32, 3, 2), (0, 1));
        assert_eq!(Padding::Same.output_len(32, 3, 2), Some(16));
        // 5x5 stride 1 pads 2 and 2.
        assert_eq!(Padding::Same.pads(28, 5, 1), (2, 2));
        // Odd input, stride 2: 7 -> 4, total (4-1)*2+3-7 = 2 -> (1, 1).
        assert_eq!(Padding::Same.pads(7, 3, 2), (1, 1));
    }

    #[test]
    fn burn_same_padding_matches_tensorflow() {
        use burn::nn::conv::Conv2dConfig;
        use burn::tensor::{Device, Tensor};
        let device = Device::flex();
        // A conv whose single 3x3 kernel picks the top-left tap: with TF padding (0 before,
        // 1 after) output[0,0] = input[0,0]; with symmetric padding it would be 0.
        let mut conv = Conv2dConfig::new([1, 1], [3, 3])
            .with_stride([2, 2])
            .with_padding(Padding::Same.to_burn())
            .with_bias(false)
            .init(&device);
        let mut k = vec![0.0f32; 9];
        k[0] = 1.0;
        conv.weight = burn::module::Param::from_tensor(Tensor::<4>::from_data(
            burn::tensor::TensorData::new(k, [1, 1, 3, 3]),
            &device,
        ));
        let x: Vec<f32> = (0..16).map(|v| v as f32 + 1.0).collect();
        let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(x, [1, 1, 4, 4]), &device);
        let y = conv.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![1.0, 3.0, 9.0, 11.0]);
    }

    #[test]
    fn valid_rejects_windows_that_do_not_fit() {
        assert_eq!(Padding::Valid.output_len(2, 3, 1), None);
        assert_eq!(Padding::Valid.output_len(3, 3, 1), Some(1));
        assert_eq!(Padding::Valid.output_len(7, 2, 2), Some(3));
    }
}
