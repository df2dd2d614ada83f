//! MNIST from `DATA_DIR/mnist/`: the four IDX files, gzip-compressed (`.gz`) or not. Missing
//! files are downloaded from the mirror torchvision uses.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::dataset::{Dataset, Splits, ValidationRule};
use super::download::{ensure, Remote};
use super::error::DataError;
use super::idx;

/// Where missing MNIST files are fetched from (the mirror torchvision uses).
pub const MIRROR: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";

/// The four files with their published MD5s (of the `.gz` files).
pub const FILES: [Remote; 4] = [
    Remote {
        file_name: "train-images-idx3-ubyte.gz",
        url: "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        md5: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    },
    Remote {
        file_name: "train-labels-idx1-ubyte.gz",
        url: "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
        md5: "d53e105ee54ea40749a09fcbcd1e9432",
    },
    Remote {
        file_name: "t10k-images-idx3-ubyte.gz",
        url: "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
        md5: "9fb629c4189551a2d022fa330f9573f3",
    },
    Remote {
        file_name: "t10k-labels-idx1-ubyte.gz",
        url: "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
        md5: "ec29112dd5afa0611ce80d1b7f02629c",
    },
];

/// Decompressed files larger than this are refused (4 GiB).
const MAX_DECOMPRESSED: u64 = 1 << 32;

/// Loads MNIST from `data_dir/mnist`, downloading missing files unless `offline`.
pub fn load(data_dir: &Path, offline: bool) -> Result<Splits, DataError> {
    let dir = super::dir::dataset_folder(data_dir, "mnist", &[FILES[0].file_name]);
    let mut paths = Vec::with_capacity(4);
    for remote in &FILES {
        paths.push(locate(&dir, remote, offline)?);
    }
    let train = load_pair(&paths[0], &paths[1])?;
    let test = load_pair(&paths[2], &paths[3])?;
    // Checked here, not after the training epochs, when the model meets the test images.
    if (test.height, test.width) != (train.height, train.width) {
        return Err(DataError::SplitSize {
            path: paths[2].clone(),
            expected_h: train.height,
            expected_w: train.width,
            found_h: test.height,
            found_w: test.width,
        });
    }
    Ok(Splits {
        name: "mnist".into(),
        train,
        test: Some(test),
        validation_rule: ValidationRule::Last,
        val: None,
    })
}

/// The file for `remote` in `dir`: the uncompressed one when present, else the `.gz`, else a
/// download of the `.gz`.
fn locate(dir: &Path, remote: &Remote, offline: bool) -> Result<PathBuf, DataError> {
    let gz = dir.join(remote.file_name);
    if let Some(stem) = remote.file_name.strip_suffix(".gz") {
        let raw = dir.join(stem);
        if raw.is_file() {
            return Ok(raw);
        }
    }
    if gz.is_file() {
        return Ok(gz);
    }
    ensure(dir, remote, offline)
}

/// Reads a file, decompressing it when it is gzip (by content, or required by a `.gz` name).
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let named_gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let is_gz = bytes.starts_with(&[0x1f, 0x8b]);
    if !is_gz {
        if named_gz {
            let reason = if bytes.is_empty() {
                "the file is empty".to_string()
            } else {
                format!(
                    "no gzip signature 1f 8b at the start (found {:02x?})",
                    &bytes[..bytes.len().min(4)]
                )
            };
            return Err(DataError::Gzip {
                path: path.to_path_buf(),
                reason,
            });
        }
        return Ok(bytes);
    }
    gunzip(&bytes).map_err(|reason| DataError::Gzip {
        path: path.to_path_buf(),
        reason,
    })
}

/// Decompresses a (possibly multi-member) gzip buffer, checking every member's CRC and size.
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    // The trailer's ISIZE (size mod 2^32) is a good first guess for the capacity.
    let hint = bytes
        .len()
        .checked_sub(4)
        .map(|i| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize)
        .unwrap_or(0)
        .min(1 << 28);
    let mut out = Vec::with_capacity(hint);
    let mut decoder = MultiGzDecoder::new(bytes).take(MAX_DECOMPRESSED + 1);
    match decoder.read_to_end(&mut out) {
        Ok(_) if out.len() as u64 > MAX_DECOMPRESSED => {
            Err(format!("it expands to more than {MAX_DECOMPRESSED} bytes"))
        }
        Ok(_) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(format!("the stream ends early: {e}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Loads one images/labels pair of IDX files into a dataset, checking everything.
pub fn load_pair(images_path: &Path, labels_path: &Path) -> Result<Dataset, DataError> {
    let images_raw = read_maybe_gz(images_path)?;
    let labels_raw = read_maybe_gz(labels_path)?;
    from_idx_bytes(&images_raw, images_path, &labels_raw, labels_path)
}

/// Builds an MNIST-like dataset (10 classes `0`..`9`) from the decompressed bytes of an image
/// IDX file (rank 3) and a label IDX file (rank 1). The paths only label errors.
pub fn from_idx_bytes(
    images_raw: &[u8],
    images_path: &Path,
    labels_raw: &[u8],
    labels_path: &Path,
) -> Result<Dataset, DataError> {
    let images = idx::parse(images_raw, 3).map_err(|source| DataError::Idx {
        path: images_path.to_path_buf(),
        source,
    })?;
    let labels = idx::parse(labels_raw, 1).map_err(|source| DataError::Idx {
        path: labels_path.to_path_buf(),
        source,
    })?;
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if labels.dims[0] != n {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: n,
            labels_path: labels_path.to_path_buf(),
            labels: labels.dims[0],
        });
    }
    const CLASSES: usize = 10;
    if let Some((index, &label)) = labels
        .data
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= CLASSES)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels_path.to_path_buf(),
            index,
            label: label as u32,
            classes: CLASSES,
        });
    }
    Ok(Dataset {
        images: images.data.to_vec(),
        labels: labels.data.iter().map(|&l| l as u32).collect(),
        height: h,
        width: w,
        channels: 1,
        classes: (0..CLASSES).map(|c| c.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn idx(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, rank];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn builds_a_dataset_and_checks_counts_and_labels() {
        let p = Path::new("x");
        let images = idx(3, &[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let d = from_idx_bytes(&images, p, &idx(1, &[2], &[3, 9]), p).unwrap();
        assert_eq!((d.len(), d.shape()), (2, (2, 2, 1)));
        assert_eq!(d.image(1), &[5, 6, 7, 8]);
        assert_eq!(d.labels, vec![3, 9]);
        let e = from_idx_bytes(&images, p, &idx(1, &[3], &[0, 0, 0]), p).unwrap_err();
        assert!(matches!(e, DataError::CountMismatch { .. }), "{e}");
        let e = from_idx_bytes(&images, p, &idx(1, &[2], &[0, 10]), p).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::LabelOutOfRange {
                    index: 1,
                    label: 10,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn gunzip_detects_truncation_and_corruption() {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[7u8; 5000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz).unwrap(), vec![7u8; 5000]);
        assert!(gunzip(&gz[..gz.len() - 6]).is_err());
        assert!(gunzip(&gz[..gz.len() / 2]).is_err());
        let mut bad_crc = gz.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 0xff;
        assert!(gunzip(&bad_crc).is_err());
    }
}
