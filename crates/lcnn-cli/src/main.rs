//! `lcnn`: build, train, evaluate and inspect light CNNs from the command line.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    // Rust ignores SIGPIPE, so a write to a closed pipe (`lcnn summary | head -3`) fails and
    // `println!` panics; with the default action the process ends quietly, as Unix tools do.
    // Weights and logs are written to temporary files and renamed, so nothing is left half
    // written.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread starts; `SIG_DFL` is a valid
    // action for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Summary(args) => summary_cmd::run(args),
        Command::Train(args) => train_cmd::run_train(*args, &given(matches.subcommand())),
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
            eprintln!("error: {}", message(&err));
            // 2 for bad arguments or input (as clap), 1 for a failure during training.
            let training_failure = err
                .downcast_ref::<lcnn::train::TrainError>()
                .is_some_and(|e| matches!(e, lcnn::train::TrainError::NonFiniteLoss { .. }));
            ExitCode::from(if training_failure { 1 } else { 2 })
        }
    }
}

/// The ids of the flags given on the command line (not defaulted) of a subcommand.
fn given(sub: Option<(&str, &clap::ArgMatches)>) -> Vec<String> {
    let Some((_, m)) = sub else {
        return Vec::new();
    };
    m.ids()
        .filter(|id| m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect()
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message so far
/// already holds (library errors often quote their source, which would print it twice).
fn message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_already_quotes_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let quoted = anyhow::Error::new(io).context("/x.png: No such file");
        assert_eq!(message(&quoted), "/x.png: No such file");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let other = anyhow::Error::new(io).context("reading /x.png");
        assert_eq!(message(&other), "reading /x.png: No such file");
    }
}
