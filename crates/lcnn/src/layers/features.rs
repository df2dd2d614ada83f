//! The activations that flow between layers of a sequential model: either a batch of images
//! (`[N, C, H, W]`, Burn's channels-first layout) or a batch of vectors (`[N, D]`).

use burn::tensor::Tensor;

/// An image batch or a flat batch, as produced by one layer and consumed by the next.
#[derive(Debug, Clone)]
pub enum Features {
    /// `[batch, channels, height, width]`.
    Image(Tensor<4>),
    /// `[batch, features]`.
    Flat(Tensor<2>),
}

impl Features {
    /// The image batch; a flat batch here is a model-building bug, caught by shape inference
    /// before any forward pass.
    pub fn image(self) -> Tensor<4> {
        match self {
            Features::Image(x) => x,
            Features::Flat(x) => panic!("layer expects an image batch, got flat {:?}", x.dims()),
        }
    }

    /// The flat batch; see [`Features::image`].
    pub fn flat(self) -> Tensor<2> {
        match self {
            Features::Flat(x) => x,
            Features::Image(x) => panic!("layer expects a flat batch, got image {:?}", x.dims()),
        }
    }

    /// Flattens an image batch in channel, height, width order (a flat batch is returned as is).
    pub fn flatten(self) -> Tensor<2> {
        match self {
            Features::Flat(x) => x,
            Features::Image(x) => x.flatten(1, 3),
        }
    }

    /// Applies `f` to the tensor whatever its rank.
    pub fn map(
        self,
        f4: impl FnOnce(Tensor<4>) -> Tensor<4>,
        f2: impl FnOnce(Tensor<2>) -> Tensor<2>,
    ) -> Self {
        match self {
            Features::Image(x) => Features::Image(f4(x)),
            Features::Flat(x) => Features::Flat(f2(x)),
        }
    }
}
