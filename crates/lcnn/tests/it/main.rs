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
