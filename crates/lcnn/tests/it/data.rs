//! The data layer on the real shared data (MNIST, a CIFAR-10 JPEG subset) and on a corpus of
//! bad files made from the real ones. Nothing here downloads: every load is offline.
//!
//! Shared data: `$LCNN_TEST_DATA`, else `../shared/data` beside the repository.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::scratch;
use tempfile::TempDir;

use flate2::read::GzDecoder;
use lcnn::data::{
    load, AugmentConfig, Augmenter, BatchLoader, ClassMode, ColorMode, DataError, Dataset,
    DatasetSpec, Interpolation, LoadOptions, LoaderConfig,
};

fn shared_data() -> PathBuf {
    std::env::var_os("LCNN_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
        })
}

fn offline(data_dir: &Path) -> LoadOptions {
    LoadOptions {
        offline: true,
        ..LoadOptions::new(data_dir)
    }
}

/// Loads and expects an error whose message contains every one of `needles`.
fn load_err(spec: &DatasetSpec, opts: &LoadOptions, needles: &[&str]) -> DataError {
    let e = match load(spec, opts) {
        Ok(s) => panic!("expected an error, loaded {s}"),
        Err(e) => e,
    };
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "'{n}' not in: {msg}");
    }
    e
}

fn gunzip_file(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

// ---------------------------------------------------------------- MNIST

#[test]
fn mnist_loads_from_the_shared_data() {
    let splits = load(&DatasetSpec::Mnist, &offline(&shared_data())).unwrap();
    assert_eq!(
        splits.to_string(),
        "mnist: train 60000, test 10000, classes 10, shape 28x28x1"
    );
    assert_eq!(&splits.train.labels[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let test = splits.test.as_ref().unwrap();
    assert_eq!(test.len(), 10000);
    // First training image: a 5, dark border, bright strokes.
    let img = splits.train.image(0);
    assert_eq!(img.len(), 784);
    assert_eq!(img[0], 0);
    assert!(img.contains(&255));

    // Keras validation_split=0.2: the last 12000 samples, before any shuffling.
    let last_train_label = splits.train.labels[48000];
    let last_image: Vec<u8> = splits.train.image(59999).to_vec();
    let (train, val) = splits.train.split_validation(0.2).unwrap();
    assert_eq!((train.len(), val.len()), (48000, 12000));
    assert_eq!(val.labels[0], last_train_label);
    assert_eq!(val.image(11999), &last_image[..]);
}

/// A temp data dir with `mnist/` holding the small t10k files under all four names.
fn small_mnist() -> TempDir {
    let t = scratch("mnist");
    let src = shared_data().join("mnist");
    let dst = t.path().join("mnist");
    fs::create_dir_all(&dst).unwrap();
    for (to, from) in [
        ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
        ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
        ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    ] {
        fs::copy(src.join(from), dst.join(to)).unwrap();
    }
    t
}

#[test]
fn mnist_reads_uncompressed_files_too() {
    let t = small_mnist();
    let dir = t.path().join("mnist");
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"] {
        let gz = dir.join(format!("{name}.gz"));
        fs::write(dir.join(name), gunzip_file(&gz)).unwrap();
        fs::remove_file(gz).unwrap();
    }
    let s = load(&DatasetSpec::Mnist, &offline(t.path())).unwrap();
    assert_eq!(s.train.len(), 10000);
    assert_eq!(s.train, *s.test.as_ref().unwrap());
}

#[test]
fn mnist_truncated_gzip_is_reported() {
    let t = small_mnist();
    let f = t.path().join("mnist/train-images-idx3-ubyte.gz");
    let bytes = fs::read(&f).unwrap();
    fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &["train-images-idx3-ubyte.gz", "truncated gzip"],
    );
    assert!(matches!(e, DataError::Gzip { .. }));
}

#[test]
fn mnist_corrupt_gzip_is_reported() {
    let t = small_mnist();
    let f = t.path().join("mnist/t10k-labels-idx1-ubyte.gz");
    let mut bytes = fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5a;
    }
    fs::write(&f, &bytes).unwrap();
    let e = load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &["t10k-labels-idx1-ubyte.gz", "corrupt"],
    );
    assert!(matches!(e, DataError::Gzip { .. }));
}

/// Writes `bytes` as the uncompressed `name` (which is preferred over `name.gz`).
fn replace_raw(t: &TempDir, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let dir = t.path().join("mnist");
    let mut raw = gunzip_file(&dir.join(format!("{name}.gz")));
    edit(&mut raw);
    fs::write(dir.join(name), raw).unwrap();
}

#[test]
fn mnist_wrong_idx_magic_is_reported() {
    let t = small_mnist();
    // An image file where a label file belongs: magic 00 00 08 03 instead of 00 00 08 01.
    let images = gunzip_file(&t.path().join("mnist/t10k-images-idx3-ubyte.gz"));
    fs::write(t.path().join("mnist/train-labels-idx1-ubyte"), images).unwrap();
    load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &[
            "train-labels-idx1-ubyte",
            "magic number 00 00 08 03",
            "expected 00 00 08 01",
        ],
    );
    // A flipped type byte.
    let t = small_mnist();
    replace_raw(&t, "t10k-images-idx3-ubyte", |b| b[2] = 0x0d);
    load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &["t10k-images-idx3-ubyte", "magic"],
    );
}

#[test]
fn mnist_header_without_data_is_reported() {
    let t = small_mnist();
    replace_raw(&t, "train-images-idx3-ubyte", |b| b.truncate(16));
    load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &[
            "train-images-idx3-ubyte",
            "7840000 data bytes but only 0",
            "truncated",
        ],
    );
    // A header cut in the middle.
    let t = small_mnist();
    replace_raw(&t, "train-labels-idx1-ubyte", |b| b.truncate(6));
    load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &["train-labels-idx1-ubyte", "only 6 bytes"],
    );
}

#[test]
fn mnist_count_mismatch_is_reported() {
    let t = small_mnist();
    replace_raw(&t, "train-labels-idx1-ubyte", |b| {
        b[4..8].copy_from_slice(&9999u32.to_be_bytes());
        b.pop();
    });
    let e = load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &["10000 images", "9999 labels", "train-labels-idx1-ubyte"],
    );
    assert!(matches!(e, DataError::CountMismatch { .. }));
}

/// A test file of another image size (the same byte count: 14x56) is refused when loading,
/// not after the training epochs.
#[test]
fn mnist_test_images_of_another_size_are_reported() {
    let t = small_mnist();
    replace_raw(&t, "t10k-images-idx3-ubyte", |b| {
        b[8..12].copy_from_slice(&14u32.to_be_bytes());
        b[12..16].copy_from_slice(&56u32.to_be_bytes());
    });
    let e = load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &[
            "t10k-images-idx3-ubyte",
            "images are 14x56",
            "training images are 28x28",
        ],
    );
    assert!(matches!(e, DataError::SplitSize { .. }));
}

#[test]
fn mnist_label_out_of_range_is_reported() {
    let t = small_mnist();
    replace_raw(&t, "t10k-labels-idx1-ubyte", |b| b[8 + 1234] = 10);
    let e = load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &["t10k-labels-idx1-ubyte", "label 10 of sample 1234", "0..=9"],
    );
    assert!(matches!(e, DataError::LabelOutOfRange { .. }));
}

#[test]
fn mnist_empty_files_are_reported() {
    let t = small_mnist();
    fs::write(t.path().join("mnist/train-images-idx3-ubyte.gz"), b"").unwrap();
    load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &["train-images-idx3-ubyte.gz", "empty"],
    );
    let t = small_mnist();
    fs::write(t.path().join("mnist/t10k-labels-idx1-ubyte"), b"").unwrap();
    load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &["t10k-labels-idx1-ubyte", "empty"],
    );
}

#[test]
fn mnist_missing_file_offline_names_file_url_and_folder() {
    let t = small_mnist();
    fs::remove_file(t.path().join("mnist/t10k-images-idx3-ubyte.gz")).unwrap();
    let dir = t.path().join("mnist");
    let e = load_err(
        &DatasetSpec::Mnist,
        &offline(t.path()),
        &[
            "t10k-images-idx3-ubyte.gz",
            "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
            &dir.display().to_string(),
        ],
    );
    assert!(matches!(e, DataError::Missing { .. }));
    // A data dir that does not exist at all: the same message, nothing created.
    let nowhere = t.path().join("nowhere");
    load_err(
        &DatasetSpec::Mnist,
        &offline(&nowhere),
        &["train-images-idx3-ubyte.gz", "put it in"],
    );
    assert!(!nowhere.exists());
}

// ---------------------------------------------------------------- CIFAR-10 binary

const RECORD: usize = 3073;
const BATCH_BYTES: u64 = 10_000 * RECORD as u64;
const BATCHES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

/// A record with `label` and pixel (row, col) = (r, g, b) = (row, col, label * 20).
fn record(label: u8) -> Vec<u8> {
    let mut v = vec![label];
    v.extend((0..1024).map(|p| (p / 32) as u8));
    v.extend((0..1024).map(|p| (p % 32) as u8));
    v.extend(std::iter::repeat_n(label * 20, 1024));
    v
}

/// `DIR/cifar10/cifar-10-batches-bin/` with six batches of 10000 records (sparse zero files:
/// label 0, black) where record `i` of batch `b` is `record(((b + i) % 10))` for i < 3.
fn cifar_batches() -> TempDir {
    let t = scratch("cifar");
    let dir = t.path().join("cifar10/cifar-10-batches-bin");
    fs::create_dir_all(&dir).unwrap();
    for (b, name) in BATCHES.iter().enumerate() {
        let mut f = fs::File::create(dir.join(name)).unwrap();
        for i in 0..3 {
            f.write_all(&record(((b + i) % 10) as u8)).unwrap();
        }
        f.set_len(BATCH_BYTES).unwrap();
    }
    t
}

fn check_cifar(s: &lcnn::data::Splits) {
    assert_eq!(
        s.to_string(),
        "cifar10: train 50000, test 10000, classes 10, shape 32x32x3"
    );
    assert_eq!(s.classes()[0], "airplane");
    assert_eq!(s.classes()[9], "truck");
    let train = &s.train;
    assert_eq!(&train.labels[..4], &[0, 1, 2, 0]);
    assert_eq!(&train.labels[10000..10003], &[1, 2, 3]);
    let test = s.test.as_ref().unwrap();
    assert_eq!(&test.labels[..3], &[5, 6, 7]);
    // HWC: pixel (row 3, col 7) of train image 1 (label 1) is (3, 7, 20).
    let img = train.image(1);
    let p = (3 * 32 + 7) * 3;
    assert_eq!(&img[p..p + 3], &[3, 7, 20]);
}

#[test]
fn cifar_binary_batches_load_from_the_extracted_folder() {
    let t = cifar_batches();
    let s = load(&DatasetSpec::Cifar10, &offline(t.path())).unwrap();
    check_cifar(&s);
}

#[test]
fn cifar_binary_batches_load_from_the_archive() {
    let t = cifar_batches();
    let batches = t.path().join("cifar10/cifar-10-batches-bin");
    let archive = t.path().join("cifar10/cifar-10-binary.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            fs::File::create(&archive).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        let meta = t.path().join("batches.meta.txt");
        fs::write(&meta, "airplane\nautomobile\n").unwrap();
        tar.append_path_with_name(&meta, "cifar-10-batches-bin/batches.meta.txt")
            .unwrap();
        for name in BATCHES {
            tar.append_path_with_name(batches.join(name), format!("cifar-10-batches-bin/{name}"))
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    // Without the complete extracted folder the archive is read.
    fs::remove_file(batches.join("data_batch_5.bin")).unwrap();
    let s = load(&DatasetSpec::Cifar10, &offline(t.path())).unwrap();
    check_cifar(&s);

    // A truncated archive is an error naming it.
    let bytes = fs::read(&archive).unwrap();
    fs::write(&archive, &bytes[..bytes.len() / 3]).unwrap();
    load_err(
        &DatasetSpec::Cifar10,
        &offline(t.path()),
        &["cifar-10-binary.tar.gz", "truncated"],
    );
}

#[test]
fn cifar_batch_whose_length_is_not_a_multiple_of_3073_is_reported() {
    let t = cifar_batches();
    let f = t
        .path()
        .join("cifar10/cifar-10-batches-bin/data_batch_3.bin");
    fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(BATCH_BYTES - 5)
        .unwrap();
    let e = load_err(
        &DatasetSpec::Cifar10,
        &offline(t.path()),
        &[
            "data_batch_3.bin",
            "not a multiple of 3073",
            "9999 whole records and 3068 extra bytes",
        ],
    );
    assert!(matches!(e, DataError::Cifar { .. }));
}

#[test]
fn cifar_batch_with_missing_records_or_bad_labels_is_reported() {
    let t = cifar_batches();
    let f = t.path().join("cifar10/cifar-10-batches-bin/test_batch.bin");
    fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(BATCH_BYTES - RECORD as u64)
        .unwrap();
    load_err(
        &DatasetSpec::Cifar10,
        &offline(t.path()),
        &["test_batch.bin", "9999 records", "expected 10000"],
    );

    let t = cifar_batches();
    let f = t
        .path()
        .join("cifar10/cifar-10-batches-bin/data_batch_2.bin");
    let mut file = fs::OpenOptions::new().write(true).open(&f).unwrap();
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(7 * RECORD as u64)).unwrap();
    file.write_all(&[200]).unwrap();
    drop(file);
    load_err(
        &DatasetSpec::Cifar10,
        &offline(t.path()),
        &["data_batch_2.bin", "record 7 has label 200"],
    );

    let t = cifar_batches();
    fs::write(
        t.path()
            .join("cifar10/cifar-10-batches-bin/data_batch_1.bin"),
        b"",
    )
    .unwrap();
    load_err(
        &DatasetSpec::Cifar10,
        &offline(t.path()),
        &["data_batch_1.bin", "empty"],
    );
}

#[test]
fn cifar_missing_offline_names_the_archive_url_and_folder() {
    let t = scratch("cifar-missing");
    load_err(
        &DatasetSpec::Cifar10,
        &offline(t.path()),
        &[
            "cifar-10-binary.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            &t.path().join("cifar10").display().to_string(),
        ],
    );
}

// ---------------------------------------------------------------- image folders

const PER_CLASS: usize = 12;

/// A CIFAR-10 JPEG folder subset (`PER_CLASS` images per class in train and test), extracted
/// once per test run from the shared archive.
fn cifar_jpg_subset() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        const PREFIX: &str = "lcnn-it-cifar-jpg-";
        remove_stale(PREFIX);
        let root = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let archive = shared_data().join("cifar10-jpg/cifar10-jpg.tar.gz");
        let mut tar = tar::Archive::new(GzDecoder::new(fs::File::open(archive).unwrap()));
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            // cifar10-jpg/<split>/<class>/NNNN.jpg
            let parts: Vec<String> = path
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.len() != 4 || !parts[3].ends_with(".jpg") {
                continue;
            }
            let n: usize = parts[3].trim_end_matches(".jpg").parse().unwrap();
            if n < PER_CLASS {
                let dest = root.join(&parts[1]).join(&parts[2]).join(&parts[3]);
                fs::create_dir_all(dest.parent().unwrap()).unwrap();
                entry.unpack(&dest).unwrap();
            }
        }
        root
    })
}

/// Removes `<temp>/<prefix><pid>` folders left by earlier test runs whose process is gone.
fn remove_stale(prefix: &str) {
    if !Path::new("/proc/self").exists() {
        return; // no cheap way to tell live processes apart
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(prefix) {
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn images(dir: &Path) -> DatasetSpec {
    DatasetSpec::Images(dir.to_path_buf())
}

#[test]
fn image_folder_loads_like_flow_from_directory() {
    let root = cifar_jpg_subset();
    let s = load(&images(root), &offline(Path::new("/unused"))).unwrap();
    assert_eq!(
        s.to_string(),
        format!(
            "images:{}: train 120, test 120, classes 10, shape 32x32x3",
            root.display()
        )
    );
    // The folder's sorted class names are CIFAR-10's label order.
    assert_eq!(s.classes(), lcnn::data::cifar10::CLASS_NAMES);
    // Sorted classes, files sorted within each class.
    let expected: Vec<u32> = (0..10)
        .flat_map(|c| std::iter::repeat_n(c, PER_CLASS))
        .collect();
    assert_eq!(s.train.labels, expected);
    let (first, h, w) =
        lcnn::data::folder::decode_file(&root.join("train/airplane/0000.jpg"), ColorMode::Rgb)
            .unwrap();
    assert_eq!((h, w), (32, 32));
    assert_eq!(s.train.image(0), &first[..]);
    assert_eq!(s.test.as_ref().unwrap().class_counts(), vec![PER_CLASS; 10]);
    ClassMode::Categorical.check(&s).unwrap();
    let e = ClassMode::Binary.check(&s).unwrap_err().to_string();
    assert!(
        e.contains("exactly 2 classes") && e.contains(&*root.to_string_lossy()),
        "{e}"
    );
}

#[test]
fn image_folder_target_size_and_color_mode() {
    let root = cifar_jpg_subset();
    let mut opts = offline(Path::new("/unused"));
    opts.target_size = Some((16, 24));
    opts.color_mode = ColorMode::Grayscale;
    let s = load(&images(root), &opts).unwrap();
    assert_eq!(s.train.shape(), (16, 24, 1));
    assert_eq!(s.test.as_ref().unwrap().shape(), (16, 24, 1));
    opts.interpolation = Interpolation::Bilinear;
    opts.target_size = Some((64, 64));
    opts.color_mode = ColorMode::Rgb;
    let s = load(&images(root), &opts).unwrap();
    assert_eq!(s.train.shape(), (64, 64, 3));
    assert_eq!(s.train.len(), 120);
}

/// A small image folder: `train/{a,b}/` and `test/{a,b}/` with 3 real JPEGs each.
fn small_folder() -> TempDir {
    let t = scratch("folder");
    let src = cifar_jpg_subset();
    for split in ["train", "test"] {
        for (class, from) in [("a", "cat"), ("b", "dog")] {
            let dir = t.path().join(split).join(class);
            fs::create_dir_all(&dir).unwrap();
            for i in 0..3 {
                let name = format!("{i:04}.jpg");
                fs::copy(src.join(split).join(from).join(&name), dir.join(name)).unwrap();
            }
        }
    }
    t
}

#[test]
fn image_folder_binary_mode_and_skipped_files() {
    let t = small_folder();
    fs::write(t.path().join("train/a/notes.txt"), "not an image").unwrap();
    fs::write(t.path().join("train/a/.DS_Store"), "junk").unwrap();
    fs::create_dir_all(t.path().join("train/.ipynb_checkpoints")).unwrap();
    fs::create_dir_all(t.path().join("train/b/nested")).unwrap();
    fs::copy(
        t.path().join("train/b/0000.jpg"),
        t.path().join("train/b/nested/0000.JPG"),
    )
    .unwrap();
    let s = load(&images(t.path()), &offline(t.path())).unwrap();
    assert_eq!(s.classes(), ["a", "b"]);
    assert_eq!(s.train.len(), 7);
    assert_eq!(s.train.labels, vec![0, 0, 0, 1, 1, 1, 1]);
    // Keras order: the class folder's own files, then its subfolders.
    assert_eq!(s.train.image(6), s.train.image(3));
    ClassMode::Binary.check(&s).unwrap();
    // No test folder: no test split.
    fs::remove_dir_all(t.path().join("test")).unwrap();
    let s = load(&images(t.path()), &offline(t.path())).unwrap();
    assert!(s.test.is_none());
}

#[test]
fn image_folder_truncated_and_undecodable_images_are_reported() {
    let t = small_folder();
    let f = t.path().join("train/b/0001.jpg");
    let bytes = fs::read(&f).unwrap();
    fs::write(&f, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = load_err(
        &images(t.path()),
        &offline(t.path()),
        &["train/b/0001.jpg", "truncated"],
    );
    assert!(matches!(e, DataError::Image { .. }));

    let t = small_folder();
    let f = t.path().join("test/a/0002.jpg");
    let mut bytes = fs::read(&f).unwrap();
    for b in &mut bytes[6..60] {
        *b = 0x42;
    }
    fs::write(&f, &bytes).unwrap();
    load_err(
        &images(t.path()),
        &offline(t.path()),
        &["test/a/0002.jpg", "cannot decode"],
    );
}

#[test]
fn image_folder_text_file_named_png_is_reported() {
    let t = small_folder();
    fs::write(t.path().join("train/a/fake.png"), "I am a text file").unwrap();
    load_err(
        &images(t.path()),
        &offline(t.path()),
        &["train/a/fake.png", "not a JPEG, PNG or BMP"],
    );
    let t = small_folder();
    fs::write(t.path().join("train/a/empty.bmp"), b"").unwrap();
    load_err(
        &images(t.path()),
        &offline(t.path()),
        &["train/a/empty.bmp", "empty"],
    );
}

#[test]
fn image_folder_structure_problems_are_reported() {
    // A class folder with no images.
    let t = small_folder();
    fs::create_dir_all(t.path().join("train/c")).unwrap();
    fs::write(t.path().join("train/c/readme.txt"), "no images here").unwrap();
    let e = load_err(
        &images(t.path()),
        &offline(t.path()),
        &["train/c", "has no .jpg, .jpeg, .png or .bmp files"],
    );
    assert!(matches!(e, DataError::EmptyClass { .. }));

    // A dataset folder that does not exist; one without train/; train/ without classes.
    let missing = t.path().join("does-not-exist");
    let e = load_err(
        &images(&missing),
        &offline(t.path()),
        &["does-not-exist", "does not exist"],
    );
    assert!(matches!(e, DataError::NotFound { .. }));
    let t = small_folder();
    fs::rename(t.path().join("train"), t.path().join("training")).unwrap();
    load_err(
        &images(t.path()),
        &offline(t.path()),
        &["train", "does not exist"],
    );
    let t = scratch("noclass");
    fs::create_dir_all(t.path().join("train")).unwrap();
    load_err(
        &images(t.path()),
        &offline(t.path()),
        &["train", "no class folders"],
    );

    // Test classes that differ from the training classes.
    let t = small_folder();
    fs::rename(t.path().join("test/b"), t.path().join("test/z")).unwrap();
    let e = load_err(&images(t.path()), &offline(t.path()), &["test", "differ"]);
    assert!(matches!(e, DataError::ClassMismatch { .. }));
}

#[test]
fn image_folder_sizes_must_agree_without_target_size() {
    let t = small_folder();
    let img = image::RgbImage::from_pixel(20, 10, image::Rgb([9, 8, 7]));
    img.save(t.path().join("train/b/wide.png")).unwrap();
    let e = load_err(
        &images(t.path()),
        &offline(t.path()),
        &["train/b/wide.png", "10x20", "32x32", "--target-size"],
    );
    assert!(matches!(e, DataError::ImageSize { .. }));
    let mut opts = offline(t.path());
    opts.target_size = Some((32, 32));
    let s = load(&images(t.path()), &opts).unwrap();
    // The PNG is resized with nearest: a constant image stays constant.
    let wide = s.train.image(s.train.len() - 1);
    assert!(wide.chunks(3).all(|p| p == [9, 8, 7]));
}

// ---------------------------------------------------------------- batches and augmentation

#[test]
fn batches_from_real_images_are_deterministic_and_normalized() {
    let root = cifar_jpg_subset();
    let s = load(&images(root), &offline(Path::new("/unused"))).unwrap();
    let train = Arc::new(s.train);
    let cfg = AugmentConfig {
        width_shift_range: 0.1,
        height_shift_range: 0.1,
        horizontal_flip: true,
        rescale: 1.0 / 255.0,
        featurewise_center: true,
        featurewise_std_normalization: true,
        ..Default::default()
    };
    let aug = Arc::new(Augmenter::fitted(cfg, &train).unwrap());
    let epoch = |e: usize, augment: bool| {
        let cfg = LoaderConfig {
            augment,
            ..LoaderConfig::training(32, 2024, e)
        };
        BatchLoader::new(train.clone(), aug.clone(), cfg)
            .unwrap()
            .collect::<Vec<_>>()
    };
    let a = epoch(0, true);
    assert_eq!(a.len(), 4); // 120 images: 32, 32, 32, 24
    assert_eq!(a[3].len, 24);
    assert_eq!(a, epoch(0, true), "same seed and epoch: same batches");
    assert_ne!(a[0].indices, epoch(1, true)[0].indices);

    // Without augmentation the normalized epoch has mean ~0 and std ~1 per channel.
    let plain = epoch(0, false);
    for ch in 0..3 {
        let mut vals = Vec::new();
        for b in &plain {
            for img in b.images.chunks(3 * 1024) {
                vals.extend_from_slice(&img[ch * 1024..(ch + 1) * 1024]);
            }
        }
        let n = vals.len() as f64;
        let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-4, "channel {ch} mean {mean}");
        assert!(
            (var.sqrt() - 1.0).abs() < 1e-3,
            "channel {ch} std {}",
            var.sqrt()
        );
    }
}

#[test]
fn validation_split_then_batches_keep_keras_semantics() {
    let root = cifar_jpg_subset();
    let s = load(&images(root), &offline(Path::new("/unused"))).unwrap();
    // 120 samples sorted by class: the last 25% is classes 7.5..9, never shuffled in.
    let (train, val): (Dataset, Dataset) = s.train.split_validation(0.25).unwrap();
    assert_eq!((train.len(), val.len()), (90, 30));
    assert!(val.labels.iter().all(|&l| l >= 7));
    let val = Arc::new(val);
    let batches: Vec<_> = BatchLoader::new(
        val.clone(),
        Arc::new(Augmenter::rescale_only(1.0 / 255.0)),
        LoaderConfig::new(8),
    )
    .unwrap()
    .collect();
    assert_eq!(batches.len(), 4);
    assert_eq!(batches[0].indices, (0..8).collect::<Vec<_>>());
    let max = batches
        .iter()
        .flat_map(|b| b.images.iter())
        .fold(0f32, |m, &v| m.max(v));
    assert!(max <= 1.0 && max > 0.5);
}
