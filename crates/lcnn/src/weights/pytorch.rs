//! PyTorch weights in and out: a `state_dict` saved with `torch.save` (`.pt` / `.pth`, read by
//! Burn's [`pytorch_reader`], no Python needed) loads into a network by layer name, and a
//! network's weights go out as a PyTorch `state_dict` in safetensors
//! (`model.load_state_dict(safetensors.torch.load_file(path))`).
//!
//! Names and layouts, for a PyTorch module whose submodules carry lcnn's layer names
//! (`conv1`, `bn2a`, `fc1`; `reference/torch_roundtrip.py` builds LCNN that way):
//!
//! | lcnn | PyTorch |
//! | --- | --- |
//! | `{conv}.weight` `[O, I, kh, kw]`, `.bias` | `nn.Conv2d` `weight`, `bias` (same layout) |
//! | `{sep}.depthwise.weight` `[C, 1, k, k]`, `.pointwise.weight` | two `nn.Conv2d` named `depthwise` (groups C), `pointwise` |
//! | `{dense}.weight` `[in, out]`, `.bias` | `nn.Linear` `weight` `[out, in]` (transposed), `bias` |
//! | `{bn}.gamma`, `.beta`, `.running_mean`, `.running_var` | `nn.BatchNorm2d/1d` `weight`, `bias`, `running_mean`, `running_var` |
//!
//! A `module.` prefix (`nn.DataParallel`) is dropped, `num_batches_tracked` is ignored, and
//! Flatten is channels-first in both, so dense weights after a Flatten need no reordering.
//! BatchNorm's epsilon is not in a `state_dict`: lcnn's layers use Keras' 1e-3 (PyTorch's
//! default is 1e-5; build the PyTorch side with `eps=1e-3` to match exactly).

use std::collections::BTreeMap;
use std::path::Path;

use pytorch_reader::{DType, PytorchReader};

use super::{decode_floats, FloatBytes, NamedTensor, WeightsError};

fn format(file: &Path, reason: impl Into<String>) -> WeightsError {
    WeightsError::Format {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every floating-point tensor of a `torch.save`d `state_dict` (or of the dict under
/// `state_dict` / `model_state_dict` in a training checkpoint), as f32, keyed by name.
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, NamedTensor>, WeightsError> {
    let open = |key: Option<&str>| match key {
        None => PytorchReader::new(path),
        Some(k) => PytorchReader::with_top_level_key(path, k),
    };
    let reader = open(None).map_err(|e| format(path, format!("not a PyTorch checkpoint: {e}")))?;
    // A training checkpoint keeps the weights one level down.
    let reader = match ["state_dict", "model_state_dict", "model"]
        .iter()
        .find(|k| {
            reader
                .keys()
                .iter()
                .any(|n| n.starts_with(&format!("{k}.")))
        }) {
        Some(k) => open(Some(k)).map_err(|e| format(path, e.to_string()))?,
        None => reader,
    };
    let mut out = BTreeMap::new();
    for (name, t) in reader.into_tensors() {
        let bytes = t.read().map_err(|e| format(path, e.to_string()))?;
        // pytorch-reader hands native-endian bytes: little-endian on lcnn's targets.
        let kind = match t.dtype() {
            DType::F32 => FloatBytes::F32,
            DType::F64 => FloatBytes::F64,
            DType::F16 => FloatBytes::F16,
            DType::BF16 => FloatBytes::BF16,
            // Integer buffers (BatchNorm's num_batches_tracked) carry no weights.
            _ => continue,
        };
        let data = decode_floats(&bytes, kind);
        let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
        out.insert(
            name.clone(),
            NamedTensor {
                name,
                shape: t.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// The PyTorch name of lcnn's parameter `name` (`bn2a.gamma` -> `bn2a.weight`).
pub fn torch_name(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((layer, "gamma")) => format!("{layer}.weight"),
        Some((layer, "beta")) => format!("{layer}.bias"),
        _ => name.to_string(),
    }
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(t: &NamedTensor) -> Vec<f32> {
    let (r, c) = (t.shape[0], t.shape[1]);
    let mut out = vec![0.0; t.data.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = t.data[i * c + j];
        }
    }
    out
}

/// The tensors of a PyTorch `state_dict` (from [`read_state_dict`]) under lcnn's names and
/// layouts, for the parameters `like` (a network's [`super::export`]). Every one must be in the
/// file with its shape; with `strict`, a float tensor of the file that the model has no place
/// for is an error too, naming it (a model with other layer names).
pub fn from_state_dict(
    mut torch: BTreeMap<String, NamedTensor>,
    like: &[NamedTensor],
    strict: bool,
    file: &Path,
) -> Result<Vec<NamedTensor>, WeightsError> {
    let mut out = Vec::with_capacity(like.len());
    for want in like {
        let key = torch_name(&want.name);
        let Some(t) = torch.remove(&key) else {
            return Err(WeightsError::Missing {
                file: file.to_path_buf(),
                name: key,
                expected: torch_shape(want),
            });
        };
        if t.shape != torch_shape(want) {
            return Err(WeightsError::Shape {
                file: file.to_path_buf(),
                name: key,
                found: t.shape,
                expected: torch_shape(want),
            });
        }
        let data = if want.shape.len() == 2 {
            transpose(&t)
        } else {
            t.data
        };
        out.push(NamedTensor {
            name: want.name.clone(),
            shape: want.shape.clone(),
            data,
        });
    }
    if strict && !torch.is_empty() {
        return Err(WeightsError::Unexpected {
            file: file.to_path_buf(),
            names: torch.into_keys().collect::<Vec<_>>().join(", "),
        });
    }
    Ok(out)
}

/// PyTorch's shape of lcnn's tensor (dense weights transposed).
fn torch_shape(t: &NamedTensor) -> Vec<usize> {
    match t.shape[..] {
        [i, o] => vec![o, i],
        _ => t.shape.clone(),
    }
}

/// A network's tensors (from [`super::export`]) as a PyTorch `state_dict`: PyTorch names and
/// layouts, plus BatchNorm's `num_batches_tracked`-free buffers (PyTorch accepts
/// `load_state_dict(..., strict=False)` without them; `reference/torch_roundtrip.py` loads with
/// `strict=False` and checks that only those are missing).
pub fn to_state_dict(tensors: &[NamedTensor]) -> Vec<NamedTensor> {
    tensors
        .iter()
        .map(|t| NamedTensor {
            name: torch_name(&t.name),
            shape: torch_shape(t),
            data: if t.shape.len() == 2 {
                transpose(t)
            } else {
                t.data.clone()
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_layouts_round_trip() {
        let lcnn = vec![
            NamedTensor {
                name: "fc1.weight".into(),
                shape: vec![3, 2],
                data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            },
            NamedTensor {
                name: "bn1.gamma".into(),
                shape: vec![2],
                data: vec![0.5, 0.25],
            },
            NamedTensor {
                name: "conv1.weight".into(),
                shape: vec![1, 1, 1, 2],
                data: vec![7.0, 8.0],
            },
        ];
        let torch = to_state_dict(&lcnn);
        assert_eq!(torch[0].name, "fc1.weight");
        assert_eq!(torch[0].shape, [2, 3]);
        assert_eq!(torch[0].data, [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        assert_eq!(torch[1].name, "bn1.weight");
        let map = torch.into_iter().map(|t| (t.name.clone(), t)).collect();
        let back = from_state_dict(map, &lcnn, true, Path::new("x.pt")).unwrap();
        assert_eq!(back, lcnn);
    }

    #[test]
    fn missing_extra_and_misshapen_tensors_are_named() {
        let like = vec![NamedTensor {
            name: "fc1.weight".into(),
            shape: vec![3, 2],
            data: vec![0.0; 6],
        }];
        let file = Path::new("w.pt");
        let err = from_state_dict(BTreeMap::new(), &like, true, file).unwrap_err();
        assert!(err.to_string().contains("fc1.weight") && err.to_string().contains("w.pt"));
        let mut wrong = BTreeMap::new();
        wrong.insert(
            "fc1.weight".to_string(),
            NamedTensor {
                name: "fc1.weight".into(),
                shape: vec![3, 2],
                data: vec![0.0; 6],
            },
        );
        let err = from_state_dict(wrong.clone(), &like, true, file).unwrap_err();
        assert!(err.to_string().contains("[2, 3]"), "{err}");
        let mut extra = to_state_dict(&like)
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect::<BTreeMap<_, _>>();
        extra.insert("head.weight".into(), wrong.remove("fc1.weight").unwrap());
        let err = from_state_dict(extra.clone(), &like, true, file).unwrap_err();
        assert_eq!(from_state_dict(extra, &like, false, file).unwrap().len(), 1);
        assert!(err.to_string().contains("head.weight"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_checkpoint_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("lcnn-pt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.pt");
        std::fs::write(&f, b"not a pickle").unwrap();
        let err = read_state_dict(&f).unwrap_err().to_string();
        assert!(err.contains("bad.pt") && err.contains("PyTorch"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
