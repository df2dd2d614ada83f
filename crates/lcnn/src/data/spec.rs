//! Naming a dataset (`mnist`, `cifar10`, `images:DIR`), the options it is loaded with, and
//! [`load`]. The parsers here are shared by the CLI commands (`data check`, `train`, ...).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;

use super::dataset::{Dataset, Splits};
use super::dir::{offline_from_env, resolve_data_dir};
use super::error::DataError;
use super::folder::{self, FolderOptions};
use super::imageops::{self, ColorMode, Interpolation};
use super::{cifar10, mnist};

/// Which dataset to load.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DatasetSpec {
    /// MNIST from `DATA_DIR/mnist/`.
    Mnist,
    /// CIFAR-10 from `DATA_DIR/cifar10/`.
    Cifar10,
    /// An image folder with `train/<class>/` (and optionally `test/<class>/`).
    Images(PathBuf),
    /// An audio folder with `train/<class>/` (and optionally `test/<class>/`) WAV or FLAC
    /// files, or the flac files of ASVspoof protocols ([`crate::audio::dataset`]).
    Audio(PathBuf),
}

impl FromStr for DatasetSpec {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Some(dir) = t.strip_prefix("images:") {
            if dir.is_empty() {
                return Err(DataError::invalid(
                    "dataset",
                    s,
                    "a folder after images:, e.g. images:data/cats_dogs",
                ));
            }
            return Ok(DatasetSpec::Images(PathBuf::from(dir)));
        }
        if let Some(dir) = t.strip_prefix("audio:") {
            if dir.is_empty() {
                return Err(DataError::invalid(
                    "dataset",
                    s,
                    "a folder after audio:, e.g. audio:data/spoof",
                ));
            }
            return Ok(DatasetSpec::Audio(PathBuf::from(dir)));
        }
        match t.to_ascii_lowercase().as_str() {
            "mnist" => Ok(DatasetSpec::Mnist),
            "cifar10" | "cifar-10" => Ok(DatasetSpec::Cifar10),
            _ => Err(DataError::invalid(
                "dataset",
                s,
                "mnist, cifar10, images:DIR or audio:DIR",
            )),
        }
    }
}

impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetSpec::Mnist => f.write_str("mnist"),
            DatasetSpec::Cifar10 => f.write_str("cifar10"),
            DatasetSpec::Images(dir) => write!(f, "images:{}", dir.display()),
            DatasetSpec::Audio(dir) => write!(f, "audio:{}", dir.display()),
        }
    }
}

/// Keras `class_mode`: how labels reach the loss. Parsed here with the other data options;
/// `binary` needs exactly two classes (see [`ClassMode::check`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ClassMode {
    /// One-hot labels, softmax + categorical cross-entropy.
    #[default]
    Categorical,
    /// One 0/1 label, sigmoid + binary cross-entropy; two classes only.
    Binary,
}

impl ClassMode {
    /// Fails when the mode does not fit the dataset's classes: fewer than two (a one-class
    /// folder once trained a binary model with an invented class), or binary with other than 2.
    pub fn check(self, splits: &Splits) -> Result<(), DataError> {
        let path = || PathBuf::from(splits.name.strip_prefix("images:").unwrap_or(&splits.name));
        let classes = splits.classes();
        if classes.len() < 2 {
            return Err(DataError::TooFewClasses {
                path: path(),
                classes: classes.to_vec(),
            });
        }
        if self == ClassMode::Binary && classes.len() != 2 {
            return Err(DataError::BinaryClasses {
                path: path(),
                classes: classes.to_vec(),
            });
        }
        Ok(())
    }
}

impl FromStr for ClassMode {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "categorical" => Ok(ClassMode::Categorical),
            "binary" => Ok(ClassMode::Binary),
            _ => Err(DataError::invalid("class mode", s, "categorical or binary")),
        }
    }
}

impl fmt::Display for ClassMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClassMode::Categorical => "categorical",
            ClassMode::Binary => "binary",
        })
    }
}

/// Parses a target size `HxW` (e.g. `150x150`), both sides in 1..=16384.
pub fn parse_target_size(s: &str) -> Result<(usize, usize), DataError> {
    let bad = || DataError::invalid("target size", s, "HxW with positive sides, e.g. 150x150");
    let (h, w) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=16384).contains(n))
    };
    match (side(h), side(w)) {
        (Some(h), Some(w)) => Ok((h, w)),
        _ => Err(bad()),
    }
}

/// How a dataset is found and shaped.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Folder holding `mnist/` and `cifar10/` (see [`resolve_data_dir`]). Image folders
    /// (`images:DIR`) are given by their own path.
    pub data_dir: PathBuf,
    /// `(height, width)` every image is resized to. `None`: image folders keep their images'
    /// size (which must then be the same for all); MNIST and CIFAR-10 keep theirs.
    pub target_size: Option<(usize, usize)>,
    /// Filter used when resizing.
    pub interpolation: Interpolation,
    /// Channels of image folders (Keras `color_mode`). MNIST is always 1 channel; CIFAR-10 is
    /// 3 channels and is converted to 1 with `Grayscale`.
    pub color_mode: ColorMode,
    /// Never download; a missing file is an error naming the file, its URL and the folder.
    /// `LCNN_OFFLINE=1` has the same effect.
    pub offline: bool,
    /// Features, protocol files and caching of audio datasets (`audio:DIR`).
    pub audio: crate::audio::AudioOptions,
}

impl LoadOptions {
    /// Options for `data_dir` with Keras' defaults; offline when `LCNN_OFFLINE` says so.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            data_dir: data_dir.into(),
            target_size: None,
            interpolation: Interpolation::Nearest,
            color_mode: ColorMode::Rgb,
            offline: offline_from_env(),
            audio: Default::default(),
        }
    }
}

impl Default for LoadOptions {
    /// The resolved default data directory (`LCNN_DATA` or the user cache).
    fn default() -> Self {
        LoadOptions::new(resolve_data_dir(None))
    }
}

/// Loads a dataset with its splits. Every problem with the files ends in a [`DataError`] that
/// names the file; nothing panics on bad input.
pub fn load(spec: &DatasetSpec, opts: &LoadOptions) -> Result<Splits, DataError> {
    let offline = opts.offline || offline_from_env();
    match spec {
        DatasetSpec::Mnist => reshape(mnist::load(&opts.data_dir, offline)?, opts, false),
        DatasetSpec::Cifar10 => reshape(cifar10::load(&opts.data_dir, offline)?, opts, true),
        DatasetSpec::Images(dir) => folder::load(
            dir,
            &FolderOptions {
                target_size: opts.target_size,
                interpolation: opts.interpolation,
                color_mode: opts.color_mode,
            },
        ),
        DatasetSpec::Audio(dir) => crate::audio::dataset::load(dir, &opts.audio),
    }
}

/// Applies the colour mode (CIFAR-10 only) and the target size to a built-in dataset.
fn reshape(mut splits: Splits, opts: &LoadOptions, colour: bool) -> Result<Splits, DataError> {
    let gray = colour && opts.color_mode == ColorMode::Grayscale;
    splits.train = reshape_one(splits.train, opts.target_size, opts.interpolation, gray);
    splits.test = splits
        .test
        .map(|t| reshape_one(t, opts.target_size, opts.interpolation, gray));
    Ok(splits)
}

fn reshape_one(
    ds: Dataset,
    target: Option<(usize, usize)>,
    filter: Interpolation,
    gray: bool,
) -> Dataset {
    let ds = if gray && ds.channels == 3 {
        let mut images = vec![0; ds.images.len() / 3];
        images
            .par_chunks_mut(1 << 16)
            .zip(ds.images.par_chunks(3 << 16))
            .for_each(|(o, i)| imageops::rgb_to_gray(i, o));
        Dataset {
            images,
            channels: 1,
            ..ds
        }
    } else {
        ds
    };
    match target {
        Some((h, w)) if (h, w) != (ds.height, ds.width) => {
            let shape = ds.shape();
            let size = h * w * ds.channels;
            let mut images = vec![0; size * ds.len()];
            images
                .par_chunks_mut(size)
                .zip(ds.images.par_chunks(ds.image_size()))
                .for_each(|(o, i)| imageops::resize_into(i, shape, (h, w), filter, o));
            Dataset {
                images,
                height: h,
                width: w,
                ..ds
            }
        }
        _ => ds,
    }
}

/// The folder an image dataset is read from, or the built-in dataset's folder in `data_dir`.
pub fn dataset_dir(spec: &DatasetSpec, data_dir: &Path) -> PathBuf {
    match spec {
        DatasetSpec::Mnist => data_dir.join("mnist"),
        DatasetSpec::Cifar10 => data_dir.join("cifar10"),
        DatasetSpec::Images(dir) | DatasetSpec::Audio(dir) => dir.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dataset_specs() {
        assert_eq!("mnist".parse::<DatasetSpec>().unwrap(), DatasetSpec::Mnist);
        assert_eq!(
            "CIFAR10".parse::<DatasetSpec>().unwrap(),
            DatasetSpec::Cifar10
        );
        assert_eq!(
            "images:/a/b".parse::<DatasetSpec>().unwrap(),
            DatasetSpec::Images("/a/b".into())
        );
        assert!("images:".parse::<DatasetSpec>().is_err());
        assert!("imagenet".parse::<DatasetSpec>().is_err());
        assert_eq!(DatasetSpec::Images("x".into()).to_string(), "images:x");
    }

    #[test]
    fn parses_target_sizes() {
        assert_eq!(parse_target_size("150x150").unwrap(), (150, 150));
        assert_eq!(parse_target_size("28X32").unwrap(), (28, 32));
        for bad in ["", "150", "0x5", "5x", "x5", "-1x5", "5x5x5", "99999x2"] {
            assert!(parse_target_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn class_mode_binary_needs_two_classes() {
        let ds = |n: usize| Dataset {
            images: vec![],
            labels: vec![],
            height: 1,
            width: 1,
            channels: 1,
            classes: (0..n).map(|i| i.to_string()).collect(),
        };
        let s = |n| Splits {
            name: "images:/d".into(),
            train: ds(n),
            test: None,
            validation_rule: Default::default(),
            val: None,
        };
        assert!(ClassMode::Binary.check(&s(2)).is_ok());
        let e = ClassMode::Binary.check(&s(3)).unwrap_err().to_string();
        assert!(e.contains("/d") && e.contains("exactly 2"), "{e}");
        assert!(ClassMode::Categorical.check(&s(3)).is_ok());
        assert_eq!("binary".parse::<ClassMode>().unwrap(), ClassMode::Binary);
        assert!("sparse".parse::<ClassMode>().is_err());
    }

    #[test]
    fn reshape_converts_and_resizes() {
        let ds = Dataset {
            images: vec![255, 0, 0, 0, 255, 0],
            labels: vec![0, 1],
            height: 1,
            width: 1,
            channels: 3,
            classes: vec!["a".into(), "b".into()],
        };
        let g = reshape_one(ds.clone(), None, Interpolation::Nearest, true);
        assert_eq!((g.channels, g.images.clone()), (1, vec![76, 150]));
        let r = reshape_one(ds, Some((2, 2)), Interpolation::Nearest, false);
        assert_eq!((r.height, r.width, r.images.len()), (2, 2, 24));
    }
}
