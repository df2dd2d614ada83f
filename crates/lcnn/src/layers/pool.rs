//! Keras `MaxPooling2D` (pool size, strides defaulting to the pool size, `valid` or `same`
//! padding) and `GlobalAveragePooling2D` (mean over height and width; used by All-CNN-C,
//! [Springenberg et al. 2014, arXiv:1412.6806](https://arxiv.org/abs/1412.6806)).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::Tensor;

use super::Padding;

/// Configuration of a [`MaxPooling2d`] layer.
#[derive(Config, Debug)]
pub struct MaxPooling2dConfig {
    /// Keras `pool_size` (square).
    pub pool_size: usize,
    /// Keras `strides` (default: the pool size).
    pub strides: Option<usize>,
    /// Keras `padding` (default `valid`: floor).
    #[config(default = "Padding::Valid")]
    pub padding: Padding,
}

/// Max pooling with Keras semantics (TF `same` padding never selects the padding).
#[derive(Module, Debug)]
pub struct MaxPooling2d {
    /// Window size.
    pub pool_size: usize,
    /// Step.
    pub strides: usize,
    /// `true` for `same` padding.
    pub same: bool,
}

impl MaxPooling2dConfig {
    /// Creates the layer (no parameters).
    pub fn init(&self) -> MaxPooling2d {
        MaxPooling2d {
            pool_size: self.pool_size,
            strides: self.strides.unwrap_or(self.pool_size),
            same: self.padding == Padding::Same,
        }
    }
}

impl MaxPooling2d {
    /// # Shapes
    /// - input: `[N, C, H, W]`
    /// - output: `[N, C, H', W']`, `H' = floor((H - p) / s) + 1` (`valid`) or `ceil(H / s)` (`same`)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let (k, s) = (self.pool_size, self.strides);
        let padding = if self.same {
            Padding::Same
        } else {
            Padding::Valid
        };
        let (top, bottom) = padding.pads(h, k, s);
        let (left, right) = padding.pads(w, k, s);
        // Burn pads max pooling with -inf, so padding never wins (TensorFlow's `same`).
        let options = MaxPoolOptions::new([k, k])
            .with_stride([s, s])
            .with_padding_pairs([(top, bottom), (left, right)]);
        max_pool2d(x, options)
    }
}

/// Keras `GlobalAveragePooling2D`: `[N, C, H, W] -> [N, C]`.
#[derive(Module, Debug, Default)]
pub struct GlobalAveragePooling2d;

impl GlobalAveragePooling2d {
    /// # Shapes
    /// - input: `[N, C, H, W]`
    /// - output: `[N, C]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [n, c, _, _] = x.dims();
        x.flatten::<3>(2, 3).mean_dim(2).reshape([n, c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn max_pool_valid_floors_and_same_ceils() {
        let device = Device::flex();
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [1, 1, 3, 3]), &device);
        let valid = MaxPooling2dConfig::new(2).init().forward(x.clone());
        assert_eq!(valid.into_data().try_to_vec::<f32>().unwrap(), vec![4.0]);
        let same = MaxPooling2dConfig::new(2)
            .with_padding(Padding::Same)
            .init()
            .forward(x);
        assert_eq!(
            same.into_data().try_to_vec::<f32>().unwrap(),
            vec![4.0, 5.0, 7.0, 8.0]
        );
    }

    #[test]
    fn same_padding_never_wins_for_negative_inputs() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(TensorData::new(vec![-5.0f32; 9], [1, 1, 3, 3]), &device);
        let y = MaxPooling2dConfig::new(2)
            .with_padding(Padding::Same)
            .init()
            .forward(x);
        assert!(y
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|v| *v == -5.0));
    }

    #[test]
    fn global_average_pooling_means_each_channel() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 30.0],
                [1, 2, 2, 2],
            ),
            &device,
        );
        let y = GlobalAveragePooling2d
            .forward(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(y, vec![2.5, 15.0]);
    }
}
