//! `lcnn export`: a run's weights for another framework.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use lcnn::device::Device;
use lcnn::train::{LoadedRun, RunWeights};

/// Arguments of `lcnn export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(subcommand)]
    what: ExportWhat,
}

#[derive(Subcommand, Debug)]
enum ExportWhat {
    /// A PyTorch state_dict in safetensors: `model.load_state_dict(safetensors.torch.load_file(F))`
    /// for a module whose submodules carry lcnn's layer names (nn.Linear weights transposed,
    /// BatchNorm gamma/beta as weight/bias).
    Torch(TorchArgs),
}

#[derive(Args, Debug)]
struct TorchArgs {
    /// Run folder made by `lcnn train` or `lcnn import`.
    #[arg(long)]
    run: PathBuf,
    /// Which weights: `final`, `best` or `last`.
    #[arg(long, default_value = "final")]
    weights: RunWeights,
    /// The .safetensors file to write.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `lcnn export`.
pub fn run(args: ExportArgs) -> Result<()> {
    match args.what {
        ExportWhat::Torch(a) => {
            let run = LoadedRun::load_weights(&a.run, a.weights, &Device::flex())?;
            let tensors =
                lcnn::weights::pytorch::to_state_dict(&lcnn::weights::export(&run.network));
            let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
            lcnn::weights::safetensors::save(&a.out, &tensors, metadata)
                .with_context(|| format!("writing {}", a.out.display()))?;
            println!(
                "wrote {} tensors (PyTorch names and layouts) to {}",
                tensors.len(),
                a.out.display()
            );
            Ok(())
        }
    }
}
