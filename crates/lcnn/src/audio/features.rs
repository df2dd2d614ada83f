//! Log-power spectrogram features as the reference LCNN anti-spoofing pipeline computes them
//! (the STC system of ASVspoof 2019, [Lavrentyeva et al. 2019,
//! arXiv:1904.05576](https://arxiv.org/abs/1904.05576)): pre-emphasis, an STFT with a Blackman
//! window, power in dB relative to the utterance's maximum, the lowest `bins` frequency bins,
//! and a fixed number of frames (cropped, or the utterance repeated), optionally with deltas.
//! Every step follows librosa (`stft(center=True, pad_mode="constant", window="blackman")`,
//! `power_to_db(ref=np.max, amin=1e-10, top_db)`), and `reference/audio_features.py` checks
//! it against librosa itself. A constant-Q transform ([`cqt_power`], Brown's direct form) can
//! replace the STFT (`cqt`), the rest unchanged.

use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

/// Feature settings; the defaults give a 128 x 200 x 1 image (0-8 kHz, 2 s at 16 kHz).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureConfig {
    /// Rate every file is resampled to (Hz). Default 16000 (ASVspoof's).
    pub sample_rate: u32,
    /// Pre-emphasis `y[n] = x[n] - a x[n-1]`. Default 0.97.
    pub pre_emphasis: f64,
    /// FFT size. Default 256.
    pub n_fft: usize,
    /// Blackman window length, at most `n_fft` (centered in it). Default 256.
    pub win_length: usize,
    /// Hop between frames (samples). Default 160 (10 ms at 16 kHz).
    pub hop_length: usize,
    /// Frequency bins kept, the lowest ones, at most `n_fft / 2 + 1`. Default 128.
    pub bins: usize,
    /// Floor below the maximum (dB), librosa's `top_db`; `None` for none. Default 80.
    pub top_db: Option<f64>,
    /// Frames per example: longer utterances are cropped to their first `frames`, shorter ones
    /// repeated. Default 200.
    pub frames: usize,
    /// Add delta and delta-delta channels (HTK regression over +-2 frames). Default false.
    pub deltas: bool,
    /// A constant-Q transform instead of the STFT ([`cqt_power`]): `bins` geometrically spaced
    /// bins from `fmin`; `n_fft` and `win_length` then play no part. Default false.
    pub cqt: bool,
    /// Lowest CQT frequency (Hz). Default 32.703 (C1, librosa's `fmin`).
    pub fmin: f64,
    /// CQT bins per octave. Default 12.
    pub bins_per_octave: usize,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            sample_rate: 16000,
            pre_emphasis: 0.97,
            n_fft: 256,
            win_length: 256,
            hop_length: 160,
            bins: 128,
            top_db: Some(80.0),
            frames: 200,
            deltas: false,
            cqt: false,
            fmin: 32.703_195_662_574_83,
            bins_per_octave: 12,
        }
    }
}

impl FeatureConfig {
    /// Checks the settings; the error says which one and what was expected.
    pub fn validate(&self) -> Result<(), String> {
        let fail = |what: &str, v: String, want: &str| Err(format!("{what} {v}: expected {want}"));
        if self.sample_rate == 0 {
            return fail("sample rate", "0".into(), "a positive rate in Hz");
        }
        if self.n_fft < 2 {
            return fail("n_fft", self.n_fft.to_string(), "at least 2");
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return fail("win_length", self.win_length.to_string(), "1..=n_fft");
        }
        if self.hop_length == 0 {
            return fail("hop_length", "0".into(), "at least 1");
        }
        if self.cqt {
            if !(self.fmin > 0.0 && self.fmin.is_finite()) {
                return fail("fmin", self.fmin.to_string(), "a positive frequency in Hz");
            }
            if self.bins_per_octave == 0 {
                return fail("bins per octave", "0".into(), "at least 1");
            }
            let nyquist = self.sample_rate as f64 / 2.0;
            if self.bins == 0 || self.cqt_frequency(self.bins - 1) >= nyquist {
                return fail(
                    "bins",
                    self.bins.to_string(),
                    &format!(
                        "1 or more, the highest CQT bin (fmin 2^((bins-1)/bins_per_octave)) \
                         below the Nyquist frequency, {nyquist} Hz"
                    ),
                );
            }
        } else if self.bins == 0 || self.bins > self.n_fft / 2 + 1 {
            return fail("bins", self.bins.to_string(), "1..=n_fft/2+1");
        }
        if self.frames == 0 {
            return fail("frames", "0".into(), "at least 1");
        }
        if !(0.0..1.0).contains(&self.pre_emphasis) {
            return fail("pre-emphasis", self.pre_emphasis.to_string(), "0 <= a < 1");
        }
        if let Some(t) = self.top_db {
            if !(t > 0.0 && t.is_finite()) {
                return fail("top_db", t.to_string(), "a positive number of dB");
            }
        }
        Ok(())
    }

    /// The centre frequency of CQT bin `k`: `fmin 2^(k / bins_per_octave)` (Hz).
    pub fn cqt_frequency(&self, k: usize) -> f64 {
        self.fmin * 2f64.powf(k as f64 / self.bins_per_octave as f64)
    }

    /// Channels of the features: 1, or 3 with deltas.
    pub fn channels(&self) -> usize {
        if self.deltas {
            3
        } else {
            1
        }
    }

    /// The image an utterance becomes: `(height, width, channels)` = `(bins, frames, C)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.bins, self.frames, self.channels())
    }
}

/// `y[0] = x[0]`, `y[n] = x[n] - a x[n-1]`.
pub fn pre_emphasis(x: &[f32], a: f64) -> Vec<f64> {
    let mut y = Vec::with_capacity(x.len());
    let mut prev = 0.0f64;
    for (n, v) in x.iter().enumerate() {
        let v = *v as f64;
        y.push(if n == 0 { v } else { v - a * prev });
        prev = v;
    }
    y
}

/// The periodic Blackman window of `win_length` (scipy's `get_window("blackman", N)`), zero-
/// padded to `n_fft` with the window in the middle (librosa's `pad_center`).
pub fn window(n_fft: usize, win_length: usize) -> Vec<f64> {
    let n = win_length as f64;
    let offset = (n_fft - win_length) / 2;
    let mut w = vec![0.0; n_fft];
    for i in 0..win_length {
        let t = i as f64 / n;
        w[offset + i] = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * t).cos()
            + 0.08 * (4.0 * std::f64::consts::PI * t).cos();
    }
    w
}

/// The power spectrogram `|STFT|^2`, `[n_fft / 2 + 1][F]` (bin-major), of a pre-emphasized
/// signal, centered frames with zero padding: `F = 1 + len / hop`.
pub fn power_spectrogram(y: &[f64], cfg: &FeatureConfig) -> (Vec<f64>, usize) {
    let (n_fft, hop) = (cfg.n_fft, cfg.hop_length);
    let pad = n_fft / 2;
    let frames = 1 + y.len() / hop;
    let bins = n_fft / 2 + 1;
    let w = window(n_fft, cfg.win_length);
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut power = vec![0.0; bins * frames];
    for t in 0..frames {
        for (k, v) in input.iter_mut().enumerate() {
            // Sample `t * hop + k` of the signal padded with `pad` zeros on both sides.
            let i = (t * hop + k) as isize - pad as isize;
            let s = if i >= 0 && (i as usize) < y.len() {
                y[i as usize]
            } else {
                0.0
            };
            *v = s * w[k];
        }
        fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch)
            .expect("buffers come from the plan");
        for (f, c) in spectrum.iter().enumerate() {
            power[f * frames + t] = c.norm_sqr();
        }
    }
    (power, frames)
}

/// The constant-Q power spectrogram `[bins][F]` (bin-major) of a pre-emphasized signal, by
/// the direct transform of [Brown (1991)](https://doi.org/10.1121/1.400476): bin `k` at
/// `f_k = fmin 2^(k/B)` (`B` bins per octave) with `Q = 1 / (2^(1/B) - 1)` uses
/// `N_k = ceil(Q sr / f_k)` samples of a periodic Hann window `w`, and frame `t` is
/// `X_k(t) = (1/N_k) sum_n y[t hop - N_k/2 + n] w[n] exp(-2 pi i f_k n / sr)` (zero outside the
/// signal), `F = 1 + len / hop` frames centred as the STFT's. `reference/audio_features.py`
/// computes the same in numpy.
pub fn cqt_power(y: &[f64], cfg: &FeatureConfig) -> (Vec<f64>, usize) {
    use std::f64::consts::PI;
    let hop = cfg.hop_length;
    let frames = 1 + y.len() / hop;
    let sr = cfg.sample_rate as f64;
    let q = 1.0 / (2f64.powf(1.0 / cfg.bins_per_octave as f64) - 1.0);
    let mut power = vec![0.0; cfg.bins * frames];
    for (k, row) in power.chunks_exact_mut(frames).enumerate() {
        let f = cfg.cqt_frequency(k);
        let n = ((q * sr / f).ceil() as usize).max(1);
        let kernel: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let w = (0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos()) / n as f64;
                let phase = 2.0 * PI * f * i as f64 / sr;
                (w * phase.cos(), -w * phase.sin())
            })
            .collect();
        for (t, p) in row.iter_mut().enumerate() {
            let start = (t * hop) as isize - (n / 2) as isize;
            let lo = (-start).max(0) as usize;
            let hi = (y.len() as isize - start).clamp(0, n as isize) as usize;
            let (mut re, mut im) = (0.0, 0.0);
            for i in lo..hi {
                let s = y[(start + i as isize) as usize];
                re += s * kernel[i].0;
                im += s * kernel[i].1;
            }
            *p = re * re + im * im;
        }
    }
    (power, frames)
}

/// librosa's `power_to_db(P, ref=np.max, amin=1e-10, top_db)`, in place.
pub fn power_to_db(power: &mut [f64], top_db: Option<f64>) {
    const AMIN: f64 = 1e-10;
    let max = power.iter().fold(0.0f64, |m, v| m.max(*v));
    let reference = 10.0 * max.max(AMIN).log10();
    for v in power.iter_mut() {
        *v = 10.0 * v.max(AMIN).log10() - reference;
    }
    if let Some(t) = top_db {
        let top = power.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v));
        for v in power.iter_mut() {
            *v = v.max(top - t);
        }
    }
}

/// HTK deltas over +-2 frames with the edges repeated, of a `[K][T]` (bin-major) matrix.
fn deltas(c: &[f64], k: usize, t: usize) -> Vec<f64> {
    let mut d = vec![0.0; k * t];
    let at = |row: &[f64], i: isize| row[i.clamp(0, t as isize - 1) as usize];
    for b in 0..k {
        let row = &c[b * t..(b + 1) * t];
        for i in 0..t as isize {
            let mut s = 0.0;
            for n in 1..=2isize {
                s += n as f64 * (at(row, i + n) - at(row, i - n));
            }
            d[b * t + i as usize] = s / 10.0;
        }
    }
    d
}

/// The features of one mono utterance at `cfg.sample_rate`: `[bins][frames][C]` (row-major,
/// channels last; channel 0 the dB spectrogram, then delta and delta-delta), in dB.
pub fn features(samples: &[f32], cfg: &FeatureConfig) -> Vec<f64> {
    let y = pre_emphasis(samples, cfg.pre_emphasis);
    let (mut power, frames) = if cfg.cqt {
        cqt_power(&y, cfg)
    } else {
        power_spectrogram(&y, cfg)
    };
    power_to_db(&mut power, cfg.top_db);
    let (k, t) = (cfg.bins, cfg.frames);
    // The lowest bins, cropped or repeated to `t` frames.
    let mut stat = vec![0.0; k * t];
    for b in 0..k {
        for i in 0..t {
            stat[b * t + i] = power[b * frames + i % frames];
        }
    }
    if !cfg.deltas {
        return stat;
    }
    let d1 = deltas(&stat, k, t);
    let d2 = deltas(&d1, k, t);
    let mut out = Vec::with_capacity(3 * k * t);
    for i in 0..k * t {
        out.extend([stat[i], d1[i], d2[i]]);
    }
    out
}

/// Features as an 8-bit image, the form lcnn's datasets hold: the dB spectrogram from
/// `-range` to 0 dB onto 0..=255 (`range` = `top_db`, else 80; 0.31 dB per step at 80),
/// deltas from `-range/8` to `+range/8` dB per frame onto 0..=255; values outside are clamped.
/// Training rescales by 1/255, so the network sees [0, 1].
pub fn quantize(features: &[f64], cfg: &FeatureConfig) -> Vec<u8> {
    let range = cfg.top_db.unwrap_or(80.0);
    let c = cfg.channels();
    let q = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    features
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if i % c == 0 {
                q((v + range) / range)
            } else {
                q(0.5 + v / (range / 4.0))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sine_peaks_in_its_bin_and_the_maximum_is_zero_db() {
        let cfg = FeatureConfig {
            pre_emphasis: 0.0,
            frames: 10,
            ..FeatureConfig::default()
        };
        // 1 kHz at 16 kHz with n_fft 256: bin 16.
        let x: Vec<f32> = (0..4000)
            .map(|n| (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 16000.0).sin())
            .collect();
        let f = features(&x, &cfg);
        let frame = 5;
        let column: Vec<f64> = (0..cfg.bins).map(|b| f[b * cfg.frames + frame]).collect();
        let peak = (0..cfg.bins)
            .max_by(|a, b| column[*a].total_cmp(&column[*b]))
            .unwrap();
        assert_eq!(peak, 16);
        assert!(f.iter().all(|v| (-80.0..=1e-9).contains(v)));
    }

    #[test]
    fn a_sine_peaks_in_its_cqt_bin() {
        let cfg = FeatureConfig {
            pre_emphasis: 0.0,
            frames: 10,
            cqt: true,
            bins: 84,
            ..FeatureConfig::default()
        };
        cfg.validate().unwrap();
        // 440 Hz is 12 log2(440 / 32.703) = 45.0 bins above C1.
        let x: Vec<f32> = (0..8000)
            .map(|n| (2.0 * std::f32::consts::PI * 440.0 * n as f32 / 16000.0).sin())
            .collect();
        let f = features(&x, &cfg);
        let column: Vec<f64> = (0..cfg.bins).map(|b| f[b * cfg.frames + 5]).collect();
        let peak = (0..cfg.bins)
            .max_by(|a, b| column[*a].total_cmp(&column[*b]))
            .unwrap();
        assert_eq!(peak, 45);
        // Above the Nyquist frequency: an error that says so.
        let high = FeatureConfig { bins: 120, ..cfg };
        assert!(high.validate().unwrap_err().contains("Nyquist"));
    }

    #[test]
    fn settings_are_checked() {
        assert!(FeatureConfig::default().validate().is_ok());
        let bad = FeatureConfig {
            bins: 500,
            ..FeatureConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("bins 500"));
    }

    #[test]
    fn quantization_maps_the_db_range_onto_bytes() {
        let cfg = FeatureConfig::default();
        assert_eq!(
            quantize(&[0.0, -80.0, -40.0, -120.0], &cfg),
            [255, 0, 128, 0]
        );
    }
}
