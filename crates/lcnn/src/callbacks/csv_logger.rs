//! `history.csv`: one row per finished epoch, like Keras' `CSVLogger`, written atomically.
//!
//! The columns are fixed: `epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds`. As in
//! Keras, `epoch` is the 0-based epoch index. A value absent from the epoch's logs is
//! written as an empty field (Keras writes `NA` only in the last row of a stopped run; both
//! are read back as absent). Values are written in Rust's shortest round-trip notation
//! (`0.1`, `1e-5`, `NaN`, `inf`), so reading the file back gives the exact same numbers.
//!
//! Every write replaces the whole file through [`crate::util::write_atomic`]: a crash leaves
//! the previous complete file, never a half-written row. On resume ([`CsvLogger::resume`])
//! the rows of the epochs already finished are kept and those at or beyond the resume point
//! (written by the interrupted run after its last checkpoint) are dropped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::error::CallbackError;
use super::logs::{keys, Logs};

/// The file name the training loop uses in its run folder.
pub const HISTORY_CSV: &str = "history.csv";

/// The columns of `history.csv`, in order.
pub const COLUMNS: [&str; 7] = [
    "epoch",
    keys::LOSS,
    keys::ACCURACY,
    keys::VAL_LOSS,
    keys::VAL_ACCURACY,
    keys::LR,
    keys::SECONDS,
];

/// One row of `history.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// 0-based epoch index.
    pub epoch: usize,
    /// The values of that epoch (absent fields are absent keys).
    pub logs: Logs,
}

/// Keeps the history of finished epochs and rewrites `history.csv` after each one.
#[derive(Debug, Clone)]
pub struct CsvLogger {
    path: PathBuf,
    rows: Vec<HistoryRow>,
}

impl CsvLogger {
    /// Starts a new history at `path` (usually `<run>/history.csv`), replacing any file
    /// there with one holding only the header.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, CallbackError> {
        let logger = Self {
            path: path.into(),
            rows: Vec::new(),
        };
        logger.write()?;
        Ok(logger)
    }

    /// Continues the history at `path` for a run that resumes at `initial_epoch` (the 0-based
    /// index of the next epoch to train, i.e. the number of epochs already finished). Rows
    /// with `epoch < initial_epoch` are kept, the others dropped, and the file is rewritten.
    /// A missing file is taken as an empty history.
    pub fn resume(path: impl Into<PathBuf>, initial_epoch: usize) -> Result<Self, CallbackError> {
        let path = path.into();
        let mut rows = match std::fs::read_to_string(&path) {
            Ok(text) => parse_history(&path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(CallbackError::Read { path, source }),
        };
        rows.retain(|r| r.epoch < initial_epoch);
        // Each epoch's row is written before its resume point, so a file short of rows was
        // edited: rewriting it would lose what is left; a missing file loses nothing more.
        let present: std::collections::BTreeSet<usize> = rows.iter().map(|r| r.epoch).collect();
        if path.exists() && present.len() < initial_epoch {
            let missing = (0..initial_epoch)
                .find(|e| !present.contains(e))
                .unwrap_or(0);
            return Err(CallbackError::Resume {
                path,
                reason: format!(
                    "holds {} of the {initial_epoch} finished epochs' rows (epoch {} is \
                     missing); restore the file, or remove it to resume without the \
                     earlier rows",
                    present.len(),
                    missing + 1
                ),
            });
        }
        let logger = Self { path, rows };
        logger.write()?;
        Ok(logger)
    }

    /// Records the logs of the epoch that just finished (0-based `epoch`) and rewrites the
    /// file. Rows of this epoch or later epochs, if any, are replaced.
    pub fn on_epoch_end(&mut self, epoch: usize, logs: &Logs) -> Result<(), CallbackError> {
        self.rows.retain(|r| r.epoch < epoch);
        self.rows.push(HistoryRow {
            epoch,
            logs: logs.clone(),
        });
        self.write()
    }

    /// The rows so far, in epoch order.
    pub fn rows(&self) -> &[HistoryRow] {
        &self.rows
    }

    /// The logs of the rows so far, in epoch order: the input of
    /// [`plot_history`](super::plot::plot_history).
    pub fn history(&self) -> Vec<Logs> {
        self.rows.iter().map(|r| r.logs.clone()).collect()
    }

    /// The file this logger writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self) -> Result<(), CallbackError> {
        crate::util::write_atomic(&self.path, render(&self.rows).as_bytes()).map_err(|source| {
            CallbackError::Write {
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// Reads a `history.csv` (as written by [`CsvLogger`], or by Keras' `CSVLogger` with the
/// same column names). Rows come back sorted by epoch; of two rows with the same epoch the
/// later one wins. Columns other than `epoch` are read into the logs under their header
/// name; empty and `NA` fields are absent.
pub fn read_history(path: &Path) -> Result<Vec<HistoryRow>, CallbackError> {
    let text = std::fs::read_to_string(path).map_err(|source| CallbackError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_history(path, &text)
}

fn render(rows: &[HistoryRow]) -> String {
    // The fixed columns, then any other metric a row has (`val_eer`), by name.
    let mut columns: Vec<&str> = COLUMNS.to_vec();
    let mut extra: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.logs.keys().map(String::as_str))
        .filter(|k| !COLUMNS.contains(k))
        .collect();
    extra.sort();
    extra.dedup();
    columns.extend(extra);
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        let _ = write!(out, "{}", row.epoch);
        for key in &columns[1..] {
            out.push(',');
            if let Some(v) = row.logs.get(*key) {
                // `{:?}` is the shortest representation that parses back to the same f64.
                let _ = write!(out, "{v:?}");
            }
        }
        out.push('\n');
    }
    out
}

fn parse_history(path: &Path, text: &str) -> Result<Vec<HistoryRow>, CallbackError> {
    let err = |line: usize, column: &str, reason: String| CallbackError::Parse {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        reason,
    };
    let mut lines = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<&str> = header.split(',').map(str::trim).collect();
    let epoch_col = header
        .iter()
        .position(|h| *h == "epoch")
        .ok_or_else(|| err(1, "header", "no `epoch` column".to_string()))?;

    let mut rows: Vec<HistoryRow> = Vec::new();
    for (line_no, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != header.len() {
            let column = header.get(fields.len()).copied().unwrap_or("(extra)");
            return Err(err(
                line_no,
                column,
                format!(
                    "expected {} fields as in the header, found {}",
                    header.len(),
                    fields.len()
                ),
            ));
        }
        let epoch = fields[epoch_col].parse::<usize>().map_err(|_| {
            err(
                line_no,
                "epoch",
                format!("not an epoch number: `{}`", fields[epoch_col]),
            )
        })?;
        let mut logs = Logs::new();
        for (i, (name, field)) in header.iter().zip(&fields).enumerate() {
            if i == epoch_col || field.is_empty() || *field == "NA" {
                continue;
            }
            let v = field
                .parse::<f64>()
                .map_err(|_| err(line_no, name, format!("not a number: `{field}`")))?;
            logs.insert((*name).to_string(), v);
        }
        rows.retain(|r| r.epoch != epoch);
        rows.push(HistoryRow { epoch, logs });
    }
    rows.sort_by_key(|r| r.epoch);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder under the system temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!("lcnn-csv-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
        fn file(&self) -> PathBuf {
            self.0.join(HISTORY_CSV)
        }
        fn entries(&self) -> usize {
            std::fs::read_dir(&self.0).unwrap().count()
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn epoch_logs(e: usize) -> Logs {
        let mut l = Logs::new();
        l.insert("loss".into(), 1.0 / (e + 1) as f64);
        l.insert("accuracy".into(), 0.5 + e as f64 / 100.0);
        l.insert("val_loss".into(), 1.5 / (e + 1) as f64);
        l.insert("val_accuracy".into(), 0.25 + e as f64 / 10.0);
        l.insert("lr".into(), 1e-3);
        l.insert("seconds".into(), 40.0 + e as f64);
        l
    }

    #[test]
    fn create_writes_the_header() {
        let dir = TestDir::new("create");
        std::fs::write(dir.file(), "old content").unwrap();
        let logger = CsvLogger::create(dir.file()).unwrap();
        assert_eq!(
            std::fs::read_to_string(logger.path()).unwrap(),
            "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n"
        );
        assert!(logger.rows().is_empty());
    }

    #[test]
    fn rows_have_0_based_epochs_empty_missing_values_and_extra_metrics_last() {
        let dir = TestDir::new("rows");
        let mut logger = CsvLogger::create(dir.file()).unwrap();
        let mut l = Logs::new();
        l.insert("loss".into(), 0.5);
        l.insert("accuracy".into(), 0.875);
        l.insert("lr".into(), 1e-5);
        l.insert("seconds".into(), 41.0);
        l.insert("extra".into(), 7.0);
        logger.on_epoch_end(0, &l).unwrap();
        l.insert("val_loss".into(), 0.25);
        l.insert("val_accuracy".into(), 0.1);
        logger.on_epoch_end(1, &l).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.file()).unwrap(),
            "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds,extra\n\
             0,0.5,0.875,,,1e-5,41.0,7.0\n\
             1,0.5,0.875,0.25,0.1,1e-5,41.0,7.0\n"
        );
        // Only the file itself: no temporary left behind.
        assert_eq!(dir.entries(), 1);
    }

    #[test]
    fn values_round_trip_exactly() {
        let dir = TestDir::new("roundtrip");
        let mut logger = CsvLogger::create(dir.file()).unwrap();
        let mut l = epoch_logs(3);
        l.insert("loss".into(), 0.1 + 0.2);
        l.insert("accuracy".into(), f64::NAN);
        l.insert("val_loss".into(), f64::INFINITY);
        logger.on_epoch_end(0, &l).unwrap();
        let back = read_history(&dir.file()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].logs["loss"], 0.1 + 0.2);
        assert!(back[0].logs["accuracy"].is_nan());
        assert_eq!(back[0].logs["val_loss"], f64::INFINITY);
        assert_eq!(back[0].logs["lr"], 1e-3);
    }

    #[test]
    fn resume_keeps_finished_epochs_and_drops_later_ones() {
        let dir = TestDir::new("resume");
        let mut logger = CsvLogger::create(dir.file()).unwrap();
        for e in 0..5 {
            logger.on_epoch_end(e, &epoch_logs(e)).unwrap();
        }
        // The last checkpoint was taken after epoch 2: resume at epoch 3.
        let mut resumed = CsvLogger::resume(dir.file(), 3).unwrap();
        assert_eq!(
            resumed.rows().iter().map(|r| r.epoch).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(resumed.rows()[1].logs, epoch_logs(1));
        let on_disk = read_history(&dir.file()).unwrap();
        assert_eq!(on_disk, resumed.rows());
        resumed.on_epoch_end(3, &epoch_logs(30)).unwrap();
        let on_disk = read_history(&dir.file()).unwrap();
        assert_eq!(on_disk.len(), 4);
        assert_eq!(on_disk[3].logs, epoch_logs(30));
        assert_eq!(resumed.history().len(), 4);
        assert_eq!(dir.entries(), 1);
    }

    #[test]
    fn resume_at_zero_or_without_a_file_starts_empty() {
        let dir = TestDir::new("resume-empty");
        let r = CsvLogger::resume(dir.file(), 4).unwrap();
        assert!(r.rows().is_empty());
        assert!(dir.file().exists());
        let mut l = CsvLogger::create(dir.file()).unwrap();
        l.on_epoch_end(0, &epoch_logs(0)).unwrap();
        let r = CsvLogger::resume(dir.file(), 0).unwrap();
        assert!(r.rows().is_empty());
        assert!(read_history(&dir.file()).unwrap().is_empty());
    }

    /// A file short of the finished epochs' rows (edited, or cut) is refused and left as it
    /// is: rewriting it would drop what it still holds.
    #[test]
    fn resume_refuses_a_file_short_of_the_finished_epochs() {
        let dir = TestDir::new("resume-short");
        let mut logger = CsvLogger::create(dir.file()).unwrap();
        for e in [0, 2] {
            logger.on_epoch_end(e, &epoch_logs(e)).unwrap();
        }
        let before = std::fs::read(dir.file()).unwrap();
        let e = CsvLogger::resume(dir.file(), 3).unwrap_err().to_string();
        assert!(
            e.contains("holds 2 of the 3 finished epochs' rows (epoch 2 is missing)"),
            "{e}"
        );
        assert_eq!(std::fs::read(dir.file()).unwrap(), before);
    }

    #[test]
    fn rerunning_an_epoch_replaces_its_row_and_later_ones() {
        let dir = TestDir::new("rerun");
        let mut logger = CsvLogger::create(dir.file()).unwrap();
        for e in 0..3 {
            logger.on_epoch_end(e, &epoch_logs(e)).unwrap();
        }
        logger.on_epoch_end(1, &epoch_logs(10)).unwrap();
        assert_eq!(logger.rows().len(), 2);
        assert_eq!(logger.rows()[1].logs, epoch_logs(10));
    }

    #[test]
    fn reads_a_keras_written_file() {
        let dir = TestDir::new("keras");
        std::fs::write(
            dir.file(),
            "epoch,accuracy,loss,val_accuracy,val_loss\r\n\
             0,0.9,0.3,0.95,0.2\r\n\
             1,0.95,0.2,NA,NA\r\n",
        )
        .unwrap();
        let rows = read_history(&dir.file()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].logs["val_loss"], 0.2);
        assert!(!rows[1].logs.contains_key("val_loss"));
        // Resuming rewrites it in lcnn's column order.
        CsvLogger::resume(dir.file(), 2).unwrap();
        let text = std::fs::read_to_string(dir.file()).unwrap();
        assert!(text.starts_with(
            "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n0,0.3,0.9,0.2,0.95,,\n"
        ));
    }

    #[test]
    fn malformed_file_errors_name_line_and_column() {
        let dir = TestDir::new("malformed");
        std::fs::write(dir.file(), "epoch,loss,val_loss\n0,0.5,0.25\n1,0.5,abc\n").unwrap();
        match CsvLogger::resume(dir.file(), 5) {
            Err(CallbackError::Parse { line, column, .. }) => {
                assert_eq!((line, column.as_str()), (3, "val_loss"));
            }
            other => panic!("unexpected {other:?}"),
        }
        std::fs::write(dir.file(), "epoch,loss\n0\n").unwrap();
        let e = read_history(&dir.file()).unwrap_err();
        assert!(matches!(e, CallbackError::Parse { line: 2, ref column, .. } if column == "loss"));
        std::fs::write(dir.file(), "loss\n0.5\n").unwrap();
        let e = read_history(&dir.file()).unwrap_err();
        assert!(e.to_string().contains("no `epoch` column"), "{e}");
        std::fs::write(dir.file(), "epoch,loss\n-1,0.5\n").unwrap();
        let e = read_history(&dir.file()).unwrap_err();
        assert!(
            e.to_string().contains("history.csv:2: column `epoch`"),
            "{e}"
        );
    }

    #[test]
    fn write_errors_name_the_file() {
        let dir = TestDir::new("write-error");
        let path = dir.0.join("missing-folder").join(HISTORY_CSV);
        let e = CsvLogger::create(&path).unwrap_err();
        assert!(matches!(e, CallbackError::Write { path: ref p, .. } if *p == path));
    }
}
