//! lcnn checkpoints as [safetensors](https://huggingface.co/docs/safetensors): every parameter
//! under its stable name, f32, plus a `__metadata__` map (the model spec as JSON, and whatever
//! the caller adds), and optional raw byte blobs (U8 tensors: the optimizer state of a resume
//! point), so that one atomic file is one consistent checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{decode_floats, FloatBytes, NamedTensor, WeightsError};
use crate::util::write_atomic;

/// What a checkpoint file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// Float tensors (converted to f32).
    pub tensors: Vec<NamedTensor>,
    /// U8 tensors, as raw bytes.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// The `__metadata__` map.
    pub metadata: HashMap<String, String>,
}

/// Serializes tensors, blobs and metadata to safetensors bytes.
pub fn to_bytes(
    tensors: &[NamedTensor],
    blobs: &BTreeMap<String, Vec<u8>>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, WeightsError> {
    let mut bytes: Vec<(String, Dtype, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                Dtype::F32,
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    for (name, blob) in blobs {
        bytes.push((name.clone(), Dtype::U8, blob.clone(), vec![blob.len()]));
    }
    let views = bytes
        .iter()
        .map(|(name, dtype, data, shape)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| WeightsError::Format {
                    file: name.into(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| WeightsError::Format {
        file: "<memory>".into(),
        reason: e.to_string(),
    })
}

/// Writes weights (and metadata) atomically.
pub fn save(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: HashMap<String, String>,
) -> Result<(), WeightsError> {
    save_checkpoint(path, tensors, &BTreeMap::new(), metadata)
}

/// Writes tensors, blobs and metadata atomically.
pub fn save_checkpoint(
    path: &Path,
    tensors: &[NamedTensor],
    blobs: &BTreeMap<String, Vec<u8>>,
    metadata: HashMap<String, String>,
) -> Result<(), WeightsError> {
    let bytes = to_bytes(tensors, blobs, metadata)?;
    write_atomic(path, &bytes).map_err(|source| WeightsError::Io {
        file: path.to_path_buf(),
        source,
    })
}

/// Reads the float tensors of a safetensors file and its metadata.
pub fn load(path: &Path) -> Result<(Vec<NamedTensor>, HashMap<String, String>), WeightsError> {
    let c = load_checkpoint(path)?;
    Ok((c.tensors, c.metadata))
}

/// Reads every tensor of a safetensors file (f32, f64, f16 and bf16 are converted to f32; U8
/// tensors are returned as blobs) and its metadata.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let format = |reason: String| WeightsError::Format {
        file: path.to_path_buf(),
        reason,
    };
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| format(format!("not a safetensors file: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| format(format!("not a safetensors file: {e}")))?;
    let mut out = Vec::new();
    let mut blobs = BTreeMap::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let view = st
            .tensor(&name)
            .map_err(|e| format(format!("tensor `{name}`: {e}")))?;
        let raw = view.data();
        let kind = match view.dtype() {
            Dtype::F32 => FloatBytes::F32,
            Dtype::F64 => FloatBytes::F64,
            Dtype::F16 => FloatBytes::F16,
            Dtype::BF16 => FloatBytes::BF16,
            Dtype::U8 => {
                blobs.insert(name, raw.to_vec());
                continue;
            }
            other => {
                return Err(format(format!(
                    "tensor `{name}` has dtype {other:?}, expected a float type"
                )))
            }
        };
        let data = decode_floats(raw, kind);
        out.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    Ok(Checkpoint {
        tensors: out,
        blobs,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_metadata() {
        let dir = std::env::temp_dir().join(format!("lcnn-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("w.safetensors");
        let t = vec![
            NamedTensor {
                name: "a.weight".into(),
                shape: vec![2, 2],
                data: vec![1.0, -2.0, 3.5, 0.0],
            },
            NamedTensor {
                name: "b.bias".into(),
                shape: vec![1],
                data: vec![7.0],
            },
        ];
        let meta = HashMap::from([("model".to_string(), "lcnn".to_string())]);
        save(&p, &t, meta.clone()).unwrap();
        let (back, m) = load(&p).unwrap();
        assert_eq!(back, t);
        assert_eq!(m, meta);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("lcnn-st-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.safetensors");
        std::fs::write(&p, b"this is not a tensor file").unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(
            err.contains("bad.safetensors") && err.contains("not a safetensors file"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
