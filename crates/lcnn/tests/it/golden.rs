//! Golden test: one LCNN forward pass with formula weights against the independent numpy
//! reference in `reference/lcnn_forward.py` (fixture `tests/fixtures/lcnn_forward.json`).

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use lcnn::models::{ModelConfig, ModelName, Network};
use lcnn::weights::{export, import, NamedTensor};

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lcnn_forward.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The reference's parameter rule: `s = sin(0.7 i + 1.3 p + 0.1)` (f64, rounded once to f32).
fn formula_weights(template: &[NamedTensor]) -> Vec<NamedTensor> {
    template
        .iter()
        .enumerate()
        .map(|(p, t)| {
            let fan_in: usize = match t.shape.len() {
                4 => t.shape[1] * t.shape[2] * t.shape[3],
                2 => t.shape[0],
                _ => 1,
            };
            let kind = t.name.rsplit('.').next().unwrap();
            let data = (0..t.data.len())
                .map(|i| {
                    let s = (0.7 * i as f64 + 1.3 * p as f64 + 0.1).sin();
                    let v = match kind {
                        "weight" => s / (fan_in as f64).sqrt(),
                        "bias" | "beta" | "running_mean" => 0.1 * s,
                        "gamma" => 1.0 + 0.1 * s,
                        "running_var" => 1.0 + 0.5 * s.abs(),
                        other => panic!("unexpected parameter kind {other}"),
                    };
                    v as f32
                })
                .collect();
            NamedTensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                data,
            }
        })
        .collect()
}

#[test]
fn lcnn_forward_matches_numpy_reference() {
    // Burn's initializer draws from the generator the seeded tests share: take turns.
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let fx = fixture();
    let device = Device::flex();
    let spec = ModelConfig::new(ModelName::Lcnn, ModelName::Lcnn.default_input(), 10)
        .spec()
        .unwrap();
    let net = Network::new(&spec, &device).unwrap();
    let weights = formula_weights(&export(&net));
    assert_eq!(weights.len(), fx["params"].as_array().unwrap().len());
    // The weight generator itself agrees with the reference, tensor by tensor.
    for (w, r) in weights.iter().zip(fx["params"].as_array().unwrap()) {
        let sum: f64 = w.data.iter().map(|v| *v as f64).sum();
        let rsum = r["sum"].as_f64().unwrap();
        assert!(
            (sum - rsum).abs() < 1e-4 * (1.0 + rsum.abs()),
            "{}: {sum} vs {rsum}",
            w.name
        );
    }
    let net = import(net, weights, true, Path::new("formula"))
        .unwrap()
        .valid();

    let n: usize = 2 * 28 * 28;
    let x: Vec<f32> = (0..n)
        .map(|i| (0.5 + 0.5 * (0.05 * i as f64 + 0.3).sin()) as f32)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [2, 1, 28, 28]), &device);

    let logits = net
        .forward_logits(x.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let probs = net.forward(x).into_data().try_to_vec::<f32>().unwrap();
    let want_logits: Vec<f64> = fx["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    let want_probs: Vec<f64> = fx["probs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    for (i, (got, want)) in logits.iter().zip(&want_logits).enumerate() {
        assert!(
            (*got as f64 - want).abs() < 1e-4,
            "logit {i}: {got} vs {want}"
        );
    }
    for (i, (got, want)) in probs.iter().zip(&want_probs).enumerate() {
        assert!(
            (*got as f64 - want).abs() < 1e-5,
            "prob {i}: {got} vs {want}"
        );
    }
}
