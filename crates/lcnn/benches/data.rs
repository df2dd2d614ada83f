//! Data-layer throughput (a benchmark, not a timed test): loading all of MNIST, decoding all
//! 60,000 CIFAR-10 JPEGs, and batching + augmentation of 32x32x3 images.
//!
//! `cargo bench --bench data` (shared data from `$LCNN_TEST_DATA`, else `../shared/data`).
//! Threads: rayon's global pool (`RAYON_NUM_THREADS`) for decoding, 2 batch workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use flate2::read::GzDecoder;
use lcnn::data::{
    load, AugmentConfig, Augmenter, BatchLoader, Dataset, DatasetSpec, LoadOptions, LoaderConfig,
};

fn shared_data() -> PathBuf {
    std::env::var_os("LCNN_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
        })
}

fn offline(dir: &Path) -> LoadOptions {
    LoadOptions {
        offline: true,
        ..LoadOptions::new(dir)
    }
}

/// Runs `f` `runs` times; returns the best time in seconds and the last result.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    (best, last.expect("at least one run"))
}

fn report(what: &str, images: usize, secs: f64) {
    println!(
        "{what:<72} {images:>6} images in {secs:>7.3} s = {:>9.0} images/s",
        images as f64 / secs
    );
}

fn epoch(train: &Arc<Dataset>, aug: &Arc<Augmenter>, batch: usize, workers: usize) -> f64 {
    let cfg = LoaderConfig {
        workers,
        prefetch: 4,
        ..LoaderConfig::training(batch, 1, 0)
    };
    let mut checksum = 0f64;
    for b in BatchLoader::new(train.clone(), aug.clone(), cfg).expect("loader") {
        checksum += b.images[0] as f64 + b.len as f64;
    }
    checksum
}

fn main() {
    let data = shared_data();
    println!(
        "lcnn data benchmark ({} rayon threads, {} CPUs)",
        rayon::current_num_threads(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // 1. All of MNIST (four gzip IDX files, 70,000 images).
    let (secs, mnist) = best_of(3, || {
        load(&DatasetSpec::Mnist, &offline(&data)).expect("MNIST")
    });
    let n = mnist.train.len() + mnist.test.as_ref().map_or(0, |t| t.len());
    report("load MNIST (gunzip + parse, train + test)", n, secs);

    // 2. All 60,000 CIFAR-10 JPEGs, extracted first (not timed).
    let dir = std::env::temp_dir().join(format!("lcnn-bench-cifar-jpg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let archive = data.join("cifar10-jpg/cifar10-jpg.tar.gz");
    let file = std::fs::File::open(&archive).expect("CIFAR-10 JPEG archive");
    tar::Archive::new(GzDecoder::new(std::io::BufReader::new(file)))
        .unpack(&dir)
        .expect("extract");
    println!(
        "(extracted {} in {:.1} s, not timed)",
        archive.display(),
        t.elapsed().as_secs_f64()
    );
    let root = dir.join("cifar10-jpg");
    let spec = DatasetSpec::Images(root.clone());
    let (secs, cifar) = best_of(3, || load(&spec, &offline(&root)).expect("CIFAR JPEGs"));
    let n = cifar.train.len() + cifar.test.as_ref().map_or(0, |t| t.len());
    report("decode CIFAR-10 JPEGs (read + decode, parallel)", n, secs);
    let _ = std::fs::remove_dir_all(&dir);

    // 3. Batching + augmentation of the 50,000 CIFAR training images (32x32x3 -> NCHW f32).
    let train = Arc::new(cifar.train);
    let n = train.len();
    let cases: [(&str, AugmentConfig); 3] = [
        (
            "rescale only",
            AugmentConfig {
                rescale: 1.0 / 255.0,
                ..Default::default()
            },
        ),
        (
            "shift 0.1 + horizontal flip",
            AugmentConfig {
                width_shift_range: 0.1,
                height_shift_range: 0.1,
                horizontal_flip: true,
                rescale: 1.0 / 255.0,
                ..Default::default()
            },
        ),
        (
            "rotation 15 + shift 0.1 + zoom 0.1 + flip + featurewise",
            AugmentConfig {
                rotation_range: 15.0,
                width_shift_range: 0.1,
                height_shift_range: 0.1,
                zoom_range: 0.1,
                horizontal_flip: true,
                rescale: 1.0 / 255.0,
                featurewise_center: true,
                featurewise_std_normalization: true,
                ..Default::default()
            },
        ),
    ];
    for (name, cfg) in cases {
        let aug = Arc::new(Augmenter::fitted(cfg, &train).expect("augmenter"));
        for workers in [1, 2] {
            let (secs, _) = best_of(2, || epoch(&train, &aug, 64, workers));
            report(&format!("batch 64, {name}, {workers} worker(s)"), n, secs);
        }
    }
    println!("target: >= 3500 images/s for batching + augmentation (10x the ~350 images/s training step)");
}
