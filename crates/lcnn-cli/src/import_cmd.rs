//! `lcnn import`: a model trained elsewhere into a run folder, which `lcnn eval`, `lcnn predict`,
//! `lcnn summary --run` and `lcnn train --weights RUN/model.safetensors` then use.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

/// Arguments of `lcnn import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(subcommand)]
    what: ImportWhat,
}

#[derive(Subcommand, Debug)]
enum ImportWhat {
    /// A Keras whole-model .h5 file (`model.save("model.h5")`: a Sequential CNN, or a
    /// Functional one that is a chain of layers, such as the seeds' LCNN with `Maxout`).
    Keras(KerasArgs),
}

#[derive(Args, Debug)]
struct KerasArgs {
    /// The .h5 file.
    file: PathBuf,
    /// The run folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Multiplier on raw 0..255 pixels that the model was trained with (1 for raw pixels,
    /// 0.00392 for Keras' `rescale=1./255`).
    #[arg(long, default_value_t = 1.0)]
    rescale: f32,
    /// Class names in label order, comma-separated (default: 0, 1, 2, ...).
    #[arg(long)]
    classes: Option<String>,
    /// How the file's `Maxout(C/2)` layers pair channels: `halves` (max of x[k], x[k + C/2]:
    /// TensorFlow Addons 0.7 and later, lcnn's MFM) or `pairs` (max of x[2k], x[2k+1]: older
    /// copies of tfa's Maxout and tf.contrib's maxout).
    #[arg(long, default_value = "halves", value_parser = ["halves", "pairs"])]
    maxout: String,
}

/// Runs `lcnn import`.
pub fn run(args: ImportArgs) -> Result<()> {
    match args.what {
        ImportWhat::Keras(a) => keras(a),
    }
}

#[cfg(feature = "hdf5")]
fn keras(a: KerasArgs) -> Result<()> {
    use lcnn::models::{ModelConfig, Shape};
    use lcnn::train::run::{write_imported_run, Preprocess};

    use lcnn::weights::keras::{read_model_with, ImportOptions, MaxoutOrder};
    let options = ImportOptions {
        maxout: if a.maxout == "pairs" {
            MaxoutOrder::Pairs
        } else {
            MaxoutOrder::Halves
        },
    };
    let model = read_model_with(&a.file, options)?;
    let units = match model.spec.resolve()?.last().map(|r| r.output) {
        Some(Shape::Flat(n)) => n,
        Some(other) => bail!(
            "{}: the model's output is {other}, not a vector of class scores",
            a.file.display()
        ),
        None => bail!("{}: the model has no layers", a.file.display()),
    };
    let classes: Vec<String> = match &a.classes {
        Some(list) => list.split(',').map(|c| c.trim().to_string()).collect(),
        None => (0..units.max(2)).map(|i| i.to_string()).collect(),
    };
    if classes.len() != units.max(2) {
        bail!(
            "--classes names {} classes, the model has {units} output units",
            classes.len()
        );
    }
    let config = ModelConfig::imported(model.spec.input, units, model.spec.layers.clone());
    let params = config.spec()?.param_count()?.total();
    let preprocess = Preprocess {
        rescale: a.rescale,
        mean: None,
        std: None,
        classes,
        input: model.spec.input,
    };
    write_imported_run(&a.out, &config, model.tensors, &preprocess, &a.file)?;
    println!(
        "imported Keras {} model `{}`: {} layers, {params} parameters, input {}",
        model
            .keras_version
            .as_deref()
            .unwrap_or("(version unknown)"),
        model.name,
        model.spec.layers.len(),
        model.spec.input.keras(),
    );
    if let Some(added) = &model.added_output {
        println!(
            "the model was compiled with a from_logits loss: its softmax/sigmoid is layer `{added}`"
        );
    }
    println!("run folder: {}", a.out.display());
    Ok(())
}

#[cfg(not(feature = "hdf5"))]
fn keras(a: KerasArgs) -> Result<()> {
    bail!(
        "{}: reading Keras .h5 files needs lcnn built with the `hdf5` feature (libhdf5)",
        a.file.display()
    )
}
