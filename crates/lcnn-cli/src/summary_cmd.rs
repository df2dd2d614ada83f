//! `lcnn summary`: the Keras-style table of a model of the zoo, or of a run's model (trained
//! or imported).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use lcnn::models::{parse_input_shape, summary, ModelConfig, ModelName};

/// Arguments of `lcnn summary`.
#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// Model: lcnn, lightcnn9, allconv, separable, vgg16.
    #[arg(long, required_unless_present = "run")]
    model: Option<String>,
    /// A run folder (from `lcnn train` or `lcnn import`): its model instead of --model.
    #[arg(long, conflicts_with_all = ["model", "input", "no_top"])]
    run: Option<PathBuf>,
    /// Input shape HxWxC (default: the model's own, e.g. 28x28x1 for lcnn).
    #[arg(long)]
    input: Option<String>,
    /// Number of classes (1 = one sigmoid unit for binary classification).
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Leave out the classifier (Keras include_top=False): vgg16, lightcnn9.
    #[arg(long)]
    no_top: bool,
}

/// Prints the summary.
pub fn run(args: SummaryArgs) -> Result<()> {
    let config = match (&args.run, &args.model) {
        (Some(dir), _) => {
            let run = lcnn::train::LoadedRun::load(dir, &lcnn::device::Device::flex())?;
            run.model
        }
        (None, Some(model)) => {
            let name: ModelName = model.parse()?;
            let input = match &args.input {
                Some(s) => parse_input_shape(s)?,
                None => name.default_input(),
            };
            ModelConfig {
                include_top: !args.no_top,
                ..ModelConfig::new(name, input, args.classes)
            }
        }
        (None, None) => bail!("give --model or --run"),
    };
    print!("{}", summary(&config.spec()?, &[])?);
    Ok(())
}
