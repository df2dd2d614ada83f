//! lcnn's one integration-test binary, over tiny real data.
mod audio;
mod batchnorm;
mod data;
mod engine;
mod golden;
#[cfg(feature = "wgpu")]
mod gpu;
#[cfg(feature = "hdf5")]
mod keras;
mod pytorch;
mod train;

/// A scratch folder under the system temp dir (`lcnn-it-<tag>-XXXXXX`), removed when dropped,
/// also when the test fails.
pub fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("lcnn-it-{tag}-"))
        .tempdir()
        .unwrap()
}
