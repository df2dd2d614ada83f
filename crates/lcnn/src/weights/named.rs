//! The mapping between a network's parameters and stable names `{layer}.{param}`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Param, ParamId, RunningState};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::models::{Layer, Network};

use super::WeightsError;

/// A tensor with its name, shape and values (row-major, f32).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// `{layer}.{param}`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

enum Slot<'a> {
    P1(&'a mut Param<Tensor<1>>),
    P2(&'a mut Param<Tensor<2>>),
    P4(&'a mut Param<Tensor<4>>),
    Running(&'a RunningState<Tensor<1>>),
}

impl Slot<'_> {
    fn read(&self) -> (Vec<usize>, Vec<f32>) {
        let data = match self {
            Slot::P1(p) => p.val().into_data(),
            Slot::P2(p) => p.val().into_data(),
            Slot::P4(p) => p.val().into_data(),
            Slot::Running(r) => r.value_sync().into_data(),
        };
        let shape = data.shape().to_vec();
        (
            shape,
            data.convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default(),
        )
    }

    fn write(&mut self, data: Vec<f32>, shape: &[usize]) {
        let device = match self {
            Slot::P1(p) => p.lazy_device(),
            Slot::P2(p) => p.lazy_device(),
            Slot::P4(p) => p.lazy_device(),
            Slot::Running(r) => r.value_sync().device(),
        };
        let data = TensorData::new(data, shape.to_vec());
        match self {
            Slot::P1(p) => replace(p, Tensor::from_data(data, &device)),
            Slot::P2(p) => replace(p, Tensor::from_data(data, &device)),
            Slot::P4(p) => replace(p, Tensor::from_data(data, &device)),
            Slot::Running(r) => {
                r.update(Tensor::from_data(data, &device));
                // Fold the per-thread update into the value inference reads.
                let _ = r.value_sync();
            }
        }
    }
}

/// Replaces a parameter's value, keeping its id (optimizer state is keyed by it) and whether it
/// requires gradients.
fn replace<const D: usize>(p: &mut Param<Tensor<D>>, value: Tensor<D>) {
    let old = std::mem::replace(p, Param::from_tensor(value.clone()));
    let require_grad = old.val().is_require_grad();
    *p = old.map(|_| {
        if require_grad {
            value.require_grad()
        } else {
            value
        }
    });
}

fn conv<'a>(
    c: &'a mut burn::nn::conv::Conv2d,
    w: &'static str,
    b: &'static str,
) -> Vec<(&'static str, Slot<'a>)> {
    let mut v = vec![(w, Slot::P4(&mut c.weight))];
    if let Some(bias) = c.bias.as_mut() {
        v.push((b, Slot::P1(bias)));
    }
    v
}

fn slots(layer: &mut Layer) -> Vec<(&'static str, Slot<'_>)> {
    match layer {
        Layer::Conv2d(b) => conv(&mut b.conv.conv, "weight", "bias"),
        Layer::SeparableConv2d(b) => {
            let mut v = conv(&mut b.conv.depthwise, "depthwise.weight", "depthwise.bias");
            v.extend(conv(
                &mut b.conv.pointwise,
                "pointwise.weight",
                "pointwise.bias",
            ));
            v
        }
        Layer::Dense(b) => {
            let l = &mut b.dense.linear;
            let mut v = vec![("weight", Slot::P2(&mut l.weight))];
            if let Some(bias) = l.bias.as_mut() {
                v.push(("bias", Slot::P1(bias)));
            }
            v
        }
        Layer::BatchNorm(bn) => {
            let bn = &mut bn.bn;
            vec![
                ("gamma", Slot::P1(&mut bn.gamma)),
                ("beta", Slot::P1(&mut bn.beta)),
                ("running_mean", Slot::Running(&bn.running_mean)),
                ("running_var", Slot::Running(&bn.running_var)),
            ]
        }
        _ => Vec::new(),
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The id [`assign_stable_ids`] gives the parameter called `name` (`conv1.weight`), which keys
/// its gradient and optimizer state.
pub fn param_id(name: &str) -> ParamId {
    ParamId::from(fnv(name))
}

/// Gives every parameter an id derived from its name (FNV-1a of `{layer}.{param}`), so that
/// optimizer state, which Burn keys by parameter id, survives a rebuild of the network (resume,
/// fine-tuning from a checkpoint).
pub fn assign_stable_ids(layers: &mut [Layer], names: &[String]) {
    fn reid<const D: usize>(p: &mut Param<Tensor<D>>, id: u64) {
        let old = std::mem::replace(
            p,
            Param::from_tensor(Tensor::empty([0; D], &p.lazy_device())),
        );
        let (_, value, mapper) = old.consume();
        *p = Param::from_mapped_value(ParamId::from(id), value, mapper);
    }
    for (layer, lname) in layers.iter_mut().zip(names) {
        for (pname, slot) in slots(layer) {
            let id = fnv(&format!("{lname}.{pname}"));
            match slot {
                Slot::P1(p) => reid(p, id),
                Slot::P2(p) => reid(p, id),
                Slot::P4(p) => reid(p, id),
                Slot::Running(_) => {}
            }
        }
    }
}

/// Keras' `kernel_regularizer=L2(l2)` term, `l2 * sum(w^2)` over the kernels (conv,
/// depthwise, pointwise and dense weights) of layers `from..`, the trained ones, as a
/// differentiable scalar; `None` (nothing computed) when `l2` is 0 or there are no kernels.
pub fn l2_penalty(network: &Network, from: usize, l2: f64) -> Option<Tensor<1>> {
    if l2 <= 0.0 {
        return None;
    }
    let mut net = network.clone();
    let mut total: Option<Tensor<1>> = None;
    for layer in net.layers.iter_mut().skip(from) {
        for (pname, slot) in slots(layer) {
            let sq = match slot {
                _ if !pname.ends_with("weight") => None,
                Slot::P2(p) => Some(p.val().square().sum()),
                Slot::P4(p) => Some(p.val().square().sum()),
                _ => None,
            };
            if let Some(sq) = sq {
                total = Some(match total {
                    Some(t) => t + sq,
                    None => sq,
                });
            }
        }
    }
    total.map(|t| t.mul_scalar(l2))
}

/// The gradients of a loss multiplied by `scale` (mixed precision's loss scaling), brought
/// back to the true loss's gradients; `None` when any of them is infinite or NaN (an f16
/// overflow: the step is skipped and the scale lowered, [`crate::train::LossScale`]). One
/// number is read back from the device to know.
pub fn unscale_gradients(
    network: &Network,
    mut grads: GradientsParams,
    scale: f64,
) -> Option<GradientsParams> {
    fn unscale<const D: usize>(
        grads: &mut GradientsParams,
        p: &Param<Tensor<D>>,
        inv: f64,
        check: &mut Option<Tensor<1>>,
    ) {
        if let Some(g) = grads.remove::<D>(p.id) {
            // inf * 0 and NaN * 0 are NaN: the sum is finite only if every element is.
            let zero = g.clone().mul_scalar(0.0).sum();
            *check = Some(match check.take() {
                Some(c) => c + zero,
                None => zero,
            });
            grads.register(p.id, g.mul_scalar(inv));
        }
    }
    let inv = 1.0 / scale;
    let mut check = None;
    let mut net = network.clone();
    for layer in net.layers.iter_mut() {
        for (_, slot) in slots(layer) {
            match slot {
                Slot::P1(p) => unscale(&mut grads, p, inv, &mut check),
                Slot::P2(p) => unscale(&mut grads, p, inv, &mut check),
                Slot::P4(p) => unscale(&mut grads, p, inv, &mut check),
                Slot::Running(_) => {}
            }
        }
    }
    let finite = check.is_none_or(|c| c.into_scalar::<f32>().is_finite());
    finite.then_some(grads)
}

/// Multiplies every trainable parameter by `keep` (Keras 3's decoupled weight decay,
/// `keep = 1 - weight_decay * lr`), keeping ids; frozen ones and moving statistics stay.
pub fn scale_trainable(mut network: Network, keep: f64) -> Network {
    fn scale<const D: usize>(p: &mut Param<Tensor<D>>, keep: f64) {
        let v = p.val();
        if v.is_require_grad() {
            replace(p, Tensor::from_inner(v.inner().mul_scalar(keep)));
        }
    }
    for layer in network.layers.iter_mut() {
        for (_, slot) in slots(layer) {
            match slot {
                Slot::P1(p) => scale(p, keep),
                Slot::P2(p) => scale(p, keep),
                Slot::P4(p) => scale(p, keep),
                Slot::Running(_) => {}
            }
        }
    }
    network
}

/// Every parameter (and BatchNorm moving statistic) of the network, in layer order, named
/// `{layer}.{param}`.
pub fn export(network: &Network) -> Vec<NamedTensor> {
    let mut net = network.clone();
    let names: Vec<String> = net.spec.layers.iter().map(|l| l.name.clone()).collect();
    let mut out = Vec::new();
    for (layer, lname) in net.layers.iter_mut().zip(&names) {
        for (pname, slot) in slots(layer) {
            let (shape, data) = slot.read();
            out.push(NamedTensor {
                name: format!("{lname}.{pname}"),
                shape,
                data,
            });
        }
    }
    out
}

/// Loads `tensors` into the network by name. Every parameter must be present with the model's
/// shape; with `strict`, tensors the model has no place for are an error too. `file` names the
/// source in errors.
pub fn import(
    network: Network,
    tensors: Vec<NamedTensor>,
    strict: bool,
    file: &Path,
) -> Result<Network, WeightsError> {
    import_with(network, tensors, strict, false, file)
}

/// Loads the layers of `tensors` that the network has (a base's weights under a new head):
/// a layer the file lacks keeps its initialization, a tensor of another shape is an error.
pub fn import_present(
    network: Network,
    tensors: Vec<NamedTensor>,
    file: &Path,
) -> Result<Network, WeightsError> {
    import_with(network, tensors, false, true, file)
}

fn import_with(
    mut network: Network,
    tensors: Vec<NamedTensor>,
    strict: bool,
    missing_ok: bool,
    file: &Path,
) -> Result<Network, WeightsError> {
    let mut by_name: BTreeMap<String, NamedTensor> =
        tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
    let names: Vec<String> = network.spec.layers.iter().map(|l| l.name.clone()).collect();
    for (layer, lname) in network.layers.iter_mut().zip(&names) {
        for (pname, mut slot) in slots(layer) {
            let key = format!("{lname}.{pname}");
            let (expected, _) = slot.read();
            let Some(t) = by_name.remove(&key) else {
                if missing_ok {
                    continue;
                }
                return Err(WeightsError::Missing {
                    file: file.to_path_buf(),
                    name: key.clone(),
                    expected: expected.clone(),
                });
            };
            if t.shape != expected || t.data.len() != expected.iter().product::<usize>() {
                return Err(WeightsError::Shape {
                    file: file.to_path_buf(),
                    name: key,
                    found: t.shape,
                    expected,
                });
            }
            // NaN or infinite weights would score every input the same, silently.
            if let Some(bad) = t.data.iter().find(|v| !v.is_finite()) {
                let n = t.data.iter().filter(|v| !v.is_finite()).count();
                return Err(WeightsError::Format {
                    file: file.to_path_buf(),
                    reason: format!(
                        "tensor `{key}` holds {n} non-finite value{} (the first: {bad}); \
                         expected finite weights (did the training diverge?)",
                        if n == 1 { "" } else { "s" }
                    ),
                });
            }
            slot.write(t.data, &t.shape);
        }
    }
    if strict && !by_name.is_empty() {
        return Err(WeightsError::Unexpected {
            file: file.to_path_buf(),
            names: by_name.into_keys().collect::<Vec<_>>().join(", "),
        });
    }
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ModelConfig, ModelName};
    use burn::tensor::Device;

    fn lcnn(device: &Device) -> Network {
        let spec = ModelConfig::new(ModelName::Lcnn, ModelName::Lcnn.default_input(), 10)
            .spec()
            .unwrap();
        Network::new(&spec, device).unwrap()
    }

    #[test]
    fn export_names_and_counts() {
        let net = lcnn(&Device::flex());
        let t = export(&net);
        assert_eq!(t[0].name, "conv1.weight");
        assert_eq!(t[0].shape, vec![64, 1, 5, 5]);
        assert!(t.iter().any(|t| t.name == "bn_fc1.running_var"));
        assert_eq!(t.iter().map(|t| t.data.len()).sum::<usize>(), 164_938);
    }

    #[test]
    fn roundtrip_and_errors_name_the_tensor() {
        let device = Device::flex();
        let a = lcnn(&device);
        let b = lcnn(&device);
        let ta = export(&a);
        let b = import(b, ta.clone(), true, Path::new("x.safetensors")).unwrap();
        assert_eq!(export(&b), ta);

        let mut missing = ta.clone();
        missing.retain(|t| t.name != "conv2.bias");
        let err = import(lcnn(&device), missing, true, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("conv2.bias") && err.contains("[96]"), "{err}");

        let mut bad = ta.clone();
        bad[0].shape = vec![64, 25];
        let err = import(lcnn(&device), bad, true, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("conv1.weight"), "{err}");

        let mut nan = ta.clone();
        nan[1].data[3] = f32::NAN;
        nan[1].data[5] = f32::INFINITY;
        let err = import(lcnn(&device), nan, true, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "x: tensor `{}` holds 2 non-finite values (the first: NaN); expected finite \
                 weights (did the training diverge?)",
                ta[1].name
            )
        );

        let mut extra = ta;
        extra.push(NamedTensor {
            name: "head.weight".into(),
            shape: vec![1],
            data: vec![0.0],
        });
        assert!(import(lcnn(&device), extra.clone(), true, Path::new("x")).is_err());
        assert!(import(lcnn(&device), extra, false, Path::new("x")).is_ok());
    }
}
