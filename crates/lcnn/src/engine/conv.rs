//! 2-D convolution, channels-last (`[N, H, W, C]`), on [`sgemm`](super::gemm::sgemm): the
//! input patches of a block of output pixels are gathered into a matrix (im2col, rows
//! `(ky, kx, c)`, contiguous runs of channels copied at once) and multiplied by the kernel
//! stored as `[kh, kw, in, out]` (TensorFlow's HWIO). 1x1 stride-1 convolutions skip the gather:
//! in channels-last a pixel's channels are already a matrix row. Wide 3x3 stride-1 layers
//! take the [`winograd`] path instead, forward and backward. A convolution whose output only the
//! next layer reads can hand it over chunk by chunk instead of storing it ([`forward_chunked`],
//! and [`backward_from`] with the output gradient made chunk by chunk).
//!
//! Work is split over fixed chunks of images (never over the thread count), and weight
//! gradients are summed per chunk and then across chunks in chunk order, so results do not
//! depend on how many threads run them.

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::gemm::{sgemm, Mat};
use super::winograd;

/// Values of im2col gathered at once (the gathered block stays in the core's L2 cache)...
const BLOCK_VALUES: usize = 256 * 1024;

/// ... but at least this many rows: every multiply packs the whole kernel, which must be
/// amortized over enough output pixels (VGG's 3x3x512 patches would otherwise give 14 rows).
const MIN_BLOCK_ROWS: usize = 512;

/// Output pixels per chunk of work (at least one image).
const CHUNK_ROWS: usize = 1024;

/// Chunks a batch is at least cut into (when it has that many images), so that late layers
/// with few pixels per image still spread over the cores. Fixed, not the thread count, so
/// results do not depend on it.
const MIN_CHUNKS: usize = 4;

thread_local! {
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A chunk's output (or output gradient) when the whole tensor is never stored.
    static CHUNK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The shape of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub cin: usize,
    /// Square kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero rows above the input (Keras/TensorFlow `same`: the smaller half).
    pub pad_top: usize,
    /// Zero columns left of the input.
    pub pad_left: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Output channels.
    pub cout: usize,
}

impl ConvGeom {
    /// Patch length: `k * k * cin`.
    pub fn kdim(&self) -> usize {
        self.k * self.k * self.cin
    }

    /// Values per input image.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.cin
    }

    /// Values per output image.
    pub fn out_len(&self) -> usize {
        self.oh * self.ow * self.cout
    }

    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad_top == 0 && self.pad_left == 0
    }

    /// Images per chunk of work in a batch of `n`.
    pub fn chunk_images(&self, n: usize) -> usize {
        (CHUNK_ROWS / (self.oh * self.ow).max(1))
            .min(n.div_ceil(MIN_CHUNKS))
            .max(1)
    }

    fn block_rows(&self) -> usize {
        (BLOCK_VALUES / self.kdim()).clamp(MIN_BLOCK_ROWS, 4096)
    }

    /// The in-bounds kernel taps `k0..k1` of output position `o` along one axis (`pad` before,
    /// `len` long) and the input position of tap `k0`.
    pub(super) fn span(&self, o: usize, pad: usize, len: usize) -> (usize, usize, usize) {
        let start = (o * self.stride) as isize - pad as isize;
        let k0 = (-start).max(0) as usize;
        let k1 = ((len as isize - start).min(self.k as isize)).max(0) as usize;
        (k0.min(k1), k1, (start + k0 as isize).max(0) as usize)
    }

    /// Gathers the patches of output rows `r0..r1` (counted from the first image of `x`).
    fn im2col(&self, x: &[f32], r0: usize, r1: usize, col: &mut [f32]) {
        let (kd, per_img, c) = (self.kdim(), self.oh * self.ow, self.cin);
        for r in r0..r1 {
            let (img, p) = (r / per_img, r % per_img);
            let (oy, ox) = (p / self.ow, p % self.ow);
            let xi = &x[img * self.in_len()..(img + 1) * self.in_len()];
            let dst = &mut col[(r - r0) * kd..(r - r0 + 1) * kd];
            let (ky0, ky1, iy0) = self.span(oy, self.pad_top, self.h);
            let (kx0, kx1, ix0) = self.span(ox, self.pad_left, self.w);
            let row_len = self.k * c;
            dst[..ky0 * row_len].fill(0.0);
            dst[ky1 * row_len..].fill(0.0);
            for ky in ky0..ky1 {
                let row = &mut dst[ky * row_len..(ky + 1) * row_len];
                row[..kx0 * c].fill(0.0);
                row[kx1 * c..].fill(0.0);
                let src = ((iy0 + ky - ky0) * self.w + ix0) * c;
                row[kx0 * c..kx1 * c].copy_from_slice(&xi[src..src + (kx1 - kx0) * c]);
            }
        }
    }

    /// Adds the patch gradients of rows `r0..r1` back into the image gradient `dx`.
    fn col2im_add(&self, dcol: &[f32], r0: usize, r1: usize, dx: &mut [f32]) {
        let (kd, per_img, c) = (self.kdim(), self.oh * self.ow, self.cin);
        for r in r0..r1 {
            let (img, p) = (r / per_img, r % per_img);
            let (oy, ox) = (p / self.ow, p % self.ow);
            let di = &mut dx[img * self.in_len()..(img + 1) * self.in_len()];
            let src = &dcol[(r - r0) * kd..(r - r0 + 1) * kd];
            let (ky0, ky1, iy0) = self.span(oy, self.pad_top, self.h);
            let (kx0, kx1, ix0) = self.span(ox, self.pad_left, self.w);
            let row_len = self.k * c;
            for ky in ky0..ky1 {
                let s = &src[ky * row_len + kx0 * c..ky * row_len + kx1 * c];
                let d0 = ((iy0 + ky - ky0) * self.w + ix0) * c;
                for (d, v) in di[d0..d0 + s.len()].iter_mut().zip(s) {
                    *d += v;
                }
            }
        }
    }
}

/// `f` on this thread's scratch buffer, grown to at least `len` values (the im2col patches,
/// or the Winograd path's transformed tiles).
pub(super) fn with_cols<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_scratch(&COLS, len, f)
}

/// `f` on `len` values of this thread's buffer `buf`, grown as needed and kept.
fn with_scratch<R>(
    buf: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    buf.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < len {
            c.resize(len, 0.0);
        }
        f(&mut c[..len])
    })
}

/// `y = conv(x, w) + b` for `n` images.
///
/// # Shapes
/// - `x`: `[n, h, w, cin]`, `w`: `[k, k, cin, cout]`, `b`: `[cout]`
/// - `y`: `[n, oh, ow, cout]`
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    if winograd::eligible(g) {
        return winograd::forward(g, x, w, b, y);
    }
    let chunk = g.chunk_images(x.len() / g.in_len());
    y.par_chunks_mut(chunk * g.out_len())
        .zip(x.par_chunks(chunk * g.in_len()))
        .for_each(|(yc, xc)| forward_chunk(g, xc, w, b, yc));
}

/// [`forward`] for a layer whose output only the next layer reads: each chunk of
/// [`ConvGeom::chunk_images`] images is computed into a scratch buffer (still in the core's
/// cache) and handed to `emit` with that chunk's item of `sinks` (one item per chunk, in
/// order), so the whole output is never stored. Not for [`winograd::eligible`] shapes. `emit`
/// runs inside the chunk's task, with the scratch buffer borrowed: it must not start parallel
/// work of its own (a stolen task on this thread would find the buffer taken).
///
/// # Shapes
/// - `x`: `[n, h, w, cin]`, `w`: `[k, k, cin, cout]`, `b`: `[cout]`
/// - `emit`'s slice: `[images of the chunk, oh, ow, cout]`
pub fn forward_chunked<S: Send>(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    sinks: impl IndexedParallelIterator<Item = S>,
    emit: impl Fn(S, &[f32]) + Sync,
) {
    debug_assert!(!winograd::eligible(g));
    let chunk = g.chunk_images(x.len() / g.in_len());
    debug_assert_eq!(
        sinks.len(),
        x.len().div_ceil(chunk * g.in_len()),
        "one sink per chunk"
    );
    x.par_chunks(chunk * g.in_len())
        .zip(sinks)
        .for_each(|(xc, sink)| {
            let len = xc.len() / g.in_len() * g.out_len();
            with_scratch(&CHUNK, len, |yc| {
                forward_chunk(g, xc, w, b, yc);
                emit(sink, yc);
            });
        });
}

/// The convolution of one chunk of images `xc` into `yc` (im2col or pointwise).
fn forward_chunk(g: &ConvGeom, xc: &[f32], w: &[f32], b: Option<&[f32]>, yc: &mut [f32]) {
    let (kd, cout) = (g.kdim(), g.cout);
    let rows = yc.len() / cout;
    if let Some(b) = b {
        for row in yc.chunks_exact_mut(cout) {
            row.copy_from_slice(b);
        }
    }
    let acc = b.is_some();
    if g.pointwise() {
        sgemm(
            rows,
            cout,
            kd,
            Mat::new(xc, kd),
            Mat::new(w, cout),
            yc,
            cout,
            acc,
            1,
        );
        return;
    }
    let block = g.block_rows();
    with_cols(block * kd, |col| {
        for r0 in (0..rows).step_by(block) {
            let r1 = (r0 + block).min(rows);
            g.im2col(xc, r0, r1, col);
            let out = &mut yc[r0 * cout..r1 * cout];
            sgemm(
                r1 - r0,
                cout,
                kd,
                Mat::new(col, kd),
                Mat::new(w, cout),
                out,
                cout,
                acc,
                1,
            );
        }
    });
}

/// A convolution's output gradient: the whole tensor, or made chunk by chunk where the layer
/// after it ran in the same pass ([`forward_chunked`]).
#[derive(Clone, Copy)]
pub enum OutputGrad<'a> {
    /// `[n, oh, ow, cout]`.
    Tensor(&'a [f32]),
    /// Writes the gradient of images `range` (`[range.len(), oh, ow, cout]`) into the slice;
    /// serially, as [`forward_chunked`]'s `emit`.
    Chunks(&'a (dyn Fn(Range<usize>, &mut [f32]) + Sync)),
}

/// Per-chunk gradient buffers of one convolution and its transposed kernel, kept between
/// steps.
#[derive(Debug, Default)]
pub struct Partials(pub(super) Vec<f32>, pub(super) Vec<f32>);

/// Gradients of a convolution: `dw` and `db` (overwritten), and `dx` (overwritten) when given.
///
/// # Shapes
/// - `x`: `[n, h, w, cin]`, `dy`: `[n, oh, ow, cout]`, `w`: `[k, k, cin, cout]`
/// - `dw`: `[k, k, cin, cout]`, `db`: `[cout]`, `dx`: `[n, h, w, cin]`
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dx: Option<&mut [f32]>,
    parts: &mut Partials,
) {
    if winograd::eligible(g) {
        return winograd::backward(g, x, w, dy, dw, db, dx, parts);
    }
    backward_from(g, x, w, OutputGrad::Tensor(dy), dw, db, dx, parts);
}

/// [`backward`] from an output gradient that may be made chunk by chunk (the gradient of a
/// [`forward_chunked`] layer). Not for [`winograd::eligible`] shapes.
#[allow(clippy::too_many_arguments)]
pub fn backward_from(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: OutputGrad,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dx: Option<&mut [f32]>,
    parts: &mut Partials,
) {
    debug_assert!(!winograd::eligible(g));
    let n = x.len() / g.in_len();
    let chunk = g.chunk_images(n);
    let tasks = n.div_ceil(chunk);
    let (kd, cout) = (g.kdim(), g.cout);
    let part_len = kd * cout + cout;
    parts.0.resize(tasks * part_len, 0.0);
    // The kernel as `[cout, kd]`: the input-gradient multiply reads it row-major, which packs
    // far faster than a strided transpose.
    let wt = &mut parts.1;
    if dx.is_some() {
        wt.resize(kd * cout, 0.0);
        for (k, row) in w.chunks_exact(cout).enumerate() {
            for (o, v) in row.iter().enumerate() {
                wt[o * kd + k] = *v;
            }
        }
    }
    let wt = &parts.1;
    let task = |i: usize, part: &mut [f32], dxc: Option<&mut [f32]>| {
        let (i0, i1) = (i * chunk, ((i + 1) * chunk).min(n));
        let xc = &x[i0 * g.in_len()..i1 * g.in_len()];
        match dy {
            OutputGrad::Tensor(dy) => {
                let dyc = &dy[i0 * g.out_len()..i1 * g.out_len()];
                backward_chunk(g, xc, wt, dyc, part, dxc);
            }
            OutputGrad::Chunks(make) => with_scratch(&CHUNK, (i1 - i0) * g.out_len(), |dyc| {
                make(i0..i1, dyc);
                backward_chunk(g, xc, wt, dyc, part, dxc);
            }),
        }
    };
    match dx {
        Some(dx) => parts
            .0
            .par_chunks_mut(part_len)
            .zip(dx.par_chunks_mut(chunk * g.in_len()))
            .enumerate()
            .for_each(|(i, (p, d))| task(i, p, Some(d))),
        None => parts
            .0
            .par_chunks_mut(part_len)
            .enumerate()
            .for_each(|(i, p)| task(i, p, None)),
    }
    reduce_parts(&parts.0, part_len, dw, db);
}

/// The gradients of one chunk of images: `part` (`[dw | db]`, overwritten) from the input `xc`
/// and output gradient `dyc`, and `dxc` (overwritten) when given, from the kernel transposed
/// (`wt`, `[cout, kd]`).
fn backward_chunk(
    g: &ConvGeom,
    xc: &[f32],
    wt: &[f32],
    dyc: &[f32],
    part: &mut [f32],
    dxc: Option<&mut [f32]>,
) {
    let (kd, cout) = (g.kdim(), g.cout);
    let rows = dyc.len() / cout;
    let (dwp, dbp) = part.split_at_mut(kd * cout);
    bias_gradient(dyc, dbp);
    if g.pointwise() {
        sgemm(
            kd,
            cout,
            rows,
            Mat::t(xc, kd),
            Mat::new(dyc, cout),
            dwp,
            cout,
            false,
            1,
        );
        if let Some(dxc) = dxc {
            sgemm(
                rows,
                kd,
                cout,
                Mat::new(dyc, cout),
                Mat::new(wt, kd),
                dxc,
                kd,
                false,
                1,
            );
        }
        return;
    }
    let block = g.block_rows();
    let mut dxc = dxc;
    if let Some(d) = dxc.as_deref_mut() {
        d.fill(0.0);
    }
    with_cols(2 * block * kd, |buf| {
        let (col, dcol) = buf.split_at_mut(block * kd);
        for r0 in (0..rows).step_by(block) {
            let r1 = (r0 + block).min(rows);
            let dyb = &dyc[r0 * cout..r1 * cout];
            g.im2col(xc, r0, r1, col);
            let m = r1 - r0;
            sgemm(
                kd,
                cout,
                m,
                Mat::t(col, kd),
                Mat::new(dyb, cout),
                dwp,
                cout,
                r0 > 0,
                1,
            );
            if let Some(d) = dxc.as_deref_mut() {
                sgemm(
                    m,
                    kd,
                    cout,
                    Mat::new(dyb, cout),
                    Mat::new(wt, kd),
                    dcol,
                    kd,
                    false,
                    1,
                );
                g.col2im_add(dcol, r0, r1, d);
            }
        }
    });
}

/// `db` (overwritten) = the sum of the rows of `dy` (`[pixels, cout]`).
pub(super) fn bias_gradient(dy: &[f32], db: &mut [f32]) {
    db.fill(0.0);
    for row in dy.chunks_exact(db.len()) {
        for (s, v) in db.iter_mut().zip(row) {
            *s += v;
        }
    }
}

/// Sums per-chunk `[dw | db]` buffers in chunk order into `dw` and `db`.
pub fn reduce_parts(parts: &[f32], part_len: usize, dw: &mut [f32], db: Option<&mut [f32]>) {
    let nw = dw.len();
    let sum_into = |out: &mut [f32], offset: usize| {
        let len = out.len();
        out.copy_from_slice(&parts[offset..offset + len]);
        for p in parts.chunks_exact(part_len).skip(1) {
            for (o, v) in out.iter_mut().zip(&p[offset..offset + len]) {
                *o += v;
            }
        }
    };
    const BLOCK: usize = 16 * 1024;
    dw.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(i, out)| sum_into(out, i * BLOCK));
    if let Some(db) = db {
        sum_into(db, nw);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layers::Padding;

    /// Direct convolution in f64 (the definition), channels-last.
    pub fn naive(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let n = x.len() / g.in_len();
        let mut y = vec![0.0f32; n * g.out_len()];
        for i in 0..n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for o in 0..g.cout {
                        let mut s = b[o] as f64;
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                for c in 0..g.cin {
                                    let xv = x[i * g.in_len()
                                        + (iy as usize * g.w + ix as usize) * g.cin
                                        + c];
                                    let wv = w[((ky * g.k + kx) * g.cin + c) * g.cout + o];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[i * g.out_len() + (oy * g.ow + ox) * g.cout + o] = s as f32;
                    }
                }
            }
        }
        y
    }

    pub fn geom(
        h: usize,
        w: usize,
        cin: usize,
        k: usize,
        s: usize,
        p: Padding,
        cout: usize,
    ) -> ConvGeom {
        ConvGeom {
            h,
            w,
            cin,
            k,
            stride: s,
            pad_top: p.pads(h, k, s).0,
            pad_left: p.pads(w, k, s).0,
            oh: p.output_len(h, k, s).unwrap(),
            ow: p.output_len(w, k, s).unwrap(),
            cout,
        }
    }

    pub fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    const CASES: [(usize, usize, usize, usize, usize, Padding, usize); 6] = [
        (9, 7, 3, 3, 1, Padding::Same, 5),
        (8, 8, 2, 3, 2, Padding::Same, 4),
        (7, 7, 3, 3, 2, Padding::Same, 4),
        (6, 5, 4, 1, 1, Padding::Valid, 6),
        (11, 11, 1, 5, 1, Padding::Same, 8),
        (6, 6, 2, 3, 1, Padding::Valid, 3),
    ];

    #[test]
    fn forward_matches_the_direct_convolution() {
        for (h, w, c, k, s, p, o) in CASES {
            let g = geom(h, w, c, k, s, p, o);
            let n = 3;
            let x = values(n * g.in_len(), 1);
            let wt = values(g.kdim() * o, 2);
            let b = values(o, 3);
            let mut y = vec![0.0; n * g.out_len()];
            forward(&g, &x, &wt, Some(&b), &mut y);
            close(&y, &naive(&g, &x, &wt, &b), &format!("{g:?}"));
        }
    }

    /// `[dw, db, dx]` of [`backward`] (overwriting NaNs).
    pub fn gradients(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32]) -> [Vec<f32>; 3] {
        let (mut dw, mut db, mut dx) = (
            vec![f32::NAN; w.len()],
            vec![f32::NAN; g.cout],
            vec![f32::NAN; x.len()],
        );
        let mut parts = Partials::default();
        backward(
            g,
            x,
            w,
            dy,
            &mut dw,
            Some(&mut db),
            Some(&mut dx),
            &mut parts,
        );
        [dw, db, dx]
    }

    /// A layer wide enough for the Winograd path ([`winograd::eligible`]): the forward pass
    /// and every gradient (`dx` from the Winograd input-gradient convolution, `dw` and `db`
    /// from the im2col path beside it) against their f64 definitions.
    #[test]
    fn wide_3x3_layers_match_the_definition() {
        for (h, c, p, o) in [
            (9, 64, Padding::Same, 64),
            (10, 64, Padding::Valid, 72),
            (16, 32, Padding::Same, 96),
        ] {
            let n = 2;
            let g = geom(h, h, c, 3, 1, p, o);
            assert!(winograd::eligible(&g));
            let x = values(n * g.in_len(), 31);
            let wt = values(g.kdim() * o, 32);
            let b = values(o, 33);
            let dy = values(n * g.out_len(), 34);
            let mut y = vec![0.0; n * g.out_len()];
            forward(&g, &x, &wt, Some(&b), &mut y);
            close(&y, &naive(&g, &x, &wt, &b), "y");
            let [dw, db, dx] = gradients(&g, &x, &wt, &dy);
            let [want_dw, want_dx] = winograd::tests::definition_gradients(&g, &x, &wt, &dy);
            close(&dw, &want_dw, "dw");
            close(&dx, &want_dx, "dx");
            for (j, v) in db.iter().enumerate() {
                let want: f32 = dy.iter().skip(j).step_by(o).sum();
                assert!((v - want).abs() < 1e-3, "db[{j}]");
            }
        }
    }

    /// Gradients against the definition: for L = sum(y * dy), dL/dw and dL/dx by linearity are
    /// the forward pass applied to unit vectors; checked with central differences on a
    /// linear function (exact up to rounding).
    #[test]
    fn backward_matches_finite_differences_of_a_linear_loss() {
        for (h, w, c, k, s, p, o) in CASES {
            let g = geom(h, w, c, k, s, p, o);
            let n = 2;
            let x = values(n * g.in_len(), 4);
            let wt = values(g.kdim() * o, 5);
            let dy = values(n * g.out_len(), 6);
            let zero = vec![0.0; o];
            let loss = |x: &[f32], wt: &[f32]| -> f64 {
                naive(&g, x, wt, &zero)
                    .iter()
                    .zip(&dy)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum()
            };
            let [dw, db, dx] = gradients(&g, &x, &wt, &dy);
            // The loss is linear in w and in x: a unit step gives the exact derivative.
            for i in (0..wt.len()).step_by(7) {
                let mut w2 = wt.clone();
                w2[i] += 1.0;
                let want = loss(&x, &w2) - loss(&x, &wt);
                assert!(
                    (dw[i] as f64 - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{g:?} dw[{i}]"
                );
            }
            for i in (0..x.len()).step_by(5) {
                let mut x2 = x.clone();
                x2[i] += 1.0;
                let want = loss(&x2, &wt) - loss(&x, &wt);
                assert!(
                    (dx[i] as f64 - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{g:?} dx[{i}]"
                );
            }
            for (j, v) in db.iter().enumerate() {
                let want: f32 = dy.iter().skip(j).step_by(o).sum();
                assert!((v - want).abs() < 1e-3, "db[{j}]");
            }
        }
    }
}
