//! lcnn's one integration-test binary, over tiny real data.
mod batchnorm;
mod data;
mod engine;
mod golden;
mod train;
