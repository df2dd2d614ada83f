//! `lcnn`: build, train, evaluate and inspect light CNNs from the command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod summary_cmd;

/// Light convolutional neural networks (LCNN, All-CNN-C, separable CNNs, VGG16) in Rust.
#[derive(Parser, Debug)]
#[command(name = "lcnn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a model's layers, output shapes and parameter counts, as Keras' model.summary().
    Summary(summary_cmd::SummaryArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Summary(args) => summary_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
