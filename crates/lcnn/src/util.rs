//! Small shared helpers: atomic file writes, and parsing a fixed set of named choices.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: the data goes to a temporary file in the same folder,
/// is flushed to disk, then renamed over `path`. A crash leaves either the old or the new file,
/// never a truncated one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The entry of `all` named `s` (ASCII case ignored): the parser of a fixed set of
/// command-line choices such as model names or `--weights`.
pub fn find_by_name<T: Copy>(all: &[T], name: fn(T) -> &'static str, s: &str) -> Option<T> {
    all.iter()
        .copied()
        .find(|&t| name(t).eq_ignore_ascii_case(s))
}

/// The names of `all`, comma-separated, for "expected one of ..." messages.
pub fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> String {
    all.iter().map(|&t| name(t)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("lcnn-util-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn named_choices_parse_ignoring_case_and_list_their_names() {
        let all = [1u8, 2];
        let name = |n: u8| if n == 1 { "one" } else { "two" };
        assert_eq!(find_by_name(&all, name, "TWO"), Some(2));
        assert_eq!(find_by_name(&all, name, "three"), None);
        assert_eq!(names(&all, name), "one, two");
    }
}
