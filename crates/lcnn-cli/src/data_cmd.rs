//! `lcnn data ...`: dataset commands. `lcnn data check` loads a dataset and prints its splits.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use lcnn::data::{
    load, offline_from_env, parse_target_size, resolve_data_dir, ClassMode, ColorMode, DatasetSpec,
    Interpolation, LoadOptions, Splits,
};

/// Arguments of `lcnn data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

/// The `lcnn data` subcommands.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Load a dataset and print its splits with counts, classes and image shape
    /// (e.g. `mnist: train 60000, test 10000, classes 10, shape 28x28x1`). Fails with a
    /// message naming the file on any problem.
    Check(CheckArgs),
}

/// Arguments of `lcnn data check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Dataset: mnist, cifar10, images:DIR (DIR/train/<class>/ and optionally DIR/test/<class>/),
    /// or audio:DIR (the same with WAV / FLAC files, or --protocol files).
    #[arg(long)]
    pub dataset: DatasetSpec,
    #[command(flatten)]
    pub audio: crate::audio_args::AudioArgs,
    /// Folder holding mnist/ and cifar10/ (default: $LCNN_DATA, else ~/.cache/lcnn/datasets).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Resize every image to HxW (e.g. 150x150).
    #[arg(long, value_parser = target_size)]
    pub target_size: Option<(usize, usize)>,
    /// Resampling filter for --target-size: nearest (Keras' default) or bilinear.
    #[arg(long, default_value = "nearest")]
    pub interpolation: Interpolation,
    /// Channels of image folders: rgb or grayscale.
    #[arg(long, default_value = "rgb")]
    pub color_mode: ColorMode,
    /// Label mode: categorical, or binary (exactly 2 classes).
    #[arg(long, default_value = "categorical")]
    pub class_mode: ClassMode,
    /// Never download; name the missing file, its URL and the folder to put it in (also LCNN_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
}

fn target_size(s: &str) -> Result<(usize, usize), lcnn::data::DataError> {
    parse_target_size(s)
}

/// Runs an `lcnn data` subcommand.
pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> Result<()> {
    let opts = LoadOptions {
        data_dir: resolve_data_dir(args.data_dir.as_deref()),
        target_size: args.target_size,
        interpolation: args.interpolation,
        color_mode: args.color_mode,
        offline: args.offline || offline_from_env(),
        audio: args.audio.options(),
    };
    if let DatasetSpec::Audio(dir) = &args.dataset {
        print!("{}", audio_report(dir, &opts.audio)?);
    }
    let splits =
        load(&args.dataset, &opts).with_context(|| format!("cannot load {}", args.dataset))?;
    args.class_mode.check(&splits)?;
    print!("{}", report(&splits));
    Ok(())
}

/// Per split and class: files, total and shortest / longest duration, and the sample rates
/// and channel counts found. Every file is decoded; the first that cannot be is the error.
fn audio_report(dir: &std::path::Path, opts: &lcnn::audio::AudioOptions) -> Result<String> {
    use rayon::prelude::*;
    use std::collections::BTreeMap;
    use std::fmt::Write;

    let lists = lcnn::audio::dataset::list(dir, opts)?;
    let mut out = String::new();
    for (split, list) in lists.named() {
        let decoded = list
            .files
            .par_iter()
            .map(|(f, label)| lcnn::audio::read(f).map(|a| (a, *label)))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, class) in list.classes.iter().enumerate() {
            let mut rates: BTreeMap<(u32, usize), usize> = BTreeMap::new();
            let (mut n, mut total, mut short, mut long) = (0, 0.0f64, f64::INFINITY, 0.0f64);
            for (a, _) in decoded.iter().filter(|(_, l)| *l as usize == i) {
                let s = a.seconds();
                n += 1;
                total += s;
                short = short.min(s);
                long = long.max(s);
                *rates.entry((a.sample_rate, a.channels)).or_default() += 1;
            }
            let rates: Vec<String> = rates
                .iter()
                .map(|((r, c), k)| format!("{r} Hz x{c}: {k}"))
                .collect();
            let _ = writeln!(
                out,
                "{split} {class}: {n} files, {:.1} min, {short:.2}-{long:.2} s each ({})",
                total / 60.0,
                rates.join(", ")
            );
        }
    }
    let f = &opts.features;
    let transform = if f.cqt {
        format!(
            "CQT {:.1}-{:.1} Hz, {} bins/octave",
            f.fmin,
            f.cqt_frequency(f.bins.saturating_sub(1)),
            f.bins_per_octave
        )
    } else {
        format!("n_fft {}, window {}", f.n_fft, f.win_length)
    };
    let _ = writeln!(
        out,
        "features: {}x{}x{} ({} Hz, {transform}, hop {}, {} frames = {:.2} s)",
        f.bins,
        f.frames,
        f.channels(),
        f.sample_rate,
        f.hop_length,
        f.frames,
        (f.frames.saturating_sub(1) * f.hop_length) as f64 / f.sample_rate as f64
    );
    Ok(out)
}

/// The summary line, then each class with its image counts per split.
fn report(splits: &Splits) -> String {
    let mut out = format!("{splits}\n");
    let columns: Vec<(&str, Vec<usize>)> = [
        ("train", Some(&splits.train)),
        ("validation", splits.val.as_ref()),
        ("test", splits.test.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, d)| d.map(|d| (name, d.class_counts())))
    .collect();
    out.push_str("classes:\n");
    for (i, name) in splits.classes().iter().enumerate() {
        let counts: Vec<String> = columns
            .iter()
            .map(|(split, c)| format!("{split} {}", c.get(i).unwrap_or(&0)))
            .collect();
        out.push_str(&format!("  {i:>3} {name}: {}\n", counts.join(", ")));
    }
    out
}
