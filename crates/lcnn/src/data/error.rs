//! The one error type of the data layer. Every variant that comes from a file names that file
//! and says what was expected, so a user can fix the input without reading the source.

use std::path::PathBuf;

use super::cifar::CifarError;
use super::idx::IdxError;

/// Everything that can go wrong while finding, downloading, reading or decoding a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A `.gz` file whose gzip stream is truncated or corrupt.
    #[error("{}: corrupt or truncated gzip data ({reason}); expected a complete gzip stream (delete the file so that it is fetched again)", path.display())]
    Gzip { path: PathBuf, reason: String },

    /// A tar archive (or a member of it) that cannot be read.
    #[error("{}: cannot read the archive: {reason}", path.display())]
    Archive { path: PathBuf, reason: String },

    /// A file that is not a valid unsigned-byte IDX file of the expected rank.
    #[error("{}: not a valid IDX file: {source}", path.display())]
    Idx {
        path: PathBuf,
        #[source]
        source: IdxError,
    },

    /// A file that is not a valid CIFAR-10 binary batch.
    #[error("{}: not a valid CIFAR-10 binary batch: {source}", path.display())]
    Cifar {
        path: PathBuf,
        #[source]
        source: CifarError,
    },

    /// A file with the wrong number of records (e.g. a CIFAR-10 batch that is not 10000 images).
    #[error("{}: holds {found} {what}; expected {expected}", path.display())]
    Count {
        path: PathBuf,
        what: &'static str,
        expected: usize,
        found: usize,
    },

    /// Image and label files that disagree on the number of samples.
    #[error("{} holds {images} images but {} holds {labels} labels; expected the same count", images_path.display(), labels_path.display())]
    CountMismatch {
        images_path: PathBuf,
        images: usize,
        labels_path: PathBuf,
        labels: usize,
    },

    /// A label that is not a valid class index.
    #[error("{}: label {label} of sample {index} is out of range; expected 0..={}", path.display(), classes.saturating_sub(1))]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u32,
        classes: usize,
    },

    /// A dataset file that is missing while offline.
    #[error("missing file {}: not downloaded because lcnn runs offline (--offline or LCNN_OFFLINE). Download {url} and put it in {}", file.display(), dir.display())]
    Missing {
        file: PathBuf,
        url: String,
        dir: PathBuf,
    },

    /// A dataset file that is missing and could not be downloaded.
    #[error("missing file {}: downloading {url} failed ({reason}). Download it by hand and put it in {}", file.display(), dir.display())]
    Download {
        file: PathBuf,
        url: String,
        dir: PathBuf,
        reason: String,
    },

    /// A downloaded file whose MD5 differs from the published one (the file is not kept).
    #[error("{}: MD5 {found} of the data downloaded from {url} does not match the published {expected}; the file was not kept", path.display())]
    Checksum {
        path: PathBuf,
        url: String,
        expected: String,
        found: String,
    },

    /// An image file that is truncated, corrupt or not a JPEG/PNG/BMP image.
    #[error("{}: cannot decode the image ({reason}); expected a complete JPEG, PNG or BMP file", path.display())]
    Image { path: PathBuf, reason: String },

    /// An audio file that is truncated, corrupt or not WAV/FLAC.
    #[error("{}: cannot decode the audio ({reason}); expected a complete WAV or FLAC file", path.display())]
    Audio { path: PathBuf, reason: String },

    /// A bad line of an ASVspoof protocol file.
    #[error("{}, line {line}: {reason}", path.display())]
    Protocol {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    /// Images of different sizes in a folder loaded without a target size.
    #[error("{}: image is {found_h}x{found_w} but the first image is {expected_h}x{expected_w}; pass a target size (--target-size HxW) to resize all images", path.display())]
    ImageSize {
        path: PathBuf,
        expected_h: usize,
        expected_w: usize,
        found_h: usize,
        found_w: usize,
    },

    /// A test set whose images are not the training set's size.
    #[error("{}: images are {found_h}x{found_w}, but the training images are {expected_h}x{expected_w}; expected the same size in both sets", path.display())]
    SplitSize {
        path: PathBuf,
        expected_h: usize,
        expected_w: usize,
        found_h: usize,
        found_w: usize,
    },

    /// A class folder without any image file.
    #[error("class folder {} has no {expected} files", path.display())]
    EmptyClass {
        path: PathBuf,
        /// The extensions looked for (`.jpg, .jpeg, .png or .bmp`).
        expected: &'static str,
    },

    /// A split folder without class subfolders.
    #[error("{} has no class folders; expected one subfolder per class, e.g. {}", path.display(), path.join("<class>").join("image.jpg").display())]
    NoClasses { path: PathBuf },

    /// A dataset folder that does not exist.
    #[error("dataset folder {} does not exist; expected {what}", path.display())]
    NotFound { path: PathBuf, what: String },

    /// A test split whose classes differ from the training split.
    #[error("{}: the test classes {found:?} differ from the training classes {expected:?}; expected the same class folders", path.display())]
    ClassMismatch {
        path: PathBuf,
        expected: Vec<String>,
        found: Vec<String>,
    },

    /// `--class-mode binary` on a dataset without exactly two classes.
    #[error("{}: class mode binary needs exactly 2 classes, found {}: {classes:?}", path.display(), classes.len())]
    BinaryClasses { path: PathBuf, classes: Vec<String> },

    /// A dataset with fewer than two classes (a classifier needs two).
    #[error("{}: the training split has {} class{} ({}); a classifier needs at least two (one folder per class under train/)", path.display(), classes.len(), if classes.len() == 1 { "" } else { "es" }, classes.join(", "))]
    TooFewClasses { path: PathBuf, classes: Vec<String> },

    /// An invalid argument or option value (dataset name, target size, split fraction...).
    #[error("invalid {what} '{value}': expected {expected}")]
    Invalid {
        what: &'static str,
        value: String,
        expected: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(
        what: &'static str,
        value: impl ToString,
        expected: impl Into<String>,
    ) -> Self {
        DataError::Invalid {
            what,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}
