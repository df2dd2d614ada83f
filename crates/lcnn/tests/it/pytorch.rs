//! PyTorch weights in and out against PyTorch itself: `reference/torch_roundtrip.py` saved a
//! tiny network's state_dict (`torch_tiny.pt`) and its eval-mode logits; the same network built
//! from lcnn layers, loaded from the .pt, gives the same logits, and its weights written back
//! as a PyTorch state_dict equal the file's tensors.

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use lcnn::layers::{Activation, Padding};
use lcnn::models::{LayerKind, LayerSpec, ModelSpec, Network, Shape};
use lcnn::weights::pytorch::{from_state_dict, read_state_dict, to_state_dict};
use lcnn::weights::{export, import};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny() -> ModelSpec {
    let l = |name: &str, kind| LayerSpec {
        name: name.into(),
        kind,
    };
    ModelSpec {
        name: "tiny".into(),
        input: Shape::Image { h: 8, w: 8, c: 2 },
        layers: vec![
            l(
                "conv1",
                LayerKind::Conv2d {
                    filters: 8,
                    kernel: 3,
                    strides: 1,
                    padding: Padding::Same,
                    activation: Activation::Linear,
                },
            ),
            l("mfm1", LayerKind::MaxFeatureMap),
            l(
                "bn1",
                LayerKind::BatchNorm {
                    epsilon: 1e-3,
                    momentum: 0.99,
                },
            ),
            l(
                "pool1",
                LayerKind::MaxPool2d {
                    pool: 2,
                    strides: 2,
                    padding: Padding::Valid,
                },
            ),
            l(
                "sep1",
                LayerKind::SeparableConv2d {
                    filters: 6,
                    kernel: 3,
                    padding: Padding::Same,
                    activation: Activation::Relu,
                },
            ),
            l("flatten", LayerKind::Flatten),
            l(
                "fc1",
                LayerKind::Dense {
                    units: 3,
                    activation: Activation::Linear,
                },
            ),
        ],
    }
}

#[test]
fn a_pytorch_state_dict_loads_by_name_and_gives_pytorchs_logits() {
    // Burn's initializer draws from the generator the seeded tests share: take turns.
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let pt = fixtures().join("torch_tiny.pt");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("torch_tiny.json")).unwrap())
            .unwrap();
    let device = Device::flex();
    let net = Network::new(&tiny(), &device).unwrap();
    let like = export(&net);
    let torch = read_state_dict(&pt).unwrap();
    // num_batches_tracked (an integer buffer) is not a weight.
    assert!(!torch.keys().any(|k| k.contains("num_batches_tracked")));
    let tensors = from_state_dict(torch.clone(), &like, true, &pt).unwrap();
    let net = import(net, tensors, true, &pt).unwrap();

    let x: Vec<f32> = fx["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let logits = net
        .valid()
        .forward_logits(Tensor::<4>::from_data(
            TensorData::new(x, [2, 2, 8, 8]),
            &device,
        ))
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let want: Vec<f32> = fx["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    assert_eq!(logits.len(), want.len());
    for (a, b) in logits.iter().zip(&want) {
        assert!(
            (a - b).abs() < 1e-5,
            "logits {logits:?} vs PyTorch's {want:?}"
        );
    }

    // Out again: PyTorch's names, layouts and values.
    for t in to_state_dict(&export(&net)) {
        let f = &torch[&t.name];
        assert_eq!(t.shape, f.shape, "{}", t.name);
        assert_eq!(t.data, f.data, "{}", t.name);
    }
}
