//! Audio for voice anti-spoofing, LCNN's home application (the STC system of ASVspoof 2019,
//! [Lavrentyeva et al. 2019, arXiv:1904.05576](https://arxiv.org/abs/1904.05576)): WAV / FLAC
//! decoding and resampling ([`decode`]), log-power spectrogram features ([`features`]),
//! audio folders and ASVspoof protocol files as datasets with an on-disk feature cache
//! ([`dataset`]), and the equal error rate ([`eer`]).

pub mod dataset;
pub mod decode;
pub mod eer;
pub mod features;

pub use dataset::{has_audio_extension, AudioOptions};
pub use decode::{read, read_at, resample, Audio};
pub use eer::{eer, roc, Roc};
pub use features::{features, quantize, FeatureConfig};
