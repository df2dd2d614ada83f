//! The `lcnn` binary end to end: summary totals, errors on bad arguments, output into a closed
//! pipe, and a training run killed with SIGKILL then resumed, which must end with the same
//! weights as an uninterrupted run; eval and predict on the result.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn lcnn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lcnn"))
        .args(args)
        .output()
        .expect("run lcnn")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `o` is a refusal (exit 2) whose message holds every one of `needles`.
fn refused(o: &Output, needles: &[&str]) {
    assert_eq!(o.status.code(), Some(2), "{}", stdout(o));
    let err = stderr(o);
    assert!(
        needles.iter().all(|n| err.contains(n)),
        "{needles:?}: {err}"
    );
}

/// Output into a pipe whose reader is gone (`lcnn summary | head -0`) ends the process by
/// SIGPIPE, as Unix tools end, not with a panic's message and exit code 101.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_lcnn_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().expect("pipe");
    // Closed before lcnn starts, so its first write fails for sure.
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_lcnn"))
        .args(["summary", "--model", "lcnn", "--input", "28x28x1"])
        .stdout(writer)
        .output()
        .expect("run lcnn");
    // SIGPIPE is 13 on Linux and the BSDs.
    assert_eq!(out.status.signal(), Some(13), "{out:?}");
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn summary_totals_equal_keras() {
    let cases: [(&[&str], &str, &str); 7] = [
        (&["--model", "lcnn", "--input", "28x28x1"], "164,938", "672"),
        (&["--model", "lcnn", "--input", "32x32x3"], "183,498", "672"),
        (
            &["--model", "allconv", "--input", "32x32x3"],
            "1,369,738",
            "0",
        ),
        (
            &["--model", "separable", "--input", "64x64x3"],
            "38,309",
            "0",
        ),
        (
            &["--model", "vgg16", "--input", "150x150x3", "--no-top"],
            "14,714,688",
            "0",
        ),
        (
            &[
                "--model",
                "vgg16",
                "--input",
                "224x224x3",
                "--classes",
                "1000",
            ],
            "138,357,544",
            "0",
        ),
        (
            &["--model", "lightcnn9", "--input", "128x128x1", "--no-top"],
            "5,480,864",
            "0",
        ),
    ];
    for (args, total, non_trainable) in cases {
        let o = lcnn(&[&["summary"], args].concat());
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains(&format!("Total params: {total}\n")),
            "{args:?}:\n{out}"
        );
        assert!(
            out.contains(&format!("Non-trainable params: {non_trainable}\n")),
            "{args:?}:\n{out}"
        );
    }
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for (args, needle) in [
        (
            &["summary", "--model", "lcnn", "--input", "28x28"][..],
            "invalid input shape `28x28`",
        ),
        (
            &["summary", "--model", "resnet"][..],
            "unknown model `resnet`",
        ),
        (
            &["summary", "--model", "lcnn", "--input", "8x8x1"][..],
            "input too small",
        ),
        (
            &["train", "--optimizer", "adagrad", "--epochs", "1"][..],
            "unknown optimizer `adagrad`",
        ),
        (
            &["train", "--kernel-initializer", "kaiming", "--epochs", "1"][..],
            "unknown kernel initializer `kaiming`: expected one of glorot_uniform",
        ),
        (&["eval", "--run", "/nonexistent/run"][..], "config.json"),
        (
            &[
                "train",
                "--reduce-lr-patience",
                "2",
                "--reduce-lr-factor",
                "1.5",
                "--data-dir",
                "/nonexistent",
                "--offline",
            ][..],
            "factor",
        ),
    ] {
        let o = lcnn(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A scratch folder, removed when dropped (also when the test fails).
fn temp(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("lcnn-cli-{tag}-"))
        .tempdir()
        .unwrap()
}

fn train_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--dataset",
        data,
        "--color-mode",
        "grayscale",
        "--epochs",
        "5",
        "--batch-size",
        "4",
        "--width-shift-range",
        "0.1",
        "--horizontal-flip",
        "--patience",
        "10",
        "--seed",
        "3",
        "--quiet",
        "--out",
        out,
    ]
}

fn rows(history: &Path) -> usize {
    std::fs::read_to_string(history)
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

#[test]
fn sigkill_then_resume_matches_an_uninterrupted_run() {
    let tmp = temp("resume");
    let dir = tmp.path();
    lcnn::data::synthetic::write_halves_folder(&dir.join("data"), 24, 16).unwrap();
    let data = format!("images:{}", dir.join("data").display());
    let (full, killed) = (dir.join("full"), dir.join("killed"));

    let o = lcnn(&train_args(&data, full.to_str().unwrap()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("test_accuracy: "), "{}", stdout(&o));

    // Kill the second run in the middle of its second epoch.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lcnn"))
        .args(train_args(&data, killed.to_str().unwrap()))
        .spawn()
        .unwrap();
    let start = Instant::now();
    while rows(&killed.join("history.csv")) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no epoch finished"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        rows(&killed.join("history.csv")) < 5,
        "the run finished before it was killed"
    );
    assert!(!killed.join("model.safetensors").exists());

    // A setting that the resumed run would ignore is refused, naming it.
    let o = lcnn(&["train", "--resume", killed.to_str().unwrap(), "--lr", "0.1"]);
    refused(&o, &["so --lr would be ignored; only --epochs may change"]);
    let o = lcnn(&["train", "--resume", killed.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rows(&killed.join("history.csv")), 5);
    let (a, _) = lcnn::weights::safetensors::load(&full.join("model.safetensors")).unwrap();
    let (b, _) = lcnn::weights::safetensors::load(&killed.join("model.safetensors")).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!(
            x.name == y.name && x.data == y.data,
            "`{}` differs after resume",
            x.name
        );
    }

    // eval prints the two lines; predict ranks the classes of an image.
    let o = lcnn(&["eval", "--run", full.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("test_loss: ") && out.contains("test_accuracy: "),
        "{out}"
    );
    // ... and refuses data whose classes are not the model's (it once panicked on a third
    // class and scored renamed ones without a word).
    let other = dir.join("other");
    lcnn::data::synthetic::write_halves_folder(&other, 8, 16).unwrap();
    for split in ["train", "test"] {
        std::fs::rename(other.join(split).join("left"), other.join(split).join("up")).unwrap();
    }
    let other_data = format!("images:{}", other.display());
    let o = lcnn(&[
        "eval",
        "--run",
        full.to_str().unwrap(),
        "--dataset",
        &other_data,
    ]);
    refused(&o, &["[right, up]", "trained on [left, right]"]);
    let image = dir.join("data/test/left/000.png");
    let o = lcnn(&[
        "predict",
        "--run",
        full.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("000.png: ") && out.contains("left ") && out.contains("right "),
        "{out}"
    );

    // A trained run without its resume point is refused, not trained again over its weights.
    let model = std::fs::read(full.join("model.safetensors")).unwrap();
    std::fs::remove_file(full.join("last.safetensors")).unwrap();
    let o = lcnn(&["train", "--resume", full.to_str().unwrap(), "--quiet"]);
    refused(&o, &["last.safetensors: missing"]);
    assert_eq!(
        std::fs::read(full.join("model.safetensors")).unwrap(),
        model
    );

    // A fresh run into a folder that holds a run is refused, the run left as it was; with
    // --overwrite it replaces that run (and only once its own checks have passed).
    let o = lcnn(&train_args(&data, full.to_str().unwrap()));
    refused(
        &o,
        &[
            "already holds a run (config.json, history.csv",
            "--overwrite",
        ],
    );
    assert_eq!(
        std::fs::read(full.join("model.safetensors")).unwrap(),
        model
    );
    assert_eq!(rows(&full.join("history.csv")), 5);
    let mut args = train_args(&data, full.to_str().unwrap());
    args.extend(["--overwrite", "--validation-split", "0"]);
    let o = lcnn(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert_eq!(
        rows(&full.join("history.csv")),
        5,
        "a refused run removed the old one"
    );
    let mut args = train_args(&data, full.to_str().unwrap());
    let epochs = args.iter().position(|a| *a == "--epochs").unwrap();
    args[epochs + 1] = "1";
    args.push("--overwrite");
    let o = lcnn(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rows(&full.join("history.csv")), 1);
    assert!(full.join("last.safetensors").exists());
    assert_ne!(
        std::fs::read(full.join("model.safetensors")).unwrap(),
        model
    );

    // A `val_` monitor without validation data is refused before the first epoch.
    let none = dir.join("no-val");
    let mut args = train_args(&data, none.to_str().unwrap());
    args.extend(["--validation-split", "0"]);
    let o = lcnn(&args);
    refused(&o, &["no validation data"]);
    assert!(!none.join("history.csv").exists());

    // One class folder is refused (it once trained a binary model with an invented class).
    let one = dir.join("one-class");
    lcnn::data::synthetic::write_halves_folder(&one, 4, 16).unwrap();
    for split in ["train", "test"] {
        std::fs::remove_dir_all(one.join(split).join("right")).unwrap();
    }
    let one_data = format!("images:{}", one.display());
    let o = lcnn(&train_args(
        &one_data,
        dir.join("one-run").to_str().unwrap(),
    ));
    refused(&o, &["has 1 class (left); a classifier needs at least two"]);
}

#[test]
fn bench_prints_the_figures_the_side_by_side_script_reads() {
    let o = lcnn(&[
        "bench",
        "train-step",
        "--model",
        "lcnn",
        "--input",
        "16x16x1",
        "--batch",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for key in ["images/s: ", "ms/step: ", "peak_rss_mb: "] {
        let value: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no `{key}` line in {out}"))
            .parse()
            .unwrap();
        assert!(value > 0.0, "{key}{value}");
    }
    let o = lcnn(&[
        "bench", "predict", "--model", "lcnn", "--input", "16x16x1", "--steps", "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).lines().any(|l| l.starts_with("ms: ")));
    let o = lcnn(&["bench", "train-step", "--engine", "tpu"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected native or burn"),
        "{}",
        stderr(&o)
    );
}

/// `lcnn import keras` on the real Keras 2.9 CIFAR-10 model, then `summary --run` and `eval`
/// on the 100 images of the numpy reference (`reference/keras_h5_forward.py`), written as PNG
/// from the exact pixels the reference fed: the accuracy must be the reference's.
#[cfg(feature = "hdf5")]
#[test]
fn import_keras_then_summary_and_eval_agree_with_the_numpy_reference() {
    let fixtures = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lcnn/tests/fixtures"
    ));
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("keras_cifar10_cnn.json")).unwrap(),
    )
    .unwrap();
    let pixels = std::fs::read(fixtures.join("keras_cifar10_cnn_pixels.u8")).unwrap();
    let weights = std::env::var_os("LCNN_TEST_WEIGHTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/weights"
            ))
        });
    let tmp = temp("keras");
    let dir = tmp.path();
    let run = dir.join("run");
    let classes = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck";
    let h5 = weights.join("keras-cifar10-cnn/cnn_model.h5");
    let out = lcnn(&[
        "import",
        "keras",
        h5.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--classes",
        classes,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Keras 2.9.0"), "{}", stdout(&out));

    let out = lcnn(&["summary", "--run", run.to_str().unwrap()]);
    let s = stdout(&out);
    assert!(s.contains("Total params: 969,418"), "{s}");
    assert!(s.contains("Non-trainable params: 1,024"), "{s}");

    let data = dir.join("data");
    let images = fx["images"].as_array().unwrap();
    for (i, im) in images.iter().enumerate() {
        let class = classes
            .split(',')
            .nth(im["label"].as_u64().unwrap() as usize)
            .unwrap();
        let folder = data.join("train").join(class);
        std::fs::create_dir_all(&folder).unwrap();
        let rgb = pixels[i * 3072..(i + 1) * 3072].to_vec();
        image::RgbImage::from_raw(32, 32, rgb)
            .unwrap()
            .save(folder.join(format!("{i:03}.png")))
            .unwrap();
    }
    let dataset = format!("images:{}", data.display());
    let out = lcnn(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--dataset",
        &dataset,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = fx["accuracy"].as_f64().unwrap();
    assert!(
        stdout(&out).contains(&format!("test_accuracy: {want:.4}")),
        "{} vs numpy {want}",
        stdout(&out)
    );

    // An imported run has no dataset of its own: eval without --dataset says so.
    let out = lcnn(&["eval", "--run", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("give --dataset"), "{}", stderr(&out));
}
