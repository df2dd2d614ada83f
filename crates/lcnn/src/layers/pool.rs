//! Keras `MaxPooling2D` and `AveragePooling2D` (pool size, strides defaulting to the pool size,
//! `valid` or `same` padding) and `GlobalAveragePooling2D` (mean over height and width; used by All-CNN-C,
//! [Springenberg et al. 2014, arXiv:1412.6806](https://arxiv.org/abs/1412.6806)).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
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
        let (k, s) = (self.pool_size, self.strides);
        // Burn pads max pooling with -inf, so padding never wins (TensorFlow's `same`).
        let options = MaxPoolOptions::new([k, k])
            .with_stride([s, s])
            .with_padding_pairs(pad_pairs(&x, k, s, self.same));
        max_pool2d(x, options)
    }

    /// The same window as an average ([`AveragePooling2d`], Keras `AveragePooling2D`).
    pub fn average(self) -> AveragePooling2d {
        AveragePooling2d { window: self }
    }
}

/// TensorFlow's padding of an image for a `k`-window at stride `s` (none for `valid`).
fn pad_pairs(x: &Tensor<4>, k: usize, s: usize, same: bool) -> [(usize, usize); 2] {
    let [_, _, h, w] = x.dims();
    let padding = if same { Padding::Same } else { Padding::Valid };
    [padding.pads(h, k, s), padding.pads(w, k, s)]
}

/// Keras `AveragePooling2D`: the window of a [`MaxPooling2d`] (built with
/// `MaxPooling2dConfig::new(p).init().average()`), averaged. Under `same` padding a window that
/// hangs over the border averages only the pixels inside the image (TensorFlow's
/// `count_include_pad = False`).
#[derive(Module, Debug)]
pub struct AveragePooling2d {
    /// Window size, stride and padding.
    pub window: MaxPooling2d,
}

impl AveragePooling2d {
    /// # Shapes
    /// - input: `[N, C, H, W]`
    /// - output: `[N, C, H', W']`, as [`MaxPooling2d::forward`]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (k, s) = (self.window.pool_size, self.window.strides);
        let options = AvgPoolOptions::new([k, k])
            .with_stride([s, s])
            .with_padding_pairs(pad_pairs(&x, k, s, self.window.same))
            .with_count_include_pad(false);
        avg_pool2d(x, options)
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
    fn average_pool_same_counts_only_the_pixels_inside() {
        let device = Device::flex();
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [1, 1, 3, 3]), &device);
        let pool = |padding| {
            MaxPooling2dConfig::new(2)
                .with_padding(padding)
                .init()
                .average()
                .forward(x.clone())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        // 0 1 2 / 3 4 5 / 6 7 8: valid keeps the top-left window; same (TF pads bottom/right)
        // averages the 2, 2 and 1 pixels that the border windows hold.
        assert_eq!(pool(Padding::Valid), vec![2.0]);
        assert_eq!(pool(Padding::Same), vec![2.0, 3.5, 6.5, 8.0]);
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
