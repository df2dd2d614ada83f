//! Single-thread GFLOP/s of the matrix multiplies the native engine issues, per shape: the
//! forward, weight-gradient and input-gradient products of LCNN's, All-CNN-C's and VGG16's
//! convolutions at the block sizes `engine::conv` uses, and VGG16's dense layers at batch 8.
//! It shows where a layer's time goes when `lcnn bench train-step --layers` flags it.
//!
//! `cargo bench --bench gemm_probe`
use lcnn::engine::gemm::{sgemm, Mat};
use std::time::Instant;
fn t(name: &str, m: usize, n: usize, k: usize, at: bool, bt: bool, reps: usize) {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let s0 = Instant::now();
    let am = if at { Mat::t(&a, m) } else { Mat::new(&a, k) };
    let bm = if bt { Mat::t(&b, k) } else { Mat::new(&b, n) };
    sgemm(m, n, k, am, bm, &mut c, n, false, 1);
    println!("first call {:.3} s", s0.elapsed().as_secs_f64());
    let s = Instant::now();
    for _ in 0..reps {
        sgemm(m, n, k, am, bm, &mut c, n, true, 1);
    }
    let secs = s.elapsed().as_secs_f64();
    println!(
        "{name:30} m{m} n{n} k{k} at{at} bt{bt}: {:.1} GFLOP/s",
        2.0 * (m * n * k * reps) as f64 / secs / 1e9
    );
}
fn main() {
    t("vgg fc1 fwd", 8, 4096, 8192, false, false, 5);
    t("vgg fc1 dW", 8192, 4096, 8, true, false, 5);
    t("vgg fc1 dx", 8, 8192, 4096, false, true, 5);
    t("vgg fc2 fwd", 8, 4096, 4096, false, false, 5);
    t(
        "vgg fc1 dx as (w dy^T)^T (engine)",
        8192,
        8,
        4096,
        false,
        true,
        5,
    );
    for rows in [113usize, 512, 2048] {
        t("vgg fwd", rows, 64, 576, false, false, 200);
        t("vgg dW", 576, 64, rows, true, false, 200);
        t("vgg dcol", rows, 576, 64, false, true, 200);
    }
    for rows in [75usize, 512, 1024] {
        t("allconv fwd", rows, 96, 864, false, false, 200);
        t("allconv dW", 864, 96, rows, true, false, 200);
        t("allconv dcol", rows, 864, 96, false, true, 200);
    }
    for rows in [784usize, 2048] {
        t("lcnn conv1 fwd", rows, 64, 25, false, false, 500);
        t("lcnn conv1 dW", 25, 64, rows, true, false, 500);
    }
    for rows in [227usize, 1024] {
        t("lcnn conv2 fwd", rows, 96, 288, false, false, 300);
        t("lcnn conv2 dW", 288, 96, rows, true, false, 300);
        t("lcnn conv2 dcol", rows, 288, 96, false, true, 300);
    }
}
