//! Keras HDF5 files in: whole models saved by Keras 2's `model.save("model.h5")` (the
//! `model_config` JSON plus `model_weights`), rebuilt as an lcnn [`ModelSpec`] with its weights,
//! as [Keras' own loader](https://github.com/keras-team/keras/blob/v2.9.0/keras/saving/hdf5_format.py)
//! reads them: the layer list from `model_config`, each layer's tensors from its group in the
//! order of the group's `weight_names` attribute. Read through libhdf5 (the `hdf5` feature).
//!
//! Supported (channels_last, as Keras saves them): Sequential models and Functional ones that
//! are a chain; `InputLayer`, `Conv2D`, `SeparableConv2D` (depth multiplier 1, stride 1),
//! `BatchNormalization` (last axis, center and scale), `MaxPooling2D`, `AveragePooling2D`,
//! `GlobalAveragePooling2D`, `Flatten`, `Dense`, `Dropout`, `Activation`, with the activations
//! linear, relu, sigmoid and softmax, and the seeds' Max-Feature-Map, a `Maxout(C/2)` layer
//! (TensorFlow Addons' form; [`MaxoutOrder`] says which of its two channel pairings). Anything
//! else is an error naming the layer, its index and its class.
//!
//! Layouts: Keras kernels are `[kh, kw, in, out]` (lcnn's Burn layout is `[out, in, kh, kw]`),
//! and Keras flattens an image in H, W, C order where lcnn flattens C, H, W, so the rows of the
//! Dense layer after a Flatten are permuted. A layer without a bias (`use_bias: false`) gets a
//! zero bias, which computes the same. When the model was compiled with a `from_logits: true`
//! loss, the softmax (or sigmoid) that the loss applies becomes an explicit last layer
//! `softmax` (`sigmoid`), so lcnn's probabilities are what Keras' loss saw and its logits are
//! what Keras' `predict` returns.

use std::path::Path;

use hdf5::types::{FixedAscii, TypeDescriptor, VarLenAscii, VarLenUnicode};
use serde_json::Value;

use crate::layers::{Activation, Padding};
use crate::models::{LayerKind, LayerSpec, ModelSpec, Shape};

use super::{NamedTensor, WeightsError};

/// A Keras model read from an `.h5` file.
#[derive(Debug, Clone)]
pub struct KerasModel {
    /// The Keras model name (`sequential`).
    pub name: String,
    /// `keras_version` of the file, if it says.
    pub keras_version: Option<String>,
    /// The layers, under their Keras names.
    pub spec: ModelSpec,
    /// The weights, under lcnn's names and layouts (`conv2d.weight`, `[out, in, kh, kw]`).
    pub tensors: Vec<NamedTensor>,
    /// The name of the layer added for a `from_logits` loss, if one was.
    pub added_output: Option<String>,
}

fn err(file: &Path, reason: impl Into<String>) -> WeightsError {
    WeightsError::Format {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a string attribute however Keras wrote it (variable-length UTF-8 or ASCII, or
/// fixed-length bytes), as one string or a list.
fn read_strings(attr: &hdf5::Attribute) -> hdf5::Result<Vec<String>> {
    Ok(match attr.dtype()?.to_descriptor()? {
        TypeDescriptor::VarLenUnicode => attr
            .read_raw::<VarLenUnicode>()?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        TypeDescriptor::VarLenAscii => attr
            .read_raw::<VarLenAscii>()?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        TypeDescriptor::FixedAscii(_) | TypeDescriptor::FixedUnicode(_) => attr
            .read_raw::<FixedAscii<1024>>()?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        // Keras writes an empty `weight_names` as a float64 array of shape (0,).
        _ if attr.size() == 0 => Vec::new(),
        other => return Err(format!("expected strings, found {other}").into()),
    })
}

fn string_attr(
    file: &Path,
    loc: &hdf5::Location,
    name: &str,
) -> Result<Option<String>, WeightsError> {
    if !loc
        .attr_names()
        .map_err(|e| err(file, e.to_string()))?
        .iter()
        .any(|n| n == name)
    {
        return Ok(None);
    }
    let attr = loc
        .attr(name)
        .map_err(|e| err(file, format!("attribute `{name}`: {e}")))?;
    let mut v = read_strings(&attr).map_err(|e| err(file, format!("attribute `{name}`: {e}")))?;
    Ok(v.pop())
}

/// A tensor as the file holds it: its name in `weight_names`, shape and values.
type KerasWeight = (String, Vec<usize>, Vec<f32>);

/// One layer's tensors, in the order of its group's `weight_names`.
fn layer_weights(
    file: &Path,
    root: &hdf5::Group,
    layer: &str,
) -> Result<Vec<KerasWeight>, WeightsError> {
    let group = root
        .group(layer)
        .map_err(|_| err(file, format!("layer `{layer}`: no weights group `{layer}`")))?;
    let names = match group.attr("weight_names") {
        Ok(a) => read_strings(&a).map_err(|e| {
            err(
                file,
                format!("layer `{layer}`: attribute `weight_names`: {e}"),
            )
        })?,
        Err(_) => Vec::new(),
    };
    names
        .into_iter()
        .map(|name| {
            let ds = group
                .dataset(&name)
                .map_err(|e| err(file, format!("layer `{layer}`: weight `{name}`: {e}")))?;
            let data = ds
                .read_raw::<f32>()
                .map_err(|e| err(file, format!("layer `{layer}`: weight `{name}`: {e}")))?;
            Ok((name, ds.shape(), data))
        })
        .collect()
}

fn get<'a>(cfg: &'a Value, key: &str) -> Option<&'a Value> {
    cfg.get(key).filter(|v| !v.is_null())
}

/// What a layer's config must hold, or the error that names the layer.
struct LayerCtx<'a> {
    file: &'a Path,
    index: usize,
    class: &'a str,
    name: &'a str,
    cfg: &'a Value,
}

impl LayerCtx<'_> {
    fn fail(&self, reason: impl std::fmt::Display) -> WeightsError {
        err(
            self.file,
            format!(
                "layer {} `{}` ({}): {reason}",
                self.index, self.name, self.class
            ),
        )
    }

    fn usize(&self, key: &str) -> Result<usize, WeightsError> {
        get(self.cfg, key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| self.fail(format!("`{key}` must be a positive integer")))
    }

    /// A square window or stride: `3`, `[3, 3]`.
    fn square(&self, key: &str) -> Result<Option<usize>, WeightsError> {
        let Some(v) = get(self.cfg, key) else {
            return Ok(None);
        };
        let dims: Vec<u64> = match v {
            Value::Array(a) => a.iter().filter_map(Value::as_u64).collect(),
            other => other.as_u64().into_iter().collect(),
        };
        match dims[..] {
            [k] => Ok(Some(k as usize)),
            [a, b] if a == b => Ok(Some(a as usize)),
            _ => Err(self.fail(format!(
                "`{key}` is {v}; lcnn supports square windows and equal strides"
            ))),
        }
    }

    fn str_or<'b>(&'b self, key: &str, default: &'b str) -> &'b str {
        get(self.cfg, key)
            .and_then(Value::as_str)
            .unwrap_or(default)
    }

    fn padding(&self) -> Result<Padding, WeightsError> {
        match self.str_or("padding", "valid") {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            other => Err(self.fail(format!("padding `{other}`: expected valid or same"))),
        }
    }

    fn activation(&self) -> Result<Activation, WeightsError> {
        match self.str_or("activation", "linear") {
            "linear" => Ok(Activation::Linear),
            "relu" => Ok(Activation::Relu),
            "softmax" => Ok(Activation::Softmax),
            "sigmoid" => Ok(Activation::Sigmoid),
            other => Err(self.fail(format!(
                "activation `{other}` is not supported (linear, relu, sigmoid, softmax)"
            ))),
        }
    }

    /// A pooling layer's window, strides (default: the window) and padding.
    fn pooling(&self) -> Result<(usize, usize, Padding), WeightsError> {
        self.channels_last()?;
        let pool = self.square("pool_size")?.unwrap_or(2);
        Ok((
            pool,
            self.square("strides")?.unwrap_or(pool),
            self.padding()?,
        ))
    }

    fn channels_last(&self) -> Result<(), WeightsError> {
        match self.str_or("data_format", "channels_last") {
            "channels_last" => Ok(()),
            other => Err(self.fail(format!("data_format `{other}`: expected channels_last"))),
        }
    }

    fn is_default(&self, key: &str, default: Value) -> Result<(), WeightsError> {
        match get(self.cfg, key) {
            Some(v) if *v != default => {
                Err(self.fail(format!("`{key}` is {v}; lcnn supports only {default}")))
            }
            _ => Ok(()),
        }
    }
}

/// The Keras layer list of a `model_config`: a Sequential model, old (a list) or new
/// (`{"layers": [...]}`) style, or a Functional one (`keras.Model(inputs, outputs)`, as the
/// seeds build LCNN) whose layers form one chain, each taking the previous one's output.
fn model_layers<'a>(file: &Path, config: &'a Value) -> Result<&'a Vec<Value>, WeightsError> {
    let class = config
        .get("class_name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let inner = config.get("config");
    let layers = inner
        .and_then(Value::as_array)
        .or_else(|| {
            inner
                .and_then(|c| c.get("layers"))
                .and_then(Value::as_array)
        })
        .ok_or_else(|| err(file, "`model_config` has no layer list"));
    match class {
        "Sequential" => layers,
        "Functional" | "Model" => {
            let layers = layers?;
            check_chain(file, layers)?;
            Ok(layers)
        }
        _ => Err(err(
            file,
            format!(
                "`model_config` holds a `{class}` model; lcnn imports Sequential models and \
                 Functional ones that are a chain of layers"
            ),
        )),
    }
}

/// The names of the layers a Functional layer takes its inputs from, in Keras 2's
/// (`[[["conv2d", 0, 0, {}]]]`) or Keras 3's (`{"keras_history": ["conv2d", 0, 0]}`) form.
fn inbound_layers(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(m) => {
            if let Some(name) = m
                .get("keras_history")
                .and_then(|h| h.get(0))
                .and_then(Value::as_str)
            {
                out.push(name.to_string());
            } else {
                m.values().for_each(|v| inbound_layers(v, out));
            }
        }
        Value::Array(a) => match (a.first(), a.get(1)) {
            (Some(Value::String(name)), Some(Value::Number(_))) => out.push(name.clone()),
            _ => a.iter().for_each(|v| inbound_layers(v, out)),
        },
        _ => {}
    }
}

/// A Functional model must be a chain: layer `i` reads exactly layer `i - 1`'s output.
fn check_chain(file: &Path, layers: &[Value]) -> Result<(), WeightsError> {
    let name = |l: &Value| {
        l.get("config")
            .and_then(|c| c.get("name"))
            .or_else(|| l.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    for (i, l) in layers.iter().enumerate().skip(1) {
        let mut from = Vec::new();
        if let Some(nodes) = l.get("inbound_nodes") {
            inbound_layers(nodes, &mut from);
        }
        let previous = name(&layers[i - 1]);
        if from != [previous.clone()] {
            return Err(err(
                file,
                format!(
                    "layer {i} `{}` takes its input from [{}], not from the layer before it \
                     (`{previous}`): lcnn imports Functional models that are a chain of layers",
                    name(l),
                    from.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// How a Keras `Maxout(num_units = C/2)` layer pairs its channels (the layer is not part of
/// Keras: the seeds copy TensorFlow Addons' `tfa.layers.Maxout`, whose grouping changed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MaxoutOrder {
    /// `max(x[k], x[k + C/2])`, lcnn's Max-Feature-Map: TensorFlow Addons 0.7 and later
    /// (`reshape(..., [k, num_units])`, max over `k`).
    #[default]
    Halves,
    /// `max(x[2k], x[2k + 1])`: TensorFlow Addons before 0.7 and `tf.contrib.layers.maxout`
    /// (`reshape(..., [num_units, k])`, max over the last axis). Imported as lcnn's MFM by
    /// reordering the output channels of the Conv2D or Dense just before it.
    Pairs,
}

/// Choices for [`read_model_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// How `Maxout` layers pair channels.
    pub maxout: MaxoutOrder,
}

/// Reorders the output channels (last axis of a `[.., out]` kernel, or a bias) so that pairs
/// `(2k, 2k + 1)` become halves `(k, k + C/2)`.
fn pairs_to_halves(data: &[f32], out: usize) -> Vec<f32> {
    let half = out / 2;
    let mut v = vec![0.0; data.len()];
    for (src, dst) in data.chunks_exact(out).zip(v.chunks_exact_mut(out)) {
        for k in 0..half {
            dst[k] = src[2 * k];
            dst[k + half] = src[2 * k + 1];
        }
    }
    v
}

fn input_shape(cfg: &Value) -> Option<Shape> {
    let dims: Vec<Option<u64>> = get(cfg, "batch_input_shape")
        .or_else(|| get(cfg, "batch_shape"))?
        .as_array()?
        .iter()
        .map(Value::as_u64)
        .collect();
    match dims[..] {
        [None, Some(h), Some(w), Some(c)] => Some(Shape::Image {
            h: h as usize,
            w: w as usize,
            c: c as usize,
        }),
        _ => None,
    }
}

/// Whether the compiled loss takes logits (`from_logits: true`) and with which output.
fn loss_from_logits(training_config: Option<&str>) -> bool {
    let Some(Ok(tc)) = training_config.map(serde_json::from_str::<Value>) else {
        return false;
    };
    fn find(v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                m.get("from_logits").and_then(Value::as_bool) == Some(true) || m.values().any(find)
            }
            Value::Array(a) => a.iter().any(find),
            _ => false,
        }
    }
    tc.get("loss").is_some_and(find)
}

/// Reads a whole Keras model (`model.save("model.h5")` of a Sequential CNN or a chain-shaped
/// Functional one) with the default [`ImportOptions`].
pub fn read_model(path: &Path) -> Result<KerasModel, WeightsError> {
    read_model_with(path, ImportOptions::default())
}

/// [`read_model`] with explicit [`ImportOptions`].
pub fn read_model_with(path: &Path, options: ImportOptions) -> Result<KerasModel, WeightsError> {
    let file =
        hdf5::File::open(path).map_err(|e| err(path, format!("not a readable HDF5 file: {e}")))?;
    let config_text = string_attr(path, &file, "model_config")?.ok_or_else(|| {
        err(
            path,
            "no `model_config` attribute: not a whole-model Keras file (weights-only files \
             load with `--weights` by layer name)",
        )
    })?;
    let config: Value = serde_json::from_str(&config_text)
        .map_err(|e| err(path, format!("attribute `model_config`: invalid JSON: {e}")))?;
    let keras_version = string_attr(path, &file, "keras_version")?;
    let training_config = string_attr(path, &file, "training_config")?;
    let name = config
        .get("config")
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("sequential")
        .to_string();
    let keras_layers = model_layers(path, &config)?;
    let weights_root = file
        .group("model_weights")
        .map_err(|_| err(path, "no `model_weights` group"))?;

    let mut input: Option<Shape> = None;
    let mut layers = Vec::new();
    let mut tensors = Vec::new();
    // The image a Flatten turned into features, for the next Dense's row order.
    let mut flattened: Option<(usize, usize, usize)> = None;
    let mut shape: Option<Shape> = None;
    for (index, l) in keras_layers.iter().enumerate() {
        let class = l.get("class_name").and_then(Value::as_str).unwrap_or("?");
        let cfg = l.get("config").unwrap_or(&Value::Null);
        let lname = cfg.get("name").and_then(Value::as_str).unwrap_or("?");
        let ctx = LayerCtx {
            file: path,
            index,
            class,
            name: lname,
            cfg,
        };
        if input.is_none() {
            input = input_shape(cfg);
            shape = input;
        }
        let kind = match class {
            "InputLayer" => continue,
            "Conv2D" => {
                ctx.channels_last()?;
                ctx.is_default("dilation_rate", serde_json::json!([1, 1]))?;
                ctx.is_default("groups", serde_json::json!(1))?;
                let kernel = ctx
                    .square("kernel_size")?
                    .ok_or_else(|| ctx.fail("no kernel_size"))?;
                LayerKind::Conv2d {
                    filters: ctx.usize("filters")?,
                    kernel,
                    strides: ctx.square("strides")?.unwrap_or(1),
                    padding: ctx.padding()?,
                    activation: ctx.activation()?,
                }
            }
            "SeparableConv2D" => {
                ctx.channels_last()?;
                ctx.is_default("depth_multiplier", serde_json::json!(1))?;
                ctx.is_default("strides", serde_json::json!([1, 1]))?;
                ctx.is_default("dilation_rate", serde_json::json!([1, 1]))?;
                LayerKind::SeparableConv2d {
                    filters: ctx.usize("filters")?,
                    kernel: ctx
                        .square("kernel_size")?
                        .ok_or_else(|| ctx.fail("no kernel_size"))?,
                    padding: ctx.padding()?,
                    activation: ctx.activation()?,
                }
            }
            "BatchNormalization" => {
                let axis = get(cfg, "axis").cloned().unwrap_or(serde_json::json!(-1));
                let last = match shape {
                    Some(Shape::Image { .. }) => 3,
                    _ => 1,
                };
                let ok = [
                    serde_json::json!(-1),
                    serde_json::json!([-1]),
                    serde_json::json!(last),
                    serde_json::json!([last]),
                ]
                .contains(&axis);
                if !ok {
                    return Err(ctx.fail(format!(
                        "axis {axis}: lcnn normalizes over the last (channel) axis"
                    )));
                }
                ctx.is_default("center", serde_json::json!(true))?;
                ctx.is_default("scale", serde_json::json!(true))?;
                let num = |k: &str, d: f64| get(cfg, k).and_then(Value::as_f64).unwrap_or(d);
                LayerKind::BatchNorm {
                    epsilon: num("epsilon", crate::models::spec::BN_EPSILON),
                    momentum: num("momentum", crate::models::spec::BN_MOMENTUM),
                }
            }
            "MaxPooling2D" => {
                let (pool, strides, padding) = ctx.pooling()?;
                LayerKind::MaxPool2d {
                    pool,
                    strides,
                    padding,
                }
            }
            "AveragePooling2D" => {
                let (pool, strides, padding) = ctx.pooling()?;
                LayerKind::AvgPool2d {
                    pool,
                    strides,
                    padding,
                }
            }
            "Maxout" | "Addons>Maxout" => {
                let axis = get(cfg, "axis").cloned().unwrap_or(serde_json::json!(-1));
                let channels = match shape {
                    Some(Shape::Image { c, .. }) => (axis == -1 || axis == 3).then_some(c),
                    Some(Shape::Flat(n)) => (axis == -1 || axis == 1).then_some(n),
                    None => None,
                }
                .ok_or_else(|| ctx.fail(format!("axis {axis}: lcnn pairs the channel axis")))?;
                let units = ctx.usize("num_units")?;
                if 2 * units != channels {
                    return Err(ctx.fail(format!(
                        "num_units {units} on {channels} channels: lcnn's Max-Feature-Map \
                         halves the channels (num_units = {})",
                        channels / 2
                    )));
                }
                if options.maxout == MaxoutOrder::Pairs {
                    // The Conv2D / Dense just before it gets its outputs reordered.
                    let before = layers.last().map(|l: &LayerSpec| &l.kind);
                    let out = match before {
                        Some(LayerKind::Conv2d { filters, .. }) => *filters,
                        Some(LayerKind::Dense { units, .. }) => *units,
                        _ => {
                            return Err(ctx.fail(
                                "with pairwise Maxout the layer must follow a Conv2D or Dense \
                                 directly",
                            ))
                        }
                    };
                    let prefix = format!("{}.", layers.last().map_or("", |l| l.name.as_str()));
                    for t in tensors
                        .iter_mut()
                        .filter(|t: &&mut NamedTensor| t.name.starts_with(&prefix))
                    {
                        t.data = if t.shape.len() == 4 {
                            // [out, in, kh, kw]: whole output rows move.
                            let row = t.data.len() / out;
                            let mut v = vec![0.0; t.data.len()];
                            for k in 0..out / 2 {
                                for (j, src) in [2 * k, 2 * k + 1].into_iter().enumerate() {
                                    let dst = k + j * (out / 2);
                                    v[dst * row..(dst + 1) * row]
                                        .copy_from_slice(&t.data[src * row..(src + 1) * row]);
                                }
                            }
                            v
                        } else {
                            pairs_to_halves(&t.data, out)
                        };
                    }
                }
                LayerKind::MaxFeatureMap
            }
            "GlobalAveragePooling2D" => {
                ctx.channels_last()?;
                if get(cfg, "keepdims").and_then(Value::as_bool) == Some(true) {
                    return Err(ctx.fail("keepdims: true is not supported"));
                }
                LayerKind::GlobalAvgPool
            }
            "Flatten" => {
                ctx.channels_last()?;
                LayerKind::Flatten
            }
            "Dense" => LayerKind::Dense {
                units: ctx.usize("units")?,
                activation: ctx.activation()?,
            },
            "Dropout" => LayerKind::Dropout {
                rate: get(cfg, "rate").and_then(Value::as_f64).unwrap_or(0.0),
            },
            "Activation" => LayerKind::Activation {
                activation: ctx.activation()?,
            },
            other => {
                return Err(ctx.fail(format!(
                    "layer class `{other}` is not supported; lcnn imports Conv2D, \
                     SeparableConv2D, BatchNormalization, MaxPooling2D, AveragePooling2D, \
                     GlobalAveragePooling2D, Flatten, Dense, Dropout, Activation, Maxout{}",
                    if other == "Lambda" {
                        " (a Lambda layer holds Python code that lcnn cannot run; write the \
                         Max-Feature-Map as a `Maxout` layer)"
                    } else {
                        ""
                    }
                )))
            }
        };
        let spec = LayerSpec {
            name: lname.to_string(),
            kind,
        };
        let in_shape = shape.ok_or_else(|| {
            ctx.fail("the model does not say its input shape (batch_input_shape)")
        })?;
        // Shapes as lcnn infers them, to check the weights and to track Flatten's image: this
        // one layer on the shape the layers before it gave.
        let partial = ModelSpec {
            name: name.clone(),
            input: in_shape,
            layers: vec![spec.clone()],
        };
        let resolved = partial.resolve().map_err(|e| ctx.fail(e))?;
        let out_shape = resolved.last().map(|r| r.output).unwrap_or(in_shape);
        if spec.kind.has_weights() {
            let ws = layer_weights(path, &weights_root, lname)?;
            tensors.extend(convert(&ctx, &spec.kind, in_shape, ws, flattened)?);
        }
        flattened = after_layer(&spec.kind, in_shape, flattened);
        shape = Some(out_shape);
        layers.push(spec);
    }
    let input = input.ok_or_else(|| {
        err(
            path,
            "the model does not say its input shape (batch_input_shape)",
        )
    })?;
    // A loss on logits: its softmax / sigmoid becomes the model's last layer.
    let mut added_output = None;
    let last_act = layers.last().and_then(|l| match &l.kind {
        LayerKind::Dense { activation, .. }
        | LayerKind::Conv2d { activation, .. }
        | LayerKind::Activation { activation } => Some(*activation),
        _ => None,
    });
    if loss_from_logits(training_config.as_deref())
        && !matches!(last_act, Some(Activation::Softmax | Activation::Sigmoid))
    {
        let units = match shape {
            Some(Shape::Flat(n)) => n,
            _ => 0,
        };
        let (name, activation) = if units == 1 {
            ("sigmoid", Activation::Sigmoid)
        } else {
            ("softmax", Activation::Softmax)
        };
        let mut lname = name.to_string();
        while layers.iter().any(|l| l.name == lname) {
            lname.push('_');
        }
        layers.push(LayerSpec {
            name: lname.clone(),
            kind: LayerKind::Activation { activation },
        });
        added_output = Some(lname);
    }
    let spec = ModelSpec {
        name: name.clone(),
        input,
        layers,
    };
    spec.resolve().map_err(|e| err(path, e.to_string()))?;
    Ok(KerasModel {
        name,
        keras_version,
        spec,
        tensors,
        added_output,
    })
}

/// Reads a Keras weights file by layer name into `spec`'s layers (Keras'
/// `model.load_weights(path, by_name=True)`): a whole-model file or a weights-only one such as
/// the Keras applications' `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (layer groups at
/// the root, `block1_conv1/block1_conv1/kernel:0`, any weight names, in Keras' order). Layers of
/// `spec` that the file lacks are left out (they keep their initialization); a layer the file
/// has with other shapes is an error naming it.
pub fn read_weights_by_name(
    path: &Path,
    spec: &ModelSpec,
) -> Result<Vec<NamedTensor>, WeightsError> {
    let file =
        hdf5::File::open(path).map_err(|e| err(path, format!("not a readable HDF5 file: {e}")))?;
    let root: hdf5::Group = match file.group("model_weights") {
        Ok(g) => g,
        Err(_) => (*file).clone(),
    };
    let present = root
        .member_names()
        .map_err(|e| err(path, format!("cannot list the layer groups: {e}")))?;
    let resolved = spec.resolve().map_err(|e| err(path, e.to_string()))?;
    let mut tensors = Vec::new();
    let mut flattened = None;
    for (index, r) in resolved.iter().enumerate() {
        let name = r.spec.name.as_str();
        if r.spec.kind.has_weights() && present.iter().any(|p| p == name) {
            let ctx = LayerCtx {
                file: path,
                index,
                class: r.spec.kind.keras_type(),
                name,
                cfg: &Value::Null,
            };
            let ws = layer_weights(path, &root, name)?;
            if !ws.is_empty() {
                tensors.extend(convert(&ctx, &r.spec.kind, r.input, ws, flattened)?);
            }
        }
        flattened = after_layer(&r.spec.kind, r.input, flattened);
    }
    if tensors.is_empty() {
        return Err(err(
            path,
            format!(
                "no layer of model `{}` is in the file (its layer groups: {})",
                spec.name,
                present.join(", ")
            ),
        ));
    }
    Ok(tensors)
}

/// The image a Flatten turned into features, as seen by the next layer with weights (a Dense
/// after it needs its rows reordered); layers without weights in between keep it.
fn after_layer(
    kind: &LayerKind,
    input: Shape,
    flattened: Option<(usize, usize, usize)>,
) -> Option<(usize, usize, usize)> {
    match (kind, input) {
        (LayerKind::Flatten, Shape::Image { h, w, c }) => Some((h, w, c)),
        (
            LayerKind::Dropout { .. } | LayerKind::Activation { .. } | LayerKind::BatchNorm { .. },
            _,
        ) => flattened,
        _ => None,
    }
}

/// Keras' tensors of one layer to lcnn's names and layouts, checking their shapes.
fn convert(
    ctx: &LayerCtx,
    kind: &LayerKind,
    input: Shape,
    ws: Vec<KerasWeight>,
    flattened: Option<(usize, usize, usize)>,
) -> Result<Vec<NamedTensor>, WeightsError> {
    let in_c = match input {
        Shape::Image { c, .. } => c,
        Shape::Flat(n) => n,
    };
    let named = |param: &str, shape: Vec<usize>, data: Vec<f32>| NamedTensor {
        name: format!("{}.{param}", ctx.name),
        shape,
        data,
    };
    let expect = |i: usize, what: &str, shape: &[usize]| -> Result<Vec<f32>, WeightsError> {
        let (wname, found, data) = ws.get(i).ok_or_else(|| {
            ctx.fail(format!(
                "no {what} (weight {i}); the file lists {} weights",
                ws.len()
            ))
        })?;
        if found != shape {
            return Err(ctx.fail(format!(
                "weight `{wname}` has shape {found:?}, expected {shape:?} for the {what}"
            )));
        }
        Ok(data.clone())
    };
    let bias_or_zero = |i: usize, n: usize| -> Result<Vec<f32>, WeightsError> {
        if ctx.cfg.get("use_bias").and_then(Value::as_bool) == Some(false) {
            Ok(vec![0.0; n])
        } else {
            expect(i, "bias", &[n])
        }
    };
    Ok(match kind {
        LayerKind::Conv2d {
            filters, kernel, ..
        } => {
            let (k, f) = (*kernel, *filters);
            let hwio = expect(0, "kernel", &[k, k, in_c, f])?;
            vec![
                named(
                    "weight",
                    vec![f, in_c, k, k],
                    hwio_to_oihw(&hwio, k, in_c, f),
                ),
                named("bias", vec![f], bias_or_zero(1, f)?),
            ]
        }
        LayerKind::SeparableConv2d {
            filters, kernel, ..
        } => {
            let (k, f) = (*kernel, *filters);
            let dw = expect(0, "depthwise kernel", &[k, k, in_c, 1])?;
            let pw = expect(1, "pointwise kernel", &[1, 1, in_c, f])?;
            vec![
                named(
                    "depthwise.weight",
                    vec![in_c, 1, k, k],
                    hwio_to_oihw(&dw, k, in_c, 1),
                ),
                named(
                    "pointwise.weight",
                    vec![f, in_c, 1, 1],
                    hwio_to_oihw(&pw, 1, in_c, f),
                ),
                named("pointwise.bias", vec![f], bias_or_zero(2, f)?),
            ]
        }
        LayerKind::BatchNorm { .. } => {
            let c = in_c;
            vec![
                named("gamma", vec![c], expect(0, "gamma", &[c])?),
                named("beta", vec![c], expect(1, "beta", &[c])?),
                named("running_mean", vec![c], expect(2, "moving mean", &[c])?),
                named("running_var", vec![c], expect(3, "moving variance", &[c])?),
            ]
        }
        LayerKind::Dense { units, .. } => {
            let n = input.numel();
            let mut kernel = expect(0, "kernel", &[n, *units])?;
            if let Some((h, w, c)) = flattened.filter(|(h, w, _)| h * w > 1) {
                kernel = hwc_rows_to_chw(&kernel, h, w, c, *units);
            }
            vec![
                named("weight", vec![n, *units], kernel),
                named("bias", vec![*units], bias_or_zero(1, *units)?),
            ]
        }
        _ => Vec::new(),
    })
}

/// `[kh, kw, in, out]` (Keras) to `[out, in, kh, kw]` (lcnn / Burn / PyTorch). For a depthwise
/// kernel `[kh, kw, in, 1]` this gives `[1, in, kh, kw]`, the same values as `[in, 1, kh, kw]`.
pub fn hwio_to_oihw(w: &[f32], k: usize, cin: usize, cout: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for y in 0..k {
        for x in 0..k {
            for i in 0..cin {
                for o in 0..cout {
                    out[((o * cin + i) * k + y) * k + x] = w[((y * k + x) * cin + i) * cout + o];
                }
            }
        }
    }
    out
}

/// Reorders the rows of a Dense kernel `[h*w*c, units]` from Keras' H, W, C flatten order to
/// lcnn's C, H, W.
pub fn hwc_rows_to_chw(kernel: &[f32], h: usize, w: usize, c: usize, units: usize) -> Vec<f32> {
    let mut out = vec![0.0; kernel.len()];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let keras_row = (y * w + x) * c + ch;
                let lcnn_row = (ch * h + y) * w + x;
                out[lcnn_row * units..(lcnn_row + 1) * units]
                    .copy_from_slice(&kernel[keras_row * units..(keras_row + 1) * units]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_move_from_hwio_to_oihw() {
        // k = 1, in = 2, out = 3: w[i][o] = 10 i + o.
        let w: Vec<f32> = (0..2)
            .flat_map(|i| (0..3).map(move |o| (10 * i + o) as f32))
            .collect();
        let t = hwio_to_oihw(&w, 1, 2, 3);
        assert_eq!(t, vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0]);
    }

    #[test]
    fn dense_rows_follow_the_flatten_order() {
        // h = 1, w = 2, c = 2, one unit: Keras rows (x0c0, x0c1, x1c0, x1c1) -> lcnn (c0x0, c0x1, c1x0, c1x1).
        let k = vec![1.0, 2.0, 3.0, 4.0];
        assert_eq!(hwc_rows_to_chw(&k, 1, 2, 2, 1), vec![1.0, 3.0, 2.0, 4.0]);
    }

    #[test]
    fn from_logits_is_found_in_the_loss_config() {
        let tc = r#"{"loss": {"class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": true}}}"#;
        assert!(loss_from_logits(Some(tc)));
        assert!(!loss_from_logits(Some(
            r#"{"loss": "categorical_crossentropy"}"#
        )));
        assert!(!loss_from_logits(None));
    }
}
