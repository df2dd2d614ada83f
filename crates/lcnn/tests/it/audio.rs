//! Voice anti-spoofing data: WAV / FLAC decoding, mono mix and resampling; the spectrogram
//! features against `reference/audio_features.py` (numpy, itself checked against librosa);
//! the EER against `reference/eer.py` (checked against scikit-learn and scipy); audio folders,
//! protocol files, the feature cache and bad files; and a run that logs, monitors and plots
//! the EER end to end.

use crate::scratch;
use std::path::{Path, PathBuf};

use lcnn::audio::dataset::{features_of, load, AudioOptions};
use lcnn::audio::features::{
    cqt_power, features, power_spectrogram, pre_emphasis, window, FeatureConfig,
};
use lcnn::audio::{eer, read, resample, roc};
use lcnn::data::DataError;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A 16-bit PCM mono WAV file.
pub fn write_wav(path: &Path, rate: u32, samples: &[f32]) {
    let data: Vec<u8> = samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect();
    let mut b = Vec::with_capacity(44 + data.len());
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&rate.wrapping_mul(2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&data);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b).unwrap();
}

fn config_of(c: &serde_json::Value) -> FeatureConfig {
    FeatureConfig {
        sample_rate: c["sample_rate"].as_u64().unwrap() as u32,
        pre_emphasis: c["pre_emphasis"].as_f64().unwrap(),
        n_fft: c["n_fft"].as_u64().unwrap() as usize,
        win_length: c["win_length"].as_u64().unwrap() as usize,
        hop_length: c["hop_length"].as_u64().unwrap() as usize,
        bins: c["bins"].as_u64().unwrap() as usize,
        top_db: c["top_db"].as_f64(),
        frames: c["frames"].as_u64().unwrap() as usize,
        deltas: c["deltas"].as_bool().unwrap(),
        cqt: c["cqt"].as_bool().unwrap(),
        fmin: c["fmin"].as_f64().unwrap(),
        bins_per_octave: c["bins_per_octave"].as_u64().unwrap() as usize,
    }
}

#[test]
fn features_match_the_numpy_reference() {
    let fx = json("audio_features.json");
    let tone = &fx["tone_wav"];
    let audio = read(&fixture("audio_tone16k.wav")).unwrap();
    assert_eq!(audio.sample_rate, 16000);
    assert_eq!(audio.channels, 1);
    assert_eq!(
        audio.samples.len(),
        tone["decoded_len"].as_u64().unwrap() as usize
    );
    for (g, w) in audio.samples.iter().zip(floats(&tone["decoded_first_8"])) {
        assert_eq!(*g as f64, w);
    }
    let sum: f64 = audio.samples.iter().map(|v| *v as f64).sum();
    assert!((sum - tone["decoded_sum"].as_f64().unwrap()).abs() < 1e-9);
    // The same samples from the FLAC of the same file (lossless).
    let flac = read(&fixture("audio_tone16k.flac")).unwrap();
    assert_eq!(flac.samples, audio.samples);
    let y = pre_emphasis(&audio.samples, 0.97);
    for (g, w) in y.iter().zip(floats(&tone["pre_emphasized_first_16"])) {
        assert!((g - w).abs() < 1e-12, "pre-emphasis {g} vs {w}");
    }

    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let cfg = config_of(&case["config"]);
        cfg.validate().unwrap();
        if let Some(want) = case.get("window") {
            for (g, w) in window(cfg.n_fft, cfg.win_length).iter().zip(floats(want)) {
                assert!((g - w).abs() < 1e-12, "{name}: window {g} vs {w}");
            }
        }
        let (power, frames) = if cfg.cqt {
            cqt_power(&y, &cfg)
        } else {
            power_spectrogram(&y, &cfg)
        };
        assert_eq!(
            frames,
            case["num_frames"].as_u64().unwrap() as usize,
            "{name}"
        );
        let max = power.iter().fold(0.0f64, |m, v| m.max(*v));
        let want_max = case["power_max"].as_f64().unwrap();
        assert!(
            (max - want_max).abs() <= 1e-12 * want_max,
            "{name}: max {max} vs {want_max}"
        );
        let t = case["power_probe"]["frame"].as_u64().unwrap() as usize;
        for (f, w) in floats(&case["power_probe"]["power"]).iter().enumerate() {
            let g = power[f * frames + t];
            assert!(
                (g - w).abs() <= 1e-12 * want_max,
                "{name}: power bin {f}: {g} vs {w}"
            );
        }
        let got = features(&audio.samples, &cfg);
        let want = floats(&case["features"]);
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, [cfg.bins, cfg.frames, cfg.channels()], "{name}");
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // The fixture holds 9 significant digits.
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{name} {i}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn stereo_mixes_to_mono_and_resamples_to_the_same_tone() {
    let fx = json("audio_features.json");
    let st = &fx["stereo_wav"];
    let audio = read(&fixture("audio_stereo22k.wav")).unwrap();
    assert_eq!((audio.sample_rate, audio.channels), (22050, 2));
    assert_eq!(audio.samples.len(), 2205);
    for (g, w) in audio.samples.iter().zip(floats(&st["mono_first_8"])) {
        assert!((*g as f64 - w).abs() < 1e-7, "mono {g} vs {w}");
    }
    let y = resample(&audio.samples, 22050, 16000).unwrap();
    assert_eq!(y.len(), 1600, "0.1 s at 16 kHz");
    // The tone's amplitude at each frequency of the middle 0.08 s (a DFT over exactly 80
    // cycles of 1 kHz): the peak is at 1000 Hz with amplitude 0.3, as the mix.
    let mid = &y[160..1440];
    let amp = |hz: f64| {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (n, v) in mid.iter().enumerate() {
            let a = 2.0 * std::f64::consts::PI * hz * n as f64 / 16000.0;
            re += *v as f64 * a.cos();
            im += *v as f64 * a.sin();
        }
        2.0 * (re * re + im * im).sqrt() / mid.len() as f64
    };
    let at = amp(1000.0);
    assert!((at - 0.3).abs() < 0.003, "1 kHz amplitude {at}");
    for hz in [500.0, 1500.0, 3000.0] {
        assert!(amp(hz) < 0.01, "{hz} Hz: {}", amp(hz));
    }
}

/// Every length at the common rates resamples to `ceil(len * 16000 / rate)` samples (the
/// last block past the input's end used to be refused: 8 of 12 lengths at 44.1 kHz failed), a
/// tone keeps its level, and a header whose rate is 0, 1 or 4 GHz is an error naming the file
/// and the rate, not a panic or a gigabyte request.
#[test]
fn any_length_at_any_common_rate_resamples_and_absurd_rates_are_refused() {
    for rate in [8000u32, 11025, 22050, 44100, 48000] {
        for len in [1usize, 1023, 1024, 2206, 4410, 22050, 44101] {
            let x: Vec<f32> = (0..len)
                .map(|n| (2.0 * std::f32::consts::PI * 440.0 * n as f32 / rate as f32).sin())
                .collect();
            let y = resample(&x, rate, 16000).unwrap_or_else(|e| panic!("{rate} Hz, {len}: {e}"));
            assert_eq!(
                y.len(),
                (len * 16000).div_ceil(rate as usize),
                "{rate} Hz, {len}"
            );
            if len >= 22050 {
                let mid = &y[y.len() / 4..y.len() * 3 / 4];
                let peak = mid.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!((peak - 1.0).abs() < 0.02, "{rate} Hz, {len}: peak {peak}");
            }
        }
    }
    let dir = crate::scratch("audio-rates");
    for rate in [0u32, 1, u32::MAX] {
        let path = dir.path().join(format!("rate{rate}.wav"));
        write_wav(&path, rate, &[0.1; 64]);
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("rate{rate}.wav"))
                && err.contains(&format!("sample rate {rate} Hz")),
            "{err}"
        );
    }
}

#[test]
fn eer_matches_scikit_learn_and_scipy() {
    let fx = json("eer.json");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let scores = floats(&case["scores"]);
        let pos: Vec<bool> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_u64().unwrap() == 1)
            .collect();
        let r = roc(&scores, &pos).unwrap();
        // The rates as counts over totals (scikit-learn divides cumulative sums: the last ulp
        // may differ).
        for (what, got, want) in [("fpr", &r.fpr, &case["fpr"]), ("tpr", &r.tpr, &case["tpr"])] {
            let want = floats(want);
            assert_eq!(got.len(), want.len(), "{name}: {what}");
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{name}: {what} {g} vs {w}");
            }
        }
        let thresholds = case["thresholds"].as_array().unwrap();
        assert!(thresholds[0].is_null() && r.thresholds[0] == f64::INFINITY);
        for (g, w) in r.thresholds[1..].iter().zip(&thresholds[1..]) {
            assert_eq!(*g, w.as_f64().unwrap(), "{name}: thresholds");
        }
        let (rate, threshold) = eer(&scores, &pos).unwrap();
        let want = case["eer"].as_f64().unwrap();
        assert!((rate - want).abs() < 1e-12, "{name}: eer {rate} vs {want}");
        let t = &case["eer_threshold"];
        match t.as_f64() {
            Some(w) => assert_eq!(threshold, w, "{name}: threshold"),
            None => assert_eq!(threshold, f64::INFINITY, "{name}: threshold"),
        }
    }
}

/// Two classes of short utterances: bona fide tones (a pitch per voice), spoofs of the same
/// tones band-limited and with a buzz, as a replay would be.
pub fn write_spoof_folder(root: &Path, per_class: usize) {
    for split in ["train", "test"] {
        for i in 0..per_class {
            let f0 = 120.0 + 23.0 * i as f32 + if split == "test" { 7.0 } else { 0.0 };
            let tone = |n: usize, buzz: bool| {
                let t = n as f32 / 8000.0;
                let mut v = 0.3 * (2.0 * std::f32::consts::PI * f0 * t).sin()
                    + 0.15 * (2.0 * std::f32::consts::PI * 3.0 * f0 * t).sin();
                if buzz {
                    v = 0.5 * v + 0.2 * (2.0 * std::f32::consts::PI * 2500.0 * t).sin().signum();
                }
                v
            };
            let n = 1600 + 97 * i;
            let bona: Vec<f32> = (0..n).map(|k| tone(k, false)).collect();
            let spoof: Vec<f32> = (0..n).map(|k| tone(k, true)).collect();
            write_wav(
                &root.join(format!("{split}/bonafide/u{i:02}.wav")),
                8000,
                &bona,
            );
            write_wav(
                &root.join(format!("{split}/spoof/u{i:02}.wav")),
                8000,
                &spoof,
            );
        }
    }
}

fn small_features() -> FeatureConfig {
    FeatureConfig {
        sample_rate: 8000,
        n_fft: 64,
        win_length: 64,
        hop_length: 32,
        bins: 16,
        frames: 16,
        ..FeatureConfig::default()
    }
}

#[test]
fn audio_folders_protocols_the_cache_and_bad_files() {
    let tmp = scratch("folders");
    let dir = tmp.path();
    let root = dir.join("corpus");
    write_spoof_folder(&root, 4);
    let opts = AudioOptions {
        features: small_features(),
        no_cache: true,
        ..Default::default()
    };
    let splits = load(&root, &opts).unwrap();
    assert_eq!(splits.classes(), ["bonafide", "spoof"]);
    assert_eq!(
        (splits.train.len(), splits.test.as_ref().unwrap().len()),
        (8, 8)
    );
    assert_eq!(splits.train.shape(), (16, 16, 1));

    // An ASVspoof protocol over the same files (renamed to utterance ids, in a sub folder).
    let flac_dir = dir.join("LA/ASVspoof2019_LA_train/flac");
    std::fs::create_dir_all(&flac_dir).unwrap();
    let mut protocol = String::new();
    for (i, class) in ["bonafide", "spoof"].iter().enumerate() {
        for u in 0..4 {
            let id = format!("LA_T_{}", 1000 + i * 10 + u);
            std::fs::copy(
                root.join(format!("train/{class}/u{u:02}.wav")),
                flac_dir.join(format!("{id}.wav")),
            )
            .unwrap();
            let system = if *class == "spoof" { "A01" } else { "-" };
            protocol.push_str(&format!("LA_0079 {id} - {system} {class}\n"));
        }
    }
    let proto = dir.join("train.txt");
    std::fs::write(&proto, &protocol).unwrap();
    let with_protocol = AudioOptions {
        protocol: Some(proto.clone()),
        ..opts.clone()
    };
    let from_protocol = load(&dir.join("LA"), &with_protocol).unwrap();
    assert_eq!(from_protocol.train.labels, splits.train.labels);
    assert_eq!(from_protocol.train.images, splits.train.images);
    assert!(from_protocol.val.is_none() && from_protocol.test.is_none());

    // Development and evaluation protocols (subsets of the same utterances here) become the
    // validation and test splits, in their files' order.
    let dev = dir.join("dev.txt");
    let lines: Vec<&str> = protocol.lines().collect();
    std::fs::write(&dev, format!("{}\n{}\n", lines[5], lines[1])).unwrap();
    let three = AudioOptions {
        val_protocol: Some(dev.clone()),
        test_protocol: Some(proto.clone()),
        ..with_protocol.clone()
    };
    let s3 = load(&dir.join("LA"), &three).unwrap();
    let val = s3.val.as_ref().unwrap();
    assert_eq!(val.labels, [1, 0]);
    assert_eq!(val.image(0), splits.train.image(5));
    assert_eq!(s3.test.as_ref().unwrap().labels, splits.train.labels);
    assert!(s3.to_string().contains("validation 2"), "{s3}");
    // A dev protocol with a class the training one lacks.
    std::fs::write(&dev, "LA_0079 LA_T_1000 - - genuine\n").unwrap();
    let e = load(&dir.join("LA"), &three).unwrap_err().to_string();
    assert!(e.contains("dev.txt") && e.contains("genuine"), "{e}");

    // A protocol naming an utterance that is not there: the file, the line and the id.
    std::fs::write(
        &proto,
        format!("{protocol}LA_0079 LA_T_9999 - - bonafide\n"),
    )
    .unwrap();
    let e = load(&dir.join("LA"), &with_protocol)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train.txt, line 9") && e.contains("LA_T_9999"),
        "{e}"
    );
    // A misspelt key (it made a third class) and an utterance listed twice (it counted
    // twice): errors naming the line.
    let first = lines[0];
    for (extra, needle) in [
        (
            first
                .replace("bonafide", "bonefide")
                .replace("spoof", "spooof"),
            "expected bonafide or spoof",
        ),
        (first.to_string(), "listed again (first on line 1)"),
    ] {
        std::fs::write(&proto, format!("{protocol}{extra}\n")).unwrap();
        let e = load(&dir.join("LA"), &with_protocol)
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.txt, line 9") && e.contains(needle), "{e}");
    }

    // The cache: written on the first pass, read on the next (a changed cache entry shows),
    // keyed by the settings (other settings compute afresh).
    let cache = dir.join("cache");
    let files: Vec<(PathBuf, u32)> = vec![(root.join("train/bonafide/u00.wav"), 0)];
    let cfg = small_features();
    let first = features_of(&files, &cfg, Some(&cache)).unwrap();
    let mut entries = Vec::new();
    lcnn::data::folder::walk(&cache, |_| true, &mut entries).unwrap();
    assert_eq!(entries.len(), 1);
    let entry = PathBuf::from(&entries[0].0).join(&entries[0].1);
    let mut changed = first.clone();
    changed[0] ^= 0xff;
    std::fs::write(&entry, &changed).unwrap();
    assert_eq!(features_of(&files, &cfg, Some(&cache)).unwrap(), changed);
    let other = FeatureConfig {
        pre_emphasis: 0.9,
        ..cfg.clone()
    };
    assert_ne!(features_of(&files, &other, Some(&cache)).unwrap(), changed);

    // Bad files: truncated, and not audio at all; each error names the file.
    let bad = root.join("train/spoof/u01.wav");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..30]).unwrap();
    let e = load(&root, &opts).unwrap_err();
    assert!(matches!(e, DataError::Audio { .. }), "{e}");
    assert!(e.to_string().contains("u01.wav"), "{e}");
    std::fs::write(&bad, b"not a wav file at all").unwrap();
    let e = load(&root, &opts).unwrap_err().to_string();
    assert!(e.contains("u01.wav") && e.contains("WAV or FLAC"), "{e}");
}

/// LCNN on an audio folder: `val_eer` in the history and monitored by early stopping and the
/// checkpoint, `roc.png` written, the test EER reported, and `predict` on audio files.
#[test]
fn a_run_on_audio_logs_monitors_and_plots_the_eer() {
    use burn::tensor::Device;
    use lcnn::callbacks::{EarlyStoppingConfig, ModelCheckpointConfig};
    use lcnn::train::{fit, predict_files, FitOptions, LoadedRun, OptimizerConfig, TrainConfig};

    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let tmp = scratch("run");
    let dir = tmp.path();
    let root = dir.join("corpus");
    write_spoof_folder(&root, 8);
    let monitor = |m: &str| m.to_string();
    let config = TrainConfig {
        dataset: format!("audio:{}", root.display()),
        epochs: 3,
        batch_size: 4,
        optimizer: OptimizerConfig::adam(),
        validation_split: 0.25,
        early_stopping: Some(EarlyStoppingConfig {
            monitor: monitor("val_eer"),
            patience: 5,
            ..Default::default()
        }),
        checkpoint: ModelCheckpointConfig {
            monitor: monitor("val_eer"),
            save_best_only: true,
            ..Default::default()
        },
        seed: 3,
        audio: AudioOptions {
            features: small_features(),
            no_cache: true,
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let out = dir.join("run");
    let opts = FitOptions {
        out: out.clone(),
        resume: false,
        quiet: true,
        offline: true,
        device: Device::flex(),
        devices: Vec::new(),
        data_on_device: None,
        overwrite: false,
    };
    let report = fit(&config, &opts).unwrap();
    for row in &report.history {
        let e = row["val_eer"];
        assert!((0.0..=1.0).contains(&e), "{e}");
    }
    let csv = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",val_eer"), "{csv}");
    let test = report.test.unwrap();
    assert_eq!(test.samples, 16);
    assert!(test.eer.is_some());
    assert!(std::fs::read(out.join("roc.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    // The checkpoint kept the epoch with the lowest val_eer ("auto" mode: lower is better).
    let best = report
        .history
        .iter()
        .map(|r| r["val_eer"])
        .fold(f64::INFINITY, f64::min);
    assert!(best <= report.history[0]["val_eer"]);

    let run = LoadedRun::load(&out, &Device::flex()).unwrap();
    assert_eq!(run.config.eer_class(&run.preprocess.classes), Some(0));
    let files = [
        root.join("test/bonafide/u00.wav"),
        root.join("test/spoof/u00.wav"),
    ];
    let p = predict_files(&run, &files, 2, &Device::flex()).unwrap();
    assert_eq!(p.len(), 2);
    for pred in &p {
        let total: f32 = pred.top.iter().map(|t| t.1).sum();
        assert!((total - 1.0).abs() < 1e-4, "{:?}", pred.top);
    }
    // An image is not an utterance: refused, not scored.
    let png = out.join("not-audio.png");
    std::fs::write(&png, b"\x89PNG").unwrap();
    let err = predict_files(&run, &[png], 2, &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not-audio.png") && err.contains("WAV or FLAC"),
        "{err}"
    );
}
