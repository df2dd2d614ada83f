//! The error type of the training callbacks. Every variant names what it is about: the
//! callback and the field of its configuration, the monitored quantity, or the file, line
//! and column that could not be read or written.

use std::path::PathBuf;

/// An error from one of the training callbacks.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The monitored quantity is not among the keys of the epoch's logs. Keras only warns and
    /// then does nothing; here it is an error, so that a typo in `monitor` cannot silently
    /// disable early stopping or best-only checkpointing.
    #[error(
        "{callback}: monitor `{monitor}` is not in the epoch logs; available keys: {}",
        if available.is_empty() { "(none)".to_string() } else { available.join(", ") }
    )]
    MissingMonitor {
        /// The callback that monitors it, e.g. `EarlyStopping`.
        callback: &'static str,
        /// The name that was asked for.
        monitor: String,
        /// The keys the logs did have.
        available: Vec<String>,
    },

    /// A configuration field has a value the callback cannot work with.
    #[error("{callback}: invalid `{field}`: {reason}")]
    InvalidConfig {
        /// The callback whose configuration is wrong.
        callback: &'static str,
        /// The field of the configuration struct.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A run's file does not fit the run's resume point.
    #[error("{}: {reason}", path.display())]
    Resume {
        /// The file.
        path: PathBuf,
        /// What does not fit, and what to do.
        reason: String,
    },

    /// A file was read but its content is malformed.
    #[error("{}:{line}: column `{column}`: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The column (field) name, or `header` for the header line itself.
        column: String,
        /// What is wrong.
        reason: String,
    },

    /// Rendering or encoding a plot failed.
    #[error("cannot draw {}: {reason}", path.display())]
    Plot {
        /// The image file that was being produced.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_monitor_message_names_monitor_and_keys() {
        let e = CallbackError::MissingMonitor {
            callback: "EarlyStopping",
            monitor: "val_los".into(),
            available: vec!["loss".into(), "val_loss".into()],
        };
        let msg = e.to_string();
        assert!(msg.contains("EarlyStopping"), "{msg}");
        assert!(msg.contains("`val_los`"), "{msg}");
        assert!(msg.contains("loss, val_loss"), "{msg}");
    }

    #[test]
    fn missing_monitor_message_with_empty_logs() {
        let e = CallbackError::MissingMonitor {
            callback: "ModelCheckpoint",
            monitor: "val_loss".into(),
            available: vec![],
        };
        assert!(e.to_string().ends_with("(none)"));
    }

    #[test]
    fn parse_message_names_file_line_and_column() {
        let e = CallbackError::Parse {
            path: PathBuf::from("run/history.csv"),
            line: 3,
            column: "val_loss".into(),
            reason: "not a number: `abc`".into(),
        };
        assert_eq!(
            e.to_string(),
            "run/history.csv:3: column `val_loss`: not a number: `abc`"
        );
    }
}
