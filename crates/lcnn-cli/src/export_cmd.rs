//! `lcnn export`: a run's weights for another framework.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
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
            check_out(&a.out)?;
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

/// The file `export` may write: a `.safetensors` name (the format it writes; a `.pt` name would
/// make `torch.load` fail on it), and never a weights file of a run folder (the run's own
/// model would be replaced by its PyTorch layout).
fn check_out(out: &Path) -> Result<()> {
    if out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "--out {}: export torch writes a safetensors file (load it with \
             safetensors.torch.load_file); give the file a .safetensors name",
            out.display()
        );
    }
    // A bare file name's parent is "" (the current folder), which joins as such.
    let files = lcnn::train::RunFiles::new(out.parent().unwrap_or(Path::new("")));
    if files.config().exists()
        && files
            .written()
            .iter()
            .any(|f| f.file_name() == out.file_name())
    {
        bail!(
            "--out {}: that is a weights file of the run folder it is in (lcnn's layout, beside \
             its config.json); write the PyTorch state_dict to another name, e.g. {}",
            out.display(),
            out.with_file_name("torch.safetensors").display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_must_be_safetensors_and_not_a_run_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let err = check_out(&d.join("model.pt")).unwrap_err().to_string();
        assert!(
            err.contains("model.pt") && err.contains(".safetensors name"),
            "{err}"
        );
        // Outside a run folder any .safetensors name is fine; inside, not the run's files.
        assert!(check_out(&d.join("model.safetensors")).is_ok());
        std::fs::write(d.join("config.json"), "{}").unwrap();
        let err = check_out(&d.join("model.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("weights file of the run folder") && err.contains("torch.safetensors"),
            "{err}"
        );
        for ok in ["torch.safetensors", "model-torch.safetensors"] {
            assert!(check_out(&d.join(ok)).is_ok(), "{ok}");
        }
    }
}
