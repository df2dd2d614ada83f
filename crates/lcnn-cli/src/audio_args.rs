//! The audio options shared by `lcnn train` and `lcnn data check` (`--dataset audio:DIR`).

use std::path::PathBuf;

use clap::Args;
use lcnn::audio::{AudioOptions, FeatureConfig};

/// Audio dataset options (used with `--dataset audio:DIR`).
#[derive(Args, Debug, Clone)]
pub struct AudioArgs {
    /// ASVspoof 2019 protocol file of the training utterances (`SPEAKER UTT_ID - SYSTEM KEY`
    /// per line; `UTT_ID.flac` is looked for anywhere under the audio:DIR folder).
    #[arg(long)]
    pub protocol: Option<PathBuf>,
    /// ASVspoof protocol file of the validation utterances (e.g. the LA dev protocol), instead
    /// of --validation-split.
    #[arg(long, requires = "protocol")]
    pub val_protocol: Option<PathBuf>,
    /// ASVspoof protocol file of the test utterances (e.g. the LA eval protocol).
    #[arg(long, requires = "protocol")]
    pub test_protocol: Option<PathBuf>,
    /// Sample rate every file is resampled to (Hz).
    #[arg(long, default_value_t = FeatureConfig::default().sample_rate)]
    pub sample_rate: u32,
    /// Pre-emphasis coefficient.
    #[arg(long, default_value_t = FeatureConfig::default().pre_emphasis)]
    pub pre_emphasis: f64,
    /// STFT size.
    #[arg(long, default_value_t = FeatureConfig::default().n_fft)]
    pub n_fft: usize,
    /// Blackman window length (<= n_fft).
    #[arg(long, default_value_t = FeatureConfig::default().win_length)]
    pub win_length: usize,
    /// Hop between STFT frames (samples).
    #[arg(long, default_value_t = FeatureConfig::default().hop_length)]
    pub hop_length: usize,
    /// Frequency bins kept (the lowest; the image height).
    #[arg(long, default_value_t = FeatureConfig::default().bins)]
    pub bins: usize,
    /// Frames per example (the image width): longer files are cropped, shorter repeated.
    #[arg(long, default_value_t = FeatureConfig::default().frames)]
    pub frames: usize,
    /// Floor below the maximum, in dB (librosa's top_db); 0 for none.
    #[arg(long, default_value_t = 80.0)]
    pub top_db: f64,
    /// Add delta and delta-delta channels (3 channels).
    #[arg(long)]
    pub deltas: bool,
    /// A constant-Q transform instead of the STFT: --bins bins from --fmin, --bins-per-octave
    /// per octave (e.g. --cqt --bins 84: seven octaves from C1).
    #[arg(long)]
    pub cqt: bool,
    /// Lowest CQT frequency (Hz; C1 by default).
    #[arg(long, default_value_t = FeatureConfig::default().fmin, requires = "cqt")]
    pub fmin: f64,
    /// CQT bins per octave.
    #[arg(long, default_value_t = FeatureConfig::default().bins_per_octave, requires = "cqt")]
    pub bins_per_octave: usize,
    /// Compute features from the audio every time instead of using the cache
    /// ($LCNN_CACHE, else ~/.cache/lcnn/features).
    #[arg(long)]
    pub no_feature_cache: bool,
}

impl AudioArgs {
    /// The library's options.
    pub fn options(&self) -> AudioOptions {
        AudioOptions {
            features: FeatureConfig {
                sample_rate: self.sample_rate,
                pre_emphasis: self.pre_emphasis,
                n_fft: self.n_fft,
                win_length: self.win_length,
                hop_length: self.hop_length,
                bins: self.bins,
                top_db: (self.top_db > 0.0).then_some(self.top_db),
                frames: self.frames,
                deltas: self.deltas,
                cqt: self.cqt,
                fmin: self.fmin,
                bins_per_octave: self.bins_per_octave,
            },
            protocol: self.protocol.clone(),
            val_protocol: self.val_protocol.clone(),
            test_protocol: self.test_protocol.clone(),
            no_cache: self.no_feature_cache,
        }
    }
}
