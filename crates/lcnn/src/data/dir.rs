//! Where datasets are looked for: `--data-dir`, else `LCNN_DATA`, else the user cache folder.

use std::path::{Path, PathBuf};

/// Environment variable naming the data directory.
pub const DATA_ENV: &str = "LCNN_DATA";
/// Environment variable that forbids downloads when set to anything but `0`, `false` or empty.
pub const OFFLINE_ENV: &str = "LCNN_OFFLINE";
/// Environment variable naming the folder of computed features (audio spectrograms).
pub const CACHE_ENV: &str = "LCNN_CACHE";

/// The data directory: `flag` when given, else `$LCNN_DATA`, else the user cache folder
/// (`$XDG_CACHE_HOME/lcnn/datasets` or `~/.cache/lcnn/datasets`; `%LOCALAPPDATA%\lcnn\datasets`
/// on Windows; `~/Library/Caches/lcnn/datasets` on macOS).
pub fn resolve_data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = non_empty_env(DATA_ENV) {
        return PathBuf::from(p);
    }
    cache_dir().join("lcnn").join("datasets")
}

/// A built-in dataset's folder: `data_dir/name`, or `data_dir` itself when it holds the
/// dataset's `marker` file and has no `name` folder (`--data-dir` given as the dataset's own
/// folder, e.g. `.../data/mnist` instead of `.../data`).
pub fn dataset_folder(data_dir: &Path, name: &str, markers: &[&str]) -> PathBuf {
    let nested = data_dir.join(name);
    let own = !nested.is_dir() && markers.iter().any(|m| data_dir.join(m).exists());
    if own {
        data_dir.to_path_buf()
    } else {
        nested
    }
}

/// True when `LCNN_OFFLINE` asks for no downloads.
pub fn offline_from_env() -> bool {
    match std::env::var(OFFLINE_ENV) {
        Ok(v) => {
            let v = v.trim().to_ascii_lowercase();
            !(v.is_empty() || v == "0" || v == "false" || v == "no")
        }
        Err(_) => false,
    }
}

/// Where computed audio features are cached: `$LCNN_CACHE`, else the user cache
/// (`~/.cache/lcnn/features` on Linux).
pub fn features_cache_dir() -> PathBuf {
    match non_empty_env(CACHE_ENV) {
        Some(p) => PathBuf::from(p),
        None => cache_dir().join("lcnn").join("features"),
    }
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

fn cache_dir() -> PathBuf {
    if cfg!(windows) {
        if let Some(p) = non_empty_env("LOCALAPPDATA") {
            return PathBuf::from(p);
        }
    }
    if let Some(p) = non_empty_env("XDG_CACHE_HOME") {
        return PathBuf::from(p);
    }
    if let Some(home) = non_empty_env("HOME").or_else(|| non_empty_env("USERPROFILE")) {
        let home = PathBuf::from(home);
        if cfg!(target_os = "macos") {
            return home.join("Library").join("Caches");
        }
        return home.join(".cache");
    }
    std::env::temp_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_wins() {
        assert_eq!(
            resolve_data_dir(Some(Path::new("/x/y"))),
            PathBuf::from("/x/y")
        );
    }

    #[test]
    fn a_data_dir_that_is_the_datasets_own_folder_is_taken_as_meant() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        let marker = ["train-images-idx3-ubyte.gz"];
        // Nothing there yet: the usual place (where a download goes).
        assert_eq!(dataset_folder(data, "mnist", &marker), data.join("mnist"));
        std::fs::write(data.join(marker[0]), b"").unwrap();
        assert_eq!(dataset_folder(data, "mnist", &marker), data);
        // A `mnist` folder inside wins.
        std::fs::create_dir(data.join("mnist")).unwrap();
        assert_eq!(dataset_folder(data, "mnist", &marker), data.join("mnist"));
    }

    #[test]
    fn default_ends_in_lcnn_datasets_or_env() {
        let d = resolve_data_dir(None);
        match non_empty_env(DATA_ENV) {
            Some(v) => assert_eq!(d, PathBuf::from(v)),
            None => assert!(d.ends_with("lcnn/datasets"), "{}", d.display()),
        }
    }
}
