//! `lcnn summary`: the Keras-style table of a model of the zoo.

use anyhow::Result;
use clap::Args;
use lcnn::models::{parse_input_shape, summary, ModelConfig, ModelName};

/// Arguments of `lcnn summary`.
#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// Model: lcnn, lightcnn9, allconv, separable, vgg16.
    #[arg(long)]
    model: String,
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
    let name: ModelName = args.model.parse()?;
    let input = match &args.input {
        Some(s) => parse_input_shape(s)?,
        None => name.default_input(),
    };
    let config = ModelConfig {
        name,
        input,
        classes: args.classes,
        include_top: !args.no_top,
    };
    print!("{}", summary(&config.spec()?, &[])?);
    Ok(())
}
