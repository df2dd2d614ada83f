//! A convolution's output computed one way, differentiated Burn's way.
//!
//! [`with_conv2d_grads`] takes an output `y` that was computed from *detached* copies of `x` and
//! `weight` (so autodiff recorded nothing for it) and attaches it to the graph as if Burn's
//! `conv2d(x, weight)` had produced it: the backward pass calls the backend's own
//! `conv2d_x_backward` and `conv2d_weight_backward`, exactly what Burn's autodiff runs for its
//! convolution (on wgpu: its autotuned im2col / col2im and matmul kernels for the gradients).
//! [`super::im2col`] uses it so that `--conv gemm` replaces only Burn's *forward* kernel, the
//! direct kernel a GPU profile found slow, and keeps Burn's gradient kernels instead of
//! differentiating the column matrix's slices (each slice's adjoint is an input-sized
//! zero tensor written and added back, nine of them for a 3x3 kernel).
//!
//! Built as a Burn backend extension (`#[backend_extension]`, Burn's mechanism for custom
//! operations under its runtime `Dispatch`): every backend without autodiff returns `y` as it
//! is; `Autodiff<B>` registers one graph node with `x` and `weight` as parents
//! ([Burn's custom-operation
//! guide](https://burn.dev/books/burn/advanced/backend-extension/)).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend};
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

/// The backends that can attach Burn's convolution gradients to an output.
#[backend_extension(
    Flex,
    Cube: cfg(any(feature = "wgpu", feature = "cuda")),
    Autodiff,
)]
pub trait Conv2dGrads: Backend {
    /// `y`, differentiated as `conv2d(x, weight, None, options)` (see the module's header).
    /// Without autodiff there is nothing to attach: `y` as it is.
    fn conv2d_grads(
        y: FloatTensor<Self>,
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let _ = (x, weight, options);
        y
    }
}

impl Conv2dGrads for burn::backend::Flex {}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl Conv2dGrads for burn::backend::Cube {}

impl<B: Backend, C: CheckpointStrategy> Conv2dGrads for Autodiff<B, C> {
    fn conv2d_grads(
        y: FloatTensor<Self>,
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        /// The graph node: Burn's convolution backward, without a bias (added outside).
        #[derive(Debug)]
        struct Conv2dBackward;

        impl<B: Backend> Backward<B, 2> for Conv2dBackward {
            type State = (NodeId, NodeId, ConvOptions<2>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, weight_state, options) = ops.state;
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                let weight =
                    checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
                if let Some(node) = node_x {
                    let dx = B::conv2d_x_backward(
                        x.clone(),
                        weight.clone(),
                        grad.clone(),
                        options.clone(),
                    );
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = node_weight {
                    let dw = B::conv2d_weight_backward(x, weight, grad, options);
                    grads.register::<B>(node.id, dw);
                }
            }
        }

        match Conv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                prep.finish((x_state, weight_state, options), y.into_primitive())
            }
            OpsKind::UnTracked(prep) => prep.finish(y.into_primitive()),
        }
    }
}

/// `y` (computed from detached copies of `x` and `weight`) with the gradients of
/// `conv2d(x, weight, None, options)` attached (see the module's header).
///
/// # Shapes
/// - y: `[N, F, H', W']`, x: `[N, C, H, W]`, weight: `[F, C, kh, kw]`
/// - output: `[N, F, H', W']` (y's values)
pub fn with_conv2d_grads(
    y: Tensor<4>,
    x: Tensor<4>,
    weight: Tensor<4>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as Conv2dGrads>::conv2d_grads(
        y.into_dispatch(),
        x.into_dispatch(),
        weight.into_dispatch(),
        options,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::{Device, Distribution};

    /// An output computed from detached inputs gets exactly Burn's convolution gradients, once
    /// (not doubled, not lost), and only for the inputs that require them; the values pass
    /// through unchanged.
    #[test]
    fn attaches_burns_convolution_gradients_to_a_detached_output() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let options = ConvOptions::new_with_padding([2, 2], [(0, 1), (0, 1)], [1, 1], 1);
        let x = Tensor::<4>::random([2, 3, 7, 6], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<4>::random([4, 3, 3, 3], Distribution::Normal(0.0, 0.3), &device);
        let y = conv2d(x.clone(), w.clone(), None, options.clone());
        let probe = Tensor::<4>::random(y.dims(), Distribution::Default, &device);

        // Burn's own convolution, differentiated by autodiff.
        let (xr, wr) = (x.clone().require_grad(), w.clone().require_grad());
        let grads = (conv2d(xr.clone(), wr.clone(), None, options.clone()) * probe.clone())
            .sum()
            .backward();
        let (gx0, gw0) = (xr.grad(&grads).unwrap(), wr.grad(&grads).unwrap());

        // The same output computed off the graph, then attached.
        let (xa, wa) = (x.clone().require_grad(), w.clone().require_grad());
        let detached = conv2d(
            xa.clone().detach(),
            wa.clone().detach(),
            None,
            options.clone(),
        );
        let attached = with_conv2d_grads(detached.clone(), xa.clone(), wa.clone(), options.clone());
        attached
            .clone()
            .into_data()
            .assert_eq(&detached.into_data(), true);
        let grads = (attached * probe.clone()).sum().backward();
        xa.grad(&grads)
            .unwrap()
            .into_data()
            .assert_eq(&gx0.into_data(), true);
        wa.grad(&grads)
            .unwrap()
            .into_data()
            .assert_eq(&gw0.clone().into_data(), true);

        // Only the kernel tracked: it gets its gradient, the input none.
        let wk = w.clone().require_grad();
        let detached = conv2d(x.clone(), wk.clone().detach(), None, options.clone());
        let grads = (with_conv2d_grads(detached, x.clone(), wk.clone(), options.clone()) * probe)
            .sum()
            .backward();
        wk.grad(&grads)
            .unwrap()
            .into_data()
            .assert_eq(&gw0.into_data(), true);
        assert!(x.grad(&grads).is_none());

        // Without autodiff: the output as it is.
        let plain = Device::flex();
        let (x, w) = (x.to_device(&plain), w.to_device(&plain));
        let y = conv2d(x.clone(), w.clone(), None, options.clone());
        with_conv2d_grads(y.clone(), x, w, options)
            .into_data()
            .assert_eq(&y.into_data(), true);
    }
}
