//! Single-precision matrix multiply for the engine: a bounds-checked, row-major front to the
//! [`gemm`](https://docs.rs/gemm) crate (BLIS-style packing, AVX-512 / AVX2 / NEON kernels picked
//! at run time).

/// A row-major matrix operand: `data[i * ld + j]` is element `(i, j)` of the stored matrix;
/// `t` reads it transposed.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Leading dimension (row stride) of the stored matrix.
    pub ld: usize,
    /// Use the transpose of the stored matrix.
    pub t: bool,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with row stride `ld`.
    pub fn new(data: &'a [f32], ld: usize) -> Self {
        Mat { data, ld, t: false }
    }

    /// The transpose of a row-major matrix with row stride `ld`.
    pub fn t(data: &'a [f32], ld: usize) -> Self {
        Mat { data, ld, t: true }
    }

    /// (row stride, column stride) of the operand as used, and whether `rows x cols` fits.
    fn strides(&self, rows: usize, cols: usize) -> (isize, isize, bool) {
        let (rs, cs, r, c) = if self.t {
            (1, self.ld, cols, rows)
        } else {
            (self.ld, 1, rows, cols)
        };
        let fits =
            rows == 0 || cols == 0 || (c <= self.ld && (r - 1) * self.ld + c <= self.data.len());
        (rs as isize, cs as isize, fits)
    }
}

/// `c[m, n] = (accumulate ? c : 0) + a[m, k] * b[k, n]`, `c` row-major with row stride `ldc`.
/// `threads > 1` lets the multiply split its output blocks over the rayon pool (each output
/// element is still summed by one thread in a fixed order, so results do not depend on it).
///
/// # Panics
/// If an operand is too short for its shape (a bug in the caller, never data-dependent).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let (a_rs, a_cs, a_ok) = a.strides(m, k);
    let (b_rs, b_cs, b_ok) = b.strides(k, n);
    assert!(
        a_ok && b_ok,
        "sgemm: operand too short for {m}x{k} * {k}x{n}"
    );
    assert!(
        n <= ldc && (m - 1) * ldc + n <= c.len(),
        "sgemm: output too short"
    );
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index the kernel touches, (i, j) -> i * rs + j * cs for i < rows, j < cols,
    // lies inside its slice (checked above); `c` is borrowed mutably and does not alias `a`/`b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], at: bool, b: &[f32], bt: bool) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if at { a[p * m + i] } else { a[i * k + p] };
                    let bv = if bt { b[j * k + p] } else { b[p * n + j] };
                    s += av as f64 * bv as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn all_transposes_match_the_naive_product() {
        let (m, n, k) = (37, 19, 53);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 11) as f32 * 0.5 - 2.0)
            .collect();
        for (at, bt) in [(false, false), (true, false), (false, true), (true, true)] {
            let am = if at { Mat::t(&a, m) } else { Mat::new(&a, k) };
            let bm = if bt { Mat::t(&b, k) } else { Mat::new(&b, n) };
            let mut c = vec![1.0f32; m * n];
            sgemm(m, n, k, am, bm, &mut c, n, true, 2);
            let want = naive(m, n, k, &a, at, &b, bt);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - 1.0 - y).abs() < 1e-3, "{at} {bt}: {x} vs {y}");
            }
            sgemm(m, n, k, am, bm, &mut c, n, false, 1);
            assert_eq!(c, want);
        }
    }

    #[test]
    #[should_panic(expected = "operand too short")]
    fn short_operand_panics_instead_of_reading_out_of_bounds() {
        let a = vec![0.0f32; 5];
        let mut c = vec![0.0f32; 4];
        sgemm(
            2,
            2,
            3,
            Mat::new(&a, 3),
            Mat::new(&a, 2),
            &mut c,
            2,
            false,
            1,
        );
    }

    /// The engine computes a dense layer's input gradient `dy w^T` as the transpose of
    /// `w dy^T` (the faster operand order): gemm sums each element over `k` in the same order
    /// either way, so the two agree to the bit, and training results do not change with it.
    /// Shapes: VGG16's `fc1` at batch 8, LCNN's `fc1` at batch 256, odd sizes.
    #[test]
    fn a_product_and_its_transpose_agree_to_the_bit() {
        for (n, din, dout) in [
            (8, 8192, 4096),
            (256, 1152, 256),
            (5, 300, 70),
            (20, 4096, 1024),
        ] {
            let w: Vec<f32> = (0..din * dout)
                .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 777.0)
                .collect();
            let dy: Vec<f32> = (0..n * dout)
                .map(|i| ((i * 104729 % 997) as f32 - 498.0) / 555.0)
                .collect();
            let mut dx = vec![0.0f32; n * din];
            sgemm(
                n,
                din,
                dout,
                Mat::new(&dy, dout),
                Mat::t(&w, dout),
                &mut dx,
                din,
                false,
                2,
            );
            let mut dxt = vec![0.0f32; din * n];
            sgemm(
                din,
                n,
                dout,
                Mat::new(&w, dout),
                Mat::t(&dy, dout),
                &mut dxt,
                n,
                false,
                2,
            );
            for i in 0..n {
                for j in 0..din {
                    assert_eq!(
                        dx[i * din + j].to_bits(),
                        dxt[j * n + i].to_bits(),
                        "n {n}, din {din}, dout {dout}: element ({i}, {j})"
                    );
                }
            }
        }
    }
}
