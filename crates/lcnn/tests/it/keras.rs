//! Keras `.h5` import: the real Keras 2.9 CIFAR-10 CNN in `../shared/weights` against the
//! independent numpy + h5py forward pass of `reference/keras_h5_forward.py` (fixture
//! `keras_cifar10_cnn.json`, with the exact pixels it fed in `keras_cifar10_cnn_pixels.u8`),
//! on both engines; and bad files, each a clear error naming the file and the layer.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use hdf5::types::VarLenUnicode;
use lcnn::engine::Engine;
use lcnn::models::Network;
use lcnn::weights::import;
use lcnn::weights::keras::read_model;

fn shared_weights() -> PathBuf {
    std::env::var_os("LCNN_TEST_WEIGHTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/weights"
            ))
        })
}

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

fn rows(v: &serde_json::Value, key: &str) -> Vec<f64> {
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|im| {
            im[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn assert_close(got: &[f32], want: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rel * w.abs().max(1.0);
        assert!(
            (*g as f64 - w).abs() <= tol,
            "{what} {i} (image {}, unit {}): {g} vs numpy {w}",
            i / 10,
            i % 10
        );
    }
}

#[test]
fn keras_cifar_cnn_matches_the_numpy_reference_on_both_engines() {
    // Burn's initializer draws from the generator the seeded tests share: take turns.
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let file = shared_weights().join("keras-cifar10-cnn/cnn_model.h5");
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path("keras_cifar10_cnn.json")).unwrap(),
    )
    .unwrap();
    let pixels = std::fs::read(fixture_path("keras_cifar10_cnn_pixels.u8")).unwrap();
    let n = fx["images"].as_array().unwrap().len();
    assert_eq!(pixels.len(), n * 32 * 32 * 3);
    // HWC bytes -> NCHW floats, raw 0..255 as the model was trained.
    let mut x = vec![0.0f32; pixels.len()];
    for b in 0..n {
        for p in 0..32 * 32 {
            for c in 0..3 {
                x[(b * 3 + c) * 1024 + p] = pixels[(b * 1024 + p) * 3 + c] as f32;
            }
        }
    }
    let shape = [n, 3, 32, 32];

    let model = read_model(&file).unwrap();
    assert_eq!(model.keras_version.as_deref(), Some("2.9.0"));
    // The loss took logits: lcnn's probabilities are its softmax, its logits Keras' outputs.
    assert_eq!(model.added_output.as_deref(), Some("softmax"));
    let want_out = rows(&fx, "output");
    let want_prob = rows(&fx, "softmax");

    let device = Device::flex();
    let net = Network::new(&model.spec, &device).unwrap();
    let net = import(net, model.tensors.clone(), true, &file)
        .unwrap()
        .valid();
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), &device);
    let logits = net
        .forward_logits(xt.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_close(&logits, &want_out, 1e-4, "burn logit");
    let probs = net.forward(xt).into_data().try_to_vec::<f32>().unwrap();
    assert_close(&probs, &want_prob, 1e-4, "burn probability");

    let mut engine = Engine::from_network(&net).unwrap();
    let logits = engine.logits(&x, shape).unwrap().to_vec();
    assert_close(&logits, &want_out, 1e-4, "native logit");
    let probs = engine.probabilities(&x, shape).unwrap().to_vec();
    assert_close(&probs, &want_prob, 1e-4, "native probability");

    let predicted: Vec<usize> = probs
        .chunks(10)
        .map(|p| (0..10).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap())
        .collect();
    let want: Vec<usize> = fx["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| im["predicted"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(predicted, want);
}

/// A scratch `.h5` path, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!("lcnn-keras-{tag}-{}.h5", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A variable-length string-array attribute, as Keras writes `weight_names` / `layer_names`.
fn write_strings(loc: &hdf5::Location, name: &str, values: &[&str]) {
    let v: Vec<VarLenUnicode> = values.iter().map(|s| s.parse().unwrap()).collect();
    loc.new_attr::<VarLenUnicode>()
        .shape(v.len())
        .create(name)
        .unwrap()
        .write(&v)
        .unwrap();
}

/// Writes a Keras-2-layout file: `model_config` with `layers`, one Conv2D's weights.
fn write_model(path: &Path, layers: serde_json::Value, kernel_shape: &[usize]) {
    let f = hdf5::File::create(path).unwrap();
    let config = serde_json::json!({
        "class_name": "Sequential",
        "config": {"name": "tiny", "layers": layers}
    });
    let s: VarLenUnicode = config.to_string().parse().unwrap();
    f.new_attr::<VarLenUnicode>()
        .create("model_config")
        .unwrap()
        .write_scalar(&s)
        .unwrap();
    let w = f.create_group("model_weights").unwrap();
    let g = w.create_group("conv").unwrap();
    write_strings(&g, "weight_names", &["conv/kernel:0", "conv/bias:0"]);
    let c = g.create_group("conv").unwrap();
    let n: usize = kernel_shape.iter().product();
    c.new_dataset::<f32>()
        .shape(kernel_shape)
        .create("kernel:0")
        .unwrap()
        .write_raw(&vec![0.5f32; n])
        .unwrap();
    c.new_dataset::<f32>()
        .shape(4)
        .create("bias:0")
        .unwrap()
        .write_raw(&[0.0f32; 4])
        .unwrap();
}

fn conv_layer() -> serde_json::Value {
    serde_json::json!({"class_name": "Conv2D", "config": {
        "name": "conv", "batch_input_shape": [null, 8, 8, 3], "filters": 4,
        "kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
        "data_format": "channels_last", "activation": "relu", "use_bias": true}})
}

#[test]
fn a_written_keras_file_imports_and_bad_ones_are_clear_errors() {
    // A good one: the kernel moves to [out, in, kh, kw].
    let ok = TempFile::new("ok");
    write_model(&ok.0, serde_json::json!([conv_layer()]), &[3, 3, 3, 4]);
    let m = read_model(&ok.0).unwrap();
    assert_eq!(m.tensors[0].name, "conv.weight");
    assert_eq!(m.tensors[0].shape, vec![4, 3, 3, 3]);

    // A weight of the wrong shape names the file, the layer and both shapes.
    let bad = TempFile::new("shape");
    write_model(&bad.0, serde_json::json!([conv_layer()]), &[3, 3, 2, 4]);
    let e = read_model(&bad.0).unwrap_err().to_string();
    assert!(e.contains(&bad.0.display().to_string()), "{e}");
    assert!(
        e.contains("layer 0 `conv` (Conv2D)") && e.contains("[3, 3, 2, 4]"),
        "{e}"
    );

    // A layer lcnn does not have: its index, name and class.
    let lstm = TempFile::new("lstm");
    let layers =
        serde_json::json!([conv_layer(), {"class_name": "LSTM", "config": {"name": "lstm"}}]);
    write_model(&lstm.0, layers, &[3, 3, 3, 4]);
    let e = read_model(&lstm.0).unwrap_err().to_string();
    assert!(
        e.contains("layer 1 `lstm` (LSTM)") && e.contains("not supported"),
        "{e}"
    );

    // A truncated file: an error naming it, not a panic.
    let cut = TempFile::new("cut");
    let bytes = std::fs::read(&ok.0).unwrap();
    std::fs::write(&cut.0, &bytes[..bytes.len() / 3]).unwrap();
    let e = read_model(&cut.0).unwrap_err().to_string();
    assert!(e.contains(&cut.0.display().to_string()), "{e}");

    // Not HDF5 at all.
    let text = TempFile::new("text");
    std::fs::write(&text.0, b"not an hdf5 file").unwrap();
    let e = read_model(&text.0).unwrap_err().to_string();
    assert!(e.contains("not a readable HDF5 file"), "{e}");
}

/// The Keras applications' weights-only layout (`vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`:
/// layer groups at the root, Keras 1 weight names), written here with libhdf5 as h5py writes it
/// (the real file is not reachable from this machine), read by name into lcnn's VGG16 base.
#[test]
fn keras_applications_vgg16_notop_weights_load_by_name() {
    // Burn's initializer draws from the generator the seeded tests share: take turns.
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    use lcnn::models::{ModelConfig, ModelName, Shape};
    use lcnn::weights::keras::read_weights_by_name;

    let spec = ModelConfig {
        include_top: false,
        ..ModelConfig::new(ModelName::Vgg16, Shape::Image { h: 32, w: 32, c: 3 }, 1)
    }
    .spec()
    .unwrap();
    let file = TempFile::new("vgg16");
    let value = |layer: usize, i: usize| ((layer * 7919 + i) % 1009) as f32 * 1e-3;
    {
        let f = hdf5::File::create(&file.0).unwrap();
        let names: Vec<&str> = spec.layers.iter().map(|l| l.name.as_str()).collect();
        write_strings(&f, "layer_names", &names);
        let mut cin = 3;
        for (li, l) in spec.layers.iter().enumerate() {
            let g = f.create_group(&l.name).unwrap();
            let lcnn::models::LayerKind::Conv2d { filters, .. } = l.kind else {
                continue;
            };
            let w_name = format!("{}_W_1:0", l.name);
            let b_name = format!("{}_b_1:0", l.name);
            write_strings(&g, "weight_names", &[&w_name, &b_name]);
            let n = 9 * cin * filters;
            let w: Vec<f32> = (0..n).map(|i| value(li, i)).collect();
            g.new_dataset::<f32>()
                .shape([3, 3, cin, filters])
                .create(w_name.as_str())
                .unwrap()
                .write_raw(&w)
                .unwrap();
            let b: Vec<f32> = (0..filters).map(|i| value(li + 100, i)).collect();
            g.new_dataset::<f32>()
                .shape(filters)
                .create(b_name.as_str())
                .unwrap()
                .write_raw(&b)
                .unwrap();
            cin = filters;
        }
    }
    let tensors = read_weights_by_name(&file.0, &spec).unwrap();
    assert_eq!(tensors.len(), 26, "13 convs, kernel and bias each");
    // block2_conv1 (layer 3, 64 -> 128): lcnn [o, i, y, x] is Keras [y, x, i, o].
    let li = spec.index_of("block2_conv1").unwrap();
    let w = tensors
        .iter()
        .find(|t| t.name == "block2_conv1.weight")
        .unwrap();
    assert_eq!(w.shape, vec![128, 64, 3, 3]);
    let (o, i, y, x) = (5, 17, 2, 1);
    let keras_index = ((y * 3 + x) * 64 + i) * 128 + o;
    assert_eq!(
        w.data[((o * 64 + i) * 3 + y) * 3 + x],
        value(li, keras_index)
    );
    let net = Network::new(&spec, &Device::flex()).unwrap();
    lcnn::weights::import(net, tensors, true, &file.0).unwrap();

    // Weights for another architecture: the layer and the shapes are named.
    let other = ModelConfig::new(ModelName::Lcnn, Shape::Image { h: 28, w: 28, c: 1 }, 10)
        .spec()
        .unwrap();
    let e = read_weights_by_name(&file.0, &other)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no layer of model `lcnn` is in the file"), "{e}");
}

/// Writes `reference/keras_functional.py`'s model as Keras 2 saves it: `model_config`, and per
/// layer `model_weights/<layer>/<layer>/{kernel,bias}:0` listed in `weight_names`.
fn write_functional(path: &Path, fx: &serde_json::Value, config: &str) {
    let f = hdf5::File::create(path).unwrap();
    let s: VarLenUnicode = config.parse().unwrap();
    f.new_attr::<VarLenUnicode>()
        .create("model_config")
        .unwrap()
        .write_scalar(&s)
        .unwrap();
    let root = f.create_group("model_weights").unwrap();
    for (layer, w) in fx["weights"].as_object().unwrap() {
        let g = root.create_group(layer).unwrap();
        let kernel = format!("{layer}/kernel:0");
        let bias = format!("{layer}/bias:0");
        write_strings(&g, "weight_names", &[&kernel, &bias]);
        let inner = g.create_group(layer).unwrap();
        let floats = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        };
        let shape: Vec<usize> = w["kernel"]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        inner
            .new_dataset::<f32>()
            .shape(shape)
            .create("kernel:0")
            .unwrap()
            .write_raw(&floats(&w["kernel"]["data"]))
            .unwrap();
        let b = floats(&w["bias"]);
        inner
            .new_dataset::<f32>()
            .shape(b.len())
            .create("bias:0")
            .unwrap()
            .write_raw(&b)
            .unwrap();
    }
}

/// The seeds' LCNN form: a Functional model with `Maxout` (both of tfa's channel pairings) and
/// `AveragePooling2D` (`same`, counting only the pixels inside), against the numpy forward pass
/// of `reference/keras_functional.py` (itself checked against Keras 3), on both engines; a
/// branching graph and a `Lambda` are clear errors.
#[test]
fn a_functional_lcnn_with_maxout_and_average_pooling_matches_numpy() {
    // Burn's initializer draws from the generator the seeded tests share: take turns.
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    use lcnn::weights::keras::{read_model_with, ImportOptions, MaxoutOrder};

    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path("keras_functional.json")).unwrap(),
    )
    .unwrap();
    let config = fx["model_config"].as_str().unwrap();
    let file = TempFile::new("functional");
    write_functional(&file.0, &fx, config);
    // NHWC input -> NCHW.
    let nhwc: Vec<f32> = fx["input_nhwc"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let (n, h, w, c) = (2, 9, 9, 2);
    let mut x = vec![0.0f32; nhwc.len()];
    for b in 0..n {
        for p in 0..h * w {
            for ch in 0..c {
                x[(b * c + ch) * h * w + p] = nhwc[(b * h * w + p) * c + ch];
            }
        }
    }
    let shape = [n, c, h, w];
    for (order, key) in [
        (MaxoutOrder::Halves, "halves"),
        (MaxoutOrder::Pairs, "pairs"),
    ] {
        let model = read_model_with(&file.0, ImportOptions { maxout: order }).unwrap();
        let kinds: Vec<&str> = model
            .spec
            .layers
            .iter()
            .map(|l| l.kind.keras_type())
            .collect();
        assert_eq!(
            kinds,
            [
                "Conv2D",
                "MaxFeatureMap",
                "AveragePooling2D",
                "Conv2D",
                "AveragePooling2D",
                "Flatten",
                "Dense",
                "MaxFeatureMap",
                "Dense"
            ]
        );
        let want: Vec<f64> = fx["logits"][key]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect();
        let device = Device::flex();
        let net = Network::new(&model.spec, &device).unwrap();
        let net = import(net, model.tensors, true, &file.0).unwrap().valid();
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), &device);
        let burn = net
            .forward_logits(xt)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mut engine = Engine::from_network(&net).unwrap();
        let native = engine.logits(&x, shape).unwrap().to_vec();
        for (what, got) in [("burn", &burn), ("native", &native)] {
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{key} {what} logit {i}: {g} vs numpy {w}"
                );
            }
        }
    }

    // A layer reading anything but the layer before it: named, with where it reads from.
    let branched = config.replace(
        r#""inbound_nodes": [[["pool1""#,
        r#""inbound_nodes": [[["mfm1""#,
    );
    assert_ne!(branched, config);
    let bad = TempFile::new("branch");
    write_functional(&bad.0, &fx, &branched);
    let e = read_model(&bad.0).unwrap_err().to_string();
    assert!(
        e.contains("layer 4 `conv2` takes its input from [mfm1]") && e.contains("chain"),
        "{e}"
    );
    // A Lambda holds Python code: the error says to write the MFM as Maxout.
    let lambda = config.replace(r#""class_name": "Maxout""#, r#""class_name": "Lambda""#);
    let bad = TempFile::new("lambda");
    write_functional(&bad.0, &fx, &lambda);
    let e = read_model(&bad.0).unwrap_err().to_string();
    assert!(
        e.contains("layer 2 `mfm1` (Lambda)") && e.contains("Maxout"),
        "{e}"
    );
}
