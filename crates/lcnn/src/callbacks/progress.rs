//! Per-epoch progress display, in the manner of Keras' `ProgbarLogger` (`verbose=1`).
//!
//! When stderr is a terminal, each epoch shows a live bar there:
//!
//! ```text
//! Epoch 3/10 [=============>................] 120/188 - ETA 12s - loss: 0.0412 - accuracy: 0.9871 - 1170 img/s
//! ```
//!
//! At the end of the epoch the bar is cleared and one summary line is printed on stdout:
//!
//! ```text
//! Epoch 3/10 - 188/188 - 41s - loss: 0.0412 - accuracy: 0.9871 - val_loss: 0.0351 - val_accuracy: 0.9893 - 1170 img/s
//! ```
//!
//! When stderr is not a terminal (a pipe, a file, CI) there is no bar: exactly one summary
//! line per epoch on stdout. So `lcnn train > log.txt` shows the bar and logs clean lines,
//! and `lcnn train 2>&1 | tee log.txt` logs clean lines only. With `quiet`, nothing is
//! printed at all (Keras `verbose=0`).
//!
//! Values are formatted as Keras' `Progbar` does: `%.4f` when `|v| > 1e-3`, else `%.4e`.
//! [`Progress::update`] is cheap: it stores two numbers and, at most every
//! [`REDRAW_INTERVAL`], formats the message and hands it to the bar (which itself draws at
//! most 15 times a second).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::logs::{keys, Logs};

/// Minimum time between two updates of the live bar's position and message.
pub const REDRAW_INTERVAL: Duration = Duration::from_millis(100);

/// The metrics shown, in order.
const SHOWN: [&str; 5] = [
    keys::LOSS,
    keys::ACCURACY,
    keys::VAL_LOSS,
    keys::VAL_ACCURACY,
    keys::VAL_EER,
];

/// Progress display for a training run; see the module documentation.
#[derive(Debug)]
pub struct Progress {
    epochs: usize,
    quiet: bool,
    live: bool,
    bar: Option<ProgressBar>,
    epoch: usize,
    steps: usize,
    step: usize,
    images_per_sec: f64,
    started: Instant,
    last_redraw: Option<Instant>,
}

impl Progress {
    /// A display for a run of `epochs` epochs in all (the total shown as `Epoch 3/10`,
    /// counting the epochs of an interrupted run that this one resumes). With `quiet`,
    /// nothing is ever printed.
    pub fn new(epochs: usize, quiet: bool) -> Self {
        let live = !quiet && std::io::stderr().is_terminal();
        Self::with_live(epochs, quiet, live)
    }

    fn with_live(epochs: usize, quiet: bool, live: bool) -> Self {
        Self {
            epochs,
            quiet,
            live,
            bar: None,
            epoch: 0,
            steps: 0,
            step: 0,
            images_per_sec: 0.0,
            started: Instant::now(),
            last_redraw: None,
        }
    }

    /// Whether a live bar is shown (stderr is a terminal and not `quiet`).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Starts epoch `epoch` (0-based, shown 1-based as `Epoch {epoch+1}/{epochs}`), which
    /// has `steps` training steps (batches).
    pub fn start_epoch(&mut self, epoch: usize, steps: usize) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.epoch = epoch;
        self.steps = steps;
        self.step = 0;
        self.images_per_sec = 0.0;
        self.started = Instant::now();
        self.last_redraw = None;
        if self.live {
            let bar = ProgressBar::with_draw_target(
                Some(steps as u64),
                ProgressDrawTarget::stderr_with_hz(15),
            );
            let style =
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} - ETA {eta} - {msg}")
                    .expect("valid progress template")
                    .progress_chars("=>.");
            bar.set_style(style);
            bar.set_prefix(self.epoch_label());
            bar.set_message(String::new());
            self.bar = Some(bar);
        }
    }

    /// Reports that `step` of the epoch's steps are done (1-based: `steps` after the last),
    /// with the running means of the metrics so far and the current throughput. Cheap enough
    /// to call after every training step.
    pub fn update(&mut self, step: usize, logs_so_far: &Logs, images_per_sec: f64) {
        self.step = step;
        self.images_per_sec = images_per_sec;
        let Some(bar) = &self.bar else {
            return;
        };
        let now = Instant::now();
        let due = self
            .last_redraw
            .is_none_or(|t| now.duration_since(t) >= REDRAW_INTERVAL);
        if !due && step < self.steps {
            return;
        }
        self.last_redraw = Some(now);
        bar.set_position(step as u64);
        bar.set_message(metrics_text(logs_so_far, &SHOWN[..2], images_per_sec));
    }

    /// Ends the epoch: clears the bar and prints the summary line (unless `quiet`). `logs`
    /// are the epoch's final logs; its `seconds`, when present, is the duration shown,
    /// otherwise the time since [`Progress::start_epoch`].
    pub fn finish_epoch(&mut self, logs: &Logs) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let seconds = logs
            .get(keys::SECONDS)
            .copied()
            .unwrap_or_else(|| self.started.elapsed().as_secs_f64());
        let step = if self.step == 0 {
            self.steps
        } else {
            self.step
        };
        print_line(&summary_line(
            &self.epoch_label(),
            step,
            self.steps,
            seconds,
            logs,
            self.images_per_sec,
        ));
    }

    /// Prints a line on stdout without garbling the live bar (unless `quiet`).
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.suspend(|| print_line(line)),
            None => print_line(line),
        }
    }

    fn epoch_label(&self) -> String {
        format!("Epoch {}/{}", self.epoch + 1, self.epochs)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Writes `line` and a newline to stdout. Unlike `println!`, a closed stdout (e.g.
/// `lcnn train | head -1`) does not panic: progress output must not end a training run.
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// `Epoch 3/10 - 188/188 - 41s - loss: 0.0412 - ... - 1170 img/s`.
fn summary_line(
    label: &str,
    step: usize,
    steps: usize,
    seconds: f64,
    logs: &Logs,
    images_per_sec: f64,
) -> String {
    let mut s = format!("{label} - {step}/{steps} - {seconds:.0}s");
    let metrics = metrics_text(logs, &SHOWN, images_per_sec);
    if !metrics.is_empty() {
        s.push_str(" - ");
        s.push_str(&metrics);
    }
    s
}

/// `loss: 0.0412 - accuracy: 0.9871 - 1170 img/s`, with the `keys` present in `logs`.
fn metrics_text(logs: &Logs, keys: &[&str], images_per_sec: f64) -> String {
    let mut s = String::new();
    for key in keys {
        if let Some(v) = logs.get(*key) {
            if !s.is_empty() {
                s.push_str(" - ");
            }
            let _ = write!(s, "{key}: {}", keras_value(*v));
        }
    }
    if images_per_sec.is_finite() && images_per_sec > 0.0 {
        if !s.is_empty() {
            s.push_str(" - ");
        }
        let _ = write!(s, "{images_per_sec:.0} img/s");
    }
    s
}

/// A metric value as Keras' `Progbar` prints it: `'%.4f'` when `abs(v) > 1e-3`, else
/// `'%.4e'` (Python's notation: `1.2340e-04`, `0.0000e+00`, `nan`, `inf`).
fn keras_value(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if v.abs() > 1e-3 {
        return format!("{v:.4}");
    }
    // Rust writes `1.2340e-4`; Python writes the exponent with a sign and two digits.
    let rust = format!("{v:.4e}");
    let (mantissa, exp) = rust.split_once('e').unwrap_or((&rust, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(pairs: &[(&str, f64)]) -> Logs {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn keras_value_formatting() {
        assert_eq!(keras_value(0.04123), "0.0412");
        assert_eq!(keras_value(1.5), "1.5000");
        assert_eq!(keras_value(-2.0), "-2.0000");
        assert_eq!(keras_value(0.000123456), "1.2346e-04");
        assert_eq!(keras_value(0.0), "0.0000e+00");
        assert_eq!(keras_value(-5e-12), "-5.0000e-12");
        assert_eq!(keras_value(0.001), "1.0000e-03");
        assert_eq!(keras_value(f64::NAN), "nan");
        assert_eq!(keras_value(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn summary_line_matches_the_documented_format() {
        let l = logs(&[
            ("loss", 0.0412),
            ("accuracy", 0.9871),
            ("val_loss", 0.0351),
            ("val_accuracy", 0.9893),
            ("lr", 0.001),
            ("seconds", 41.2),
        ]);
        assert_eq!(
            summary_line("Epoch 3/10", 188, 188, 41.2, &l, 1170.4),
            "Epoch 3/10 - 188/188 - 41s - loss: 0.0412 - accuracy: 0.9871 - \
             val_loss: 0.0351 - val_accuracy: 0.9893 - 1170 img/s"
        );
    }

    #[test]
    fn summary_line_leaves_out_what_is_missing() {
        let l = logs(&[("loss", 0.5)]);
        assert_eq!(
            summary_line("Epoch 1/1", 3, 3, 0.4, &l, 0.0),
            "Epoch 1/1 - 3/3 - 0s - loss: 0.5000"
        );
        assert_eq!(
            summary_line("Epoch 1/1", 3, 3, 2.0, &Logs::new(), f64::NAN),
            "Epoch 1/1 - 3/3 - 2s"
        );
    }

    #[test]
    fn live_message_shows_training_metrics_only() {
        let l = logs(&[("loss", 0.25), ("accuracy", 0.5), ("val_loss", 0.1)]);
        assert_eq!(
            metrics_text(&l, &SHOWN[..2], 99.6),
            "loss: 0.2500 - accuracy: 0.5000 - 100 img/s"
        );
    }

    #[test]
    fn non_live_progress_keeps_the_last_step_and_throughput() {
        let mut p = Progress::with_live(10, false, false);
        assert!(!p.is_live());
        p.start_epoch(2, 188);
        for step in 1..=100 {
            p.update(step, &logs(&[("loss", 0.1)]), 1000.0 + step as f64);
        }
        assert_eq!((p.step, p.images_per_sec), (100, 1100.0));
        assert_eq!(p.epoch_label(), "Epoch 3/10");
        p.finish_epoch(&logs(&[("loss", 0.1), ("seconds", 1.0)]));
        p.println("after");
        // A new epoch resets the counters.
        p.start_epoch(3, 188);
        assert_eq!((p.step, p.images_per_sec), (0, 0.0));
    }

    #[test]
    fn quiet_progress_is_never_live() {
        let mut p = Progress::new(3, true);
        assert!(!p.is_live());
        p.start_epoch(0, 2);
        p.update(1, &Logs::new(), 1.0);
        p.update(2, &Logs::new(), 1.0);
        p.finish_epoch(&Logs::new());
    }

    #[test]
    fn live_bar_updates_are_throttled() {
        // A live display drawing to a hidden target, to exercise the bar code paths.
        let mut p = Progress::with_live(1, false, true);
        p.start_epoch(0, 1000);
        let bar = p.bar.clone().expect("a live display has a bar");
        bar.set_draw_target(ProgressDrawTarget::hidden());
        let l = logs(&[("loss", 0.5), ("accuracy", 0.5)]);
        p.update(1, &l, 10.0);
        assert_eq!(bar.position(), 1);
        // Within REDRAW_INTERVAL of the last redraw: position not pushed to the bar. (The
        // last redraw is moved into the future so that a slow machine cannot make it due.)
        p.last_redraw = Some(Instant::now() + Duration::from_secs(3600));
        p.update(2, &l, 10.0);
        assert_eq!(bar.position(), 1);
        assert_eq!(p.step, 2);
        // The last step is always pushed.
        p.update(1000, &l, 10.0);
        assert_eq!(bar.position(), 1000);
        assert_eq!(bar.message(), "loss: 0.5000 - accuracy: 0.5000 - 10 img/s");
        p.finish_epoch(&l);
        assert!(p.bar.is_none());
    }
}
