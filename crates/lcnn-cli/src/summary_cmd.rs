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
            let spec = run.model.spec()?;
            print!("{}", summary(&spec, &frozen_layers(&run.config, &spec)?)?);
            return Ok(());
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

/// Which layers a run trained frozen (`--freeze-until`, `--freeze-base`, `--freeze-bn`), which
/// Keras' summary counts as non-trainable.
fn frozen_layers(
    config: &lcnn::train::TrainConfig,
    spec: &lcnn::models::ModelSpec,
) -> Result<Vec<bool>> {
    use lcnn::models::{head::PREDICTIONS, LayerKind};
    let until = match (&config.freeze_until, config.freeze_base) {
        (Some(name), _) => spec.index_of(name)?,
        (None, true) => spec
            .layers
            .iter()
            .position(|l| l.name.starts_with("head1_") || l.name == PREDICTIONS)
            .unwrap_or(0),
        (None, false) => 0,
    };
    Ok(spec
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            i < until || (config.freeze_bn && matches!(l.kind, LayerKind::BatchNorm { .. }))
        })
        .collect())
}
