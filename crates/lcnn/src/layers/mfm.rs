//! Max-Feature-Map (MFM), the competitive activation of LCNN
//! ([Wu et al. 2015, arXiv:1511.02683](https://arxiv.org/abs/1511.02683)).
//!
//! MFM splits the channel axis into two halves and keeps their element-wise maximum:
//! `out[:, k] = max(x[:, k], x[:, k + C/2])`, the first half being channels `0..C/2`. The seeds'
//! Keras `Maxout(C/2)` (TensorFlow Addons 0.7 and later) computes exactly this; older copies of
//! it pair neighbours `(2k, 2k + 1)` instead, which the Keras importer maps onto this layer by
//! reordering the filters before it (`lcnn import keras --maxout pairs`). A conv with 64 filters followed by MFM
//! therefore outputs 32 channels.

use burn::module::Module;
use burn::tensor::Tensor;

use super::Features;

/// Max-Feature-Map over axis 1 (channels for `[N, C, H, W]`, features for `[N, C]`).
///
/// # Shapes
/// - input: `[N, C, ...]` with `C` even
/// - output: `[N, C/2, ...]`
///
/// # Panics
/// If `C` is odd; model specs check this before building the network.
pub fn max_feature_map<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let c = x.dims()[1];
    assert!(
        c.is_multiple_of(2),
        "Max-Feature-Map needs an even channel count, got {c}"
    );
    let half = c / 2;
    let first = x.clone().narrow(1, 0, half);
    let second = x.narrow(1, half, half);
    first.max_pair(second)
}

/// The Max-Feature-Map layer (no parameters). Keras name: `Maxout` in the seeds.
#[derive(Module, Debug, Default)]
pub struct MaxFeatureMap;

impl MaxFeatureMap {
    /// Applies [`max_feature_map`] to an image or a flat batch.
    ///
    /// # Shapes
    /// - input: `[N, C, H, W]` or `[N, C]`
    /// - output: `[N, C/2, H, W]` or `[N, C/2]`
    pub fn forward(&self, x: Features) -> Features {
        x.map(max_feature_map, max_feature_map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn mfm_flat_hand_computed() {
        let device = Device::flex();
        // Two samples, four features: halves are [0,1] and [2,3].
        let x = Tensor::<2>::from_data(
            TensorData::from([[1.0f32, -2.0, 0.5, 3.0], [-1.0, 7.0, -4.0, 6.5]]),
            &device,
        );
        let y = max_feature_map(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![1.0, 3.0, -1.0, 7.0]);
    }

    #[test]
    fn mfm_image_takes_max_of_channel_halves() {
        let device = Device::flex();
        // [1, 4, 1, 2]: channels 0,1 compete with channels 2,3.
        let x = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 5.0, -3.0, 0.0, 2.0, 4.0, -1.0, -7.0],
                [1, 4, 1, 2],
            ),
            &device,
        );
        let y = max_feature_map(x);
        assert_eq!(y.dims(), [1, 2, 1, 2]);
        assert_eq!(
            y.into_data().try_to_vec::<f32>().unwrap(),
            vec![2.0, 5.0, -1.0, 0.0]
        );
    }

    #[test]
    fn mfm_gradient_flows_to_the_winner_only() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::from_data(TensorData::from([[1.0f32, 4.0, 3.0, 2.0]]), &device)
            .require_grad();
        let y = max_feature_map(x.clone()).sum();
        let grads = y.backward();
        let g = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(g, vec![0.0, 1.0, 1.0, 0.0]);
    }
}
