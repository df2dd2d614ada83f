//! Audio files in: WAV (PCM or float) and FLAC through [Symphonia](https://docs.rs/symphonia),
//! mixed to mono (the mean of the channels), and resampled to the feature rate with
//! [rubato](https://docs.rs/rubato)'s FFT resampler when the file's rate differs.

use std::path::Path;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::data::DataError;

/// File extensions (lowercase) read as audio.
pub const EXTENSIONS: [&str; 2] = ["wav", "flac"];

/// A decoded file, mixed to mono.
#[derive(Debug, Clone)]
pub struct Audio {
    /// Samples in [-1, 1] (16-bit PCM `s / 32768`).
    pub samples: Vec<f32>,
    /// The file's sample rate (Hz).
    pub sample_rate: u32,
    /// The file's channel count.
    pub channels: usize,
}

impl Audio {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate.max(1) as f64
    }
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> DataError {
    DataError::Audio {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Sample rates read (Hz): every rate audio is recorded at (telephone 8 kHz to studio
/// 768 kHz) and some below. Outside them a header is taken as corrupt (a rate of 1 Hz or 4 GHz
/// would make the resampler ask for gigabytes).
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

/// The sample rate of a WAV file's `fmt ` chunk, or `None` when `head` (the file's first
/// bytes) is not a RIFF/WAVE header holding one.
fn wav_sample_rate(head: &[u8]) -> Option<u32> {
    if head.len() < 12 || &head[..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    while at + 8 <= head.len() {
        let id = &head[at..at + 4];
        let len = u32::from_le_bytes(head[at + 4..at + 8].try_into().ok()?) as usize;
        if id == b"fmt " {
            let rate = head.get(at + 12..at + 16)?;
            return Some(u32::from_le_bytes(rate.try_into().ok()?));
        }
        at = at.checked_add(8 + len + (len & 1))?;
    }
    None
}

/// An error naming `path` unless `rate` is in [`SAMPLE_RATES`].
fn check_rate(path: &Path, rate: u32) -> Result<(), DataError> {
    if SAMPLE_RATES.contains(&rate) {
        Ok(())
    } else {
        Err(bad(
            path,
            format!(
                "sample rate {rate} Hz in the header; expected {} to {} Hz",
                SAMPLE_RATES.start(),
                SAMPLE_RATES.end()
            ),
        ))
    }
}

/// Decodes a WAV or FLAC file to mono. A file that cannot be opened, is not WAV/FLAC, is
/// truncated, holds no samples or has a sample rate outside [`SAMPLE_RATES`] is an error
/// naming it.
pub fn read(path: &Path) -> Result<Audio, DataError> {
    // Symphonia panics on a WAV header whose rate is 0: read the rate first.
    let mut head = Vec::with_capacity(4096);
    {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        file.take(4096)
            .read_to_end(&mut head)
            .map_err(|e| DataError::io(path, e))?;
    }
    if let Some(rate) = wav_sample_rate(&head) {
        check_rate(path, rate)?;
    }
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| bad(path, format!("not a readable WAV or FLAC file ({e})")))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| bad(path, "no audio track"))?;
    let track_id = track.id;
    let sample_rate = track
        .codec_params
        .sample_rate
        .ok_or_else(|| bad(path, "no sample rate in the header"))?;
    check_rate(path, sample_rate)?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| bad(path, format!("unsupported codec ({e})")))?;
    let mut samples = Vec::new();
    let mut channels = 0usize;
    let mut buffer: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(e) => return Err(bad(path, format!("cannot read packet ({e})"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder
            .decode(&packet)
            .map_err(|e| bad(path, format!("corrupt or truncated audio data ({e})")))?;
        let spec = *decoded.spec();
        let c = spec.channels.count().max(1);
        channels = c;
        let needed = decoded.capacity() as u64;
        let buf = match &mut buffer {
            Some(b) if b.capacity() as u64 >= needed * c as u64 => b,
            _ => buffer.insert(SampleBuffer::new(needed, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        for frame in buf.samples().chunks_exact(c) {
            samples.push(frame.iter().sum::<f32>() / c as f32);
        }
    }
    if samples.is_empty() {
        return Err(bad(path, "no samples"));
    }
    Ok(Audio {
        samples,
        sample_rate,
        channels,
    })
}

/// `samples` at `from` Hz resampled to `to` Hz (unchanged when equal), same duration:
/// `ceil(len * to / from)` samples, the resampler's delay removed.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to {
        return Ok(samples.to_vec());
    }
    let chunk = 1024;
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 2, 1)
        .map_err(|e| format!("cannot resample {from} Hz to {to} Hz: {e}"))?;
    let want = (samples.len() as u64 * to as u64).div_ceil(from as u64) as usize;
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(want + delay + chunk);
    let mut pos = 0;
    while out.len() < want + delay {
        let need = r.input_frames_next();
        let end = (pos + need).min(samples.len());
        // Past the end, zeros (rubato's `process_partial` refuses an empty block).
        let mut block = samples[pos..end].to_vec();
        block.resize(need, 0.0);
        let produced = r
            .process(&[block], None)
            .map_err(|e| format!("resampling failed: {e}"))?;
        out.extend_from_slice(&produced[0]);
        pos = end;
    }
    Ok(out[delay..delay + want].to_vec())
}

/// [`read`], then [`resample`] to `rate`: the mono samples at `rate` Hz.
pub fn read_at(path: &Path, rate: u32) -> Result<Vec<f32>, DataError> {
    let audio = read(path)?;
    resample(&audio.samples, audio.sample_rate, rate).map_err(|e| bad(path, e))
}
