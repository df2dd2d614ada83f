//! Training callbacks with Keras semantics, free of any tensor backend: they read the
//! epoch's [`Logs`] and tell the training loop what to do.
//!
//! - [`EarlyStopping`]: Keras 2.9 `EarlyStopping` (patience, `min_delta`, baseline,
//!   best-weights snapshot and restore);
//! - [`ModelCheckpoint`]: Keras 2.9 `ModelCheckpoint`'s decision to save (`save_best_only`);
//! - [`ReduceLrOnPlateau`]: Keras 2.9 `ReduceLROnPlateau` (factor, patience, cooldown,
//!   `min_lr`);
//! - [`CsvLogger`]: `history.csv`, rewritten atomically after each epoch, truncated on resume;
//! - [`plot_history`]: `history.png` with the loss and accuracy curves;
//! - [`Progress`]: the per-epoch progress bar and summary line.
//!
//! The state of the first three serializes with serde so that a resumed run continues exactly
//! as the interrupted one would have.

pub mod csv_logger;
pub mod early_stopping;
pub mod error;
pub mod logs;
pub mod model_checkpoint;
pub mod plot;
pub mod progress;
pub mod reduce_lr_on_plateau;
pub mod roc_plot;

pub use csv_logger::{read_history, CsvLogger, HistoryRow, COLUMNS, HISTORY_CSV};
pub use early_stopping::{
    EarlyStopping, EarlyStoppingAction, EarlyStoppingConfig, EarlyStoppingState,
};
pub use error::CallbackError;
pub use logs::{keys, Direction, Logs, Mode};
pub use model_checkpoint::{ModelCheckpoint, ModelCheckpointConfig, ModelCheckpointState};
pub use plot::{plot_history, render_history_png, HISTORY_PNG, PLOT_SIZE};
pub use progress::{Progress, REDRAW_INTERVAL};
pub use reduce_lr_on_plateau::{
    ReduceLrOnPlateau, ReduceLrOnPlateauConfig, ReduceLrOnPlateauState,
};
pub use roc_plot::{plot_roc, ROC_PNG};
