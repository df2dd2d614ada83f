//! The native CPU engine against Burn's path (the reference): for every model of the zoo, the
//! same weights and batch give the same loss and gradients (1e-4 relative, Euclidean norm per
//! tensor) at each of three steps, and SGD with Nesterov momentum, each side on its own, gives
//! the same weights and BatchNorm moving statistics (1e-4 after the first step, 1e-2 after the
//! second, 5e-2 after the third: see below).
//! Two cases add label smoothing, L2 on the kernels and decoupled weight decay
//! ([`Regularization`]), the Burn side computed as `fit` does.
//! Dropout draws differ between the two (each has its own generator), so it is set to 0 here;
//! the engine's own dropout is tested in `engine::ops`.
//!
//! Max-Feature-Map and max pooling route a gradient to the larger of two values: where two
//! values differ by a rounding error (1e-7), the two paths may pick different winners and then
//! legitimately disagree by ~1e-3 in the layers below. The batches here are fixed, so whether
//! such a near-tie occurs is fixed too. Gradients are compared from identical weights each step
//! (a fresh engine from Burn's network); the weights of the engine that trained on its own
//! drift from Burn's by rounding, where one flipped near-tie in a step moves a few weights by
//! `lr` times a 1e-3 gradient difference (with activations agreeing to ~1e-6, LCNN's ten MFM
//! layers meet such a near-tie in about one step in two), hence the looser bounds there. The
//! Winograd path rounds a little more than im2col (still 1e-4 against Burn from the same
//! weights), so near-ties come sooner: on the 32x32x3 LCNN case the largest drift after the
//! third step is 1.7e-2 with LCNN's `conv2` / `conv3` on Winograd, 1.9e-3 with them on im2col.
//! That the drift is rounding and not state left in the engine's buffers is tested to the bit
//! by [`a_trained_engine_keeps_no_state_between_steps_but_its_weights`].

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use lcnn::engine::Engine;
use lcnn::models::{LayerKind, ModelConfig, ModelName, Network, Shape};
use lcnn::train::loss::loss_for;
use lcnn::train::{OptimizerConfig, Regularization};
use lcnn::weights::named::param_id;
use lcnn::weights::{export, l2_penalty, scale_trainable, NamedTensor};

fn batch(n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    (0..n * c * h * w)
        .map(|i| lcnn::engine::ops::uniform(11, i as u64) * 2.0 - 0.5)
        .collect()
}

/// `||a - b|| <= tol * max(||b||, floor * sqrt(len))` over each tensor (Euclidean norms; the
/// floor, an RMS value, keeps parameters that start at zero, BatchNorm's beta, from being
/// compared relative to almost nothing).
/// Float sums in another order differ by ~1e-7; a few steps through small-batch BatchNorm
/// amplify that to ~1e-5 in single elements, which a per-element bound would flag.
fn close(a: &[f32], b: &[f32], tol: f64, floor: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let scale = norm(&mut b.iter().map(|v| *v as f64))
        .max(floor * (b.len() as f64).sqrt())
        .max(1e-9);
    let diff = norm(&mut a.iter().zip(b).map(|(x, y)| (*x - *y) as f64));
    assert!(
        diff <= tol * scale,
        "{what}: |a - b| = {diff:e}, |b| = {scale:e}"
    );
}

/// Named tensors equal to the bit, pair by pair.
fn same_bits<'a>(
    a: impl IntoIterator<Item = &'a NamedTensor>,
    b: impl IntoIterator<Item = &'a NamedTensor>,
    what: &str,
) {
    for (a, b) in a.into_iter().zip(b) {
        assert_eq!(a.name, b.name, "{what}");
        let same = a.data.len() == b.data.len()
            && a.data
                .iter()
                .zip(&b.data)
                .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{what}: {} differs", a.name);
    }
}

/// A network of `spec` whose weights come from `seed` alone. Burn's initialization draws from
/// one generator per backend that every test of this binary shares, so a test that seeds it
/// is not sure to get the same weights (a concurrent test may draw in between), and other
/// weights mean other near-ties (see above): random parameters are drawn here instead,
/// uniform over Glorot's range of the kernel (a random 1-D tensor, a bias: over +-0.05);
/// constant ones (BatchNorm's, zero biases) keep their value. The largest gradient difference
/// against Burn is then 0.24 of the 1e-4 bound, the largest weight drift 0.42 of its bound.
pub(crate) fn fixed_network(spec: &lcnn::models::ModelSpec, device: &Device, seed: u64) -> Network {
    let net = Network::new(spec, device).unwrap();
    let tensors = export(&net)
        .into_iter()
        .enumerate()
        .map(|(p, mut t)| {
            if t.data.iter().all(|v| *v == t.data[0]) {
                return t;
            }
            let fans = match t.shape[..] {
                [o, i, kh, kw] => (o + i) * kh * kw,
                [i, o] => i + o,
                _ => 0,
            };
            let scale = if fans > 0 {
                (6.0 / fans as f32).sqrt()
            } else {
                0.05
            };
            let key = seed * 1000 + p as u64;
            for (i, v) in t.data.iter_mut().enumerate() {
                *v = (lcnn::engine::ops::uniform(key, i as u64) * 2.0 - 1.0) * scale;
            }
            t
        })
        .collect();
    lcnn::weights::import(net, tensors, true, std::path::Path::new("fixed weights")).unwrap()
}

fn burn_grad(grads: &GradientsParams, t: &NamedTensor) -> Vec<f32> {
    let id = param_id(&t.name);
    let data = match t.shape.len() {
        1 => grads.get::<1>(id).map(|g| g.into_data()),
        2 => grads.get::<2>(id).map(|g| g.into_data()),
        _ => grads.get::<4>(id).map(|g| g.into_data()),
    };
    data.unwrap_or_else(|| panic!("no Burn gradient for {}", t.name))
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn compare(model: ModelName, input: Shape, classes: usize, n: usize, freeze: Option<&str>) {
    compare_with(model, input, classes, n, freeze, Regularization::default());
}

fn compare_with(
    model: ModelName,
    input: Shape,
    classes: usize,
    n: usize,
    freeze: Option<&str>,
    reg: Regularization,
) {
    // Burn's initialization draws from one generator per backend: take turns with the other
    // tests that seed it, so that the weights (and any near-tie, see above) are the same
    // every run.
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let spec = ModelConfig::new(model, input, classes).spec().unwrap();
    compare_spec(spec, classes, n, freeze, reg);
}

/// [`compare_with`] for any spec.
fn compare_spec(
    mut spec: lcnn::models::ModelSpec,
    classes: usize,
    n: usize,
    freeze: Option<&str>,
    reg: Regularization,
) {
    let model = spec.name.clone();
    let Shape::Image { h, w, c } = spec.input else {
        unreachable!()
    };
    for l in &mut spec.layers {
        if let LayerKind::Dropout { rate } = &mut l.kind {
            *rate = 0.0;
        }
    }
    let device = Device::flex().autodiff();
    let mut net = fixed_network(&spec, &device, 3);
    let first_trained = freeze.map(|name| spec.index_of(name).unwrap()).unwrap_or(0);
    if let Some(name) = freeze {
        let until = spec.index_of(name).unwrap();
        net.layers = net
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| if i < until { l.freeze() } else { l })
            .collect();
    }
    let mut engine = Engine::from_network(&net).unwrap();
    engine.set_loss(reg.label_smoothing, reg.l2);
    let x = batch(n, c, h, w);
    let k = if classes == 1 { 2 } else { classes as u32 };
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 1) % k).collect();
    let shape = [n, c, h, w];
    let optimizer = OptimizerConfig::Sgd {
        learning_rate: 0.01,
        momentum: 0.9,
        nesterov: true,
        decay: 0.0,
    };
    let mut optim = optimizer.init();
    for step in 0..3u64 {
        let what = format!("{model} {h}x{w}x{c} step {step}");
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), &device);
        let out = loss_for(
            classes,
            net.forward_logits(xt),
            &labels,
            reg.label_smoothing,
        );
        let loss = match l2_penalty(&net, first_trained, reg.l2) {
            Some(penalty) => out.loss + penalty,
            None => out.loss,
        };
        let burn_loss = loss.clone().into_scalar::<f32>() as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let lr = optimizer.step_lr(step);
        // Gradients from the very same weights: a fresh engine from Burn's network.
        let mut fresh = Engine::from_network(&net).unwrap();
        fresh.set_loss(reg.label_smoothing, reg.l2);
        let (loss, correct) = fresh.forward_backward(&x, shape, &labels, step).unwrap();
        assert!(
            (loss - burn_loss).abs() <= 1e-5 * (1.0 + burn_loss.abs()),
            "{what}: loss {loss} vs {burn_loss}"
        );
        assert_eq!(correct, out.correct, "{what}: correct");
        let engine_grads = fresh.gradients();
        assert!(!engine_grads.is_empty(), "{what}: nothing to train");
        for g in engine_grads {
            close(
                &g.data,
                &burn_grad(&grads, &g),
                1e-4,
                1e-4,
                &format!("{what}: d {}", g.name),
            );
        }
        // Weights and moving statistics after the engine's own steps (its optimizer state).
        let decay = reg.weight_decay * lr;
        engine
            .train_step(&x, shape, &labels, &optimizer, lr, decay, step)
            .unwrap();
        if decay != 0.0 {
            net = scale_trainable(net, 1.0 - decay);
        }
        net = optim.step(lr, net, grads);
        for (a, b) in engine.export().iter().zip(&export(&net)) {
            assert_eq!(a.name, b.name);
            close(
                &a.data,
                &b.data,
                [1e-4, 1e-2, 5e-2][step as usize],
                0.05,
                &format!("{what}: {}", a.name),
            );
        }
    }
}

#[test]
fn lcnn_matches_burn_on_mnist_and_cifar_shapes() {
    compare(
        ModelName::Lcnn,
        Shape::Image { h: 28, w: 28, c: 1 },
        10,
        6,
        None,
    );
    compare(
        ModelName::Lcnn,
        Shape::Image { h: 32, w: 32, c: 3 },
        10,
        4,
        None,
    );
}

#[test]
fn lcnn_binary_head_and_frozen_base_match_burn() {
    compare(
        ModelName::Lcnn,
        Shape::Image { h: 16, w: 16, c: 1 },
        1,
        5,
        Some("conv3"),
    );
}

/// Binary label smoothing, and the L2 term over the trained (unfrozen) kernels only.
#[test]
fn lcnn_frozen_base_with_regularizers_matches_burn() {
    compare_with(
        ModelName::Lcnn,
        Shape::Image { h: 16, w: 16, c: 1 },
        1,
        5,
        Some("conv3"),
        Regularization {
            label_smoothing: 0.1,
            weight_decay: 0.05,
            l2: 1e-2,
        },
    );
}

#[test]
fn allconv_matches_burn() {
    compare(
        ModelName::AllConv,
        Shape::Image { h: 16, w: 16, c: 3 },
        10,
        3,
        None,
    );
}

#[test]
fn allconv_with_regularizers_matches_burn() {
    compare_with(
        ModelName::AllConv,
        Shape::Image { h: 16, w: 16, c: 3 },
        10,
        3,
        None,
        Regularization {
            label_smoothing: 0.2,
            weight_decay: 0.1,
            l2: 5e-3,
        },
    );
}

#[test]
fn separable_matches_burn() {
    compare(
        ModelName::Separable,
        Shape::Image { h: 40, w: 40, c: 3 },
        4,
        3,
        None,
    );
}

#[test]
fn lightcnn9_matches_burn() {
    compare(
        ModelName::LightCnn9,
        Shape::Image { h: 32, w: 32, c: 1 },
        10,
        2,
        None,
    );
}

/// Average pooling (`same` windows over the border, and `valid`), as imported from Keras.
#[test]
fn average_pooling_matches_burn() {
    use lcnn::layers::{Activation, Padding};
    use lcnn::models::spec::build::{conv, dense, flatten, layer};
    let pool = |name: &str, pool, strides, padding| {
        layer(
            name,
            LayerKind::AvgPool2d {
                pool,
                strides,
                padding,
            },
        )
    };
    let spec = lcnn::models::ModelSpec {
        name: "avgpool".into(),
        input: Shape::Image { h: 9, w: 9, c: 3 },
        layers: vec![
            conv("conv1", 6, 3, Padding::Same, Activation::Relu),
            pool("pool1", 3, 2, Padding::Same),
            conv("conv2", 4, 2, Padding::Valid, Activation::Relu),
            pool("pool2", 2, 2, Padding::Valid),
            flatten("flatten"),
            dense("predictions", 3, Activation::Softmax),
        ],
    };
    compare_spec(spec, 3, 4, None, Regularization::default());
}

#[test]
fn vgg16_base_and_head_match_burn() {
    compare(
        ModelName::Vgg16,
        Shape::Image { h: 32, w: 32, c: 3 },
        5,
        2,
        Some("block3_conv1"),
    );
}

/// `--recalibrate-bn`: every trainable BatchNorm's moving statistics become the sample-weighted
/// average of its batch statistics (checked in f64 on a first-layer BatchNorm, whose input is
/// the batch itself), the same on both engines, nothing else changes, and the next training
/// step updates with Keras' momentum again.
#[test]
fn batch_norm_recalibration_averages_batch_statistics_on_both_engines() {
    use lcnn::layers::{Activation, Padding};
    use lcnn::models::spec::build::{bn, conv, dense, flatten};
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (h, w, c) = (4, 4, 2);
    let spec = lcnn::models::ModelSpec {
        name: "recal".into(),
        input: Shape::Image { h, w, c },
        layers: vec![
            bn("bn0"),
            conv("conv1", 3, 3, Padding::Same, Activation::Relu),
            bn("bn1"),
            flatten("flatten"),
            dense("predictions", 2, Activation::Softmax),
        ],
    };
    let device = Device::flex().autodiff();
    let net = fixed_network(&spec, &device, 5);
    let before = export(&net);
    let mut engine = Engine::from_network(&net).unwrap();
    // Two batches of different sizes and offsets, so that the weighting shows.
    let b1: Vec<f32> = batch(2, c, h, w).iter().map(|v| v + 3.0).collect();
    let b2 = batch(6, c, h, w);
    let (s1, s2) = ([2, c, h, w], [6, c, h, w]);
    let seen = engine
        .recalibrate_batch_norm([(&b1[..], s1), (&b2[..], s2)], 0)
        .unwrap();
    assert_eq!(seen, 8);
    let tensor = |ts: &[NamedTensor], name: &str| -> Vec<f32> {
        ts.iter().find(|t| t.name == name).unwrap().data.clone()
    };
    // Per channel (NCHW batches): (mean, biased variance) of one batch, in f64.
    let stats = |x: &[f32], n: usize, ch: usize| {
        let v: Vec<f64> = (0..n)
            .flat_map(|i| &x[(i * c + ch) * h * w..(i * c + ch + 1) * h * w])
            .map(|v| *v as f64)
            .collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (
            m,
            v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64,
        )
    };
    let after = engine.export();
    for ch in 0..c {
        let ((m1, v1), (m2, v2)) = (stats(&b1, 2, ch), stats(&b2, 6, ch));
        let mean = tensor(&after, "bn0.running_mean")[ch] as f64;
        let var = tensor(&after, "bn0.running_var")[ch] as f64;
        assert!(
            (mean - (2.0 * m1 + 6.0 * m2) / 8.0).abs() < 1e-5,
            "mean {ch}: {mean}"
        );
        assert!(
            (var - (2.0 * v1 + 6.0 * v2) / 8.0).abs() < 1e-5,
            "var {ch}: {var}"
        );
    }
    let to =
        |x: &[f32], s: [usize; 4]| Tensor::<4>::from_data(TensorData::new(x.to_vec(), s), &device);
    let net = net.recalibrate_batch_norm([to(&b1, s1), to(&b2, s2)]);
    for ((a, b), old) in after.iter().zip(&export(&net)).zip(&before) {
        assert_eq!(a.name, b.name);
        close(
            &a.data,
            &b.data,
            1e-5,
            1e-3,
            &format!("recalibrated {}", a.name),
        );
        if !a.name.contains("running") {
            assert_eq!(a.data, old.data, "{} changed", a.name);
        } else {
            assert_ne!(a.data, old.data, "{} unchanged", a.name);
        }
    }
    // Keras' momentum again on the next training step: 0.99 old + 0.01 batch.
    let old = tensor(&after, "bn0.running_mean");
    engine
        .forward_backward(&b2, s2, &[0, 1, 0, 1, 0, 1], 1)
        .unwrap();
    let new = tensor(&engine.export(), "bn0.running_mean");
    for ch in 0..c {
        let want = 0.99 * old[ch] as f64 + 0.01 * stats(&b2, 6, ch).0;
        assert!((new[ch] as f64 - want).abs() < 1e-6, "momentum {ch}");
    }
}

/// The engine's result does not depend on the thread count: work is cut into fixed chunks of
/// images and reduced in a fixed order, so a run on one thread (several seeds side by side on a
/// small machine) ends with the very weights of a run on every core. Two Adam steps with
/// dropout, label smoothing, L2 and weight decay, on one thread and on six, compared to the
/// bit: the loss, the gradients, then every weight and moving statistic.
#[test]
fn a_step_does_not_depend_on_the_thread_count() {
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let cases = [
        (ModelName::Lcnn, Shape::Image { h: 32, w: 32, c: 3 }, 10),
        (ModelName::AllConv, Shape::Image { h: 16, w: 16, c: 3 }, 10),
        (ModelName::Separable, Shape::Image { h: 40, w: 40, c: 3 }, 4),
    ];
    for (model, input, classes) in cases {
        let spec = ModelConfig::new(model, input, classes).spec().unwrap();
        // Parameters of an autodiff device are trainable (on a plain one they are frozen).
        let device = Device::flex().autodiff();
        let net = fixed_network(&spec, &device, 5);
        let initial = export(&net);
        let Shape::Image { h, w, c } = input else {
            unreachable!()
        };
        // More images than one chunk, so that the chunks are spread over the threads.
        let n = 40;
        let x = batch(n, c, h, w);
        let labels: Vec<u32> = (0..n as u32)
            .map(|i| (i * 7 + 1) % classes as u32)
            .collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                assert_eq!(lcnn::engine::threads(), threads);
                let mut engine = Engine::from_network(&net).unwrap();
                engine.set_loss(0.1, 1e-4);
                let mut losses = Vec::new();
                for step in 0..2u64 {
                    let (loss, _) = engine
                        .train_step(
                            &x,
                            [n, c, h, w],
                            &labels,
                            &OptimizerConfig::adam(),
                            1e-3,
                            5e-5,
                            step,
                        )
                        .unwrap();
                    losses.push(loss);
                }
                (losses, engine.gradients(), engine.export())
            })
        };
        let (one, six) = (run(1), run(6));
        assert_eq!(one.0, six.0, "{model:?}: losses");
        assert!(
            one.0.iter().all(|l| l.is_finite()),
            "{model:?}: {:?}",
            one.0
        );
        let moved = |name: &str| {
            let before = initial.iter().find(|t| t.name == name).unwrap();
            let after = one.2.iter().find(|t| t.name == name).unwrap();
            before.data != after.data
        };
        assert!(
            one.1.len() >= 4 && one.1.iter().all(|g| moved(&g.name)),
            "{model:?}: every trainable parameter takes the steps"
        );
        same_bits(
            one.1.iter().chain(&one.2),
            six.1.iter().chain(&six.2),
            &format!("{model:?}, between one thread and six"),
        );
    }
}

/// Buffers reused from step to step carry nothing over: after steps on batches of two sizes
/// (a short last batch shrinks them, the next full one grows them again), the trained engine's
/// loss and gradients are, to the bit, those of a fresh engine given its weights. This is what
/// lets the comparison with Burn above use a fresh engine per step, and it covers the im2col
/// and Winograd scratch, the per-chunk partial sums and the BatchNorm statistics.
#[test]
fn a_trained_engine_keeps_no_state_between_steps_but_its_weights() {
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for (model, input) in [
        (ModelName::Lcnn, Shape::Image { h: 32, w: 32, c: 3 }),
        (ModelName::AllConv, Shape::Image { h: 16, w: 16, c: 3 }),
    ] {
        let spec = ModelConfig::new(model, input, 10).spec().unwrap();
        let device = Device::flex().autodiff();
        let net = fixed_network(&spec, &device, 9);
        let Shape::Image { h, w, c } = input else {
            unreachable!()
        };
        let full = 24;
        let x = batch(full, c, h, w);
        let labels: Vec<u32> = (0..full as u32).map(|i| (i * 3 + 2) % 10).collect();
        let mut engine = Engine::from_network(&net).unwrap();
        engine.set_loss(0.1, 0.0);
        for (step, n) in [full, 5, full].into_iter().enumerate() {
            engine
                .train_step(
                    &x[..n * c * h * w],
                    [n, c, h, w],
                    &labels[..n],
                    &OptimizerConfig::adam(),
                    1e-3,
                    0.0,
                    step as u64,
                )
                .unwrap();
        }
        let mut fresh = Engine::new(&spec).unwrap();
        fresh
            .load(&engine.export(), std::path::Path::new("<trained>"))
            .unwrap();
        fresh.set_loss(0.1, 0.0);
        let shape = [full, c, h, w];
        let a = engine.forward_backward(&x, shape, &labels, 3).unwrap();
        let b = fresh.forward_backward(&x, shape, &labels, 3).unwrap();
        assert_eq!(a.0.to_bits(), b.0.to_bits(), "{model:?}: loss");
        let (ga, gb) = (engine.gradients(), fresh.gradients());
        assert!(ga.len() >= 4, "{model:?}: gradients");
        same_bits(
            &ga,
            &gb,
            &format!("{model:?}, gradients of the trained engine and a fresh one"),
        );
    }
}

/// The engine runs MFM and the max pooling after it as one pass (LCNN's blocks), which never
/// writes MFM's output. Features taken between the two (`Engine::features` at the pooling
/// layer) still are MFM's output, and the features after the pooling, that output pooled:
/// each equals the layer run on its own on the features before it.
#[test]
fn features_between_a_fused_mfm_and_its_pooling_are_the_layers_outputs() {
    // fixed_network draws Burn's initial weights first (then replaces them): from the device
    // generator that seeded training runs in other tests rely on.
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    use lcnn::engine::conv::ConvGeom;
    use lcnn::engine::ops;
    let spec = ModelConfig::new(ModelName::Lcnn, Shape::Image { h: 28, w: 28, c: 1 }, 10)
        .spec()
        .unwrap();
    let at = |name: &str| spec.layers.iter().position(|l| l.name == name).unwrap();
    let (mfm, pool) = (at("mfm1"), at("pool1"));
    assert_eq!(pool, mfm + 1);
    assert!(matches!(
        spec.layers[pool].kind,
        LayerKind::MaxPool2d { .. }
    ));
    let net = fixed_network(&spec, &Device::flex().autodiff(), 4);
    let mut engine = Engine::from_network(&net).unwrap();
    let n = 3;
    let x = batch(n, 1, 28, 28);
    let shape = [n, 1, 28, 28];
    let conv = engine.features(&x, shape, mfm).unwrap().to_vec();
    let mid = engine.features(&x, shape, pool).unwrap().to_vec();
    let pooled = engine.features(&x, shape, pool + 1).unwrap().to_vec();
    // conv1's channels at 28x28; MFM keeps half of them; the pooling halves each side.
    let c = conv.len() / (n * 784);
    assert_eq!(
        (mid.len(), pooled.len()),
        (n * 784 * c / 2, n * 196 * c / 2)
    );
    let mut want_mid = vec![0.0; mid.len()];
    ops::mfm_forward(&conv, c, &mut want_mid);
    assert_eq!(mid, want_mid, "MFM's output");
    let g = ConvGeom {
        h: 28,
        w: 28,
        cin: c / 2,
        k: 2,
        stride: 2,
        pad_top: 0,
        pad_left: 0,
        oh: 14,
        ow: 14,
        cout: c / 2,
    };
    let mut want_pooled = vec![0.0; pooled.len()];
    ops::maxpool_forward(&g, &mid, &mut want_pooled);
    assert_eq!(pooled, want_pooled, "the pooled output");
}

/// Running MFM inside its convolution and the max pooling inside MFM changes no result: LCNN
/// steps with the layers fused (the default) and one by one give the same loss and the same
/// gradients, to the bit, on the MNIST shape (`pool1` on 28x28 tiles its windows) and the
/// CIFAR-10 shape (`pool3` on 8x8, and on odd sides where `same` windows overhang).
#[test]
fn fused_layers_give_the_steps_of_the_layers_one_by_one() {
    // fixed_network draws Burn's initial weights first (then replaces them): from the device
    // generator that seeded training runs in other tests rely on.
    let _turn = crate::train::TRAINING
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for (input, n) in [
        (Shape::Image { h: 28, w: 28, c: 1 }, 6),
        (Shape::Image { h: 30, w: 30, c: 3 }, 5),
    ] {
        let spec = ModelConfig::new(ModelName::Lcnn, input, 10).spec().unwrap();
        let net = fixed_network(&spec, &Device::flex().autodiff(), 5);
        let Shape::Image { h, w, c } = input else {
            unreachable!()
        };
        let x = batch(n, c, h, w);
        let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 1) % 10).collect();
        let step = |fuse: bool| {
            let mut engine = Engine::from_network(&net).unwrap();
            engine.set_fusion(fuse);
            let (loss, correct) = engine
                .forward_backward(&x, [n, c, h, w], &labels, 1)
                .unwrap();
            let names: Vec<String> = engine.layer_times().into_iter().map(|t| t.0).collect();
            (loss, correct, engine.gradients(), names)
        };
        let (fused, plain) = (step(true), step(false));
        assert!(
            fused.3.iter().any(|l| l == "conv1+mfm1+pool1"),
            "{:?}",
            fused.3
        );
        assert!(plain.3.iter().all(|l| !l.contains('+')), "{:?}", plain.3);
        assert_eq!(fused.0.to_bits(), plain.0.to_bits(), "{input:?}: loss");
        assert_eq!(fused.1, plain.1, "{input:?}: correct");
        same_bits(&fused.2, &plain.2, &format!("{input:?}: gradients"));
    }
}
