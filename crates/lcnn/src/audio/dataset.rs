//! Audio datasets: `audio:DIR` folders (`DIR/train/<class>/*.wav|flac`, optionally
//! `DIR/test/<class>/`, as image folders) and ASVspoof 2019 protocol files (`SPEAKER UTT_ID -
//! SYSTEM_ID KEY` per line, the utterances `UTT_ID.flac` anywhere under `DIR`). Each file
//! becomes a [`features`](super::features) image, computed in parallel and cached on disk
//! under a key of the file (path, size, modification time) and the feature settings, so that a
//! second run reads the cache instead of decoding.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::dir::features_cache_dir;
use crate::data::folder::{scan_files, walk};
use crate::data::{DataError, Dataset, Splits, ValidationRule};

use super::decode::{self, EXTENSIONS};
use super::features::{features, quantize, FeatureConfig};

/// How an audio dataset is read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AudioOptions {
    /// The features every file becomes.
    pub features: FeatureConfig,
    /// An ASVspoof protocol file for the training split (instead of class folders).
    pub protocol: Option<PathBuf>,
    /// An ASVspoof protocol file for the validation split (the development set), used
    /// instead of `validation_split`.
    pub val_protocol: Option<PathBuf>,
    /// An ASVspoof protocol file for the test split.
    pub test_protocol: Option<PathBuf>,
    /// Skip the feature cache (always decode).
    pub no_cache: bool,
}

/// True for names ending in `.wav` or `.flac` (any case).
pub fn has_audio_extension(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Files with their class index, and the class names.
pub struct FileList {
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Every file with its label.
    pub files: Vec<(PathBuf, u32)>,
}

/// The files of each split of an audio dataset.
pub struct SplitLists {
    /// `root/train`, or the training protocol.
    pub train: FileList,
    /// The validation protocol's, if given.
    pub val: Option<FileList>,
    /// `root/test`, or the test protocol.
    pub test: Option<FileList>,
}

impl SplitLists {
    /// `(split name, files)` for each split present, in train, validation, test order.
    pub fn named(self) -> impl Iterator<Item = (&'static str, FileList)> {
        [
            ("train", Some(self.train)),
            ("validation", self.val),
            ("test", self.test),
        ]
        .into_iter()
        .filter_map(|(name, l)| l.map(|l| (name, l)))
    }
}

/// The files of `root/train` (and `root/test`) or of the protocol files.
pub fn list(root: &Path, opts: &AudioOptions) -> Result<SplitLists, DataError> {
    if !root.is_dir() {
        return Err(DataError::NotFound {
            path: root.to_path_buf(),
            what: "a folder with train/<class>/ audio folders, or the flac files of an \
                   ASVspoof protocol"
                .into(),
        });
    }
    if let Some(protocol) = &opts.protocol {
        let index = index_files(root)?;
        let train = read_protocol(protocol, &index, root, None)?;
        let other = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| read_protocol(p, &index, root, Some(&train.classes)))
                .transpose()
        };
        let (val, test) = (other(&opts.val_protocol)?, other(&opts.test_protocol)?);
        return Ok(SplitLists { train, val, test });
    }
    let folder = |dir: PathBuf| -> Result<FileList, DataError> {
        let (classes, files) = scan_files(&dir, has_audio_extension, ".wav or .flac")?;
        Ok(FileList { classes, files })
    };
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::NotFound {
            path: train_dir,
            what: "one subfolder per class with the training audio (train/<class>/*.wav), \
                   or --protocol FILE"
                .into(),
        });
    }
    let train = folder(train_dir)?;
    let test_dir = root.join("test");
    let test = if test_dir.is_dir() {
        let t = folder(test_dir.clone())?;
        if t.classes != train.classes {
            return Err(DataError::ClassMismatch {
                path: test_dir,
                expected: train.classes,
                found: t.classes,
            });
        }
        Some(t)
    } else {
        None
    };
    Ok(SplitLists {
        train,
        val: None,
        test,
    })
}

/// Every audio file under `root` by its name without extension.
fn index_files(root: &Path) -> Result<HashMap<String, PathBuf>, DataError> {
    let mut found = Vec::new();
    walk(root, has_audio_extension, &mut found)?;
    Ok(found
        .into_iter()
        .map(|(dir, name)| {
            let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
            (stem.to_string(), PathBuf::from(dir).join(&name))
        })
        .collect())
}

/// The keys of an ASVspoof protocol's last column.
const PROTOCOL_KEYS: [&str; 2] = ["bonafide", "spoof"];

/// An ASVspoof 2019 protocol: `SPEAKER UTT_ID - SYSTEM_ID KEY` (LA) or with more columns (PA);
/// the utterance is the second column, the class the last (`bonafide` / `spoof`; another key,
/// or an utterance listed twice, is an error naming the line). Classes are
/// sorted names, or `classes` (the training split's) for a test protocol.
fn read_protocol(
    path: &Path,
    index: &HashMap<String, PathBuf>,
    root: &Path,
    classes: Option<&[String]>,
) -> Result<FileList, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut rows = Vec::new();
    let mut seen = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() {
            continue;
        }
        if cols.len() < 3 {
            return Err(DataError::Protocol {
                path: path.to_path_buf(),
                line: n + 1,
                reason: format!(
                    "{} columns; expected SPEAKER UTT_ID - SYSTEM_ID KEY",
                    cols.len()
                ),
            });
        }
        let (utt, key) = (cols[1], cols[cols.len() - 1]);
        let error = |reason: String| DataError::Protocol {
            path: path.to_path_buf(),
            line: n + 1,
            reason,
        };
        if !PROTOCOL_KEYS.contains(&key) {
            return Err(error(format!(
                "key `{key}`; expected {}",
                PROTOCOL_KEYS.join(" or ")
            )));
        }
        let file = index.get(utt).ok_or_else(|| {
            error(format!(
                "no file {utt}.flac or {utt}.wav under {}",
                root.display()
            ))
        })?;
        if let Some(first) = seen.insert(utt, n + 1) {
            return Err(error(format!(
                "utterance {utt} listed again (first on line {first})"
            )));
        }
        rows.push((file.clone(), key.to_string(), n + 1));
    }
    let classes: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => {
            let mut c: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
            c.sort();
            c.dedup();
            c
        }
    };
    if rows.is_empty() {
        return Err(DataError::Protocol {
            path: path.to_path_buf(),
            line: 0,
            reason: "no utterances".into(),
        });
    }
    let files = rows
        .into_iter()
        .map(
            |(file, key, line)| match classes.iter().position(|c| *c == key) {
                Some(i) => Ok((file, i as u32)),
                None => Err(DataError::Protocol {
                    path: path.to_path_buf(),
                    line,
                    reason: format!("key `{key}` is not a training class ({classes:?})"),
                }),
            },
        )
        .collect::<Result<_, _>>()?;
    Ok(FileList { classes, files })
}

/// The cache file of `file`'s features under `cfg`.
fn cache_path(dir: &Path, file: &Path, cfg: &FeatureConfig) -> Option<PathBuf> {
    let meta = std::fs::metadata(file).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    let absolute = std::fs::canonicalize(file).ok()?;
    let mut h = Md5::new();
    h.update(absolute.to_string_lossy().as_bytes());
    h.update(meta.len().to_le_bytes());
    h.update(modified.to_le_bytes());
    h.update(serde_json::to_vec(cfg).ok()?);
    let key: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Some(dir.join(&key[..2]).join(format!("{key}.u8")))
}

/// The 8-bit feature image of one file ([`quantize`]d [`features`]).
pub fn file_features(path: &Path, cfg: &FeatureConfig) -> Result<Vec<u8>, DataError> {
    let samples = decode::read_at(path, cfg.sample_rate)?;
    Ok(quantize(&features(&samples, cfg), cfg))
}

/// Feature images of `files` (in order), from the cache where it has them.
pub fn features_of(
    files: &[(PathBuf, u32)],
    cfg: &FeatureConfig,
    cache: Option<&Path>,
) -> Result<Vec<u8>, DataError> {
    let (h, w, c) = cfg.shape();
    let size = h * w * c;
    let mut out = vec![0u8; files.len() * size];
    out.par_chunks_mut(size)
        .zip(files.par_iter())
        .try_for_each(|(o, (file, _))| -> Result<(), DataError> {
            let key = cache.and_then(|d| cache_path(d, file, cfg));
            if let Some(bytes) = key.as_ref().and_then(|k| std::fs::read(k).ok()) {
                if bytes.len() == size {
                    o.copy_from_slice(&bytes);
                    return Ok(());
                }
            }
            let f = file_features(file, cfg)?;
            o.copy_from_slice(&f);
            if let Some(k) = key {
                // A cache that cannot be written only costs time next run.
                let _ = k
                    .parent()
                    .map(std::fs::create_dir_all)
                    .transpose()
                    .and_then(|_| crate::util::write_atomic(&k, &f));
            }
            Ok(())
        })?;
    Ok(out)
}

fn dataset(list: &FileList, opts: &AudioOptions) -> Result<Dataset, DataError> {
    let cache = (!opts.no_cache).then(features_cache_dir);
    let cfg = &opts.features;
    let images = features_of(&list.files, cfg, cache.as_deref())?;
    Dataset::new(
        images,
        list.files.iter().map(|f| f.1).collect(),
        cfg.shape(),
        list.classes.clone(),
    )
}

/// Loads an audio dataset as feature images (`bins x frames x channels`).
pub fn load(root: &Path, opts: &AudioOptions) -> Result<Splits, DataError> {
    opts.features
        .validate()
        .map_err(|e| DataError::invalid("audio features", e, "valid feature settings"))?;
    let lists = list(root, opts)?;
    Ok(Splits {
        name: format!("audio:{}", root.display()),
        train: dataset(&lists.train, opts)?,
        val: lists.val.map(|v| dataset(&v, opts)).transpose()?,
        test: lists.test.map(|t| dataset(&t, opts)).transpose()?,
        // Class folders are sorted by class (Keras' flow_from_directory rule); a protocol
        // interleaves them, as arrays.
        validation_rule: if opts.protocol.is_some() {
            ValidationRule::Last
        } else {
            ValidationRule::FirstOfEachClass
        },
    })
}
