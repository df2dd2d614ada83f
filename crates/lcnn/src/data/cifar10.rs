//! CIFAR-10 from `DATA_DIR/cifar10/`: the extracted `cifar-10-batches-bin/*.bin`, or the
//! `cifar-10-binary.tar.gz` archive read directly (no extraction needed). A missing archive is
//! downloaded from the University of Toronto.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::cifar;
use super::dataset::{Dataset, Splits, ValidationRule};
use super::download::{ensure, Remote};
use super::error::DataError;

/// The archive, its canonical URL and published MD5.
pub const ARCHIVE: Remote = Remote {
    file_name: "cifar-10-binary.tar.gz",
    url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    md5: "c32a1d4ab5d03f1284b67883e8d87530",
};

/// Folder of the batches inside the archive (and once extracted).
pub const BATCH_DIR: &str = "cifar-10-batches-bin";
/// Training batches, in order.
pub const TRAIN_BATCHES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch.
pub const TEST_BATCH: &str = "test_batch.bin";
/// Records in every batch of the original distribution.
pub const RECORDS_PER_BATCH: usize = 10_000;
/// Class names in label order (as `batches.meta.txt`).
pub const CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Loads CIFAR-10 from `data_dir/cifar10`, downloading the archive when neither the extracted
/// batches nor the archive are there (unless `offline`).
pub fn load(data_dir: &Path, offline: bool) -> Result<Splits, DataError> {
    let dir = super::dir::dataset_folder(data_dir, "cifar10", &[ARCHIVE.file_name, BATCH_DIR]);
    let extracted = dir.join(BATCH_DIR);
    let all_extracted = TRAIN_BATCHES
        .iter()
        .chain(std::iter::once(&TEST_BATCH))
        .all(|f| extracted.join(f).is_file());
    if all_extracted {
        return load_extracted(&extracted);
    }
    let archive = ensure(&dir, &ARCHIVE, offline)?;
    load_archive(&archive)
}

/// Loads the six batch files from a `cifar-10-batches-bin` folder.
pub fn load_extracted(batch_dir: &Path) -> Result<Splits, DataError> {
    let mut train = empty_dataset();
    for name in TRAIN_BATCHES {
        let path = batch_dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        append_batch(&mut train, &bytes, &path)?;
    }
    let mut test = empty_dataset();
    let path = batch_dir.join(TEST_BATCH);
    let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
    append_batch(&mut test, &bytes, &path)?;
    Ok(splits(train, test))
}

/// Loads the six batches straight from `cifar-10-binary.tar.gz`.
pub fn load_archive(archive: &Path) -> Result<Splits, DataError> {
    let file = std::fs::File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let corrupt = |e: std::io::Error| DataError::Archive {
        path: archive.to_path_buf(),
        reason: format!("corrupt or truncated gzip/tar data: {e}"),
    };
    let mut tar = tar::Archive::new(MultiGzDecoder::new(std::io::BufReader::new(file)));
    let wanted: Vec<&str> = TRAIN_BATCHES
        .iter()
        .copied()
        .chain(std::iter::once(TEST_BATCH))
        .collect();
    let mut found: Vec<Option<(PathBuf, Vec<u8>)>> = vec![None; wanted.len()];
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let member = entry.path().map_err(corrupt)?.into_owned();
        let in_batch_dir = member
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == BATCH_DIR);
        let Some(slot) = member
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| wanted.iter().position(|w| *w == n))
            .filter(|_| in_batch_dir)
        else {
            continue;
        };
        let member_path = archive.join(&member);
        let size = entry.header().size().map_err(corrupt)?;
        let expected = (RECORDS_PER_BATCH * cifar::RECORD_BYTES) as u64;
        if size > 2 * expected {
            return Err(DataError::Count {
                path: member_path,
                what: "bytes",
                expected: expected as usize,
                found: size as usize,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut bytes).map_err(corrupt)?;
        found[slot] = Some((member_path, bytes));
    }
    let mut train = empty_dataset();
    let mut test = empty_dataset();
    for (i, slot) in found.into_iter().enumerate() {
        let Some((path, bytes)) = slot else {
            return Err(DataError::Archive {
                path: archive.to_path_buf(),
                reason: format!("member {BATCH_DIR}/{} is missing", wanted[i]),
            });
        };
        let target = if i < TRAIN_BATCHES.len() {
            &mut train
        } else {
            &mut test
        };
        append_batch(target, &bytes, &path)?;
    }
    Ok(splits(train, test))
}

fn empty_dataset() -> Dataset {
    Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        height: cifar::SIDE,
        width: cifar::SIDE,
        channels: 3,
        classes: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
    }
}

fn splits(train: Dataset, test: Dataset) -> Splits {
    Splits {
        name: "cifar10".into(),
        train,
        test: Some(test),
        validation_rule: ValidationRule::Last,
        val: None,
    }
}

/// Parses one batch of the original distribution (exactly 10000 records) into `ds`.
fn append_batch(ds: &mut Dataset, bytes: &[u8], path: &Path) -> Result<(), DataError> {
    let n = cifar::validate(bytes).map_err(|source| DataError::Cifar {
        path: path.to_path_buf(),
        source,
    })?;
    if n != RECORDS_PER_BATCH {
        return Err(DataError::Count {
            path: path.to_path_buf(),
            what: "records",
            expected: RECORDS_PER_BATCH,
            found: n,
        });
    }
    cifar::parse_into(bytes, &mut ds.images, &mut ds.labels).map_err(|source| {
        DataError::Cifar {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(())
}
