//! Fetching missing dataset files from their canonical public location: a progress bar, the
//! published MD5 checked while streaming, and an atomic write (temporary file + rename), so an
//! interrupted or corrupt download never leaves a file that looks complete.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use super::dir::offline_from_env;
use super::error::DataError;

/// A file of a public dataset: its name in the dataset folder, where to get it, its MD5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    pub file_name: &'static str,
    pub url: &'static str,
    pub md5: &'static str,
}

/// Returns `dir/remote.file_name`, downloading it first when it is missing. With `offline`
/// (or `LCNN_OFFLINE` set) a missing file is an error that names the file, its URL and `dir`.
pub fn ensure(dir: &Path, remote: &Remote, offline: bool) -> Result<PathBuf, DataError> {
    let dest = dir.join(remote.file_name);
    if dest.is_file() {
        return Ok(dest);
    }
    if offline || offline_from_env() {
        return Err(DataError::Missing {
            file: dest,
            url: remote.url.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    download(remote.url, &dest, remote.md5)?;
    Ok(dest)
}

/// Downloads `url` to `dest` with a progress bar on stderr, checks the MD5 (lowercase hex) and
/// moves the file into place only when it matches.
pub fn download(url: &str, dest: &Path, md5_hex: &str) -> Result<(), DataError> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |reason: String| DataError::Download {
        file: dest.to_path_buf(),
        url: url.to_string(),
        dir: dir.clone(),
        reason,
    };
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;

    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let body = response.body_mut();
    let total = body.content_length();
    let mut reader = body.as_reader();

    let tmp = dir.join(format!(".{name}.part{}", std::process::id()));
    let result = (|| -> Result<String, DataError> {
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let mut out = BufWriter::new(file);
        let bar = progress_bar(total, &name);
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(e.to_string())),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| DataError::io(&tmp, e))?;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        let file = out
            .into_inner()
            .map_err(|e| DataError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::io(&tmp, e))?;
        Ok(hex(&hasher.finalize()))
    })();
    let found = match result {
        Ok(found) => found,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if !found.eq_ignore_ascii_case(md5_hex) {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::Checksum {
            path: dest.to_path_buf(),
            url: url.to_string(),
            expected: md5_hex.to_string(),
            found,
        });
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DataError::io(dest, e)
    })
}

/// MD5 of a file, lowercase hex.
pub fn md5_file(path: &Path) -> Result<String, DataError> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn progress_bar(total: Option<u64>, name: &str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
    } else {
        "{msg} {spinner} {bytes} ({bytes_per_sec})"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("downloading {name}"));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// Serves `body` once over plain HTTP on localhost; returns the URL.
    fn serve_once(body: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok() && line != "\r\n" && !line.is_empty() {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        format!("http://{addr}/file.bin")
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lcnn-dl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn downloads_verifies_md5_and_writes_atomically() {
        let dir = temp_dir("ok");
        let body = b"hello lcnn".to_vec();
        let md5 = hex(&Md5::digest(&body));
        let dest = dir.join("sub").join("f.bin");
        download(&serve_once(body.clone()), &dest, &md5).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        assert_eq!(md5_file(&dest).unwrap(), md5);
        let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checksum_mismatch_keeps_nothing() {
        let dir = temp_dir("bad");
        let dest = dir.join("f.bin");
        let e = download(
            &serve_once(b"tampered".to_vec()),
            &dest,
            "00000000000000000000000000000000",
        )
        .unwrap_err();
        assert!(matches!(e, DataError::Checksum { .. }), "{e}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreachable_server_names_file_url_and_folder() {
        let dir = temp_dir("unreachable");
        // A port nobody listens on: bind, read the port, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/x.gz");
        let e = download(&url, &dir.join("x.gz"), "00").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Download { .. }), "{msg}");
        assert!(
            msg.contains(&url) && msg.contains("x.gz") && msg.contains(&*dir.to_string_lossy()),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn offline_missing_file_is_an_error_with_url() {
        let dir = temp_dir("offline");
        let remote = Remote {
            file_name: "a.gz",
            url: "https://example.invalid/a.gz",
            md5: "00",
        };
        let e = ensure(&dir, &remote, true).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("https://example.invalid/a.gz") && msg.contains("a.gz"),
            "{msg}"
        );
        std::fs::write(dir.join("a.gz"), b"x").unwrap();
        assert_eq!(ensure(&dir, &remote, true).unwrap(), dir.join("a.gz"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
