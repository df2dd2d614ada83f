//! The engine's layers other than convolution and dense, channels-last: Max-Feature-Map
//! ([Wu et al., arXiv:1511.02683](https://arxiv.org/abs/1511.02683)), max pooling, Keras
//! BatchNormalization ([Ioffe & Szegedy, arXiv:1502.03167](https://arxiv.org/abs/1502.03167)),
//! dropout, ReLU, global average pooling, Flatten in Keras' channels-first order, and the
//! depthwise half of a separable convolution, and MFM with the max pooling after it as one pass
//! (LCNN's blocks). Backward passes recompute what they need from the layer's input (argmax,
//! normalized values, dropout masks), so nothing but the activations is kept between the
//! passes, except the fused MFM + pooling's winners (one byte per pooled value, where MFM's
//! output, never written, would take sixteen under a 2x2 pooling). Every reduction runs over
//! fixed chunks in a fixed order.

use rayon::prelude::*;

use super::conv::ConvGeom;

/// Values handled per parallel task in elementwise loops.
const GRAIN: usize = 32 * 1024;

/// Max-Feature-Map over the last axis: `y[.., j] = max(x[.., j], x[.., j + c/2])`.
///
/// # Shapes
/// - `x`: `[rows, c]`, `y`: `[rows, c / 2]`
pub fn mfm_forward(x: &[f32], c: usize, y: &mut [f32]) {
    let h = c / 2;
    let rows_per = (GRAIN / c).max(1);
    y.par_chunks_mut(rows_per * h)
        .zip(x.par_chunks(rows_per * c))
        .for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_exact_mut(h).zip(xc.chunks_exact(c)) {
                let (a, b) = xr.split_at(h);
                for ((o, p), q) in yr.iter_mut().zip(a).zip(b) {
                    *o = p.max(*q);
                }
            }
        });
}

/// Gradient of [`mfm_forward`]: each output's gradient goes to the half that won (the first on
/// a tie).
pub fn mfm_backward(x: &[f32], c: usize, dy: &[f32], dx: &mut [f32]) {
    let h = c / 2;
    let rows_per = (GRAIN / c).max(1);
    dx.par_chunks_mut(rows_per * c)
        .zip(x.par_chunks(rows_per * c))
        .zip(dy.par_chunks(rows_per * h))
        .for_each(|((dxc, xc), dyc)| {
            for ((dr, xr), gr) in dxc
                .chunks_exact_mut(c)
                .zip(xc.chunks_exact(c))
                .zip(dyc.chunks_exact(h))
            {
                let (a, b) = xr.split_at(h);
                let (da, db) = dr.split_at_mut(h);
                // Arithmetic rather than branches, so that it vectorizes: `g * 1 = g`,
                // `g - g = 0` exactly.
                for ((((da, db), a), b), g) in da.iter_mut().zip(db).zip(a).zip(b).zip(gr) {
                    let first = f32::from(u8::from(*a >= *b));
                    *da = *g * first;
                    *db = *g - *da;
                }
            }
        });
}

impl ConvGeom {
    /// Visits the pooling windows of one image (`k x k`, `stride`, the padding of Keras' `valid`
    /// or TensorFlow's `same`, where padded positions never win): `f(output pixel, input pixels
    /// of the window in scan order)`.
    fn windows(&self, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>)) {
        for oy in 0..self.oh {
            let (ky0, ky1, iy0) = self.span(oy, self.pad_top, self.h);
            for ox in 0..self.ow {
                let (kx0, kx1, ix0) = self.span(ox, self.pad_left, self.w);
                let w = self.w;
                let mut taps = (iy0..iy0 + ky1 - ky0)
                    .flat_map(|iy| (ix0..ix0 + kx1 - kx0).map(move |ix| iy * w + ix));
                f(oy * self.ow + ox, &mut taps);
            }
        }
    }
}

/// Max pooling of `n` images (the geometry's `cin == cout`): each window's maximum, whole channel rows at a time (so the
/// compare vectorizes).
///
/// # Shapes
/// - `x`: `[n, h, w, c]`, `y`: `[n, oh, ow, c]`
pub fn maxpool_forward(g: &ConvGeom, x: &[f32], y: &mut [f32]) {
    let (il, ol, c) = (g.in_len(), g.out_len(), g.cin);
    y.par_chunks_mut(ol)
        .zip(x.par_chunks(il))
        .for_each(|(yi, xi)| {
            g.windows(|o, taps| {
                let out = &mut yi[o * c..(o + 1) * c];
                out.fill(f32::NEG_INFINITY);
                for p in taps {
                    for (m, v) in out.iter_mut().zip(&xi[p * c..(p + 1) * c]) {
                        *m = m.max(*v);
                    }
                }
            });
        });
}

/// Gradient of [`maxpool_forward`] (`y` its output): to the first maximum of each window in
/// scan order, found by comparing the input with the pooled output.
pub fn maxpool_backward(g: &ConvGeom, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (il, ol, c) = (g.in_len(), g.out_len(), g.cin);
    dx.par_chunks_mut(il)
        .zip(x.par_chunks(il))
        .zip(y.par_chunks(ol).zip(dy.par_chunks(ol)))
        .for_each(|((di, xi), (yi, gi))| {
            di.fill(0.0);
            // The gradient not yet routed, per channel: the first tap equal to the maximum
            // takes all of it (arithmetic selects, so that it vectorizes).
            let mut rest = vec![0.0f32; c];
            g.windows(|o, taps| {
                let ym = &yi[o * c..(o + 1) * c];
                rest.copy_from_slice(&gi[o * c..(o + 1) * c]);
                for p in taps {
                    let (xs, ds) = (&xi[p * c..(p + 1) * c], &mut di[p * c..(p + 1) * c]);
                    for (((d, x), m), r) in ds.iter_mut().zip(xs).zip(ym).zip(rest.iter_mut()) {
                        let take = *r * f32::from(u8::from(*x == *m));
                        *d += take;
                        *r -= take;
                    }
                }
            });
        });
}

/// `max(a, b)` as one compare-and-select (`maxps`); `f32::max`'s NaN handling costs three more
/// instructions per vector, and a NaN anywhere fails the step's finite-loss check anyway.
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// Window positions a fused [`mfm_maxpool_forward`] can name in its `u8` winners (two codes per
/// position): windows up to 11x11.
pub const MFM_POOL_MAX_TAPS: usize = 127;

/// Max-Feature-Map followed by max pooling (`g`, over the `c / 2` channels MFM leaves), in one
/// pass that never writes MFM's output: LCNN's `mfm` + `pool` pairs, where MFM's output is the
/// largest tensor of the step and pooling would read it straight back. `y` is
/// `maxpool_forward(mfm_forward(x))`; `arg` records each pooled value's winner as
/// `2 * tap + half` (`tap`: its window's in-bounds position in scan order, `half`: 0 for the
/// first half of the channels) for [`mfm_maxpool_backward`], which then needs neither `x` nor
/// `y`.
///
/// # Shapes
/// - `x`: `[n, h, w, 2 * g.cin]`, `y` and `arg`: `[n, oh, ow, g.cin]`
pub fn mfm_maxpool_forward(g: &ConvGeom, x: &[f32], y: &mut [f32], arg: &mut [u8]) {
    let ol = g.out_len();
    y.par_chunks_mut(ol)
        .zip(arg.par_chunks_mut(ol))
        .zip(x.par_chunks(2 * g.in_len()))
        .for_each(|((yi, ai), xi)| mfm_maxpool_image(g, xi, yi, ai));
}

/// [`mfm_maxpool_forward`] on this thread, for a chunk of images inside a parallel task.
pub fn mfm_maxpool_forward_serial(g: &ConvGeom, x: &[f32], y: &mut [f32], arg: &mut [u8]) {
    let ol = g.out_len();
    for ((yi, ai), xi) in y
        .chunks_exact_mut(ol)
        .zip(arg.chunks_exact_mut(ol))
        .zip(x.chunks_exact(2 * g.in_len()))
    {
        mfm_maxpool_image(g, xi, yi, ai);
    }
}

fn mfm_maxpool_image(g: &ConvGeom, xi: &[f32], yi: &mut [f32], ai: &mut [u8]) {
    debug_assert!(g.k * g.k <= MFM_POOL_MAX_TAPS);
    let h = g.cin;
    g.windows(|o, taps| {
        let out = &mut yi[o * h..(o + 1) * h];
        let arg = &mut ai[o * h..(o + 1) * h];
        out.fill(f32::NEG_INFINITY);
        arg.fill(0);
        for (t, p) in taps.enumerate() {
            let (a, b) = xi[2 * p * h..2 * (p + 1) * h].split_at(h);
            let code = 2 * t as u8;
            for (((m, r), a), b) in out.iter_mut().zip(arg.iter_mut()).zip(a).zip(b) {
                // As the two layers decide: MFM keeps the first half on a tie, pooling the
                // first maximum in scan order.
                let v = larger(*a, *b);
                *r = if v > *m { code + u8::from(*a < *b) } else { *r };
                *m = larger(*m, v);
            }
        }
    });
}

/// Gradient of [`mfm_maxpool_forward`] from its winners: each pooled value's gradient goes to
/// the input value that won; the rest are zero. The same values as [`maxpool_backward`] then
/// [`mfm_backward`], summed in the same order where windows overlap.
///
/// # Shapes
/// - `arg` and `dy`: `[n, oh, ow, g.cin]`, `dx`: `[n, h, w, 2 * g.cin]`
pub fn mfm_maxpool_backward(g: &ConvGeom, arg: &[u8], dy: &[f32], dx: &mut [f32]) {
    let ol = g.out_len();
    dx.par_chunks_mut(2 * g.in_len())
        .zip(arg.par_chunks(ol).zip(dy.par_chunks(ol)))
        .for_each(|(di, (ai, gi))| mfm_maxpool_image_backward(g, ai, gi, di));
}

/// [`mfm_maxpool_backward`] on this thread, for a chunk of images inside a parallel task.
pub fn mfm_maxpool_backward_serial(g: &ConvGeom, arg: &[u8], dy: &[f32], dx: &mut [f32]) {
    let ol = g.out_len();
    for (di, (ai, gi)) in dx
        .chunks_exact_mut(2 * g.in_len())
        .zip(arg.chunks_exact(ol).zip(dy.chunks_exact(ol)))
    {
        mfm_maxpool_image_backward(g, ai, gi, di);
    }
}

fn mfm_maxpool_image_backward(g: &ConvGeom, ai: &[u8], gi: &[f32], di: &mut [f32]) {
    let h = g.cin;
    di.fill(0.0);
    g.windows(|o, taps| {
        let (arg, go) = (&ai[o * h..(o + 1) * h], &gi[o * h..(o + 1) * h]);
        for (t, p) in taps.enumerate() {
            let (da, db) = di[2 * p * h..2 * (p + 1) * h].split_at_mut(h);
            let code = 2 * t as u8;
            // Arithmetic selects, so that it vectorizes.
            for (((da, db), r), g) in da.iter_mut().zip(db).zip(arg).zip(go) {
                *da += *g * f32::from(u8::from(*r == code));
                *db += *g * f32::from(u8::from(*r == code + 1));
            }
        }
    });
}

/// Average pooling of `n` images: each window's mean over the pixels inside the image (a
/// `same` window hanging over the border averages fewer, as TensorFlow's `AveragePooling2D`).
///
/// # Shapes
/// - `x`: `[n, h, w, c]`, `y`: `[n, oh, ow, c]`
pub fn avgpool_forward(g: &ConvGeom, x: &[f32], y: &mut [f32]) {
    let (il, ol, c) = (g.in_len(), g.out_len(), g.cin);
    y.par_chunks_mut(ol)
        .zip(x.par_chunks(il))
        .for_each(|(yi, xi)| {
            g.windows(|o, taps| {
                let out = &mut yi[o * c..(o + 1) * c];
                out.fill(0.0);
                let mut count = 0usize;
                for p in taps {
                    for (m, v) in out.iter_mut().zip(&xi[p * c..(p + 1) * c]) {
                        *m += *v;
                    }
                    count += 1;
                }
                let inv = 1.0 / count.max(1) as f32;
                out.iter_mut().for_each(|m| *m *= inv);
            });
        });
}

/// Gradient of [`avgpool_forward`]: each output's gradient spread evenly over its window.
pub fn avgpool_backward(g: &ConvGeom, dy: &[f32], dx: &mut [f32]) {
    let (il, ol, c) = (g.in_len(), g.out_len(), g.cin);
    dx.par_chunks_mut(il)
        .zip(dy.par_chunks(ol))
        .for_each(|(di, gi)| {
            di.fill(0.0);
            g.windows(|o, taps| {
                let taps: Vec<usize> = taps.collect();
                let inv = 1.0 / taps.len().max(1) as f32;
                let go = &gi[o * c..(o + 1) * c];
                for p in taps {
                    for (d, v) in di[p * c..(p + 1) * c].iter_mut().zip(go) {
                        *d += *v * inv;
                    }
                }
            });
        });
}

/// Per-channel sums over rows, in fixed chunks of rows summed in order (f64): of the values,
/// or of their squared deviations from `center`. The loops run across channels, so they
/// vectorize without changing any channel's order of summation.
fn channel_sums(x: &[f32], c: usize, center: Option<&[f32]>) -> Vec<f64> {
    let rows_per = (GRAIN / c).max(1);
    let parts: Vec<Vec<f64>> = x
        .par_chunks(rows_per * c)
        .map(|xc| {
            let mut s = vec![0.0f64; c];
            for row in xc.chunks_exact(c) {
                match center {
                    None => {
                        for (t, v) in s.iter_mut().zip(row) {
                            *t += f64::from(*v);
                        }
                    }
                    Some(m) => {
                        for ((t, v), m) in s.iter_mut().zip(row).zip(m) {
                            let d = f64::from(*v - *m);
                            *t += d * d;
                        }
                    }
                }
            }
            s
        })
        .collect();
    let mut total = vec![0.0f64; c];
    for p in parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Batch statistics of a training step: per-channel mean and biased variance.
#[derive(Debug, Clone, Default)]
pub struct BnStats {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Variance per channel (divided by the row count, as Keras).
    pub var: Vec<f32>,
    /// `1 / sqrt(var + epsilon)`.
    pub inv_std: Vec<f32>,
}

/// BatchNormalization in training mode over the rows of `x` (`[rows, c]`): normalizes with
/// the batch statistics, which it returns for the moving averages and the backward pass.
pub fn bn_train_forward(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
) -> BnStats {
    let rows = (x.len() / c).max(1) as f64;
    let mean: Vec<f32> = channel_sums(x, c, None)
        .iter()
        .map(|s| (s / rows) as f32)
        .collect();
    let var: Vec<f32> = channel_sums(x, c, Some(&mean))
        .iter()
        .map(|s| (s / rows) as f32)
        .collect();
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    bn_apply(x, c, &mean, &inv_std, gamma, beta, y);
    BnStats { mean, var, inv_std }
}

/// `y = (x - mean) * inv_std * gamma + beta`, per channel.
pub fn bn_apply(
    x: &[f32],
    c: usize,
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
) {
    let scale: Vec<f32> = inv_std.iter().zip(gamma).map(|(s, g)| s * g).collect();
    let shift: Vec<f32> = (0..c).map(|j| beta[j] - mean[j] * scale[j]).collect();
    let rows_per = (GRAIN / c).max(1);
    y.par_chunks_mut(rows_per * c)
        .zip(x.par_chunks(rows_per * c))
        .for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_exact_mut(c).zip(xc.chunks_exact(c)) {
                for (((y, x), a), b) in yr.iter_mut().zip(xr).zip(&scale).zip(&shift) {
                    *y = x * a + b;
                }
            }
        });
}

/// Gradient of [`bn_train_forward`]: `dgamma`, `dbeta` (overwritten) and `dx`.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward(
    x: &[f32],
    c: usize,
    stats: &BnStats,
    gamma: &[f32],
    dy: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: Option<&mut [f32]>,
) {
    let rows = (x.len() / c).max(1);
    let (mean, inv) = (&stats.mean, &stats.inv_std);
    let rows_per = (GRAIN / c).max(1);
    let parts: Vec<(Vec<f64>, Vec<f64>)> = x
        .par_chunks(rows_per * c)
        .zip(dy.par_chunks(rows_per * c))
        .map(|(xc, gc)| {
            let (mut sg, mut sb) = (vec![0.0f64; c], vec![0.0f64; c]);
            for (xr, gr) in xc.chunks_exact(c).zip(gc.chunks_exact(c)) {
                let lanes = sg.iter_mut().zip(sb.iter_mut()).zip(xr.iter().zip(gr));
                for (((tg, tb), (x, g)), (m, s)) in lanes.zip(mean.iter().zip(inv)) {
                    *tg += f64::from(g * (x - m) * s);
                    *tb += f64::from(*g);
                }
            }
            (sg, sb)
        })
        .collect();
    let (mut sg, mut sb) = (vec![0.0f64; c], vec![0.0f64; c]);
    for (pg, pb) in parts {
        for j in 0..c {
            sg[j] += pg[j];
            sb[j] += pb[j];
        }
    }
    for j in 0..c {
        dgamma[j] = sg[j] as f32;
        dbeta[j] = sb[j] as f32;
    }
    let Some(dx) = dx else { return };
    let n = rows as f32;
    let k: Vec<f32> = (0..c).map(|j| gamma[j] * inv[j] / n).collect();
    dx.par_chunks_mut(rows_per * c)
        .zip(x.par_chunks(rows_per * c))
        .zip(dy.par_chunks(rows_per * c))
        .for_each(|((dc, xc), gc)| {
            for ((dr, xr), gr) in dc
                .chunks_exact_mut(c)
                .zip(xc.chunks_exact(c))
                .zip(gc.chunks_exact(c))
            {
                let stats = mean.iter().zip(inv).zip(&k);
                let grads = dbeta.iter().zip(dgamma.iter());
                for ((((d, x), g), ((m, s), k)), (db, dg)) in
                    dr.iter_mut().zip(xr).zip(gr).zip(stats).zip(grads)
                {
                    let xhat = (x - m) * s;
                    *d = k * (n * g - db - xhat * dg);
                }
            }
        });
}

/// A counter-based uniform draw in `[0, 1)` from a seed and an index (a 32-bit integer hash,
/// Wellons' `lowbias32`, keyed by the SplitMix64 of the seed): dropout masks need no stored
/// state, come out the same in the backward pass and after a resume, and vectorize.
#[inline]
pub fn uniform(seed: u64, i: u64) -> f32 {
    uniform_keyed(key(seed), i)
}

fn key(seed: u64) -> (u32, u32) {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z as u32, (z >> 32) as u32)
}

#[inline]
fn uniform_keyed((k0, k1): (u32, u32), i: u64) -> f32 {
    let mut x = (i as u32) ^ k0 ^ ((i >> 32) as u32).wrapping_mul(0x9E37_79B9);
    for _ in 0..2 {
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^= x >> 16;
        x ^= k1;
    }
    (x >> 8) as f32 / (1u32 << 24) as f32
}

/// Inverted dropout: keeps each value with probability `1 - rate`, scaled by `1 / (1 - rate)`;
/// `dy -> dx` is the same map, so the backward pass calls it too.
pub fn dropout(x: &[f32], rate: f32, seed: u64, y: &mut [f32]) {
    if rate <= 0.0 {
        y.copy_from_slice(x);
        return;
    }
    let scale = if rate < 1.0 { 1.0 / (1.0 - rate) } else { 0.0 };
    let k = key(seed);
    y.par_chunks_mut(GRAIN)
        .zip(x.par_chunks(GRAIN))
        .enumerate()
        .for_each(|(ci, (yc, xc))| {
            let base = (ci * GRAIN) as u64;
            for (i, (o, v)) in yc.iter_mut().zip(xc).enumerate() {
                let keep = f32::from(u8::from(uniform_keyed(k, base + i as u64) >= rate));
                *o = v * scale * keep;
            }
        });
}

/// ReLU in place.
pub fn relu(y: &mut [f32]) {
    y.par_chunks_mut(GRAIN).for_each(|c| {
        for v in c {
            *v = v.max(0.0);
        }
    });
}

/// Gradient of ReLU from its output, in place on `dy`.
pub fn relu_backward(y: &[f32], dy: &mut [f32]) {
    dy.par_chunks_mut(GRAIN)
        .zip(y.par_chunks(GRAIN))
        .for_each(|(d, y)| {
            // A select, not a branch: signs are random, so a branch would mispredict about
            // half the time (this loop took 12% of the separable net's step that way).
            for (d, y) in d.iter_mut().zip(y) {
                *d = if *y <= 0.0 { 0.0 } else { *d };
            }
        });
}

/// Global average pooling: `[n, p, c] -> [n, c]`.
pub fn gap_forward(x: &[f32], p: usize, c: usize, y: &mut [f32]) {
    for (yi, xi) in y.chunks_exact_mut(c).zip(x.chunks_exact(p * c)) {
        yi.fill(0.0);
        for row in xi.chunks_exact(c) {
            for (o, v) in yi.iter_mut().zip(row) {
                *o += v;
            }
        }
        for o in yi.iter_mut() {
            *o /= p as f32;
        }
    }
}

/// Gradient of [`gap_forward`].
pub fn gap_backward(dy: &[f32], p: usize, c: usize, dx: &mut [f32]) {
    for (di, gi) in dx.chunks_exact_mut(p * c).zip(dy.chunks_exact(c)) {
        for row in di.chunks_exact_mut(c) {
            for (d, g) in row.iter_mut().zip(gi) {
                *d = g / p as f32;
            }
        }
    }
}

/// Keras' Flatten of a channels-first model: `[n, p, c] -> [n, c * p]` (channel-major), or back
/// with `inverse`.
pub fn flatten_chw(x: &[f32], p: usize, c: usize, y: &mut [f32], inverse: bool) {
    for (yi, xi) in y.chunks_exact_mut(p * c).zip(x.chunks_exact(p * c)) {
        for q in 0..p {
            for j in 0..c {
                if inverse {
                    yi[q * c + j] = xi[j * p + q];
                } else {
                    yi[j * p + q] = xi[q * c + j];
                }
            }
        }
    }
}

/// Depthwise convolution (depth multiplier 1, no bias) with a `[k, k, c]` kernel, reusing the
/// convolution geometry (`cin == cout == c`). At stride 1 an output row's taps are flat
/// multiply-adds over whole rows ([`RowTaps`]), whatever the channel count; other strides run
/// tap by tap over channel rows.
///
/// # Shapes
/// - `x`: `[n, h, w, c]`, `w`: `[k, k, c]`, `y`: `[n, oh, ow, c]`
pub fn depthwise_forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    let rows = RowTaps::new(g, w);
    y.par_chunks_mut(g.out_len())
        .zip(x.par_chunks(g.in_len()))
        .for_each(|(yi, xi)| depthwise_image(g, &rows, w, xi, yi, false));
}

/// One image of a depthwise convolution, `dst` overwritten: the output from the input
/// (`to_input` false), or the input gradient from the output gradient (`to_input` true: the
/// same taps, the transposed direction).
fn depthwise_image(
    g: &ConvGeom,
    rows: &Option<RowTaps>,
    w: &[f32],
    src: &[f32],
    dst: &mut [f32],
    to_input: bool,
) {
    let c = g.cin;
    dst.fill(0.0);
    // (destination, source) offsets of an (output, input) pair.
    let pick = |o: usize, i: usize| if to_input { (i, o) } else { (o, i) };
    match rows {
        Some(rows) => rows.each(|t, r, o, i, len| {
            let (d, s) = pick(o, i);
            mul_add(
                &mut dst[d..d + len],
                &src[s..s + len],
                &rows.tap(t)[r..r + len],
            );
        }),
        None => depthwise_taps(g, |o, i, t| {
            let (d, s) = pick(o * c, i * c);
            mul_add(&mut dst[d..d + c], &src[s..s + c], &w[t * c..(t + 1) * c]);
        }),
    }
}

/// Gradient of [`depthwise_forward`]: `dw` (overwritten) and `dx` when given.
///
/// # Shapes
/// - `x`, `dx`: `[n, h, w, c]`, `w`, `dw`: `[k, k, c]`, `dy`: `[n, oh, ow, c]`
pub fn depthwise_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dx: Option<&mut [f32]>,
) {
    let c = g.cin;
    let wl = w.len();
    let rows = RowTaps::new(g, w);
    // Per-image partial kernel gradients, summed in image order. At stride 1 each tap first
    // sums into one accumulator per output column (a flat multiply-add per row), folded into
    // the tap's channels at the end.
    let parts: Vec<Vec<f32>> = x
        .par_chunks(g.in_len())
        .zip(dy.par_chunks(g.out_len()))
        .map(|(xi, gi)| {
            let mut p = vec![0.0f32; wl];
            match &rows {
                Some(rows) => {
                    let row = g.ow * c;
                    let mut acc = vec![0.0f32; wl / c * row];
                    rows.each(|t, r, o, i, len| {
                        let at = t * row + r;
                        mul_add(&mut acc[at..at + len], &xi[i..i + len], &gi[o..o + len]);
                    });
                    for (pt, at) in p.chunks_exact_mut(c).zip(acc.chunks_exact(row)) {
                        for col in at.chunks_exact(c) {
                            for (p, a) in pt.iter_mut().zip(col) {
                                *p += a;
                            }
                        }
                    }
                }
                None => depthwise_taps(g, |o, i, t| {
                    let ps = &mut p[t * c..(t + 1) * c];
                    mul_add(ps, &xi[i * c..(i + 1) * c], &gi[o * c..(o + 1) * c]);
                }),
            }
            p
        })
        .collect();
    dw.fill(0.0);
    for p in parts {
        for (d, v) in dw.iter_mut().zip(p) {
            *d += v;
        }
    }
    if let Some(dx) = dx {
        dx.par_chunks_mut(g.in_len())
            .zip(dy.par_chunks(g.out_len()))
            .for_each(|(di, gi)| depthwise_image(g, &rows, w, gi, di, true));
    }
}

/// `acc += a * b`, elementwise.
#[inline]
fn mul_add(acc: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, x), y) in acc.iter_mut().zip(a).zip(b) {
        *o += x * y;
    }
}

/// A stride-1 depthwise kernel laid out for whole-row work: each tap's `c` weights repeated
/// across one output row (`ow * c` values), so that the in-bounds stretch of an output row
/// meets the matching stretch of an input row in one flat multiply-add, for any channel count.
struct RowTaps<'g> {
    g: &'g ConvGeom,
    /// `[k * k, ow * c]`.
    rows: Vec<f32>,
}

impl<'g> RowTaps<'g> {
    /// `None` unless the stride is 1 (then an output row's pixels read consecutive inputs).
    fn new(g: &'g ConvGeom, w: &[f32]) -> Option<Self> {
        if g.stride != 1 {
            return None;
        }
        let rows = w
            .chunks_exact(g.cin)
            .flat_map(|wt| wt.iter().copied().cycle().take(g.ow * g.cin))
            .collect();
        Some(Self { g, rows })
    }

    /// Tap `t`'s weights across an output row.
    fn tap(&self, t: usize) -> &[f32] {
        let row = self.g.ow * self.g.cin;
        &self.rows[t * row..(t + 1) * row]
    }

    /// Calls `f(tap, offset in the output row, offset in the output image, offset in the input
    /// image, length)` (offsets and length in values) for every tap's in-bounds stretch of every
    /// output row.
    fn each(&self, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
        let g = self.g;
        let c = g.cin;
        for oy in 0..g.oh {
            for ky in 0..g.k {
                let iy = (oy + ky) as isize - g.pad_top as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                for kx in 0..g.k {
                    // Input column `ox + kx - pad_left` must lie in `0..w`.
                    let ox0 = g.pad_left.saturating_sub(kx);
                    let ox1 = (g.w + g.pad_left).saturating_sub(kx).min(g.ow);
                    if ox0 >= ox1 {
                        continue;
                    }
                    let ix0 = ox0 + kx - g.pad_left;
                    let i = (iy as usize * g.w + ix0) * c;
                    let r = ox0 * c;
                    f(ky * g.k + kx, r, oy * g.ow * c + r, i, (ox1 - ox0) * c);
                }
            }
        }
    }
}

/// Calls `f(output pixel, input pixel, kernel tap)` for every in-bounds tap of one image, tap
/// by tap along output rows (the bounds are worked out once per row and tap).
fn depthwise_taps(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize)) {
    for oy in 0..g.oh {
        for ky in 0..g.k {
            let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
            if iy < 0 || iy >= g.h as isize {
                continue;
            }
            let row = iy as usize * g.w;
            for kx in 0..g.k {
                let t = ky * g.k + kx;
                for ox in 0..g.ow {
                    let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                    if ix >= 0 && ix < g.w as isize {
                        f(oy * g.ow + ox, row + ix as usize, t);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mfm_keeps_the_larger_half_and_routes_its_gradient() {
        // Two pixels of four channels: channels 0,1 compete with 2,3.
        let x = [1.0f32, 5.0, -3.0, 0.0, 2.0, 4.0, 6.0, -7.0];
        let mut y = [0.0; 4];
        mfm_forward(&x, 4, &mut y);
        assert_eq!(y, [1.0, 5.0, 6.0, 4.0]);
        let mut dx = [9.0; 8];
        mfm_backward(&x, 4, &[1.0, 2.0, 3.0, 4.0], &mut dx);
        assert_eq!(dx, [1.0, 2.0, 0.0, 0.0, 0.0, 4.0, 3.0, 0.0]);
    }

    /// The fused MFM + max pooling pass against the two layers run one after the other: the
    /// same outputs and the same input gradients (as values; the winners' order of ties is
    /// the layers'), for windows that tile, overhang the border (`same` on an odd side) and
    /// overlap, on inputs with many ties between halves and between window positions.
    #[test]
    fn fused_mfm_and_pooling_equal_the_two_layers() {
        use crate::engine::conv::tests::{geom, values};
        use crate::layers::Padding;
        let cases = [
            (8, 8, 2, 2, Padding::Valid),
            (7, 7, 2, 2, Padding::Same),
            (7, 9, 3, 2, Padding::Same),
            (9, 7, 3, 2, Padding::Valid),
            (6, 6, 3, 1, Padding::Same),
        ];
        for (i, (h, w, k, s, p)) in cases.into_iter().enumerate() {
            for half in [1, 5, 16] {
                let g = geom(h, w, half, k, s, p, half);
                let n = 3;
                // Values on a coarse grid: most windows and pixels hold ties.
                let x: Vec<f32> = values(n * h * w * 2 * half, i as u32)
                    .iter()
                    .map(|v| (v * 2.0).round())
                    .collect();
                let dy = values(n * g.out_len(), 77 + i as u32);
                let mut mid = vec![0.0; n * g.in_len()];
                let mut want = vec![0.0; n * g.out_len()];
                mfm_forward(&x, 2 * half, &mut mid);
                maxpool_forward(&g, &mid, &mut want);
                let (mut got, mut arg) = (vec![0.0; want.len()], vec![0u8; want.len()]);
                mfm_maxpool_forward(&g, &x, &mut got, &mut arg);
                assert_eq!(got, want, "case {i}, {half} channels: output");

                let mut dmid = vec![0.0; mid.len()];
                let mut want_dx = vec![0.0; x.len()];
                maxpool_backward(&g, &mid, &want, &dy, &mut dmid);
                mfm_backward(&x, 2 * half, &dmid, &mut want_dx);
                let mut dx = vec![9.0; x.len()];
                mfm_maxpool_backward(&g, &arg, &dy, &mut dx);
                assert_eq!(dx, want_dx, "case {i}, {half} channels: input gradient");
                assert!(dx.iter().any(|v| *v != 0.0), "case {i}: no gradient routed");
            }
        }
    }

    /// Both paths of the depthwise convolution (stride 1 by whole rows, other strides by
    /// taps) against its f64 definition: the output, the kernel gradient and the input
    /// gradient, with `valid` and `same` padding and channel counts from 1 to 33.
    #[test]
    fn depthwise_matches_its_definition() {
        use crate::engine::conv::tests::{geom, values};
        use crate::layers::Padding;
        let cases = [
            (9, 7, 3, 3, 1, Padding::Valid),
            (9, 7, 32, 3, 1, Padding::Valid),
            (8, 6, 5, 3, 1, Padding::Same),
            (6, 9, 1, 5, 1, Padding::Same),
            (8, 8, 33, 3, 2, Padding::Same),
            (7, 9, 4, 3, 2, Padding::Valid),
        ];
        for (h, wd, c, k, s, p) in cases {
            let g = geom(h, wd, c, k, s, p, c);
            let n = 3;
            let x = values(n * g.in_len(), 7);
            let w = values(k * k * c, 8);
            let dy = values(n * g.out_len(), 9);
            let (mut ry, mut rdw, mut rdx) = (
                vec![0.0f64; dy.len()],
                vec![0.0f64; w.len()],
                vec![0.0f64; x.len()],
            );
            for i in 0..n {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        for t in 0..k * k {
                            let iy = (oy * s + t / k) as isize - g.pad_top as isize;
                            let ix = (ox * s + t % k) as isize - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            for j in 0..c {
                                let xi = i * g.in_len() + (iy as usize * wd + ix as usize) * c + j;
                                let yi = i * g.out_len() + (oy * g.ow + ox) * c + j;
                                let wi = t * c + j;
                                ry[yi] += x[xi] as f64 * w[wi] as f64;
                                rdw[wi] += x[xi] as f64 * dy[yi] as f64;
                                rdx[xi] += w[wi] as f64 * dy[yi] as f64;
                            }
                        }
                    }
                }
            }
            let mut y = vec![f32::NAN; dy.len()];
            depthwise_forward(&g, &x, &w, &mut y);
            let (mut dw, mut dx) = (vec![f32::NAN; w.len()], vec![f32::NAN; x.len()]);
            depthwise_backward(&g, &x, &w, &dy, &mut dw, Some(&mut dx));
            for (what, got, want) in [("y", &y, &ry), ("dw", &dw, &rdw), ("dx", &dx, &rdx)] {
                for (a, b) in got.iter().zip(want.iter()) {
                    assert!(
                        (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{what} of {g:?}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn maxpool_same_pads_never_win() {
        // 3x3 single channel, 2x2 windows, same: output 2x2.
        let g = ConvGeom {
            h: 3,
            w: 3,
            cin: 1,
            k: 2,
            stride: 2,
            pad_top: 0,
            pad_left: 0,
            oh: 2,
            ow: 2,
            cout: 1,
        };
        let x: Vec<f32> = (0..9).map(|v| -(v as f32)).collect();
        let mut y = [0.0; 4];
        maxpool_forward(&g, &x, &mut y);
        assert_eq!(y, [0.0, -2.0, -6.0, -8.0]);
        let mut dx = [0.0; 9];
        maxpool_backward(&g, &x, &y, &[1.0, 2.0, 3.0, 4.0], &mut dx);
        assert_eq!(dx, [1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 4.0]);
    }

    #[test]
    fn batchnorm_gradient_matches_finite_differences() {
        let c = 3;
        let x: Vec<f32> = (0..24)
            .map(|i| ((i * 37 % 11) as f32) * 0.3 - 1.0)
            .collect();
        let gamma = [1.5f32, -0.5, 2.0];
        let beta = [0.1f32, 0.2, -0.3];
        let w: Vec<f32> = (0..24).map(|i| ((i * 13 % 7) as f32) * 0.2 - 0.6).collect();
        let loss = |x: &[f32]| -> f64 {
            let mut y = vec![0.0; x.len()];
            bn_train_forward(x, c, &gamma, &beta, 1e-3, &mut y);
            y.iter()
                .zip(&w)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let mut y = vec![0.0; 24];
        let stats = bn_train_forward(&x, c, &gamma, &beta, 1e-3, &mut y);
        let (mut dg, mut db, mut dx) = ([0.0; 3], [0.0; 3], vec![0.0; 24]);
        bn_backward(&x, c, &stats, &gamma, &w, &mut dg, &mut db, Some(&mut dx));
        for i in 0..24 {
            let (mut a, mut b) = (x.clone(), x.clone());
            a[i] += 1e-2;
            b[i] -= 1e-2;
            let fd = (loss(&a) - loss(&b)) / 2e-2;
            assert!(
                (dx[i] as f64 - fd).abs() < 2e-3,
                "dx[{i}] {} vs {fd}",
                dx[i]
            );
        }
        for (j, got) in db.iter().enumerate() {
            let want: f32 = w.iter().skip(j).step_by(c).sum();
            assert!((got - want).abs() < 1e-5);
        }
    }

    #[test]
    fn dropout_keeps_about_one_minus_rate_and_scales() {
        let x = vec![1.0f32; 100_000];
        let mut y = vec![0.0; x.len()];
        dropout(&x, 0.75, 7, &mut y);
        let kept = y.iter().filter(|v| **v > 0.0).count() as f64 / x.len() as f64;
        assert!((kept - 0.25).abs() < 0.01, "{kept}");
        assert!(y.iter().all(|v| *v == 0.0 || *v == 4.0));
        let mut y2 = vec![0.0; x.len()];
        dropout(&x, 0.75, 7, &mut y2);
        assert_eq!(y, y2, "same seed, same mask");
    }

    #[test]
    fn flatten_is_channel_major_and_inverts() {
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 3 pixels x 2 channels
        let mut y = [0.0; 6];
        flatten_chw(&x, 3, 2, &mut y, false);
        assert_eq!(y, [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let mut back = [0.0; 6];
        flatten_chw(&y, 3, 2, &mut back, true);
        assert_eq!(back, x);
    }
}
