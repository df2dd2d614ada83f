//! `lcnn`: build, train, evaluate and inspect light CNNs from the command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audio_args;
mod bench_cmd;
mod data_cmd;
mod export_cmd;
mod import_cmd;
mod summary_cmd;
mod train_cmd;

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
    /// Train a model (default: LCNN on MNIST, the seeds' recipe) into a run folder.
    Train(Box<train_cmd::TrainArgs>),
    /// Evaluate a trained run: prints test_loss and test_accuracy (and eer for two-class audio).
    Eval(train_cmd::EvalArgs),
    /// Class probabilities of image files with a trained run.
    Predict(train_cmd::PredictArgs),
    /// Inspect datasets.
    Data(data_cmd::DataArgs),
    /// Measure training-step throughput or prediction latency.
    Bench(bench_cmd::BenchArgs),
    /// Import a model trained elsewhere (Keras .h5) into a run folder.
    Import(import_cmd::ImportArgs),
    /// Export a run's weights for another framework (PyTorch).
    Export(export_cmd::ExportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Summary(args) => summary_cmd::run(args),
        Command::Train(args) => train_cmd::run_train(*args),
        Command::Eval(args) => train_cmd::run_eval(args),
        Command::Predict(args) => train_cmd::run_predict(args),
        Command::Data(args) => data_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Import(args) => import_cmd::run(args),
        Command::Export(args) => export_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // 2 for bad arguments or input (as clap), 1 for a failure during training.
            let training_failure = err
                .downcast_ref::<lcnn::train::TrainError>()
                .is_some_and(|e| matches!(e, lcnn::train::TrainError::NonFiniteLoss { .. }));
            ExitCode::from(if training_failure { 1 } else { 2 })
        }
    }
}
