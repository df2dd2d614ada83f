//! Golden test: one training-mode BatchNorm step (normalized output, moving mean and moving
//! variance) against the numpy reference `reference/batchnorm.py`
//! (fixture `tests/fixtures/batchnorm.json`), for a 4-D conv input and a 2-D dense input.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use lcnn::layers::{BatchNormalizationConfig, Features};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/batchnorm.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every number of a nested JSON array, in row-major order.
fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("expected numbers, found {other}"),
    }
}

fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, numpy {w}");
    }
}

/// Runs one training step of a Keras-default BatchNormalization on `case` (the fixture's top
/// level, or its `dense_2d` part) and compares with the reference.
fn check(case: &Value, gamma: &Value, beta: &Value) {
    let device = Device::flex().autodiff();
    let shape: Vec<usize> = case["x_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let channels = shape[1];
    let mut bn = BatchNormalizationConfig::new(channels).init(&device);
    bn.bn.gamma = Param::from_tensor(Tensor::from_data(
        TensorData::new(flat(gamma), [channels]),
        &device,
    ));
    bn.bn.beta = Param::from_tensor(Tensor::from_data(
        TensorData::new(flat(beta), [channels]),
        &device,
    ));
    let x = flat(&case["x"]);
    let out = match shape.len() {
        4 => bn
            .forward(Features::Image(Tensor::from_data(
                TensorData::new(x, [shape[0], shape[1], shape[2], shape[3]]),
                &device,
            )))
            .image()
            .into_data(),
        2 => bn
            .forward(Features::Flat(Tensor::from_data(
                TensorData::new(x, [shape[0], shape[1]]),
                &device,
            )))
            .flat()
            .into_data(),
        n => panic!("unexpected rank {n}"),
    };
    let vec = |d: TensorData| d.try_to_vec::<f32>().unwrap();
    close("output", &vec(out), &flat(&case["output"]), 2e-5);
    close(
        "moving_mean",
        &vec(bn.bn.running_mean.value_sync().into_data()),
        &flat(&case["moving_mean"]),
        1e-6,
    );
    // lcnn follows Keras 3: the moving variance takes the biased batch variance.
    close(
        "moving_var",
        &vec(bn.bn.running_var.value_sync().into_data()),
        &flat(&case["moving_var_biased"]),
        1e-6,
    );
}

#[test]
fn batchnorm_training_step_matches_numpy_reference() {
    let fx = fixture();
    assert_eq!(fx["momentum"].as_f64(), Some(0.99));
    assert_eq!(fx["eps"].as_f64(), Some(0.001));
    check(&fx, &fx["gamma"], &fx["beta"]);
    check(&fx["dense_2d"], &fx["gamma"], &fx["beta"]);
}
